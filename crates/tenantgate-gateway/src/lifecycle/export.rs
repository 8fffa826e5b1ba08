//! The tenant export bundle (issue 18): one tar archive of everything a tenant owns, written as
//! a stream. The same writer serves `GET /tenant/v1/export` (a bounded channel feeding the
//! response body) and `tenantgate tenant export` (a file).
//!
//! Layout (paths are built from ids, never from names the customer chose):
//! - `prompts.json`: every template, every version (text, author, time, active) and settings;
//! - `knowledge/index.json`: knowledge bases (settings) and their documents' metadata, with
//!   where each document's files are;
//! - `knowledge/{kb}/{doc}/source`: the document as uploaded, byte for byte (read part by part:
//!   a 1 GB tenant exports in the memory of one part), absent for documents uploaded before
//!   sources were kept (`documents_without_source` in the manifest);
//! - `knowledge/{kb}/{doc}/chunks.jsonl`: each chunk's text and embedding, so an import does
//!   not re-embed;
//! - `audit/audit.jsonl`: the audit export for all time with its checkpoints and signed
//!   manifest, exactly as `GET /tenant/v1/audit/export` writes it (`tenantgate audit verify`
//!   takes the file as is);
//! - `usage.json` (by day and model), `keys.json` (metadata, never hashes), `members.json`;
//! - `manifest.json`, last but one: every file's path, size and SHA-256, the tenant, the time,
//!   the chain head the audit file covers and the format; `manifest.sig`: the manifest's bytes
//!   signed with the audit signing key.
//!
//! Nothing of the content is logged: failures name the tenant and the step.

use super::tar;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io;
use tenantgate_audit::{ExportLine, Signer};
use tenantgate_core::TenantScope;
use tenantgate_store::export::{SourcePart, SOURCE_PART_BYTES};
use tenantgate_store::{Keyring, KeyringError, Store};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

pub const FORMAT: &str = "tenantgate-bundle/1";
pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_SIG: &str = "manifest.sig";
pub const PROMPTS: &str = "prompts.json";
pub const KNOWLEDGE_INDEX: &str = "knowledge/index.json";
pub const AUDIT: &str = "audit/audit.jsonl";
/// The keyring kind documents' sources are sealed under (AAD: tenant, kind, `doc:part`).
pub const SOURCE_KIND: &str = "kb_source";
/// Chunks of the response body queued at most (each up to `FLUSH_BYTES`): what a slow client
/// makes the export hold.
const CHANNEL_CHUNKS: usize = 8;
const FLUSH_BYTES: usize = 256 * 1024;

pub fn source_aad(doc_id: &str, part: u32) -> String {
    format!("{doc_id}:{part}")
}

