//! The audit stage: every call for a known tenant becomes a record in that tenant's hash chain,
//! durable before the caller sees the response (the terminal event, for a stream).
//!
//! - [`AuditLog`] is the group-commit writer's front: callers enqueue a record and wait; one
//!   writer task drains whatever is queued (up to `audit.max_batch`) into a single
//!   transaction, so durability costs one commit per batch, not per call. The same task signs
//!   a checkpoint of each chain it advanced every `audit.checkpoint_interval_ms`.
//! - [`CallAudit`] is a call's record in the making: handlers fill it as stages pass, and
//!   [`CallAudit::finish`] writes it before releasing the response (or hands it to the
//!   stream, which writes it before the terminal event).
//! - If the record cannot be written in time, the call fails with 503, unless the tenant's
//!   policy is fail-open; either way the failure is counted and logged at ERROR.
//!
//! Bodies follow the tenant's policy: `sealed` (encrypted with the tenant's key, outside the
//! chain, digest in it), `sha256`, `redacted` (secrets, PII, canaries and other tenants'
//! identifiers replaced, then sealed) or `none`.

use crate::config::AuditConfig;
use crate::error::GatewayError;
use crate::pipeline::{now_ms, TenantContext};
use crate::state::AppState;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenantgate_audit::{Actor, AuditPolicy, EventType, FailMode, Record, Signer};
use tenantgate_core::{TenantId, TenantScope};
use tenantgate_store::audit::{Appended, NewAuditRecord};
use tenantgate_store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::audit_call::actor;
pub(crate) use crate::audit_call::{CallAudit, StreamAudit};

/// The keyring kind audit bodies are sealed under.
pub(crate) const BODY_KIND: &str = "audit_body";

/// The sealed body's record id: the record's id and which body it is.
pub(crate) fn body_aad_id(record_id: &str, part: &str) -> String {
    format!("{record_id}/{part}")
}

/// Counters for `/metrics` (no tenant labels).
#[derive(Default)]
pub struct AuditStats {
    pub appended: AtomicU64,
    pub batches: AtomicU64,
    pub largest_batch: AtomicU64,
    pub failures: AtomicU64,
    pub checkpoints: AtomicU64,
}

impl AuditStats {
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# TYPE tenantgate_audit_records_total counter\ntenantgate_audit_records_total {}\n\
             # TYPE tenantgate_audit_commits_total counter\ntenantgate_audit_commits_total {}\n\
             # TYPE tenantgate_audit_largest_batch gauge\ntenantgate_audit_largest_batch {}\n\
             # TYPE tenantgate_audit_write_failures_total counter\ntenantgate_audit_write_failures_total {}\n\
             # TYPE tenantgate_audit_checkpoints_total counter\ntenantgate_audit_checkpoints_total {}\n",
            g(&self.appended),
            g(&self.batches),
            g(&self.largest_batch),
            g(&self.failures),
            g(&self.checkpoints),
        )
    }
}

struct Job {
    scope: TenantScope,
    entry: NewAuditRecord,
    done: Option<oneshot::Sender<Result<Appended, String>>>,
}

/// The group-commit writer's front.
pub struct AuditLog {
    tx: mpsc::Sender<Job>,
    pub signer: Arc<Signer>,
    pub stats: Arc<AuditStats>,
    timeout: Duration,
}

/// The running writer task; [`Writer::stop`] drains the queue and signs the heads.
pub struct Writer {
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.handle.await;
    }
}

impl AuditLog {
    /// Loads (or creates) the signing key and starts the writer task.
    pub fn start(
        store: Store,
        cfg: &AuditConfig,
    ) -> Result<(AuditLog, Writer), tenantgate_crypto::KeyFileError> {
        let seed = tenantgate_crypto::load_or_create_key(
            &cfg.signing_key_file,
            "TENANTGATE_AUDIT_SIGNING_KEY",
            "audit.signing_key_file",
        )?;
        let signer = Arc::new(Signer::from_seed(seed.bytes()));
        let (tx, rx) = mpsc::channel(cfg.queue);
        let stats = Arc::new(AuditStats::default());
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(run(
            store,
            rx,
            signer.clone(),
            stats.clone(),
            cancel.clone(),
            cfg.max_batch,
            Duration::from_millis(cfg.checkpoint_interval_ms),
        ));
        Ok((
            AuditLog {
                tx,
                signer,
                stats,
                timeout: Duration::from_millis(cfg.write_timeout_ms),
            },
            Writer { cancel, handle },
        ))
    }

