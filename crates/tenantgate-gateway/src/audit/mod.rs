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

pub mod anchor;
mod call;
pub(crate) mod export;
mod writer;

use crate::clock::now_ms;
use crate::config::AuditConfig;
use crate::error::GatewayError;
use crate::identity::TenantContext;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenantgate_audit::{Actor, AuditPolicy, EventType, FailMode, Record, Signer};
use tenantgate_core::{PlatformAdmin, TenantId, TenantScope};
use tenantgate_store::audit::{Appended, NewAuditRecord};
use tenantgate_store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The name of the span the writer task runs in: its statements are the only database work a
/// warm call causes (`tests/queries.rs` tells them apart by it).
pub const WRITER_SPAN: &str = "audit_writer";

pub(crate) use crate::audit::call::actor;
pub(crate) use crate::audit::call::{CallAudit, Released, StreamAudit};

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
    /// Tenants whose chain no longer extends the last signed checkpoint (never signed again).
    pub chain_breaks: AtomicU64,
}

/// Whose chain a queued record goes to, and on whose authority.
pub(crate) enum Chain {
    /// A call or event of a tenant principal, through its verified scope.
    Tenant(TenantScope),
    /// A platform operator's action on a tenant (the admin API, break-glass reads and their
    /// refusals): there is no tenant scope (break-glass records the read before its scope
    /// exists); the operator's capability, shown to [`AuditLog::append_operator`], stands
    /// for it.
    Operator(TenantId),
}

impl Chain {
    pub(crate) fn tenant_id(&self) -> &TenantId {
        match self {
            Chain::Tenant(scope) => scope.tenant_id(),
            Chain::Operator(tenant) => tenant,
        }
    }
}

pub(crate) struct Job {
    pub(crate) chain: Chain,
    pub(crate) entry: NewAuditRecord,
    pub(crate) done: Option<oneshot::Sender<Result<Appended, String>>>,
}

/// A request to sign a tenant's current head now (an export needs its end signed).
pub(crate) struct SignNow {
    pub(crate) tenant: TenantId,
    pub(crate) done: oneshot::Sender<Result<tenantgate_audit::Checkpoint, String>>,
}

/// The group-commit writer's front.
pub struct AuditLog {
    tx: mpsc::Sender<Job>,
    sign_tx: mpsc::Sender<SignNow>,
    pub signer: Arc<Signer>,
    pub stats: Arc<AuditStats>,
    /// Tenants whose chain broke (see `audit_anchor`), with the reason.
    pub breaks: crate::audit::anchor::Breaks,
    /// Set once the writer has signed the heads left unsigned at start and takes records
    /// (`/readyz` answers 200 only then).
    ready: Arc<std::sync::atomic::AtomicBool>,
    published: tokio::sync::broadcast::Sender<Arc<Vec<tenantgate_audit::Checkpoint>>>,
    timeout: Duration,
    /// The server's task tracker: a detached record that finds the queue full is handed to
    /// the writer from there, so shutdown (which waits for the tracker before it stops the
    /// writer) cannot lose it.
    tasks: TaskTracker,
}

/// Why the writer could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditStartError {
    #[error(transparent)]
    Key(#[from] tenantgate_crypto::KeyFileError),
    #[error("audit.witness_dir {0}")]
    Witness(String),
    #[error("cannot start the audit writer thread: {0}")]
    Thread(std::io::Error),
}