/// Seals a document as uploaded in parts of at most 1 MiB, each under its own AAD.
pub async fn seal_source(
    keyring: &Keyring,
    scope: &TenantScope,
    doc_id: &str,
    bytes: &[u8],
) -> Result<Vec<SourcePart>, KeyringError> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(SOURCE_PART_BYTES));
    for (i, part) in bytes.chunks(SOURCE_PART_BYTES).enumerate() {
        let part_no = i as u32;
        let sealed = keyring
            .seal(scope, SOURCE_KIND, &source_aad(doc_id, part_no), part)
            .await?;
        out.push(SourcePart {
            part: part_no,
            sealed,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub tenant: String,
    pub exported_at_ms: i64,
    /// The last record of the tenant's chain the audit file covers.
    pub chain_head: ChainHead,
    pub files: Vec<ManifestFile>,
    /// Documents uploaded before their source was kept: only their chunks' text is here.
    pub documents_without_source: Vec<String>,
}

/// `manifest.sig`: the signature of `manifest.json`'s exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSig {
    pub key_id: String,
    pub public_key: String,
    pub sig: String,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub manifest_sha256: String,
    pub chain_head: ChainHead,
    pub bytes: u64,
    pub files: usize,
}

/// Where a bundle goes: a closed set, so each is matched where it matters.
pub enum Out {
    /// A response body: a bounded channel, so a slow client slows the export down instead of
    /// making it buffer.
    Channel {
        tx: mpsc::Sender<io::Result<Bytes>>,
        buf: BytesMut,
    },
    File(tokio::io::BufWriter<tokio::fs::File>),
}

impl Out {
    /// A channel sink and the receiving end the response body streams from.
    pub fn channel() -> (Out, mpsc::Receiver<io::Result<Bytes>>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        (
            Out::Channel {
                tx,
                buf: BytesMut::with_capacity(FLUSH_BYTES),
            },
            rx,
        )
    }

    async fn put(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Out::Channel { tx, buf } => {
                buf.extend_from_slice(b);
                if buf.len() >= FLUSH_BYTES {
                    let chunk = buf.split().freeze();
                    tx.send(Ok(chunk)).await.map_err(|_| gone())?;
                }
                Ok(())
            }
            Out::File(f) => f.write_all(b).await,
        }
    }

    async fn finish(&mut self) -> io::Result<()> {
        match self {
            Out::Channel { tx, buf } => {
                if !buf.is_empty() {
                    let chunk = buf.split().freeze();
                    tx.send(Ok(chunk)).await.map_err(|_| gone())?;
                }
                Ok(())
            }
            Out::File(f) => f.flush().await,
        }
    }

    /// Ends the stream with an error, so a client sees a failed download (the body is cut
    /// off without its last chunk), never a short archive that looks whole.
    pub async fn fail(self) {
        match self {
            Out::Channel { tx, .. } => {
                let _ = tx.send(Err(io::Error::other("the export failed"))).await;
            }
            Out::File(_) => {}
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the client left")
}

/// A tar stream that remembers each file's size and SHA-256 for the manifest.
struct Writer<'a> {
    out: &'a mut Out,
    files: Vec<ManifestFile>,
    mtime: u64,
    total: u64,
    open: Option<(String, u64, u64, Sha256)>,
}

impl Writer<'_> {
    async fn file(&mut self, path: &str, data: &[u8]) -> Result<(), String> {
        self.begin(path, data.len() as u64).await?;
        self.put(data).await?;
        self.end().await
    }

    async fn begin(&mut self, path: &str, size: u64) -> Result<(), String> {
        let h = tar::header(path, size, self.mtime).map_err(io_err)?;
        self.raw(&h).await?;
        self.open = Some((path.to_owned(), size, 0, Sha256::new()));
        Ok(())
    }

    async fn put(&mut self, data: &[u8]) -> Result<(), String> {
        let Some((path, size, written, h)) = self.open.as_mut() else {
            return Err("bundle: data outside an entry".into());
        };
        *written += data.len() as u64;
        if *written > *size {
            return Err(format!("bundle: {path} is longer than its header says"));
        }
        h.update(data);
        self.raw(data).await
    }

    async fn end(&mut self) -> Result<(), String> {
        let Some((path, size, written, h)) = self.open.take() else {
            return Err("bundle: no entry to end".into());
        };
        if written != size {
            return Err(format!(
                "bundle: {path} has {written} bytes of the {size} recorded"
            ));
        }
        let pad = [0u8; tar::BLOCK];
        self.raw(&pad[..tar::padding(size)]).await?;
        self.files.push(ManifestFile {
            path,
            size,
            sha256: hex::encode(h.finalize()),
        });
        Ok(())
    }

    async fn raw(&mut self, b: &[u8]) -> Result<(), String> {
        self.total += b.len() as u64;
        self.out.put(b).await.map_err(io_err)
    }
}

fn io_err(e: io::Error) -> String {
    e.to_string()
}

fn st(what: &'static str) -> impl Fn(tenantgate_store::StoreError) -> String {
    move |e| format!("{what}: {e}")
}

fn kr(what: &'static str) -> impl Fn(KeyringError) -> String {
    move |e| format!("{what}: {e:?}")
}

fn to_json(v: &impl Serialize) -> Result<Vec<u8>, String> {
    serde_json::to_vec_pretty(v).map_err(|e| e.to_string())
}

/// What an export reads: the tenant's data through its scope, and its audit export (built by
/// the caller: through the writer on a server, to the last checkpoint in the CLI).
pub struct Source<'a> {
    pub store: &'a Store,
    pub keyring: &'a Keyring,
    pub scope: &'a TenantScope,
    pub signer: &'a Signer,
    pub audit: Vec<ExportLine>,
}