    /// Appends one record and waits until it is durable (or the write timeout passes).
    pub async fn append(
        &self,
        scope: &TenantScope,
        entry: NewAuditRecord,
    ) -> Result<Appended, String> {
        let (done, rx) = oneshot::channel();
        let job = Job {
            scope: scope.clone(),
            entry,
            done: Some(done),
        };
        let wait = async {
            self.tx
                .send(job)
                .await
                .map_err(|_| "the audit writer has stopped".to_string())?;
            rx.await
                .map_err(|_| "the audit writer dropped the record".to_string())?
        };
        let r = match tokio::time::timeout(self.timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err("the audit write timed out".into()),
        };
        if let Err(e) = &r {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: "tenantgate::audit", tenant = %scope.tenant_id(), error = %e,
                "audit record not written");
        }
        r
    }

    /// Enqueues a record without waiting (events that release nothing to a caller: a stream
    /// the client abandoned, guard incidents).
    pub fn append_detached(&self, scope: &TenantScope, entry: NewAuditRecord) {
        let job = Job {
            scope: scope.clone(),
            entry,
            done: None,
        };
        if let Err(mpsc::error::TrySendError::Full(job)) = self.tx.try_send(job) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(job).await;
            });
        }
    }
}

/// The last head this process appended per tenant, awaiting a checkpoint.
type Dirty = HashMap<TenantId, (TenantScope, Appended)>;

async fn run(
    store: Store,
    mut rx: mpsc::Receiver<Job>,
    signer: Arc<Signer>,
    stats: Arc<AuditStats>,
    cancel: CancellationToken,
    max_batch: usize,
    interval: Duration,
) {
    sign_unsigned_heads(&store, &signer, &stats).await;
    let mut dirty = Dirty::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            job = rx.recv() => {
                let Some(job) = job else { break };
                let mut batch = vec![job];
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                commit(&store, batch, &mut dirty, &stats).await;
            }
            _ = tick.tick() => checkpoint(&store, &signer, &mut dirty, &stats).await,
            _ = cancel.cancelled() => {
                rx.close();
                let mut rest = Vec::new();
                while let Some(j) = rx.recv().await {
                    rest.push(j);
                }
                while !rest.is_empty() {
                    let batch: Vec<Job> = rest.drain(..rest.len().min(max_batch)).collect();
                    commit(&store, batch, &mut dirty, &stats).await;
                }
                break;
            }
        }
    }
    checkpoint(&store, &signer, &mut dirty, &stats).await;
}

