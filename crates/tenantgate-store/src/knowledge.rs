//! Knowledge bases, their documents and chunks, through the tenant-bound handle only. Chunk
//! payloads arrive sealed (the gateway seals text and embedding with the tenant's keys); this
//! module stores and returns them without looking inside.

use crate::tenant::{bump_revision, TenantStore};
use crate::{now_ms, with_tx, Access, Result, StoreError};
use serde::Serialize;
use tenantgate_core::InvalidValue;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnowledgeBase {
    pub id: String,
    pub name: String,
    pub embedding_model: String,
    pub dims: u32,
    pub chunk_tokens: u32,
    /// Searched for chat requests that name no knowledge base.
    pub is_default: bool,
    /// Moves with every document added or removed.
    pub revision: i64,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Document {
    pub id: String,
    pub kb_id: String,
    pub name: String,
    pub content_type: String,
    pub bytes: i64,
    pub sha256: String,
    pub chunks: u32,
    pub created_at_ms: i64,
}

/// A chunk to store: its ordinal in the document, its size and its sealed payload.
pub struct NewChunk {
    pub ord: u32,
    pub tokens: u32,
    pub sealed: Vec<u8>,
}

/// A stored chunk.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    pub id: i64,
    pub doc_id: String,
    pub ord: u32,
    pub sealed: Vec<u8>,
    /// The name of its document.
    pub document: String,
}

pub(crate) const KB_COLS: &str =
    "id, name, embedding_model, dims, chunk_tokens, is_default, revision, created_at_ms";
const DOC_COLS: &str = "id, kb_id, name, content_type, bytes, sha256, chunks, created_at_ms";
pub(crate) type KbRow = (String, String, String, i32, i32, bool, i64, i64);
type DocRow = (String, String, String, String, i64, String, i32, i64);
type ChunkRow = (i64, String, i32, Vec<u8>, String);

pub(crate) fn kb(r: KbRow) -> KnowledgeBase {
    KnowledgeBase {
        id: r.0,
        name: r.1,
        embedding_model: r.2,
        dims: r.3 as u32,
        chunk_tokens: r.4 as u32,
        is_default: r.5,
        revision: r.6,
        created_at_ms: r.7,
    }
}

fn doc(r: DocRow) -> Document {
    Document {
        id: r.0,
        kb_id: r.1,
        name: r.2,
        content_type: r.3,
        bytes: r.4,
        sha256: r.5,
        chunks: r.6 as u32,
        created_at_ms: r.7,
    }
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(InvalidValue("knowledge base names are 1-64 of [A-Za-z0-9._-]".into()).into())
    }
}

/// Rows per multi-row INSERT (7 parameters each, inside SQLite's limit).
const CHUNK_INSERT: usize = 500;

