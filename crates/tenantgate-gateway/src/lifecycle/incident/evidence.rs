//! `incident evidence`: a signed bundle of one tenant's window, for whoever must be shown what
//! happened (the tenant, an auditor, a regulator), verifiable offline with the platform's audit
//! public key alone ([`verify`], `tenantgate incident verify`).
//!
//! A tar archive (`lifecycle/tar.rs`), paths fixed:
//! - `audit/tenant.jsonl`: the tenant's audit export of the window, as
//!   `GET /tenant/v1/audit/export` writes it but without bodies (records with their body
//!   digests, the signed checkpoints, its own signed manifest): `tenantgate audit verify` takes it
//!   as is. A platform admin needs no grant to make a bundle, so it carries no tenant data the
//!   platform may not read; the bodies stay verifiable against their digests in the tenant's
//!   own export. The incident commands' records are in this chain (each step is written to the
//!   tenant's chain first); the platform's chain is not included, because it names every other
//!   tenant (its export is `GET /admin/v1/audit/export`);
//! - `incidents.json`: the guard's findings in the tenant's window, each with its seq and chain
//!   hash (checked against the verified export);
//! - `status.json`: what held the tenant's calls when the bundle was made (its freezes, the
//!   route and model freezes, drains, its kill switch);
//! - `manifest.json`: format, tenant, window, each chain's extent, every file's size and
//!   SHA-256; `manifest.sig`: `manifest.json`'s exact bytes signed with the audit signing key.
//!
//! Through the API the writer signs each chain's head if no checkpoint covers the window yet;
//! the CLI runs no writer and must not sign checkpoints, so its exports end at the newest
//! checkpoint a gateway signed and the manifest says `complete: false` when that is before
//! the window's last record.

use super::record;
use crate::control::AuditSink;
use crate::error::{st, GatewayError};
use crate::lifecycle::export::{ManifestFile, ManifestSig};
use crate::lifecycle::tar;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use tenantgate_audit::{ExportLine, PublicKey, Signer, Window, GENESIS};
use tenantgate_core::{PlatformAdmin, TenantId, TenantScope};
use tenantgate_store::audit::TenantAudit;
use tenantgate_store::incident::FreezeKind;
use tenantgate_store::{Keyring, Store};

pub const FORMAT: &str = "tenantgate-evidence/1";
pub const TENANT_AUDIT: &str = "audit/tenant.jsonl";
pub const INCIDENTS: &str = "incidents.json";
pub const STATUS: &str = "status.json";
pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_SIG: &str = "manifest.sig";
/// The largest bundle [`verify`] reads (it is held in memory).
pub const MAX_BUNDLE_BYTES: u64 = 1 << 30;

/// How far one chain's export reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    pub chain: String,
    /// The signed checkpoint the export ends at (0: the window holds no record).
    pub end_seq: u64,
    /// Whether the export reaches the window's last record (the CLI's may end before it).
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub tenant: String,
    pub window: Window,
    pub created_at_ms: i64,
    pub chains: Vec<Extent>,
    pub files: Vec<ManifestFile>,
}

/// What a bundle holds, once verified.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub tenant: String,
    pub window: Window,
    pub chains: Vec<Extent>,
    pub tenant_records: u64,
    pub incidents: usize,
    pub key_id: String,
}

