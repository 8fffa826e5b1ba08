//! Offboarding: a deletion window, then finalization and a deletion certificate.
//!
//! 1. [`request`] (`DELETE /admin/v1/tenants/{t}`, `tenantgate tenant delete`): the tenant
//!    becomes `pending_deletion` until its window ends. Every call with its keys or tokens is
//!    refused (403 `tenant_pending_deletion`, in the authentication stage) on every replica:
//!    the change bumps the control-plane revision, so each one's snapshot reload sees it.
//!    [`restore`] puts its prior status back (`active` or `suspended`) while no finalizer has
//!    claimed it.
//! 2. [`finalize_due`] (the server's finalizer loop, on its task tracker, and a window of 0):
//!    a tenant past its window is claimed with a conditional update (one replica wins; a claim
//!    lapses after `lifecycle.finalize_lease_secs`), then, each step recorded and its phase
//!    stored so a retry repeats nothing that matters:
//!    - keys shredded (every KEK version, its own KMS key's configuration, every data key,
//!      its endpoints' sealed keys), recorded in both chains;
//!    - its chain signed at its final head (the checkpoint the certificate names), after which
//!      the tenant's chain takes no record;
//!    - every row in its place removed (the audit tables' triggers set aside on the owner's
//!      connection: the chain's content is certified by the checkpoint), its place's storage
//!      removed (schema dropped, file deleted), every control-plane row removed, its index
//!      files removed; SQLite's WAL truncated, PostgreSQL's tables vacuumed;
//!    - the certificate: one `deletion` record in the platform's chain naming the tenant id,
//!      what was destroyed, the certified head and when, then covered by a signed checkpoint
//!      of the platform chain;
//!    - the `tenants` row becomes a tombstone (status `deleted`, slug and display name = id).
//!
//! Finalization signs checkpoints, so it runs where an audit writer runs: in a gateway. The
//! CLI requests deletions (a window of 0 with `--now`) and a running gateway finalizes them
//! within `lifecycle.finalize_interval_ms`.

use crate::control::AuditSink;
use crate::lifecycle::{record_platform, record_step};
use crate::state::AppState;
use serde_json::{json, Value};
use tenantgate_audit::EventType;
use tenantgate_core::{PlatformAdmin, Tenant, TenantId};
use tenantgate_store::{DeletionPhase, PendingDeletion, Store, StoreError};

/// The `action` of each step's record.
pub mod action {
    pub const REQUESTED: &str = "tenant.deletion.requested";
    pub const CANCELLED: &str = "tenant.deletion.cancelled";
    pub const FINALIZING: &str = "tenant.deletion.finalizing";
    pub const KEYS_SHREDDED: &str = "tenant.deletion.keys_shredded";
    pub const ROWS_REMOVED: &str = "tenant.deletion.rows_removed";
    pub const CERTIFICATE: &str = "tenant.deletion.certificate";
}

/// Why an offboarding step failed.
#[derive(Debug, thiserror::Error)]
pub enum OffboardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The step was made but could not be recorded (or a record could not be signed).
    #[error("audit: {0}")]
    Audit(String),
    #[error("keys: {0}")]
    Keys(String),
}

/// Starts a tenant's deletion window (`window_secs` from now; 0: due at once), recorded in
/// the tenant's chain and the platform's.
pub async fn request(
    sink: AuditSink<'_>,
    store: &Store,
    admin: &PlatformAdmin,
    tenant: &TenantId,
    window_secs: u64,
) -> Result<(Tenant, PendingDeletion), OffboardError> {
    let window_ms = i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let after = crate::clock::now_ms().saturating_add(window_ms);
    let (t, p) = store
        .platform(admin)
        .request_deletion(tenant, after)
        .await?;
    record_step(
        sink,
        admin,
        tenant,
        EventType::Deletion,
        json!({"action": action::REQUESTED, "window_secs": window_secs,
               "delete_after_ms": p.delete_after_ms}),
    )
    .await
    .map_err(OffboardError::Audit)?;
    Ok((t, p))
}

/// Cancels a pending deletion (its prior status back), recorded in both chains.
pub async fn restore(
    sink: AuditSink<'_>,
    store: &Store,
    admin: &PlatformAdmin,
    tenant: &TenantId,
) -> Result<Tenant, OffboardError> {
    let t = store.platform(admin).cancel_deletion(tenant).await?;
    record_step(
        sink,
        admin,
        tenant,
        EventType::Deletion,
        json!({"action": action::CANCELLED, "status": t.status.as_str()}),
    )
    .await
    .map_err(OffboardError::Audit)?;
    Ok(t)
}

