//! `incident scope`: which tenants, which calls and which window an identifier or canary
//! appeared in, read from every live tenant's audit chain (the record's fields, and its kept
//! bodies where the tenant's audit policy seals them) and the guard's incident records.
//!
//! The needle is the incident's secret (a canary, a customer identifier): it is matched in
//! memory, never logged, and the audit records of the search carry its SHA-256 only.
//!
//! Kept bodies are opened and searched only when the needle carries a tenant's canary or
//! identifier (it has an owner): a platform admin holds no grant on the tenants' data, and a
//! body search for any needle would be an oracle on it (a prompt rebuilt one character at a
//! time from yes/no answers). Otherwise the record fields alone are searched.

use super::record;
use crate::control::AuditSink;
use crate::error::{st, GatewayError};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tenantgate_audit::EventType;
use tenantgate_core::{PlatformAdmin, TenantScope, TenantStatus};
use tenantgate_store::audit::{AuditFilter, StoredRecord};
use tenantgate_store::{Keyring, Store};

/// The shortest needle searched: anything shorter matches too much to mean anything.
const MIN_NEEDLE_BYTES: usize = 6;
const MAX_NEEDLE_BYTES: usize = 1024;
/// Records read per query (newest first, paged down by seq).
const PAGE: u32 = 5_000;
/// At most this many calls and incidents are listed per tenant (the counts are exact).
const MAX_LISTED: usize = 1_000;