/// One chain's export of `window`, ending at a signed checkpoint: the writer signs the head
/// if none covers the window's end (API); the CLI ends at the newest signed one.
async fn chain_export(
    sink: AuditSink<'_>,
    audit: &TenantAudit<'_>,
    keyring: &Keyring,
    signer: &Signer,
    chain: &TenantId,
    bodies: Option<&TenantScope>,
    window: Window,
) -> Result<(Vec<ExportLine>, Extent), GatewayError> {
    let mut extent = Extent {
        chain: chain.as_str().to_owned(),
        end_seq: 0,
        complete: true,
    };
    let Some((first, last)) = audit
        .seq_range(window.from_ms, window.to_ms)
        .await
        .map_err(st)?
    else {
        let genesis = tenantgate_audit::Anchor {
            seq: 0,
            hash: hex::encode(GENESIS),
        };
        let lines = tenantgate_audit::assemble(
            chain.as_str(),
            window,
            genesis,
            Vec::new(),
            Vec::new(),
            signer,
            crate::clock::now_ms(),
        );
        return Ok((lines, extent));
    };
    let (start, _) = audit.checkpoint_around(first - 1).await.map_err(st)?;
    let (before, after) = audit.checkpoint_around(last).await.map_err(st)?;
    let end = match (after, sink.writer()) {
        (Some(cp), _) => cp,
        (None, Some(log)) => {
            if let Some(why) = log.broken(chain) {
                return Err(GatewayError::AuditChainBroken(why));
            }
            log.sign_head(chain)
                .await
                .map_err(GatewayError::Unavailable)?
        }
        // The CLI: no writer, so the newest checkpoint a gateway signed.
        (None, None) => match before {
            Some(cp) if cp.seq >= first => {
                extent.complete = false;
                cp
            }
            _ => {
                return Err(GatewayError::Unavailable(format!(
                    "no signed checkpoint of chain {} covers the window yet: a running gateway \
                     signs within audit.checkpoint_interval_ms (or take the bundle from \
                     GET /admin/v1/incidents/evidence/{{tenant}})",
                    chain.as_str()
                )))
            }
        },
    };
    extent.end_seq = end.seq;
    let lines =
        crate::audit::export::assemble(audit, keyring, signer, chain, bodies, window, start, end)
            .await?;
    Ok((lines, extent))
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn put(out: &mut Vec<u8>, path: &str, data: &[u8], mtime: u64) -> Result<(), GatewayError> {
    let h = tar::header(path, data.len() as u64, mtime).map_err(|_| GatewayError::Internal)?;
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.extend(std::iter::repeat_n(0u8, tar::padding(data.len() as u64)));
    Ok(())
}

/// Builds the bundle of `tenant`'s `window` (bytes of a tar archive) and records it in the
/// tenant's chain and the platform's (with the manifest's SHA-256).
pub async fn build(
    sink: AuditSink<'_>,
    store: &Store,
    keyring: &Keyring,
    signer: &Signer,
    admin: &PlatformAdmin,
    tenant: &str,
    window: Window,
) -> Result<(Vec<u8>, Manifest), GatewayError> {
    if window.from_ms > window.to_ms {
        return Err(GatewayError::invalid("from must not be after to", "from"));
    }
    let t = super::live_tenant(store, admin, tenant).await?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the evidence bundle reads the tenant's chain and bodies, recorded in both chains"
    )]
    let scope = TenantScope::for_lifecycle(admin, t.id.clone());
    let ts = store.tenant(&scope);
    let (tenant_lines, tenant_extent) =
        chain_export(sink, &ts.audit(), keyring, signer, &t.id, None, window).await?;
    let incidents: Vec<Value> = tenant_lines
        .iter()
        .filter_map(|l| match l {
            ExportLine::Record(r) if r.record["event"] == "incident" => Some(json!({
                "seq": r.record["seq"], "hash": r.hash, "record": r.record,
            })),
            _ => None,
        })
        .collect();
    let status = super::status(store, admin).await?;
    let freezes: Vec<_> = status
        .freezes
        .into_iter()
        .filter(|f| match f.kind {
            FreezeKind::Tenant => f.target == t.id.as_str(),
            FreezeKind::Route | FreezeKind::Model => true,
        })
        .collect();
    let kill_switch = status
        .kill_switches
        .iter()
        .any(|k| k["tenant"] == t.id.as_str());
    let status = json!({"freezes": freezes, "drains": status.drains, "kill_switch": kill_switch});
    let to_json = |v: &Value| serde_json::to_vec_pretty(v).map_err(|_| GatewayError::Internal);
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            TENANT_AUDIT,
            tenantgate_audit::jsonl(&tenant_lines).into_bytes(),
        ),
        (INCIDENTS, to_json(&json!(incidents))?),
        (STATUS, to_json(&status)?),
    ];
    let now = crate::clock::now_ms();
    let manifest = Manifest {
        format: FORMAT.into(),
        tenant: t.id.as_str().to_owned(),
        window,
        created_at_ms: now,
        chains: vec![tenant_extent],
        files: files
            .iter()
            .map(|(path, data)| ManifestFile {
                path: (*path).to_owned(),
                size: data.len() as u64,
                sha256: sha256_hex(data),
            })
            .collect(),
    };
    let manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|_| GatewayError::Internal)?;
    let pk = signer.public_key();
    let sig = ManifestSig {
        key_id: pk.key_id,
        public_key: pk.public_key,
        sig: signer.sign(&manifest_bytes),
    };
    let sig_bytes = serde_json::to_vec_pretty(&sig).map_err(|_| GatewayError::Internal)?;
    let mtime = (now / 1000).max(0) as u64;
    let mut out = Vec::new();
    for (path, data) in &files {
        put(&mut out, path, data, mtime)?;
    }
    put(&mut out, MANIFEST, &manifest_bytes, mtime)?;
    put(&mut out, MANIFEST_SIG, &sig_bytes, mtime)?;
    out.extend_from_slice(&tar::END);
    record(
        sink,
        admin,
        Some(&t.id),
        tenantgate_audit::EventType::DataAccess,
        json!({"action": "incident.evidence", "from_ms": window.from_ms, "to_ms": window.to_ms,
               "manifest_sha256": sha256_hex(&manifest_bytes), "incidents": incidents.len()}),
    )
    .await?;
    Ok((out, manifest))
}