/// Finalizes every tenant past its window that no other finalizer holds; returns the
/// certificates written. One tenant's failure is logged and the others go on (its claim
/// lapses and a later pass retries it).
pub async fn finalize_due(app: &AppState, maintenance: &Store) -> Vec<Value> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the gateway's own finalizer offboards tenants whose window ended"
    )]
    let admin = PlatformAdmin::local_operator("offboarding-finalizer");
    let due = match app
        .store()
        .platform(&admin)
        .due_deletions(crate::clock::now_ms())
        .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "offboarding: could not list due deletions");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for t in due {
        match finalize(app, maintenance, &admin, &t).await {
            Ok(Some(cert)) => out.push(cert),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(tenant = %t, error = %e, "offboarding: finalization failed; retried after its claim lapses")
            }
        }
    }
    out
}

/// Finalizes one tenant if its window has passed and this process wins the claim; returns
/// the certificate's detail (`None`: not due, or another finalizer holds it).
pub async fn finalize(
    app: &AppState,
    maintenance: &Store,
    admin: &PlatformAdmin,
    tenant: &TenantId,
) -> Result<Option<Value>, OffboardError> {
    let store = app.store();
    let p = store.platform(admin);
    let lease_ms = (app.0.config.lifecycle.finalize_lease_secs as i64).saturating_mul(1000);
    let Some(claim) = p
        .claim_deletion(tenant, crate::clock::now_ms(), lease_ms)
        .await?
    else {
        return Ok(None);
    };
    let sink = AuditSink::Writer(&app.0.rec.log);
    let log = &app.0.rec.log;
    let mut report = match claim.report {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    tracing::info!(tenant = %tenant, phase = ?claim.phase, "offboarding: finalizing");
    if claim.phase == DeletionPhase::Pending {
        record_step(
            sink,
            admin,
            tenant,
            EventType::Deletion,
            json!({"action": action::FINALIZING}),
        )
        .await
        .map_err(OffboardError::Audit)?;
        if report.contains_key("keys_shredded") {
            // Shredded by the CLI (`delete --now`); again, in case it stopped half-way.
            app.keyring()
                .shred(admin, tenant)
                .await
                .map_err(|e| OffboardError::Keys(e.to_string()))?;
        } else {
            shred_keys(app, admin, tenant, &mut report).await?;
        }
        // The last record of the tenant's chain is signed: the certificate names this head,
        // and the records go with the rows below.
        let cp = log.sign_head(tenant).await.map_err(OffboardError::Audit)?;
        report.insert(
            "certified_head".into(),
            json!({"seq": cp.seq, "hash": cp.hash, "ts_ms": cp.ts_ms, "key_id": cp.key_id,
                   "sig": cp.sig}),
        );
        let r = Value::Object(report.clone());
        p.set_deletion_phase(tenant, DeletionPhase::Certified, &r)
            .await?;
    }
    if matches!(
        claim.phase,
        DeletionPhase::Pending | DeletionPhase::Certified
    ) {
        let mp = maintenance.platform(admin);
        let placed = mp.purge_tenant_place(tenant).await?;
        let control = p.purge_tenant_control(tenant).await?;
        let index_files = index_files(&app.0.config.rag.index_dir.join(tenant.as_str()));
        app.0.knowledge.forget(tenant, None);
        let mut rows = serde_json::Map::new();
        for r in placed.rows.iter().chain(control.iter()) {
            let n = rows.get(&r.table).and_then(Value::as_u64).unwrap_or(0);
            rows.insert(r.table.clone(), json!(n + r.rows));
        }
        report.insert("rows_removed".into(), Value::Object(rows));
        report.insert("place".into(), json!(placed.place));
        report.insert("storage_removed".into(), json!(placed.storage_removed));
        report.insert("index_files_removed".into(), json!(index_files));
        let r = Value::Object(report.clone());
        record_platform(
            sink,
            admin,
            EventType::Deletion,
            crate::lifecycle::platform_detail(
                tenant,
                json!({"action": action::ROWS_REMOVED, "rows_removed": r["rows_removed"],
                       "storage_removed": r["storage_removed"],
                       "index_files_removed": index_files}),
            ),
        )
        .await
        .map_err(OffboardError::Audit)?;
        p.set_deletion_phase(tenant, DeletionPhase::Purged, &r)
            .await?;
    }
    let cert = crate::lifecycle::platform_detail(
        tenant,
        json!({
            "action": action::CERTIFICATE,
            "requested_at_ms": claim.requested_at_ms,
            "finalized_at_ms": crate::clock::now_ms(),
            "certified_head": report.get("certified_head").cloned().unwrap_or(Value::Null),
            "destroyed": {
                "keys": report.get("keys_shredded").cloned().unwrap_or(Value::Null),
                "rows_removed": report.get("rows_removed").cloned().unwrap_or(Value::Null),
                "place": report.get("place").cloned().unwrap_or(Value::Null),
                "storage_removed": report.get("storage_removed").cloned().unwrap_or(Value::Null),
                "index_files_removed": report.get("index_files_removed").cloned().unwrap_or(Value::Null),
            },
        }),
    );
    if claim.phase != DeletionPhase::Recorded {
        record_platform(sink, admin, EventType::Deletion, cert.clone())
            .await
            .map_err(OffboardError::Audit)?;
        // The certificate is covered by a signed checkpoint before the tenant is a tombstone.
        log.sign_head(&TenantId::platform_chain())
            .await
            .map_err(OffboardError::Audit)?;
        p.set_deletion_phase(tenant, DeletionPhase::Recorded, &Value::Object(report))
            .await?;
    }
    p.tombstone_tenant(tenant).await?;
    // Last, so the tombstone's own update (slug and display name gone) is compacted too.
    maintenance
        .platform(admin)
        .compact_after_purge(app.0.config.lifecycle.pg_vacuum_full)
        .await?;
    app.reload_auth(false).await.ok();
    tracing::info!(tenant = %tenant, "offboarding: finalized; deletion certificate recorded");
    Ok(Some(cert))
}

/// Shreds the tenant's keys (recorded in both chains), noting what in `report`.
async fn shred_keys(
    app: &AppState,
    admin: &PlatformAdmin,
    tenant: &TenantId,
    report: &mut serde_json::Map<String, Value>,
) -> Result<(), OffboardError> {
    let store = app.store();
    let inv = store.platform(admin).key_inventory(tenant).await?;
    app.keyring()
        .shred(admin, tenant)
        .await
        .map_err(|e| OffboardError::Keys(e.to_string()))?;
    // Its endpoints' sealed copies cannot be opened any more; their listing goes too.
    app.keyring()
        .endpoints(store, admin)
        .remove_all(tenant)
        .await
        .map_err(|e| OffboardError::Keys(e.to_string()))?;
    let keys = json!({"kek_versions": inv.kek_versions, "data_keys": inv.data_keys,
        "customer_kms_key": inv.customer_kms_key});
    record_step(
        AuditSink::Writer(&app.0.rec.log),
        admin,
        tenant,
        EventType::Deletion,
        json!({"action": action::KEYS_SHREDDED, "keys": keys}),
    )
    .await
    .map_err(OffboardError::Audit)?;
    report.insert("keys_shredded".into(), keys);
    Ok(())
}

/// The owner's store that finalization removes rows with (past the audit triggers): on
/// SQLite the store itself, on PostgreSQL an owner's connection (close it after use).
pub async fn maintenance_store(app: &AppState) -> Result<Store, StoreError> {
    match app.store().db() {
        tenantgate_store::Db::Sqlite(_) => Ok(app.store().clone()),
        tenantgate_store::Db::Postgres(_) => {
            Store::open_maintenance(&app.0.config.database.store_options()).await
        }
    }
}

/// Files under a tenant's index directory (counted before it is removed).
fn index_files(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => index_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// The finalizer: every `lifecycle.finalize_interval_ms`, finalizes the tenants past their
/// window (on the server's task tracker; ends at shutdown).
pub async fn finalizer_loop(
    app: AppState,
    maintenance: Store,
    cancel: tokio_util::sync::CancellationToken,
) {
    let every = std::time::Duration::from_millis(app.0.config.lifecycle.finalize_interval_ms);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                // Not before the writer takes records: every step is recorded.
                if app.0.rec.log.is_ready() {
                    finalize_due(&app, &maintenance).await;
                }
            }
        }
    }
}

