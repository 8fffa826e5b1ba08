//! Restoring an export bundle into another deployment (`tenantgate tenant import`).
//!
//! Nothing is written before the whole bundle is checked: the manifest's signature against the
//! key the operator trusts (never a key the bundle names), and every file's size and SHA-256
//! against the manifest, with no file missing or extra. Then the tenant is created and filled,
//! reading the archive again entry by entry (each entry re-hashed as it is read, so a file
//! changed between the passes is refused too); a failure at any point discards the new tenant
//! whole (`Platform::discard_tenant`). API keys are not restored (new ones are made); the
//! old audit chain stays what it is, the bundle's verified file, and the import is recorded in
//! the new tenant's chain and the platform's, naming the source tenant, the manifest's SHA-256
//! and the source chain head.

use super::export::{
    source_aad, Manifest, ManifestSig, AUDIT, FORMAT, KNOWLEDGE_INDEX, MANIFEST, MANIFEST_SIG,
    PROMPTS, SOURCE_KIND,
};
use super::tar;
use crate::control::AuditSink;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use tenantgate_audit::{EventType, PublicKey};
use tenantgate_core::{NewTenant, PlatformAdmin, Role, TenantId, TenantScope};
use tenantgate_store::export::{SourcePart, SOURCE_PART_BYTES};
use tenantgate_store::prompts::{ImportSet, NewVersion, PromptSettings};
use tenantgate_store::{Keyring, Store};
use tokio::io::{AsyncReadExt, BufReader};

/// The largest metadata file read whole (manifest, prompts, index, one document's chunks).
const MAX_JSON_BYTES: u64 = 256 << 20;

/// A bundle whose manifest verified and whose files all match it.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    pub manifest_sha256: String,
    /// The bundle's audit file verified under the same trusted key.
    pub audit: tenantgate_audit::Report,
}

/// What an import made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Imported {
    pub tenant: tenantgate_core::Tenant,
    pub source_tenant: String,
    pub manifest_sha256: String,
    pub source_chain_head: super::export::ChainHead,
    pub prompts: usize,
    pub knowledge_bases: usize,
    pub documents: usize,
    pub documents_without_source: usize,
    pub members: usize,
}

/// Reads a tar file entry by entry.
struct Reader {
    f: BufReader<tokio::fs::File>,
}

impl Reader {
    async fn open(path: &Path) -> Result<Reader, String> {
        let f = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Reader {
            f: BufReader::with_capacity(1 << 20, f),
        })
    }

    /// The next entry's path and size; `None` at the end.
    async fn next(&mut self) -> Result<Option<(String, u64)>, String> {
        let mut h = [0u8; tar::BLOCK];
        self.f
            .read_exact(&mut h)
            .await
            .map_err(|e| format!("bundle: {e}"))?;
        tar::parse(&h).map_err(|e| format!("bundle: {e}"))
    }

    /// Reads up to `want` bytes of the current entry (`left` remaining) into `buf`.
    async fn read(&mut self, buf: &mut Vec<u8>, want: u64) -> Result<(), String> {
        buf.clear();
        buf.resize(want as usize, 0);
        self.f
            .read_exact(buf)
            .await
            .map_err(|e| format!("bundle: {e}"))?;
        Ok(())
    }

    async fn skip_padding(&mut self, size: u64) -> Result<(), String> {
        let mut pad = [0u8; tar::BLOCK];
        self.f
            .read_exact(&mut pad[..tar::padding(size)])
            .await
            .map_err(|e| format!("bundle: {e}"))?;
        Ok(())
    }

    /// A whole (small) entry, hashed.
    async fn whole(&mut self, size: u64) -> Result<(Vec<u8>, String), String> {
        if size > MAX_JSON_BYTES {
            return Err(format!(
                "bundle: an entry of {size} bytes is over the metadata bound"
            ));
        }
        let mut buf = Vec::new();
        self.read(&mut buf, size).await?;
        self.skip_padding(size).await?;
        let sha = hex::encode(Sha256::digest(&buf));
        Ok((buf, sha))
    }
}