/// Writes the whole bundle to `out`. Memory: one document part, one document's chunks, and the
/// audit export (as the audit export route holds it).
pub async fn write_bundle(src: Source<'_>, out: &mut Out) -> Result<Exported, String> {
    let now = crate::clock::now_ms();
    let mut w = Writer {
        out,
        files: Vec::new(),
        mtime: (now / 1000).max(0) as u64,
        total: 0,
        open: None,
    };
    let tenant = src.scope.tenant_id().as_str().to_owned();
    let h = src.store.tenant(src.scope);

    // Prompts: every version with its text.
    let prompts = src.keyring.prompts(src.store, src.scope);
    let mut templates = Vec::new();
    for p in prompts.list().await.map_err(kr("prompts"))? {
        let mut versions = Vec::new();
        let mut infos = prompts
            .versions(&p.name)
            .await
            .map_err(kr("prompt versions"))?;
        infos.sort_by_key(|v| v.version);
        for v in infos {
            let full = prompts
                .get(&p.name, Some(v.version))
                .await
                .map_err(kr("prompt version"))?;
            versions.push(json!(full));
        }
        templates.push(
            json!({"name": p.name, "active_version": p.active_version, "versions": versions}),
        );
    }
    let settings = prompts.settings().await.map_err(kr("prompt settings"))?;
    w.file(
        PROMPTS,
        &to_json(&json!({"templates": templates, "settings": settings}))?,
    )
    .await?;

    // Knowledge: the index first (an import creates the knowledge bases before documents).
    let kbs = h.knowledge_bases().await.map_err(st("knowledge bases"))?;
    let mut index = Vec::new();
    let mut docs = Vec::new();
    let mut without_source = Vec::new();
    for kb in &kbs {
        let mut entries = Vec::new();
        for d in h.documents(&kb.id).await.map_err(st("documents"))? {
            let parts = h.source_parts(&d.id).await.map_err(st("source parts"))?;
            let dir = format!("knowledge/{}/{}", kb.id, d.id);
            let source = (!parts.is_empty()).then(|| format!("{dir}/source"));
            if source.is_none() {
                without_source.push(d.id.clone());
            }
            entries.push(
                json!({"document": d, "source": source, "chunks": format!("{dir}/chunks.jsonl")}),
            );
            docs.push((kb.id.clone(), d, parts, dir));
        }
        index.push(json!({"knowledge_base": kb, "documents": entries}));
    }
    w.file(
        KNOWLEDGE_INDEX,
        &to_json(&json!({"knowledge_bases": index}))?,
    )
    .await?;
    for (kb_id, d, parts, dir) in &docs {
        if !parts.is_empty() {
            w.begin(&format!("{dir}/source"), d.bytes.max(0) as u64)
                .await?;
            for &p in parts {
                let sealed = h.source_part(&d.id, p).await.map_err(st("source part"))?;
                let plain = src
                    .keyring
                    .open(src.scope, SOURCE_KIND, &source_aad(&d.id, p), &sealed)
                    .await
                    .map_err(kr("source part"))?;
                w.put(&plain).await?;
            }
            w.end().await?;
        }
        let chunks = h
            .chunks_of_documents(kb_id, std::slice::from_ref(&d.id))
            .await
            .map_err(st("chunks"))?;
        let mut lines = Vec::new();
        for c in chunks {
            let plain = src
                .keyring
                .open(
                    src.scope,
                    crate::knowledge::CHUNK_KIND,
                    &crate::knowledge::chunk_aad(&c.doc_id, c.ord),
                    &c.sealed,
                )
                .await
                .map_err(kr("chunk"))?;
            let (text, embedding) = crate::knowledge::decode_chunk(&plain)
                .ok_or_else(|| "a chunk does not decode".to_string())?;
            serde_json::to_writer(
                &mut lines,
                &json!({"ord": c.ord, "text": text, "embedding": embedding}),
            )
            .map_err(|e| e.to_string())?;
            lines.push(b'\n');
        }
        w.file(&format!("{dir}/chunks.jsonl"), &lines).await?;
    }

    // The audit export, as its own route writes it.
    let chain_head = src
        .audit
        .iter()
        .find_map(|l| match l {
            ExportLine::Manifest(m) => Some(ChainHead {
                seq: m.last_seq,
                hash: m.head_hash.clone(),
            }),
            _ => None,
        })
        .ok_or_else(|| "the audit export has no manifest".to_string())?;
    w.file(AUDIT, tenantgate_audit::jsonl(&src.audit).as_bytes())
        .await?;

    let usage = h.usage_by_day_and_model().await.map_err(st("usage"))?;
    let usage: Vec<_> = usage
        .into_iter()
        .map(|u| json!({"day": tenantgate_audit::rfc3339(u.day * 86_400_000).get(..10), "model": u.model,
            "requests": u.requests, "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
            "cost_micros": u.cost_micros}))
        .collect();
    w.file("usage.json", &to_json(&json!({"by_day_and_model": usage}))?)
        .await?;
    // Key metadata: `ApiKeyRecord` never serializes its hash.
    let keys = h.list_keys().await.map_err(st("keys"))?;
    w.file("keys.json", &to_json(&json!({"keys": keys}))?)
        .await?;
    let members = h.members().await.map_err(st("members"))?;
    w.file("members.json", &to_json(&json!({"members": members}))?)
        .await?;

    let manifest = Manifest {
        format: FORMAT.into(),
        tenant,
        exported_at_ms: now,
        chain_head: chain_head.clone(),
        files: std::mem::take(&mut w.files),
        documents_without_source: without_source,
    };
    let files = manifest.files.len();
    let bytes = to_json(&manifest)?;
    let manifest_sha256 = hex::encode(Sha256::digest(&bytes));
    w.file(MANIFEST, &bytes).await?;
    let pk = src.signer.public_key();
    let sig = ManifestSig {
        key_id: pk.key_id,
        public_key: pk.public_key,
        sig: src.signer.sign(&bytes),
    };
    w.file(MANIFEST_SIG, &to_json(&sig)?).await?;
    w.raw(&tar::END).await?;
    w.out.finish().await.map_err(io_err)?;
    Ok(Exported {
        manifest_sha256,
        chain_head,
        bytes: w.total,
        files,
    })
}