/// The deletion certificate of `tenant`: its certificate record in the platform's chain and
/// an export of the platform chain from the anchor before it to the signed checkpoint that
/// covers it, so it verifies offline (`tenantgate audit verify --public-key`). `None`: no
/// certificate (the tenant was not finalized). Reads the store only, so the CLI (with the
/// signing key, for the export's manifest) and the admin API answer the same.
pub async fn certificate(
    store: &Store,
    admin: &PlatformAdmin,
    signer: &tenantgate_audit::Signer,
    tenant: &TenantId,
) -> Result<Option<(Value, Vec<tenantgate_audit::ExportLine>)>, OffboardError> {
    let platform = TenantId::platform_chain();
    let p = store.platform(admin);
    let chain = p.chain(&platform);
    let mut before = None;
    let (seq, rec) = 'found: loop {
        let page = chain
            .query(&tenantgate_store::audit::AuditFilter {
                event: Some(EventType::Deletion.as_str().to_owned()),
                before_seq: before,
                limit: 1000,
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        before = Some(last.seq);
        for r in &page {
            let rec: Value = serde_json::from_str(&r.record)
                .map_err(|e| StoreError::Corrupt(format!("platform record {}: {e}", r.seq)))?;
            let d = &rec["detail"];
            if d["action"] == action::CERTIFICATE && d["tenant"] == tenant.as_str() {
                break 'found (r.seq, rec);
            }
        }
    };
    let (start, _) = chain.checkpoint_around(seq - 1).await?;
    let (_, end) = chain.checkpoint_around(seq).await?;
    let Some(end) = end else {
        return Err(OffboardError::Audit(
            "the certificate is not yet covered by a signed checkpoint".into(),
        ));
    };
    let anchor = match &start {
        Some(cp) => tenantgate_audit::Anchor {
            seq: cp.seq,
            hash: cp.hash.clone(),
        },
        None => tenantgate_audit::Anchor {
            seq: 0,
            hash: hex::encode(tenantgate_audit::GENESIS),
        },
    };
    let mut records = Vec::new();
    for r in chain.records(anchor.seq + 1, end.seq).await? {
        records.push(tenantgate_audit::ExportRecord {
            hash: hex::encode(r.hash),
            record: serde_json::from_str(&r.record)
                .map_err(|e| StoreError::Corrupt(format!("platform record {}: {e}", r.seq)))?,
            prompt: None,
            response: None,
        });
    }
    let checkpoints = chain.checkpoints(anchor.seq, end.seq).await?;
    let ts = rec["ts_ms"].as_i64().unwrap_or(0);
    let lines = tenantgate_audit::assemble(
        platform.as_str(),
        tenantgate_audit::Window {
            from_ms: ts,
            to_ms: ts.saturating_add(1),
        },
        anchor,
        records,
        checkpoints,
        signer,
        crate::clock::now_ms(),
    );
    Ok(Some((rec, lines)))
}

/// `tenantgate tenant delete --now` from the CLI, which runs no audit writer and so cannot
/// certify a chain: the irreversible half happens at once (every key shredded, recorded in
/// both chains), and a running gateway's finalizer does the rest within
/// `lifecycle.finalize_interval_ms` (rows, storage, index files, the certificate, which names
/// the keys shredded here). A tenant whose keys are shredded can no longer be restored.
pub async fn shred_now(
    sink: AuditSink<'_>,
    store: &Store,
    keyring: &tenantgate_store::Keyring,
    admin: &PlatformAdmin,
    tenant: &TenantId,
) -> Result<(), OffboardError> {
    let p = store.platform(admin);
    let Some(pending) = p.pending_deletion(tenant).await? else {
        return Err(StoreError::NotFound.into());
    };
    if pending.report.get("keys_shredded").is_some() {
        return Ok(());
    }
    let inv = p.key_inventory(tenant).await?;
    let keys = json!({"kek_versions": inv.kek_versions, "data_keys": inv.data_keys,
        "customer_kms_key": inv.customer_kms_key});
    let mut report = match pending.report {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    report.insert("keys_shredded".into(), keys.clone());
    // Stored first: from here the deletion cannot be cancelled (the keys may be gone).
    p.set_deletion_phase(tenant, DeletionPhase::Pending, &Value::Object(report))
        .await?;
    keyring
        .shred(admin, tenant)
        .await
        .map_err(|e| OffboardError::Keys(e.to_string()))?;
    keyring
        .endpoints(store, admin)
        .remove_all(tenant)
        .await
        .map_err(|e| OffboardError::Keys(e.to_string()))?;
    record_step(
        sink,
        admin,
        tenant,
        EventType::Deletion,
        json!({"action": action::KEYS_SHREDDED, "keys": keys}),
    )
    .await
    .map_err(OffboardError::Audit)
}