/// The archive's entries, in order; a path twice, or a malformed archive, is refused.
fn entries(bytes: &[u8]) -> Result<BTreeMap<String, &[u8]>, String> {
    let mut out = BTreeMap::new();
    let mut at = 0usize;
    loop {
        let h: &[u8; tar::BLOCK] = bytes
            .get(at..at + tar::BLOCK)
            .and_then(|b| b.try_into().ok())
            .ok_or("bundle: truncated archive")?;
        let Some((path, size)) = tar::parse(h).map_err(|e| format!("bundle: {e}"))? else {
            return Ok(out);
        };
        at += tar::BLOCK;
        let size = usize::try_from(size).map_err(|_| "bundle: entry too large")?;
        let data = bytes
            .get(at..at + size)
            .ok_or_else(|| format!("bundle: {path} is truncated"))?;
        if out.insert(path.clone(), data).is_some() {
            return Err(format!("bundle: {path} appears twice"));
        }
        at += size + tar::padding(size as u64);
    }
}

/// A file of the bundle as text.
fn text<'a>(files: &BTreeMap<String, &'a [u8]>, path: &str) -> Result<&'a str, String> {
    let b = files
        .get(path)
        .ok_or_else(|| format!("bundle: no {path}"))?;
    std::str::from_utf8(b).map_err(|_| format!("{path}: not UTF-8"))
}

/// Verifies a bundle offline against `trusted` keys (the platform's audit public key, pinned:
/// a key the bundle names proves nothing): the manifest's signature, every file's size and
/// SHA-256 (and no file the manifest does not list), the audit export (chain, checkpoints,
/// their own manifests, under the same pinned keys) and each incident against the verified
/// chain. The error names what failed first.
pub fn verify(bytes: &[u8], trusted: &[PublicKey]) -> Result<Verified, String> {
    if trusted.is_empty() {
        return Err(
            "no trusted key: pass --public-key (from `tenantgate audit public-key`)".into(),
        );
    }
    let files = entries(bytes)?;
    let manifest_bytes = files.get(MANIFEST).ok_or("bundle: no manifest.json")?;
    let sig: ManifestSig =
        serde_json::from_slice(files.get(MANIFEST_SIG).ok_or("bundle: no manifest.sig")?)
            .map_err(|e| format!("manifest.sig: {e}"))?;
    let key = trusted
        .iter()
        .find(|k| k.key_id == sig.key_id && k.public_key == sig.public_key)
        .ok_or("manifest.sig: not signed by a trusted key")?;
    key.verify(manifest_bytes, &sig.sig)
        .map_err(|e| format!("manifest.sig: {e}"))?;
    let manifest: Manifest =
        serde_json::from_slice(manifest_bytes).map_err(|e| format!("manifest.json: {e}"))?;
    if manifest.format != FORMAT {
        return Err(format!("manifest.json: format {:?}", manifest.format));
    }
    for f in &manifest.files {
        let data = files
            .get(f.path.as_str())
            .ok_or_else(|| format!("{}: listed in the manifest, absent", f.path))?;
        if data.len() as u64 != f.size || sha256_hex(data) != f.sha256 {
            return Err(format!("{}: does not match the manifest", f.path));
        }
    }
    for path in files.keys() {
        let listed = manifest.files.iter().any(|f| &f.path == path);
        if !listed && path != MANIFEST && path != MANIFEST_SIG {
            return Err(format!("{path}: not in the manifest"));
        }
    }
    let tenant = tenantgate_audit::verify_jsonl(text(&files, TENANT_AUDIT)?, Some(trusted))
        .map_err(|e| format!("{TENANT_AUDIT}: {e}"))?;
    if tenant.tenant != manifest.tenant {
        return Err(format!("{TENANT_AUDIT}: the export is another chain's"));
    }
    let incidents: Vec<Value> =
        serde_json::from_str(text(&files, INCIDENTS)?).map_err(|e| format!("{INCIDENTS}: {e}"))?;
    for i in &incidents {
        let seq = i["seq"]
            .as_u64()
            .ok_or(format!("{INCIDENTS}: an entry without seq"))?;
        if tenant.hashes.get(&seq).map(String::as_str) != i["hash"].as_str() {
            return Err(format!(
                "{INCIDENTS}: the incident at seq {seq} is not the verified chain's"
            ));
        }
    }
    Ok(Verified {
        tenant: manifest.tenant,
        window: manifest.window,
        chains: manifest.chains,
        tenant_records: tenant.records,
        incidents: incidents.len(),
        key_id: key.key_id.clone(),
    })
}