impl TenantStore<'_> {
    pub async fn create_knowledge_base(
        &self,
        name: &str,
        embedding_model: &str,
        dims: u32,
        chunk_tokens: u32,
        is_default: bool,
    ) -> Result<KnowledgeBase> {
        validate_name(name)?;
        if !(1..=8192).contains(&dims) || !(16..=8192).contains(&chunk_tokens) {
            return Err(InvalidValue("dims 1..=8192, chunk_tokens 16..=8192".into()).into());
        }
        let k = KnowledgeBase {
            id: format!("kb_{}", uuid::Uuid::now_v7().simple()),
            name: name.to_owned(),
            embedding_model: embedding_model.to_owned(),
            dims,
            chunk_tokens,
            is_default,
            revision: 0,
            created_at_ms: now_ms(),
        };
        with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            sqlx::query(
                "INSERT INTO knowledge_bases (id, tenant_id, name, embedding_model, dims, chunk_tokens, is_default, revision, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)",
            )
            .bind(&k.id)
            .bind(self.id().as_str())
            .bind(&k.name)
            .bind(&k.embedding_model)
            .bind(k.dims as i32)
            .bind(k.chunk_tokens as i32)
            .bind(k.is_default)
            .bind(k.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| crate::conflict_or(e, "knowledge base name"))?;
            // Default knowledge bases are part of the gateways' snapshot.
            bump_revision(&mut tx).await?;
        })?;
        Ok(k)
    }

    pub async fn knowledge_bases(&self) -> Result<Vec<KnowledgeBase>> {
        let sql =
            format!("SELECT {KB_COLS} FROM knowledge_bases WHERE tenant_id = $1 ORDER BY name");
        let rows: Vec<KbRow> = with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            sqlx::query_as(&sql)
                .bind(self.id().as_str())
                .fetch_all(&mut *tx)
                .await?
        })?;
        Ok(rows.into_iter().map(kb).collect())
    }

    /// One knowledge base by id or name; another tenant's answers `NotFound`.
    pub async fn knowledge_base(&self, id_or_name: &str) -> Result<KnowledgeBase> {
        let sql = format!(
            "SELECT {KB_COLS} FROM knowledge_bases WHERE tenant_id = $1 AND (id = $2 OR name = $2)"
        );
        let row: Option<KbRow> = with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            sqlx::query_as(&sql)
                .bind(self.id().as_str())
                .bind(id_or_name)
                .fetch_optional(&mut *tx)
                .await?
        })?;
        row.map(kb).ok_or(StoreError::NotFound)
    }

    /// Deletes a knowledge base with every document and chunk in it.
    pub async fn delete_knowledge_base(&self, id: &str) -> Result<()> {
        // The documents and chunks (the tenant's place) go first, then the name (control
        // plane): an interruption between leaves an empty knowledge base, never orphaned rows.
        let data = self.data().await?;
        let shared = data.holds_control();
        if !shared {
            self.knowledge_base(id).await?;
        }
        with_tx!(&data, Access::Tenant(self.id()), |tx| {
            for table in ["kb_chunks", "kb_sources", "kb_documents"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE tenant_id = $1 AND kb_id = $2"
                ))
                .bind(self.id().as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            if shared && drop_kb!(tx, self.id().as_str(), Some(id)) == 0 {
                return Err(StoreError::NotFound);
            }
        })?;
        if !shared {
            with_tx!(self.store, Access::Tenant(self.id()), |tx| {
                if drop_kb!(tx, self.id().as_str(), Some(id)) == 0 {
                    return Err(StoreError::NotFound);
                }
            })?;
        }
        Ok(())
    }

    /// Deletes every knowledge base, document and chunk of this tenant. Returns how many
    /// knowledge bases there were.
    pub async fn delete_all_knowledge(&self) -> Result<u64> {
        let data = self.data().await?;
        let shared = data.holds_control();
        let n = with_tx!(&data, Access::Tenant(self.id()), |tx| {
            for table in ["kb_chunks", "kb_documents"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                    .bind(self.id().as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            if shared {
                drop_kb!(tx, self.id().as_str(), None)
            } else {
                0
            }
        })?;
        if shared {
            return Ok(n);
        }
        with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            drop_kb!(tx, self.id().as_str(), None)
        })
    }

    /// Stores a document and its sealed chunks in one transaction and moves the knowledge
    /// base's revision. `doc_id` must be the id the chunks were sealed under.
    #[expect(
        clippy::too_many_arguments,
        reason = "one document's fields and chunks, written in one transaction"
    )]
    pub async fn add_document(
        &self,
        kb_id: &str,
        doc_id: &str,
        name: &str,
        content_type: &str,
        bytes: i64,
        sha256: &str,
        chunks: &[NewChunk],
    ) -> Result<Document> {
        self.add_document_with_source(
            kb_id,
            doc_id,
            name,
            content_type,
            bytes,
            sha256,
            chunks,
            &[],
        )
        .await
    }

    /// [`Self::add_document`] with the document as uploaded, in sealed parts
    /// (`crate::export::SourcePart`), written in the same transaction as its chunks.
    #[expect(
        clippy::too_many_arguments,
        reason = "one document's fields, chunks and source, written in one transaction"
    )]
    pub async fn add_document_with_source(
        &self,
        kb_id: &str,
        doc_id: &str,
        name: &str,
        content_type: &str,
        bytes: i64,
        sha256: &str,
        chunks: &[NewChunk],
        sources: &[crate::export::SourcePart],
    ) -> Result<Document> {
        if name.is_empty() || name.len() > 256 {
            return Err(InvalidValue("document names are 1..=256 characters".into()).into());
        }
        let d = Document {
            id: doc_id.to_owned(),
            kb_id: kb_id.to_owned(),
            name: name.to_owned(),
            content_type: content_type.to_owned(),
            bytes,
            sha256: sha256.to_owned(),
            chunks: chunks.len() as u32,
            created_at_ms: now_ms(),
        };
        let tenant = self.id().as_str();
        // Knowledge bases' revisions are part of the gateways' snapshot: every replica
        // serves retrieval from memory and learns of the new revision by reloading it. Where
        // the tenant's rows are elsewhere, the revision moves after they committed.
        let data = self.data().await?;
        let shared = data.holds_control();
        if !shared {
            self.knowledge_base(kb_id).await?;
        }
        with_tx!(&data, Access::Tenant(self.id()), |tx| {
            if shared && bump_kb!(tx, tenant, kb_id) == 0 {
                return Err(StoreError::NotFound);
            }
            sqlx::query(
                "INSERT INTO kb_documents (id, tenant_id, kb_id, name, content_type, bytes, sha256, chunks, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&d.id)
            .bind(tenant)
            .bind(kb_id)
            .bind(&d.name)
            .bind(&d.content_type)
            .bind(d.bytes)
            .bind(&d.sha256)
            .bind(d.chunks as i32)
            .bind(d.created_at_ms)
            .execute(&mut *tx)
            .await?;
            for part in chunks.chunks(CHUNK_INSERT) {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO kb_chunks (tenant_id, kb_id, doc_id, ord, tokens, sealed) ",
                );
                qb.push_values(part, |mut b, c| {
                    b.push_bind(tenant)
                        .push_bind(kb_id)
                        .push_bind(doc_id)
                        .push_bind(c.ord as i32)
                        .push_bind(c.tokens as i32)
                        .push_bind(c.sealed.as_slice());
                });
                qb.build().execute(&mut *tx).await?;
            }
            crate::export::insert_sources!(tx, tenant, kb_id, doc_id, sources);
        })?;
        if !shared {
            with_tx!(self.store, Access::Tenant(self.id()), |tx| {
                bump_kb!(tx, tenant, kb_id);
            })?;
        }
        Ok(d)
    }

    pub async fn documents(&self, kb_id: &str) -> Result<Vec<Document>> {
        let sql = format!(
            "SELECT {DOC_COLS} FROM kb_documents WHERE tenant_id = $1 AND kb_id = $2 ORDER BY created_at_ms, id"
        );
        let rows: Vec<DocRow> = with_tx!(self.data().await?, Access::Tenant(self.id()), |tx| {
            sqlx::query_as(&sql)
                .bind(self.id().as_str())
                .bind(kb_id)
                .fetch_all(&mut *tx)
                .await?
        })?;
        Ok(rows.into_iter().map(doc).collect())
    }

    /// Deletes a document and its chunks and moves the knowledge base's revision.
    pub async fn delete_document(&self, kb_id: &str, doc_id: &str) -> Result<()> {
        let tenant = self.id().as_str();
        let data = self.data().await?;
        let shared = data.holds_control();
        with_tx!(&data, Access::Tenant(self.id()), |tx| {
            let n = sqlx::query(
                "DELETE FROM kb_documents WHERE tenant_id = $1 AND kb_id = $2 AND id = $3",
            )
            .bind(tenant)
            .bind(kb_id)
            .bind(doc_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            for table in ["kb_chunks", "kb_sources"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE tenant_id = $1 AND doc_id = $2"
                ))
                .bind(tenant)
                .bind(doc_id)
                .execute(&mut *tx)
                .await?;
            }
            if shared {
                bump_kb!(tx, tenant, kb_id);
            }
        })?;
        if !shared {
            with_tx!(self.store, Access::Tenant(self.id()), |tx| {
                bump_kb!(tx, tenant, kb_id);
            })?;
        }
        Ok(())
    }

    /// Every chunk of a knowledge base, in id order, with its document's name and the revision
    /// they make up (read in one transaction, so the two agree).
    pub async fn chunks(&self, kb_id: &str) -> Result<(i64, Vec<StoredChunk>)> {
        let tenant = self.id().as_str();
        let (data, rev) = self.data_and_revision(kb_id).await?;
        let (revision, rows): (Option<i64>, Vec<ChunkRow>) =
            with_tx!(&data, Access::Tenant(self.id()), |tx| {
                let rev: Option<i64> = match &rev {
                    // Read first, in its own transaction: rows newer than the revision only
                    // cost a redundant catch-up later, never a missed one.
                    Some(r) => *r,
                    None => kb_revision!(tx, tenant, kb_id),
                };
                let rows = sqlx::query_as(
                    "SELECT c.id, c.doc_id, c.ord, c.sealed, d.name FROM kb_chunks c \
                     JOIN kb_documents d ON d.id = c.doc_id AND d.tenant_id = c.tenant_id \
                     WHERE c.tenant_id = $1 AND c.kb_id = $2 ORDER BY c.id",
                )
                .bind(tenant)
                .bind(kb_id)
                .fetch_all(&mut *tx)
                .await?;
                (rev, rows)
            })?;
        let revision = revision.ok_or(StoreError::NotFound)?;
        Ok((
            revision,
            rows.into_iter()
                .map(|(id, doc_id, ord, sealed, document)| StoredChunk {
                    id,
                    doc_id,
                    ord: ord as u32,
                    sealed,
                    document,
                })
                .collect(),
        ))
    }

    /// A knowledge base's revision and the ids of its documents at that revision (one
    /// transaction, so the two agree): what a resident index diffs against to catch up.
    pub async fn document_ids(&self, kb_id: &str) -> Result<(i64, Vec<String>)> {
        let tenant = self.id().as_str();
        let (data, rev) = self.data_and_revision(kb_id).await?;
        let (revision, ids): (Option<i64>, Vec<String>) =
            with_tx!(&data, Access::Tenant(self.id()), |tx| {
                let rev: Option<i64> = match &rev {
                    // Read first, in its own transaction: rows newer than the revision only
                    // cost a redundant catch-up later, never a missed one.
                    Some(r) => *r,
                    None => kb_revision!(tx, tenant, kb_id),
                };
                let ids = sqlx::query_scalar(
                    "SELECT id FROM kb_documents WHERE tenant_id = $1 AND kb_id = $2 ORDER BY id",
                )
                .bind(tenant)
                .bind(kb_id)
                .fetch_all(&mut *tx)
                .await?;
                (rev, ids)
            })?;
        Ok((revision.ok_or(StoreError::NotFound)?, ids))
    }

    /// The chunks of documents `doc_ids` of a knowledge base, in id order, with their
    /// document's name (documents of other knowledge bases or tenants are simply not returned).
    pub async fn chunks_of_documents(
        &self,
        kb_id: &str,
        doc_ids: &[String],
    ) -> Result<Vec<StoredChunk>> {
        let mut out = Vec::new();
        // Bounded parameter lists (SQLite's limit); a catch-up names few documents.
        for part in doc_ids.chunks(CHUNK_INSERT) {
            let rows: Vec<ChunkRow> =
                with_tx!(self.data().await?, Access::Tenant(self.id()), |tx| {
                    let mut qb = sqlx::QueryBuilder::new(
                        "SELECT c.id, c.doc_id, c.ord, c.sealed, d.name FROM kb_chunks c \
                     JOIN kb_documents d ON d.id = c.doc_id AND d.tenant_id = c.tenant_id \
                     WHERE c.tenant_id = ",
                    );
                    qb.push_bind(self.id().as_str());
                    qb.push(" AND c.kb_id = ").push_bind(kb_id);
                    qb.push(" AND c.doc_id IN (");
                    let mut sep = qb.separated(", ");
                    for id in part {
                        sep.push_bind(id.as_str());
                    }
                    qb.push(") ORDER BY c.id");
                    qb.build_query_as().fetch_all(&mut *tx).await?
                })?;
            out.extend(
                rows.into_iter()
                    .map(|(id, doc_id, ord, sealed, document)| StoredChunk {
                        id,
                        doc_id,
                        ord: ord as u32,
                        sealed,
                        document,
                    }),
            );
        }
        Ok(out)
    }

    /// The chunks `ids` of a knowledge base (ids of other knowledge bases or tenants are
    /// simply not returned), with their document's name.
    pub async fn chunks_by_id(
        &self,
        kb_id: &str,
        ids: &[i64],
    ) -> Result<Vec<(StoredChunk, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String, i32, Vec<u8>, String)> =
            with_tx!(self.data().await?, Access::Tenant(self.id()), |tx| {
                let mut qb = sqlx::QueryBuilder::new(
                    "SELECT c.id, c.doc_id, c.ord, c.sealed, d.name FROM kb_chunks c \
                     JOIN kb_documents d ON d.id = c.doc_id AND d.tenant_id = c.tenant_id \
                     WHERE c.tenant_id = ",
                );
                qb.push_bind(self.id().as_str());
                qb.push(" AND c.kb_id = ").push_bind(kb_id);
                qb.push(" AND c.id IN (");
                let mut sep = qb.separated(", ");
                for id in ids {
                    sep.push_bind(*id);
                }
                qb.push(")");
                qb.build_query_as().fetch_all(&mut *tx).await?
            })?;
        Ok(rows
            .into_iter()
            .map(|(id, doc_id, ord, sealed, name)| {
                (
                    StoredChunk {
                        id,
                        doc_id,
                        ord: ord as u32,
                        sealed,
                        document: name.clone(),
                    },
                    name,
                )
            })
            .collect())
    }
}