/// The running writer task; [`Writer::stop`] drains the queue and signs the heads.
///
/// The task runs on a tracker of its own, not the server's: shutdown first waits for the
/// server's tracker (whose tasks may still write records), then stops the writer and waits
/// for it here.
pub struct Writer {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Writer {
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl AuditLog {
    /// Loads (or creates) the signing key, opens the witness and starts the writer task.
    /// `tasks` is the server's task tracker (see [`AuditLog::append_detached`]).
    pub fn start(
        store: Store,
        cfg: &AuditConfig,
        tasks: TaskTracker,
    ) -> Result<(AuditLog, Writer), AuditStartError> {
        let seed = tenantgate_crypto::load_or_create_key(
            &cfg.signing_key_file,
            "TENANTGATE_AUDIT_SIGNING_KEY",
            "audit.signing_key_file",
        )?;
        let signer = Arc::new(Signer::from_seed(seed.bytes()));
        let witness = crate::audit::anchor::Witness::open(&cfg.witness_dir)
            .map_err(|e| AuditStartError::Witness(format!("{}: {e}", cfg.witness_dir.display())))?;
        let continuity = crate::audit::anchor::Continuity::new(witness, signer.public_key());
        let breaks = continuity.breaks.clone();
        let published = continuity.published.clone();
        let (tx, rx) = mpsc::channel(cfg.queue);
        let (sign_tx, sign_rx) = mpsc::channel(64);
        let stats = Arc::new(AuditStats::default());
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        // The span attributes the writer's database statements (tests count every other query
        // a call makes: `tests/queries.rs`).
        let span = tracing::info_span!(target: "tenantgate::audit", WRITER_SPAN);
        let dirty = crate::audit::writer::SharedDirty::default();
        let (start_tx, start_rx) = oneshot::channel();
        let (drained_tx, drained_rx) = oneshot::channel();
        let signs = crate::audit::writer::signs(
            crate::audit::writer::Writing {
                store: store.clone(),
                signer: signer.clone(),
                stats: stats.clone(),
                continuity,
            },
            dirty.clone(),
            sign_rx,
            ready.clone(),
            start_tx,
            drained_rx,
            cancel.clone(),
            Duration::from_millis(cfg.checkpoint_interval_ms),
        );
        tracker.spawn(tracing::Instrument::instrument(signs, span.clone()));
        let own_thread = store.audit_appender_wanted();
        let commits = tracing::Instrument::instrument(
            crate::audit::writer::commits(
                crate::audit::writer::Committing {
                    store,
                    stats: stats.clone(),
                    dirty,
                    max_batch: cfg.max_batch,
                },
                rx,
                start_rx,
                drained_tx,
                cancel.clone(),
            ),
            span,
        );
        if own_thread {
            // The commit loop blocks its thread for each transaction, so it gets a thread of
            // its own, driven through the runtime's handle (opening its connection, and the
            // pool if that fails, need the runtime; `Writer::stop` drains it before the
            // runtime goes). Once open it awaits only channels and the cancellation token. The
            // tracker sees it, so shutdown waits for its drain.
            let commits = tracker.track_future(commits);
            let rt = tokio::runtime::Handle::current();
            std::thread::Builder::new()
                .name("audit-writer".into())
                .spawn(move || rt.block_on(commits))
                .map_err(|e| {
                    // The signing loop is already on the tracker: stop it with the writer.
                    cancel.cancel();
                    AuditStartError::Thread(e)
                })?;
        } else {
            tracker.spawn(commits);
        }
        Ok((
            AuditLog {
                tx,
                sign_tx,
                signer,
                stats,
                breaks,
                ready,
                published,
                timeout: Duration::from_millis(cfg.write_timeout_ms),
                tasks,
            },
            Writer { cancel, tracker },
        ))
    }

    /// Checkpoints as they are stored (batches), for delivery to tenants' webhooks.
    pub fn subscribe_checkpoints(
        &self,
    ) -> tokio::sync::broadcast::Receiver<Arc<Vec<tenantgate_audit::Checkpoint>>> {
        self.published.subscribe()
    }

    /// Whether the writer takes records (start-up signing is done).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Why the tenant's chain is refused a signature, if it broke.
    pub fn broken(&self, tenant: &TenantId) -> Option<String> {
        self.breaks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .cloned()
    }

    /// Signs the tenant's current head through the writer (so the same continuity checks
    /// apply), returning the checkpoint that covers it.
    pub async fn sign_head(
        &self,
        tenant: &TenantId,
    ) -> Result<tenantgate_audit::Checkpoint, String> {
        let (done, rx) = oneshot::channel();
        let req = SignNow {
            tenant: tenant.clone(),
            done,
        };
        let wait = async {
            self.sign_tx
                .send(req)
                .await
                .map_err(|_| "the audit writer has stopped".to_string())?;
            rx.await
                .map_err(|_| "the audit writer dropped the request".to_string())?
        };
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err("signing the audit head timed out".into()),
        }
    }

    /// Appends one record and waits until it is durable (or the write timeout passes).
    pub async fn append(
        &self,
        scope: &TenantScope,
        entry: NewAuditRecord,
    ) -> Result<Appended, String> {
        self.append_to(Chain::Tenant(scope.clone()), entry).await
    }