/// What the search covers.
#[derive(Debug, Clone)]
pub struct Query {
    pub needle: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// One call (or event) the needle appeared in.
#[derive(Debug, Serialize)]
pub struct Hit {
    /// The record's id: a call's request id (`x-request-id`).
    pub id: String,
    pub seq: u64,
    pub ts_ms: i64,
    pub event: String,
    pub model: Option<String>,
    /// Where it was found: `record` (its fields), `prompt`, `response` (kept bodies).
    pub found_in: Vec<&'static str>,
}

/// A tenant the needle appeared in.
#[derive(Debug, Serialize)]
pub struct TenantHits {
    pub tenant: String,
    pub slug: String,
    pub calls: usize,
    pub first_ms: i64,
    pub last_ms: i64,
    pub hits: Vec<Hit>,
}

/// A guard finding (`incident` record) in the window.
#[derive(Debug, Serialize)]
pub struct Incident {
    pub tenant: String,
    pub seq: u64,
    pub ts_ms: i64,
    pub detail: Value,
}

#[derive(Debug, Serialize)]
pub struct Scope {
    pub needle_sha256: String,
    pub window: Value,
    /// Tenants whose canary or identifier (slug, id, display name) the needle is or contains:
    /// whose data it is.
    pub owners: Vec<Value>,
    /// Tenants whose chains hold it, with the calls.
    pub tenants: Vec<TenantHits>,
    /// The window it was seen in, across tenants.
    pub seen: Option<Value>,
    /// Guard findings in the window, every tenant's (a leak the guard blocked is here, not in
    /// a body).
    pub incidents: Vec<Incident>,
    pub searched: Value,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Searches every live tenant's chain for `q.needle` within the window; records the search in
/// the platform's chain (and in each tenant's whose chain held it: its records were read).
pub async fn scope(
    sink: AuditSink<'_>,
    store: &Store,
    keyring: &Keyring,
    admin: &PlatformAdmin,
    q: &Query,
) -> Result<Scope, GatewayError> {
    if q.needle.len() < MIN_NEEDLE_BYTES || q.needle.len() > MAX_NEEDLE_BYTES {
        return Err(GatewayError::invalid(
            format!("needle must be {MIN_NEEDLE_BYTES}..={MAX_NEEDLE_BYTES} bytes"),
            "needle",
        ));
    }
    if q.from_ms > q.to_ms {
        return Err(GatewayError::invalid("from must not be after to", "from"));
    }
    let needle = q.needle.as_str();
    // In a record's JSON the needle appears escaped.
    let escaped = serde_json::to_string(needle).unwrap_or_default();
    let escaped = escaped.trim_matches('"').to_owned();
    let p = store.platform(admin);
    let snap = p.auth_snapshot().await.map_err(st)?;
    let mut owners = Vec::new();
    for t in &snap.tenants {
        let canary = snap
            .canaries
            .iter()
            .any(|(id, c)| id == &t.id && !c.is_empty() && needle.contains(c.as_str()));
        let named = [t.id.as_str(), t.slug.as_str(), t.display_name.as_str()]
            .iter()
            .any(|n| n.len() >= MIN_NEEDLE_BYTES && needle.contains(n));
        if canary || named {
            owners.push(json!({"tenant": t.id.as_str(), "slug": t.slug,
                               "by": if canary { "canary" } else { "identifier" }}));
        }
    }
    let owned = !owners.is_empty();
    let mut tenants = Vec::new();
    let mut incidents = Vec::new();
    let (mut searched_tenants, mut searched_records) = (0u64, 0u64);
    for t in p.list_tenants().await.map_err(st)? {
        match t.status {
            TenantStatus::Active | TenantStatus::Suspended | TenantStatus::PendingDeletion => {}
            // Its keys are shredded and its rows gone: its deletion certificate is what stays.
            TenantStatus::Deleted => continue,
        }
        searched_tenants += 1;
        #[expect(
            clippy::disallowed_methods,
            reason = "the incident search reads each tenant's chain, recorded in both chains"
        )]
        let scope = TenantScope::for_lifecycle(admin, t.id.clone());
        let ts = store.tenant(&scope);
        let audit = ts.audit();
        let mut hits: Vec<Hit> = Vec::new();
        let (mut calls, mut first, mut last) = (0usize, i64::MAX, i64::MIN);
        let mut before = None;
        loop {
            let page = audit
                .query(&AuditFilter {
                    from_ms: Some(q.from_ms),
                    to_ms: Some(q.to_ms),
                    before_seq: before,
                    limit: PAGE,
                    ..Default::default()
                })
                .await
                .map_err(st)?;
            let Some(oldest) = page.last().map(|r| r.seq) else {
                break;
            };
            for r in &page {
                searched_records += 1;
                let v: Value =
                    serde_json::from_str(&r.record).map_err(|_| GatewayError::Internal)?;
                let ts_ms = v["ts_ms"].as_i64().unwrap_or_default();
                if v["event"] == "incident" && incidents.len() < MAX_LISTED {
                    incidents.push(Incident {
                        tenant: t.id.as_str().to_owned(),
                        seq: r.seq,
                        ts_ms,
                        detail: v["detail"].clone(),
                    });
                }
                let found_in = found(keyring, &scope, r, &v, needle, &escaped, owned).await;
                if found_in.is_empty() {
                    continue;
                }
                calls += 1;
                first = first.min(ts_ms);
                last = last.max(ts_ms);
                if hits.len() < MAX_LISTED {
                    hits.push(Hit {
                        id: v["id"].as_str().unwrap_or_default().to_owned(),
                        seq: r.seq,
                        ts_ms,
                        event: v["event"].as_str().unwrap_or_default().to_owned(),
                        model: v["model"]["requested"].as_str().map(str::to_owned),
                        found_in,
                    });
                }
            }
            if oldest <= 1 || page.len() < PAGE as usize {
                break;
            }
            before = Some(oldest);
        }
        if calls > 0 {
            hits.reverse();
            tenants.push(TenantHits {
                tenant: t.id.as_str().to_owned(),
                slug: t.slug.clone(),
                calls,
                first_ms: first,
                last_ms: last,
                hits,
            });
        }
    }
    let seen = (!tenants.is_empty()).then(|| {
        json!({
            "from_ms": tenants.iter().map(|t| t.first_ms).min(),
            "to_ms": tenants.iter().map(|t| t.last_ms).max(),
        })
    });
    let out = Scope {
        needle_sha256: sha256_hex(needle),
        window: json!({"from_ms": q.from_ms, "to_ms": q.to_ms}),
        owners,
        tenants,
        seen,
        incidents,
        searched: json!({
            "tenants": searched_tenants,
            "records": searched_records,
            "bodies": "searched where the tenant's audit policy keeps them (sealed or redacted); \
                       a sha256-only policy keeps digests, which a needle cannot be matched against",
        }),
    };
    for t in &out.tenants {
        let id = tenantgate_core::TenantId::parse(&t.tenant).map_err(|_| GatewayError::Internal)?;
        record(
            sink,
            admin,
            Some(&id),
            EventType::DataAccess,
            json!({"action": "incident.scope", "needle_sha256": out.needle_sha256,
                   "calls": t.calls}),
        )
        .await?;
    }
    record(
        sink,
        admin,
        None,
        EventType::DataAccess,
        json!({"action": "incident.scope", "needle_sha256": out.needle_sha256,
               "tenants": out.tenants.len(), "records_searched": searched_records}),
    )
    .await?;
    Ok(out)
}

/// Where in one record the needle is: its fields, its kept prompt, its kept response.
async fn found(
    keyring: &Keyring,
    scope: &TenantScope,
    r: &StoredRecord,
    v: &Value,
    needle: &str,
    escaped: &str,
    bodies: bool,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    if r.record.contains(escaped) {
        out.push("record");
    }
    if !bodies {
        return out;
    }
    let id = v["id"].as_str().unwrap_or_default();
    for (part, sealed) in [
        ("prompt", &r.prompt_sealed),
        ("response", &r.response_sealed),
    ] {
        let Some(sealed) = sealed else { continue };
        let aad = crate::audit::body_aad_id(id, part);
        // A crypto-shredded body does not open: nothing to match, not an error.
        if let Ok(plain) = keyring
            .open(scope, crate::audit::BODY_KIND, &aad, sealed)
            .await
        {
            let text = String::from_utf8_lossy(&plain);
            if text.contains(needle) || text.contains(escaped) {
                out.push(part);
            }
        }
    }
    out
}
