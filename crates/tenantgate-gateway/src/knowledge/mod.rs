//! Knowledge bases at run time: the per-knowledge-base index (loaded lazily, rebuilt when
//! stale, evicted under a memory bound), search, and the sealing of chunks. Retrieval as a
//! stage of a chat call is `pipeline::retrieve`; embedding calls are `pipeline::embed`.
//!
//! Isolation is physical: every index holds one knowledge base of one tenant, is found by
//! (tenant from the scope, knowledge base the tenant's store handle resolved), and is persisted
//! sealed with that tenant's key under that tenant's directory. There is no shared index to
//! search, so no query can reach another tenant's chunks; a name of another tenant's knowledge
//! base resolves to `NotFound` in the tenant's own store handle.
//!
//! A warm retrieval makes no database query: knowledge bases' metadata and revisions come from
//! the auth snapshot (every change to a knowledge base or its documents moves the control-plane
//! revision, so every replica reloads it: PostgreSQL NOTIFY, or the poll on SQLite; the replica
//! that made the change reloads at once), and a resident index carries each of its chunks'
//! sealed payload and document name (read with the chunks when it is built, and sealed into its
//! file), opened per hit with the tenant's cached data key (`tests/queries.rs`).

use crate::error::st;
use crate::error::GatewayError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tenantgate_core::{TenantId, TenantScope};
use tenantgate_rag::{Index, IndexParams};
use tenantgate_store::knowledge::{KnowledgeBase, NewChunk};
use tenantgate_store::{Keyring, Store};

mod resident;
pub use resident::Resident;
use resident::ResidentChunk;

/// Sealing kinds (part of the AAD): a chunk's text and embedding, and an index file.
const CHUNK_KIND: &str = "kb_chunk";
const INDEX_KIND: &str = "kb_index";

/// Loaded indexes, least recently used first out.
pub struct Knowledge {
    dir: PathBuf,
    max_bytes: usize,
    params: IndexParams,
    cache: Mutex<Cache>,
    /// Shared with `/metrics` (`crate::metrics`).
    pub stats: Arc<KnowledgeStats>,
}

struct Cache {
    lru: lru::LruCache<(TenantId, String), Arc<Resident>>,
    bytes: usize,
}

#[derive(Default)]
pub struct KnowledgeStats {
    pub loads: AtomicU64,
    pub builds: AtomicU64,
    pub evictions: AtomicU64,
    pub resident_bytes: AtomicU64,
}

/// A chunk's sealed payload: `u32 LE text length | text | f32 LE embedding`.
fn encode_chunk(text: &str, embedding: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + text.len() + embedding.len() * 4);
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    for x in embedding {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn decode_chunk(bytes: &[u8]) -> Option<(String, Vec<f32>)> {
    let n = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let text = std::str::from_utf8(bytes.get(4..4 + n)?).ok()?.to_owned();
    let rest = bytes.get(4 + n..)?;
    if rest.len() % 4 != 0 {
        return None;
    }
    let v = rest
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Some((text, v))
}

fn chunk_aad(doc_id: &str, ord: u32) -> String {
    format!("{doc_id}:{ord}")
}

fn internal(e: impl std::fmt::Display) -> GatewayError {
    tracing::error!(error = %e, "knowledge base failure");
    GatewayError::Internal
}

/// One retrieved chunk with its provenance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Retrieved {
    pub knowledge_base: String,
    pub document_id: String,
    pub document: String,
    pub chunk: u32,
    pub score: f32,
    #[serde(skip)]
    pub text: String,
}

impl Knowledge {
    pub fn new(cfg: &crate::config::RagConfig) -> Self {
        Self {
            dir: cfg.index_dir.clone(),
            max_bytes: cfg.max_resident_bytes as usize,
            params: IndexParams {
                ef_construction: cfg.ef_construction,
                ef_search: cfg.ef_search,
                ..IndexParams::default()
            },
            cache: Mutex::new(Cache {
                lru: lru::LruCache::unbounded(),
                bytes: 0,
            }),
            stats: Arc::default(),
        }
    }

    fn file(&self, tenant: &TenantId, kb: &str) -> PathBuf {
        self.dir.join(tenant.as_str()).join(format!("{kb}.idx"))
    }