/// Checks the bundle against `trusted`: the manifest's signature, then every file.
pub async fn verify(path: &Path, trusted: &PublicKey) -> Result<Verified, String> {
    let mut r = Reader::open(path).await?;
    let mut seen: Vec<(String, u64, String)> = Vec::new();
    let (mut manifest, mut sig, mut audit) = (None, None, None);
    let mut buf = Vec::new();
    while let Some((name, size)) = r.next().await? {
        if name == MANIFEST || name == MANIFEST_SIG || name == AUDIT {
            let (bytes, _) = r.whole(size).await?;
            match name.as_str() {
                MANIFEST => manifest = Some(bytes),
                MANIFEST_SIG => sig = Some(bytes),
                _ => {
                    let sha = hex::encode(Sha256::digest(&bytes));
                    seen.push((name, size, sha));
                    audit = Some(bytes);
                }
            }
            continue;
        }
        let mut h = Sha256::new();
        let mut left = size;
        while left > 0 {
            let n = left.min(SOURCE_PART_BYTES as u64);
            r.read(&mut buf, n).await?;
            h.update(&buf);
            left -= n;
        }
        r.skip_padding(size).await?;
        seen.push((name, size, hex::encode(h.finalize())));
    }
    let manifest_bytes = manifest.ok_or("bundle: no manifest.json")?;
    let sig: ManifestSig = serde_json::from_slice(&sig.ok_or("bundle: no manifest.sig")?)
        .map_err(|e| format!("manifest.sig: {e}"))?;
    // The signature must be by the trusted key: the key the bundle names proves nothing.
    if !sig.public_key.eq_ignore_ascii_case(&trusted.public_key) {
        return Err("manifest.sig: signed by another key than the trusted one".into());
    }
    trusted
        .verify(&manifest_bytes, &sig.sig)
        .map_err(|e| format!("manifest.sig: {e}"))?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| format!("manifest.json: {e}"))?;
    if manifest.format != FORMAT {
        return Err(format!(
            "bundle format {:?} is not {FORMAT}",
            manifest.format
        ));
    }
    let listed: HashMap<&str, (u64, &str)> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), (f.size, f.sha256.as_str())))
        .collect();
    if listed.len() != seen.len() {
        return Err(format!(
            "bundle: {} files where the manifest lists {}",
            seen.len(),
            listed.len()
        ));
    }
    for (name, size, sha) in &seen {
        match listed.get(name.as_str()) {
            Some((s, h)) if s == size && h == sha => {}
            Some(_) => return Err(format!("bundle: {name} does not match its checksum")),
            None => return Err(format!("bundle: {name} is not in the manifest")),
        }
    }
    let audit = audit.ok_or("bundle: no audit file")?;
    let text = std::str::from_utf8(&audit).map_err(|_| "audit file: not UTF-8".to_string())?;
    let report = tenantgate_audit::verify_jsonl(text, Some(std::slice::from_ref(trusted)))
        .map_err(|e| format!("audit file: {e}"))?;
    if report.tenant != manifest.tenant {
        return Err("audit file: another tenant's chain".into());
    }
    Ok(Verified {
        manifest_sha256: hex::encode(Sha256::digest(&manifest_bytes)),
        manifest,
        audit: report,
    })
}

/// Where and how the imported tenant is created (as `tenant create` takes them).
pub struct Target<'a> {
    pub store: &'a Store,
    pub keyring: &'a Keyring,
    pub admin: &'a PlatformAdmin,
    pub sink: AuditSink<'a>,
    pub tenant: NewTenant,
    pub dedicated: Option<&'a str>,
}

/// Verifies `path` against `trusted`, then restores it as a new tenant (all or nothing).
pub async fn import(path: &Path, trusted: &PublicKey, t: Target<'_>) -> Result<Imported, String> {
    let v = verify(path, trusted).await?;
    let p = t.store.platform(t.admin);
    let tenant = p
        .create_tenant_at(&t.tenant, t.dedicated)
        .await
        .map_err(|e| format!("creating the tenant: {e}"))?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the import creates this tenant and fills it; recorded in both chains below"
    )]
    let scope = TenantScope::for_lifecycle(t.admin, tenant.id.clone());
    let restored = restore(path, &v, &t, &scope).await;
    let mut out = match restored {
        Ok(out) => out,
        Err(e) => {
            discard(&t, &tenant.id).await;
            return Err(e);
        }
    };
    let detail = json!({
        "action": "tenant.import",
        "source_tenant": v.manifest.tenant,
        "manifest_sha256": v.manifest_sha256,
        "source_chain_head": v.manifest.chain_head,
    });
    if let Err(e) = super::record_step(
        t.sink,
        t.admin,
        &tenant.id,
        EventType::ConfigurationChange,
        detail,
    )
    .await
    {
        // Not recorded in the tenant's chain: the tenant is taken back. (The platform chain is
        // written second; if only it failed, the tenant's chain names the import.)
        if matches!(
            t.store.platform(t.admin).audit_head(&tenant.id).await,
            Ok((0, _))
        ) {
            discard(&t, &tenant.id).await;
        }
        return Err(format!("recording the import: {e}"));
    }
    out.tenant = tenant;
    Ok(out)
}