impl TenantStore<'_> {
    /// Where this tenant's documents and chunks are.
    async fn data(&self) -> Result<crate::places::Data> {
        self.store.data(self.id()).await
    }

    /// The place of the tenant's chunks and, where that is not the shared database, a
    /// knowledge base's revision read beforehand from the control plane (`Some(None)`: no
    /// such knowledge base). `None`: read it in the same transaction as the rows.
    async fn data_and_revision(
        &self,
        kb_id: &str,
    ) -> Result<(crate::places::Data, Option<Option<i64>>)> {
        let data = self.data().await?;
        if data.holds_control() {
            return Ok((data, None));
        }
        let tenant = self.id().as_str();
        let rev = with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            kb_revision!(tx, tenant, kb_id)
        })?;
        Ok((data, Some(rev)))
    }
}

// The control-plane statements of knowledge changes, as macros so each expands inside a
// `with_tx!` body and is type-checked per backend (their results differ by backend).

/// A knowledge base's revision (`None`: no such knowledge base of this tenant).
macro_rules! kb_revision {
    ($tx:ident, $tenant:expr, $kb:expr) => {
        sqlx::query_scalar::<_, i64>(
            "SELECT revision FROM knowledge_bases WHERE tenant_id = $1 AND id = $2",
        )
        .bind($tenant)
        .bind($kb)
        .fetch_optional(&mut *$tx)
        .await?
    };
}
use kb_revision;

/// Moves a knowledge base's revision and the control-plane revision; how many knowledge bases
/// matched (0: none by that id).
macro_rules! bump_kb {
    ($tx:ident, $tenant:expr, $kb:expr) => {{
        let n = sqlx::query(
            "UPDATE knowledge_bases SET revision = revision + 1 WHERE tenant_id = $1 AND id = $2",
        )
        .bind($tenant)
        .bind($kb)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        bump_revision(&mut $tx).await?;
        n
    }};
}
use bump_kb;

/// Deletes one knowledge base's row (`Some(id)`) or all the tenant's (`None`) and moves the
/// control-plane revision; how many there were.
macro_rules! drop_kb {
    ($tx:ident, $tenant:expr, $kb:expr) => {{
        let kb: Option<&str> = $kb;
        let n = sqlx::query(
            "DELETE FROM knowledge_bases WHERE tenant_id = $1 \
             AND (CAST($2 AS TEXT) IS NULL OR id = CAST($2 AS TEXT))",
        )
        .bind($tenant)
        .bind(kb)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        bump_revision(&mut $tx).await?;
        n
    }};
}
use drop_kb;