    /// The resident index, if it is at `kb`'s revision or later. Later happens when `kb` comes
    /// from a snapshot older than the rows the index was built from (another replica's change
    /// not reloaded yet); the revision only grows, so the index is the newer truth.
    fn cached(&self, tenant: &TenantId, kb: &KnowledgeBase) -> Option<Arc<Resident>> {
        let mut c = self.cache.lock().ok()?;
        let ix = c.lru.get(&(tenant.clone(), kb.id.clone()))?.clone();
        (ix.revision() >= kb.revision).then_some(ix)
    }

    /// The tenant's knowledge base `id_or_name` as of `snapshot` (no query); another tenant's
    /// is `KnowledgeBaseNotFound`, like a missing one.
    pub fn knowledge_base(
        &self,
        snapshot: &crate::identity::auth::AuthIndex,
        scope: &TenantScope,
        id_or_name: &str,
    ) -> Result<KnowledgeBase, GatewayError> {
        snapshot
            .knowledge_base(scope.tenant_id(), id_or_name)
            .cloned()
            .ok_or_else(|| GatewayError::KnowledgeBaseNotFound(id_or_name.to_owned()))
    }

    fn insert(&self, tenant: &TenantId, kb: &str, ix: Arc<Resident>) {
        let Ok(mut c) = self.cache.lock() else { return };
        if let Some(old) = c.lru.put((tenant.clone(), kb.to_owned()), ix.clone()) {
            c.bytes -= old.memory_bytes();
        }
        c.bytes += ix.memory_bytes();
        while c.bytes > self.max_bytes && c.lru.len() > 1 {
            if let Some((_, old)) = c.lru.pop_lru() {
                c.bytes -= old.memory_bytes();
                self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.stats
            .resident_bytes
            .store(c.bytes as u64, Ordering::Relaxed);
    }

    /// Drops a knowledge base's loaded index and file (deleted, or all of a tenant's with
    /// `kb = None`).
    pub fn forget(&self, tenant: &TenantId, kb: Option<&str>) {
        if let Ok(mut c) = self.cache.lock() {
            let keys: Vec<_> = c
                .lru
                .iter()
                .filter(|((t, k), _)| t == tenant && kb.is_none_or(|kb| kb == k))
                .map(|(key, _)| key.clone())
                .collect();
            for key in keys {
                if let Some(old) = c.lru.pop(&key) {
                    c.bytes -= old.memory_bytes();
                }
            }
            self.stats
                .resident_bytes
                .store(c.bytes as u64, Ordering::Relaxed);
        }
        let _ = match kb {
            Some(kb) => std::fs::remove_file(self.file(tenant, kb)),
            None => std::fs::remove_dir_all(self.dir.join(tenant.as_str())),
        };
    }

    /// Start-up sweep: removes the index directory of every tenant that is not `live` (deleted
    /// while this replica was down, or gone from the store). Entries that are not a tenant's
    /// directory are left alone. Returns the directories removed.
    pub fn sweep(&self, live: impl Fn(&TenantId) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let name = e.file_name();
            let Some(tenant) = name.to_str().and_then(|n| TenantId::parse(n).ok()) else {
                continue;
            };
            if is_dir && !live(&tenant) {
                self.forget(&tenant, None);
                removed += 1;
            }
        }
        removed
    }

    /// How many of the tenant's indexes are loaded in this process.
    pub fn resident(&self, tenant: &TenantId) -> usize {
        self.cache
            .lock()
            .map(|c| c.lru.iter().filter(|((t, _), _)| t == tenant).count())
            .unwrap_or(0)
    }

    /// The knowledge base's index at its current revision (or later): from memory, else from
    /// its sealed file, else rebuilt from the stored chunks (and the file rewritten).
    pub async fn index(
        &self,
        store: &Store,
        keyring: &Keyring,
        scope: &TenantScope,
        kb: &KnowledgeBase,
    ) -> Result<Arc<Resident>, GatewayError> {
        let tenant = scope.tenant_id();
        if let Some(ix) = self.cached(tenant, kb) {
            return Ok(ix);
        }
        let path = self.file(tenant, &kb.id);
        if let Ok(sealed) = tokio::fs::read(&path).await {
            if let Ok(plain) = keyring.open(scope, INDEX_KIND, &kb.id, &sealed).await {
                let ix = tokio::task::spawn_blocking(move || Resident::from_file(&plain))
                    .await
                    .map_err(internal)?;
                // A file from an earlier revision (or an older format) is stale: rebuild below.
                match ix {
                    Some(ix) if ix.revision() >= kb.revision => {
                        self.stats.loads.fetch_add(1, Ordering::Relaxed);
                        let ix = Arc::new(ix);
                        self.insert(tenant, &kb.id, ix.clone());
                        return Ok(ix);
                    }
                    _ => {}
                }
            }
        }
        let ix = Arc::new(self.build(store, keyring, scope, kb).await?);
        self.insert(tenant, &kb.id, ix.clone());
        Ok(ix)
    }

    async fn build(
        &self,
        store: &Store,
        keyring: &Keyring,
        scope: &TenantScope,
        kb: &KnowledgeBase,
    ) -> Result<Resident, GatewayError> {
        let (revision, chunks) = store.tenant(scope).chunks(&kb.id).await.map_err(st)?;
        let mut points = Vec::with_capacity(chunks.len());
        let mut resident = Vec::with_capacity(chunks.len());
        for c in chunks {
            let plain = keyring
                .open(scope, CHUNK_KIND, &chunk_aad(&c.doc_id, c.ord), &c.sealed)
                .await
                .map_err(internal)?;
            let (_, v) = decode_chunk(&plain).ok_or_else(|| internal("undecodable chunk"))?;
            points.push((c.id, v));
            resident.push(ResidentChunk {
                id: c.id,
                doc_id: c.doc_id,
                ord: c.ord,
                document: c.document,
                sealed: c.sealed,
            });
        }
        let (dims, params) = (kb.dims as usize, self.params);
        let ix = tokio::task::spawn_blocking(move || Index::build(dims, revision, points, params))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        self.stats.builds.fetch_add(1, Ordering::Relaxed);
        let ix = Resident::new(ix, resident);
        // Persist sealed (best effort: the file is a cache of the store).
        let bytes = ix.to_file()?;
        let sealed = keyring
            .seal(scope, INDEX_KIND, &kb.id, &bytes)
            .await
            .map_err(internal)?;
        let path = self.file(scope.tenant_id(), &kb.id);
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        let write = async {
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::write(&tmp, &sealed).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            tracing::warn!(error = %e, "index file not written; it will be rebuilt on next load");
        }
        Ok(ix)
    }

    /// Searches one knowledge base: the `k` nearest chunks to `query`, opened. A warm search
    /// (index resident) makes no query: the hits' payloads are in the resident index.
    pub async fn search(
        &self,
        store: &Store,
        keyring: &Keyring,
        scope: &TenantScope,
        kb: &KnowledgeBase,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<Retrieved>, GatewayError> {
        let ix = self.index(store, keyring, scope, kb).await?;
        let hits = ix
            .index
            .search(query, k)
            .map_err(|e| GatewayError::InvalidRequest {
                message: e.to_string(),
                param: None,
            })?;
        let mut out = Vec::with_capacity(hits.len());
        for h in hits {
            // The index and its chunks were built together; a hit without one is a bug.
            let c = ix
                .chunks
                .get(&h.id)
                .ok_or_else(|| internal("index hit without its chunk"))?;
            let plain = keyring
                .open(scope, CHUNK_KIND, &chunk_aad(&c.doc_id, c.ord), &c.sealed)
                .await
                .map_err(internal)?;
            let (text, _) = decode_chunk(&plain).ok_or_else(|| internal("undecodable chunk"))?;
            out.push(Retrieved {
                knowledge_base: kb.name.clone(),
                document_id: c.doc_id.clone(),
                document: c.document.clone(),
                chunk: c.ord,
                score: h.score,
                text,
            });
        }
        Ok(out)
    }
}

/// Seals chunks for storage under `doc_id`.
pub async fn seal_chunks(
    keyring: &Keyring,
    scope: &TenantScope,
    doc_id: &str,
    chunks: &[tenantgate_rag::Chunk],
    embeddings: &[Vec<f32>],
) -> Result<Vec<NewChunk>, GatewayError> {
    let mut out = Vec::with_capacity(chunks.len());
    for (i, (c, v)) in chunks.iter().zip(embeddings).enumerate() {
        let ord = i as u32;
        let sealed = keyring
            .seal(
                scope,
                CHUNK_KIND,
                &chunk_aad(doc_id, ord),
                &encode_chunk(&c.text, v),
            )
            .await
            .map_err(internal)?;
        out.push(NewChunk {
            ord,
            tokens: c.tokens,
            sealed,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_payload_round_trips() {
        let (t, v) = decode_chunk(&encode_chunk("héllo", &[0.5, -1.0])).unwrap();
        assert_eq!((t.as_str(), v), ("héllo", vec![0.5, -1.0]));
        assert!(decode_chunk(&[9, 0, 0, 0, b'a']).is_none());
    }
}