    /// Appends a platform operator's action to `tenant`'s chain and waits until it is durable.
    pub async fn append_operator(
        &self,
        _admin: &PlatformAdmin,
        tenant: &TenantId,
        entry: NewAuditRecord,
    ) -> Result<Appended, String> {
        self.append_to(Chain::Operator(tenant.clone()), entry).await
    }

    /// Appends a lifecycle step a tenant principal took (its export bundle) to the platform's
    /// chain and waits until it is durable; `entry` names the tenant by id only.
    pub(crate) async fn append_platform(&self, entry: NewAuditRecord) -> Result<Appended, String> {
        self.append_to(Chain::Operator(TenantId::platform_chain()), entry)
            .await
    }

    async fn append_to(&self, chain: Chain, entry: NewAuditRecord) -> Result<Appended, String> {
        let tenant = chain.tenant_id().clone();
        let (done, rx) = oneshot::channel();
        let job = Job {
            chain,
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
            tracing::error!(target: "tenantgate::audit", tenant = %tenant, error = %e,
                "audit record not written");
        }
        r
    }

    /// Enqueues a record without waiting (events that release nothing to a caller: a stream
    /// the client abandoned, guard incidents).
    pub fn append_detached(&self, scope: &TenantScope, entry: NewAuditRecord) {
        let job = Job {
            chain: Chain::Tenant(scope.clone()),
            entry,
            done: None,
        };
        if let Err(mpsc::error::TrySendError::Full(job)) = self.tx.try_send(job) {
            let tx = self.tx.clone();
            self.tasks.spawn(async move {
                let _ = tx.send(job).await;
            });
        }
    }
}

/// What recording and settling a call needs, owned and cheap to clone: a call's drop guard
/// holds one, so a call dropped anywhere (a client that left, shutdown) is still recorded and
/// settled, on the server's task tracker.
#[derive(Clone)]
pub struct Recorder(Arc<RecorderParts>);

pub struct RecorderParts {
    pub log: AuditLog,
    pub admission: crate::limits::Admission,
    pub keyring: Arc<tenantgate_store::Keyring>,
    /// Background work of this server (detached audit writes, settlements, webhook
    /// deliveries): shutdown waits for all of it before draining the audit writer.
    pub tasks: tokio_util::task::TaskTracker,
    /// Cancelled when shutdown's grace is over: requests still running are cut (dropped
    /// inside the runtime, so their drop guards record and settle them).
    pub grace_over: CancellationToken,
    /// The request path's `/metrics` series (a call's record counts it there).
    pub red: std::sync::Arc<crate::telemetry::red::Red>,
}

impl std::ops::Deref for Recorder {
    type Target = RecorderParts;
    fn deref(&self) -> &RecorderParts {
        &self.0
    }
}

impl Recorder {
    pub fn new(parts: RecorderParts) -> Self {
        Recorder(Arc::new(parts))
    }

    /// Runs `fut` on the server's task tracker: it outlives the request that started it (a
    /// caller that leaves does not cancel it) and shutdown waits for it.
    pub fn spawn<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.tasks.spawn(fut)
    }
}

/// Writes a record and waits for it; a failure is a 503 unless the tenant is fail-open.
pub(crate) async fn write(
    rec: &Recorder,
    scope: &TenantScope,
    policy: &AuditPolicy,
    entry: NewAuditRecord,
) -> Result<(), GatewayError> {
    match rec.log.append(scope, entry).await {
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
    rec: &Recorder,
    ctx: &TenantContext,
    request_id: &str,
    event: EventType,
    status: u16,
    detail: Value,
) -> Result<(), GatewayError> {
    let policy = ctx.view.audit_policy(ctx.principal.scope.tenant_id());
    let mut entry = event_record(request_id, event, actor(ctx), detail);
    entry.record.status = status;
    write(rec, &ctx.principal.scope, &policy, entry).await
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

/// The actor of a platform operator's action.
pub fn operator_actor(admin: &PlatformAdmin) -> Actor {
    Actor {
        kind: "platform".into(),
        key_id: None,
        user: Some(admin.actor().to_owned()),
        role: Some("platform_admin".into()),
    }
}

/// An event id for records that have no request (operator actions).
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

/// A guard finding as an `incident` record (written without holding the call: the call's own
/// record, written before release, carries the outcome).
pub(crate) fn incident(
    rec: &Recorder,
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
    rec.log.append_detached(&ctx.principal.scope, entry);
}