async fn discard(t: &Target<'_>, id: &TenantId) {
    // The same undo as a failed onboarding's: keys shredded, then every row and the storage.
    let undone = match t.keyring.shred(t.admin, id).await {
        Ok(()) => t
            .store
            .platform(t.admin)
            .discard_tenant(id)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = undone {
        tracing::error!(tenant = %id, error = %e, "a failed import's tenant could not be removed");
    }
}

/// The second pass: every entry again, re-hashed, written under the new tenant's scope.
async fn restore(
    path: &Path,
    v: &Verified,
    t: &Target<'_>,
    scope: &TenantScope,
) -> Result<Imported, String> {
    let listed: HashMap<&str, &str> = v
        .manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.sha256.as_str()))
        .collect();
    let h = t.store.tenant(scope);
    let mut out = Imported {
        tenant: t
            .store
            .tenant(scope)
            .get()
            .await
            .map_err(|e| e.to_string())?,
        source_tenant: v.manifest.tenant.clone(),
        manifest_sha256: v.manifest_sha256.clone(),
        source_chain_head: v.manifest.chain_head.clone(),
        prompts: 0,
        knowledge_bases: 0,
        documents: 0,
        documents_without_source: v.manifest.documents_without_source.len(),
        members: 0,
    };
    // Old knowledge-base id -> new; old document path prefix -> (new kb id, document meta).
    let mut kbs: HashMap<String, String> = HashMap::new();
    let mut docs: HashMap<String, (String, Value)> = HashMap::new();
    // The current document's source, sealed part by part under its new id.
    let mut pending: Option<(String, Vec<SourcePart>)> = None;
    let mut r = Reader::open(path).await?;
    let mut buf = Vec::new();
    while let Some((name, size)) = r.next().await? {
        if name == MANIFEST_SIG || name == MANIFEST {
            r.whole(size).await?;
            continue;
        }
        let want = *listed
            .get(name.as_str())
            .ok_or_else(|| format!("bundle: {name} changed since it was verified"))?;
        let check = |sha: &str| {
            if sha == want {
                Ok(())
            } else {
                Err(format!("bundle: {name} changed since it was verified"))
            }
        };
        if let Some(dir) = name.strip_suffix("/source") {
            let (_, meta) = docs
                .get(dir)
                .ok_or_else(|| format!("bundle: {name} is in no knowledge base"))?;
            let doc_id = new_doc_id();
            let mut hasher = Sha256::new();
            let (mut left, mut part, mut parts) = (size, 0u32, Vec::new());
            while left > 0 {
                let n = left.min(SOURCE_PART_BYTES as u64);
                r.read(&mut buf, n).await?;
                hasher.update(&buf);
                let sealed = t
                    .keyring
                    .seal(scope, SOURCE_KIND, &source_aad(&doc_id, part), &buf)
                    .await
                    .map_err(|e| format!("sealing a document: {e:?}"))?;
                parts.push(SourcePart { part, sealed });
                part += 1;
                left -= n;
            }
            r.skip_padding(size).await?;
            let sha = hex::encode(hasher.finalize());
            check(&sha)?;
            if meta["sha256"].as_str() != Some(sha.as_str()) {
                return Err(format!(
                    "bundle: {name} is not the document its index describes"
                ));
            }
            pending = Some((doc_id, parts));
            continue;
        }
        let (bytes, sha) = r.whole(size).await?;
        check(&sha)?;
        if let Some(dir) = name.strip_suffix("/chunks.jsonl") {
            let (kb, meta) = docs
                .get(dir)
                .ok_or_else(|| format!("bundle: {name} is in no knowledge base"))?;
            let (doc_id, sources) = pending.take().unwrap_or_else(|| (new_doc_id(), Vec::new()));
            let (chunks, embeddings) = parse_chunks(&bytes)?;
            let sealed =
                crate::knowledge::seal_chunks(t.keyring, scope, &doc_id, &chunks, &embeddings)
                    .await
                    .map_err(|e| format!("sealing chunks: {e:?}"))?;
            let s = |k: &str| meta[k].as_str().unwrap_or_default().to_owned();
            h.add_document_with_source(
                kb,
                &doc_id,
                &s("name"),
                &s("content_type"),
                meta["bytes"].as_i64().unwrap_or_default(),
                &s("sha256"),
                &sealed,
                &sources,
            )
            .await
            .map_err(|e| format!("storing a document: {e}"))?;
            out.documents += 1;
            continue;
        }
        match name.as_str() {
            PROMPTS => out.prompts = restore_prompts(t, scope, &bytes).await?,
            KNOWLEDGE_INDEX => {
                let index: Value =
                    serde_json::from_slice(&bytes).map_err(|e| format!("{name}: {e}"))?;
                for k in index["knowledge_bases"].as_array().into_iter().flatten() {
                    let kb = &k["knowledge_base"];
                    let u = |f: &str| kb[f].as_u64().unwrap_or_default() as u32;
                    let made = h
                        .create_knowledge_base(
                            kb["name"].as_str().unwrap_or_default(),
                            kb["embedding_model"].as_str().unwrap_or_default(),
                            u("dims"),
                            u("chunk_tokens"),
                            kb["is_default"].as_bool().unwrap_or(false),
                        )
                        .await
                        .map_err(|e| format!("creating a knowledge base: {e}"))?;
                    let old = kb["id"].as_str().unwrap_or_default().to_owned();
                    for d in k["documents"].as_array().into_iter().flatten() {
                        let dir = d["chunks"]
                            .as_str()
                            .and_then(|c| c.strip_suffix("/chunks.jsonl"))
                            .unwrap_or_default()
                            .to_owned();
                        docs.insert(dir, (made.id.clone(), d["document"].clone()));
                    }
                    kbs.insert(old, made.id);
                }
                out.knowledge_bases = kbs.len();
            }
            "members.json" => {
                let m: Value =
                    serde_json::from_slice(&bytes).map_err(|e| format!("{name}: {e}"))?;
                for m in m["members"].as_array().into_iter().flatten() {
                    let role: Role = m["role"]
                        .as_str()
                        .unwrap_or_default()
                        .parse()
                        .map_err(|e| format!("{name}: {e:?}"))?;
                    h.set_member(m["subject"].as_str().unwrap_or_default(), role)
                        .await
                        .map_err(|e| format!("restoring a member: {e}"))?;
                    out.members += 1;
                }
            }
            // Kept in the bundle, not restored: the audit chain stays the verified file; usage
            // is history; keys are made anew.
            AUDIT | "usage.json" | "keys.json" => {}
            other => return Err(format!("bundle: unexpected file {other}")),
        }
    }
    if out.documents != docs.len() {
        return Err(format!(
            "bundle: {} documents restored of the {} its index lists",
            out.documents,
            docs.len()
        ));
    }
    Ok(out)
}