/// The operator's export (`tenantgate tenant export`): the same bundle, written to `path`.
/// The CLI runs no audit writer and must not sign (a running gateway's signer would see a
/// checkpoint it did not make as a break), so the audit file ends at the newest checkpoint a
/// gateway signed; the manifest's `chain_head` says where. Recorded in the tenant's chain and
/// the platform's.
pub async fn operator_export(
    sink: crate::control::AuditSink<'_>,
    store: &Store,
    keyring: &Keyring,
    signer: &Signer,
    admin: &tenantgate_core::PlatformAdmin,
    tenant: &tenantgate_core::TenantId,
    path: &std::path::Path,
) -> Result<Exported, String> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the operator's export of one tenant, recorded in both chains below"
    )]
    let scope = TenantScope::for_lifecycle(admin, tenant.clone());
    let audit = store.tenant(&scope);
    let audit = audit.audit();
    let all = tenantgate_audit::Window {
        from_ms: 0,
        to_ms: i64::MAX,
    };
    let (head, _) = audit.head().await.map_err(st("audit head"))?;
    let lines = if head == 0 {
        let genesis = tenantgate_audit::Anchor {
            seq: 0,
            hash: hex::encode(tenantgate_audit::GENESIS),
        };
        tenantgate_audit::assemble(
            tenant.as_str(),
            all,
            genesis,
            Vec::new(),
            Vec::new(),
            signer,
            crate::clock::now_ms(),
        )
    } else {
        let (end, _) = audit
            .checkpoint_around(head)
            .await
            .map_err(st("checkpoints"))?;
        let end = end.ok_or_else(|| {
            "the tenant's audit chain has no signed checkpoint yet: a running gateway signs it \
             within audit.checkpoint_interval_ms (or export over GET /tenant/v1/export)"
                .to_string()
        })?;
        let first = audit.first_seq().await.map_err(st("audit"))?.unwrap_or(1);
        let (start, _) = audit
            .checkpoint_around(first.saturating_sub(1))
            .await
            .map_err(st("checkpoints"))?;
        crate::audit::export::assemble(
            &audit,
            keyring,
            signer,
            tenant,
            Some(&scope),
            all,
            start,
            end,
        )
        .await
        .map_err(|e| format!("audit export: {e:?}"))?
    };
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Out::File(tokio::io::BufWriter::with_capacity(1 << 20, file));
    let src = Source {
        store,
        keyring,
        scope: &scope,
        signer,
        audit: lines,
    };
    let done = match write_bundle(src, &mut out).await {
        Ok(d) => d,
        Err(e) => {
            drop(out);
            let _ = tokio::fs::remove_file(path).await;
            return Err(e);
        }
    };
    let detail = json!({
        "action": "tenant.export",
        "manifest_sha256": done.manifest_sha256,
        "chain_head": done.chain_head,
        "bytes": done.bytes,
    });
    super::record_step(
        sink,
        admin,
        tenant,
        tenantgate_audit::EventType::DataAccess,
        detail,
    )
    .await?;
    Ok(done)
}