/// One group commit: the batch grouped per tenant (order kept), one transaction. If it fails
/// and holds several tenants, each tenant is retried alone so one bad record cannot sink the
/// others.
async fn commit(store: &Store, batch: Vec<Job>, dirty: &mut Dirty, stats: &AuditStats) {
    let n = batch.len() as u64;
    type Waiters = Vec<Option<oneshot::Sender<Result<Appended, String>>>>;
    let mut groups: Vec<(TenantScope, Vec<NewAuditRecord>, Waiters)> = Vec::new();
    let mut index: HashMap<TenantId, usize> = HashMap::new();
    for j in batch {
        let i = *index.entry(j.scope.tenant_id().clone()).or_insert_with(|| {
            groups.push((j.scope.clone(), Vec::new(), Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(j.entry);
        groups[i].2.push(j.done);
    }
    let refs: Vec<(&TenantScope, &[NewAuditRecord])> =
        groups.iter().map(|g| (&g.0, g.1.as_slice())).collect();
    let results: Vec<Result<Vec<Appended>, String>> = match store.audit_append(&refs).await {
        Ok(out) => out.into_iter().map(Ok).collect(),
        Err(e) if refs.len() > 1 => {
            tracing::warn!(target: "tenantgate::audit", error = %e, "group commit failed; retrying per tenant");
            let mut v = Vec::with_capacity(refs.len());
            for r in &refs {
                v.push(
                    store
                        .audit_append(std::slice::from_ref(r))
                        .await
                        .map(|mut o| o.pop().unwrap_or_default())
                        .map_err(|e| e.to_string()),
                );
            }
            v
        }
        Err(e) => vec![Err(e.to_string())],
    };
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.largest_batch.fetch_max(n, Ordering::Relaxed);
    for ((scope, _, waiters), result) in groups.into_iter().zip(results) {
        match result {
            Ok(appended) => {
                stats
                    .appended
                    .fetch_add(appended.len() as u64, Ordering::Relaxed);
                if let Some(last) = appended.last() {
                    dirty.insert(scope.tenant_id().clone(), (scope.clone(), *last));
                }
                for (w, a) in waiters.into_iter().zip(appended) {
                    if let Some(w) = w {
                        let _ = w.send(Ok(a));
                    }
                }
            }
            Err(e) => {
                // Waiting callers count their own failure (`AuditLog::append`); count the rest.
                let detached = waiters.iter().filter(|w| w.is_none()).count() as u64;
                stats.failures.fetch_add(detached, Ordering::Relaxed);
                for w in waiters.into_iter().flatten() {
                    let _ = w.send(Err(e.clone()));
                }
                tracing::error!(target: "tenantgate::audit", tenant = %scope.tenant_id(), error = %e,
                    "audit group commit failed");
            }
        }
    }
}

/// Signs the head each advanced chain reached (as this process appended it), all in one
/// transaction so a tick costs one commit however many tenants moved.
async fn checkpoint(store: &Store, signer: &Signer, dirty: &mut Dirty, stats: &AuditStats) {
    if dirty.is_empty() {
        return;
    }
    let now = now_ms();
    let signed: Vec<(TenantScope, tenantgate_audit::Checkpoint)> = dirty
        .drain()
        .map(|(tenant, (scope, head))| {
            let cp = signer.checkpoint(tenant.as_str(), head.seq, &head.hash, now);
            (scope, cp)
        })
        .collect();
    let refs: Vec<(&TenantScope, tenantgate_audit::Checkpoint)> =
        signed.iter().map(|(s, c)| (s, c.clone())).collect();
    match store.audit_add_checkpoints(&refs).await {
        Ok(()) => {
            stats
                .checkpoints
                .fetch_add(signed.len() as u64, Ordering::Relaxed);
        }
        Err(e) => tracing::error!(target: "tenantgate::audit", error = %e,
            "audit checkpoints not written; the next tick signs newer heads"),
    }
}

/// At start: signs every chain head left past its last checkpoint (by a crash, or by another
/// process that stopped before its next checkpoint).
async fn sign_unsigned_heads(store: &Store, signer: &Signer, stats: &AuditStats) {
    #[expect(
        clippy::disallowed_methods,
        reason = "the audit writer signs every tenant's chain head at start"
    )]
    let admin = tenantgate_core::PlatformAdmin::local_operator("audit-checkpointer");
    let p = store.platform(&admin);
    let heads = match p.audit_unsigned_heads().await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(target: "tenantgate::audit", error = %e, "cannot list unsigned audit heads");
            return;
        }
    };
    for h in heads {
        let cp = signer.checkpoint(h.tenant.as_str(), h.seq, &h.hash, now_ms());
        if p.audit_add_checkpoint(&h.tenant, &cp).await.is_ok() {
            stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes a record and waits for it; a failure is a 503 unless the tenant is fail-open.
pub(crate) async fn write(
    app: &AppState,
    scope: &TenantScope,
    policy: &AuditPolicy,
    entry: NewAuditRecord,
) -> Result<(), GatewayError> {
    match app.0.audit.append(scope, entry).await {
        Ok(_) => Ok(()),
        Err(_) if policy.on_failure == FailMode::Open => Ok(()),
        Err(_) => Err(GatewayError::Unavailable(
            "the audit log could not record this call; nothing was released".into(),
        )),
    }
}

/// A non-call event (configuration change, data access, refusal) for an authenticated caller,
/// with the HTTP status the caller received.
pub(crate) async fn event(
    app: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    event: EventType,
    status: u16,
    detail: Value,
) -> Result<(), GatewayError> {
    let policy = app
        .0
        .auth
        .load()
        .audit_policy(ctx.principal.scope.tenant_id());
    let mut entry = event_record(request_id, event, actor(ctx), detail);
    entry.record.status = status;
    write(app, &ctx.principal.scope, &policy, entry).await
}

/// An event's record with status 200 (an event that happened); a refusal sets its own status.
pub fn event_record(id: &str, event: EventType, actor: Actor, detail: Value) -> NewAuditRecord {
    NewAuditRecord {
        record: Record {
            v: 1,
            tenant: String::new(),
            seq: 0,
            ts_ms: now_ms(),
            id: id.to_owned(),
            event,
            actor,
            model: None,
            prompt: None,
            response: None,
            tool_calls: Vec::new(),
            tokens: None,
            cost_micros: None,
            latency_ms: None,
            status: 200,
            error: None,
            client: None,
            detail,
        },
        prompt_sealed: None,
        response_sealed: None,
    }
}

/// An event id for records that have no request (operator actions).
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

/// A guard finding as an `incident` record (written without holding the call: the call's own
/// record, written before release, carries the outcome).
pub(crate) fn incident(
    app: &AppState,
    ctx: &TenantContext,
    detector: &str,
    action: &str,
    direction: &str,
) {
    let entry = event_record(
        &new_event_id(),
        EventType::Incident,
        actor(ctx),
        json!({"detector": detector, "action": action, "direction": direction}),
    );
    app.0.audit.append_detached(&ctx.principal.scope, entry);
}