fn new_doc_id() -> String {
    format!("doc_{}", uuid::Uuid::now_v7().simple())
}

/// A document's chunks: text and embedding per line, in order.
fn parse_chunks(bytes: &[u8]) -> Result<(Vec<tenantgate_rag::Chunk>, Vec<Vec<f32>>), String> {
    let (mut chunks, mut embeddings) = (Vec::new(), Vec::new());
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        #[derive(serde::Deserialize)]
        struct Line {
            text: String,
            embedding: Vec<f32>,
        }
        let l: Line = serde_json::from_slice(line).map_err(|e| format!("chunks: {e}"))?;
        // Token counts are not stored with chunks; the chunker's tokenizer counts them again.
        let tokens = tenantgate_providers::tokens::count(&l.text) as u32;
        chunks.push(tenantgate_rag::Chunk {
            text: l.text,
            offset: 0,
            tokens,
        });
        embeddings.push(l.embedding);
    }
    Ok((chunks, embeddings))
}

async fn restore_prompts(
    t: &Target<'_>,
    scope: &TenantScope,
    bytes: &[u8],
) -> Result<usize, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("{PROMPTS}: {e}"))?;
    let mut set = ImportSet {
        versions: Vec::new(),
        active: Vec::new(),
        settings: None,
    };
    let templates = v["templates"].as_array().cloned().unwrap_or_default();
    for tpl in &templates {
        let name = tpl["name"].as_str().unwrap_or_default().to_owned();
        let mut versions = tpl["versions"].as_array().cloned().unwrap_or_default();
        versions.sort_by_key(|x| x["version"].as_u64());
        for x in versions {
            set.versions.push(NewVersion {
                name: name.clone(),
                template: x["template"].as_str().unwrap_or_default().to_owned(),
                author: x["author"].as_str().unwrap_or_default().to_owned(),
                created_at_ms: x["created_at_ms"].as_i64(),
            });
        }
        if let Some(a) = tpl["active_version"].as_u64() {
            set.active.push((name, a as u32));
        }
    }
    if !v["settings"].is_null() {
        let s: PromptSettings =
            serde_json::from_value(v["settings"].clone()).map_err(|e| format!("{PROMPTS}: {e}"))?;
        set.settings = Some(s);
    }
    if set.versions.is_empty() && set.settings.is_none() {
        return Ok(0);
    }
    t.keyring
        .prompts(t.store, scope)
        .import(&set)
        .await
        .map_err(|e| format!("restoring prompts: {e:?}"))?;
    Ok(templates.len())
}
