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
use crate::error::{GatewayError, Wire};
use crate::pipeline::{now_ms, TenantContext};
use crate::state::AppState;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantgate_audit::{
    Actor, AuditPolicy, BodyDigest, BodyMode, Client, ErrorInfo, EventType, FailMode, ModelInfo,
    Record, Signer, Tokens,
};
use tenantgate_core::{TenantId, TenantScope};
use tenantgate_store::audit::{Appended, NewAuditRecord};
use tenantgate_store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

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

impl AuditStats {
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# TYPE tenantgate_audit_records_total counter\ntenantgate_audit_records_total {}\n\
             # TYPE tenantgate_audit_commits_total counter\ntenantgate_audit_commits_total {}\n\
             # TYPE tenantgate_audit_largest_batch gauge\ntenantgate_audit_largest_batch {}\n\
             # TYPE tenantgate_audit_write_failures_total counter\ntenantgate_audit_write_failures_total {}\n\
             # TYPE tenantgate_audit_checkpoints_total counter\ntenantgate_audit_checkpoints_total {}\n\
             # TYPE tenantgate_audit_chain_breaks_total counter\ntenantgate_audit_chain_breaks_total {}\n",
            g(&self.appended),
            g(&self.batches),
            g(&self.largest_batch),
            g(&self.failures),
            g(&self.checkpoints),
            g(&self.chain_breaks),
        )
    }
}

pub(crate) struct Job {
    pub(crate) scope: TenantScope,
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
    pub breaks: crate::audit_anchor::Breaks,
    /// Set once the writer has signed the heads left unsigned at start and takes records
    /// (`/readyz` answers 200 only then).
    ready: Arc<std::sync::atomic::AtomicBool>,
    published: tokio::sync::broadcast::Sender<Arc<Vec<tenantgate_audit::Checkpoint>>>,
    timeout: Duration,
}

/// Why the writer could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditStartError {
    #[error(transparent)]
    Key(#[from] tenantgate_crypto::KeyFileError),
    #[error("audit.witness_dir {0}")]
    Witness(String),
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
    /// Loads (or creates) the signing key, opens the witness and starts the writer task.
    pub fn start(store: Store, cfg: &AuditConfig) -> Result<(AuditLog, Writer), AuditStartError> {
        let seed = tenantgate_crypto::load_or_create_key(
            &cfg.signing_key_file,
            "TENANTGATE_AUDIT_SIGNING_KEY",
            "audit.signing_key_file",
        )?;
        let signer = Arc::new(Signer::from_seed(seed.bytes()));
        let witness = crate::audit_anchor::Witness::open(&cfg.witness_dir)
            .map_err(|e| AuditStartError::Witness(format!("{}: {e}", cfg.witness_dir.display())))?;
        let continuity = crate::audit_anchor::Continuity::new(witness, signer.public_key());
        let breaks = continuity.breaks.clone();
        let published = continuity.published.clone();
        let (tx, rx) = mpsc::channel(cfg.queue);
        let (sign_tx, sign_rx) = mpsc::channel(64);
        let stats = Arc::new(AuditStats::default());
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(crate::audit_writer::run(
            crate::audit_writer::Writing {
                store,
                signer: signer.clone(),
                stats: stats.clone(),
                continuity,
            },
            rx,
            sign_rx,
            ready.clone(),
            cancel.clone(),
            cfg.max_batch,
            Duration::from_millis(cfg.checkpoint_interval_ms),
        ));
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
            },
            Writer { cancel, handle },
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

/// Who the caller is and what its tenant's policy says, once authenticated.
struct Bound {
    scope: TenantScope,
    actor: Actor,
    policy: Arc<AuditPolicy>,
}

/// A call's audit record in the making.
pub(crate) struct CallAudit {
    pub request_id: String,
    started: Instant,
    ts_ms: i64,
    client: Client,
    bound: Option<Bound>,
    model: Option<ModelInfo>,
    prompt: Option<Vec<u8>>,
    /// Set when a stream took the record over.
    streaming: bool,
    detail: Map<String, Value>,
    /// The call's admission, settled when the record is built, with the route's prices.
    admission: Option<(crate::admission::Reservation, crate::config::Pricing)>,
    /// The tenant's rate-limit state for the response headers (streams too).
    rate: Option<crate::admission::RateState>,
    /// Served from the response cache: settled at zero.
    cache_hit: bool,
}

fn actor(ctx: &TenantContext) -> Actor {
    let kind = match ctx.principal.credential {
        tenantgate_core::Credential::ApiKey(_) => "api_key",
        tenantgate_core::Credential::Token { .. } => "oidc",
    };
    Actor {
        kind: kind.into(),
        key_id: Some(ctx.principal.credential.to_string()),
        user: ctx.principal.user.clone(),
        role: Some(ctx.principal.role.to_string()),
    }
}

impl CallAudit {
    pub fn new(
        request_id: String,
        headers: &axum::http::HeaderMap,
        peer: Option<std::net::SocketAddr>,
    ) -> Self {
        CallAudit {
            request_id,
            started: Instant::now(),
            ts_ms: now_ms(),
            client: Client {
                ip: peer.map(|p| p.ip().to_string()),
                user_agent: headers
                    .get("user-agent")
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.chars().take(256).collect()),
            },
            bound: None,
            model: None,
            prompt: None,
            streaming: false,
            detail: Map::new(),
            admission: None,
            rate: None,
            cache_hit: false,
        }
    }

    /// The call was admitted: its reservation is settled with the actual usage.
    pub fn admitted(&mut self, r: crate::admission::Reservation, pricing: crate::config::Pricing) {
        self.rate = Some(r.rate);
        self.admission = Some((r, pricing));
    }

    /// The caller is authenticated: from here on the call is recorded in its tenant's chain.
    pub fn bind(&mut self, app: &AppState, ctx: &TenantContext) {
        let policy = app
            .0
            .auth
            .load()
            .audit_policy(ctx.principal.scope.tenant_id());
        self.bound = Some(Bound {
            scope: ctx.principal.scope.clone(),
            actor: actor(ctx),
            policy,
        });
    }

    pub fn set_model(&mut self, requested: &str, route: &crate::upstream::Route) {
        self.model = Some(ModelInfo {
            requested: requested.to_owned(),
            resolved: Some(route.upstream_model.clone()),
            provider: Some(route.provider.name.clone()),
            version: None,
        });
    }

    pub fn set_requested_model(&mut self, requested: &str) {
        self.model.get_or_insert_with(|| ModelInfo {
            requested: requested.to_owned(),
            ..Default::default()
        });
    }

    /// The request as it goes to the provider (after composition and the inbound guard);
    /// serialized only if the policy keeps something of it.
    pub fn set_prompt(&mut self, req: &Map<String, Value>) {
        if let Some(b) = &self.bound {
            if b.policy.prompt != BodyMode::None {
                self.prompt = serde_json::to_vec(req).ok();
            }
        }
    }

    /// The response came from the tenant's response cache (no provider call, no cost).
    pub fn cache_hit(&mut self) {
        self.cache_hit = true;
        self.note("cache", "hit");
    }

    pub fn note(&mut self, key: &str, value: impl Into<Value>) {
        self.detail.insert(key.to_owned(), value.into());
    }

    /// Whether the response body should be kept for the record.
    pub fn wants_response(&self) -> bool {
        self.bound
            .as_ref()
            .is_some_and(|b| b.policy.response != BodyMode::None)
    }

    /// Hands the record to a stream, which writes it before its terminal event.
    pub fn take_for_stream(&mut self) -> CallAudit {
        self.streaming = true;
        CallAudit {
            request_id: self.request_id.clone(),
            started: self.started,
            ts_ms: self.ts_ms,
            client: std::mem::take(&mut self.client),
            bound: self.bound.take(),
            model: self.model.take(),
            prompt: self.prompt.take(),
            streaming: false,
            detail: std::mem::take(&mut self.detail),
            admission: self.admission.take(),
            rate: self.rate,
            cache_hit: self.cache_hit,
        }
    }

    /// Builds the record (sealing kept bodies with the tenant's key). `None` when the caller
    /// never authenticated: there is no tenant chain to write to.
    pub async fn entry(
        self,
        app: &AppState,
        event: EventType,
        status: u16,
        error: Option<&GatewayError>,
        response: Option<&[u8]>,
        tokens: Option<Tokens>,
    ) -> Option<(TenantScope, Arc<AuditPolicy>, NewAuditRecord)> {
        let b = self.bound?;
        let mut model = self.model;
        let mut tool_calls = Vec::new();
        let mut tokens = tokens;
        if let Some(r) = response {
            if let Ok(v) = serde_json::from_slice::<Value>(r) {
                read_response(&v, &mut model, &mut tool_calls, &mut tokens);
            }
        }
        // Settle: the actual usage replaces the reservation. A success without usage from the
        // provider settles at the reserved maximum (never under-counted); a failure at zero.
        // A response served from the tenant's cache consumed nothing at the provider.
        let mut cost_micros = None;
        if let Some((r, pricing)) = &self.admission {
            let (input, output) = match tokens {
                _ if self.cache_hit => (0, 0),
                Some(t) => (t.input, t.output),
                None if status < 300 => (r.est_tokens, 0),
                None => (0, 0),
            };
            let cost = match tokens {
                _ if self.cache_hit => 0,
                None if status < 300 => r.est_cost,
                _ => pricing.cost(input, 0, output),
            };
            cost_micros = Some(cost.min(i64::MAX as u64) as i64);
            app.0.admission.settle(r, input + output, cost).await;
        }
        let id = self.request_id;
        let (prompt, prompt_sealed) = body(
            app,
            &b.scope,
            &id,
            "prompt",
            b.policy.prompt,
            self.prompt.as_deref(),
        )
        .await;
        let (response, response_sealed) =
            body(app, &b.scope, &id, "response", b.policy.response, response).await;
        let record = Record {
            v: 1,
            tenant: String::new(),
            seq: 0,
            ts_ms: self.ts_ms,
            id,
            event,
            actor: b.actor,
            model,
            prompt,
            response,
            tool_calls,
            tokens,
            cost_micros,
            latency_ms: Some(self.started.elapsed().as_millis() as u64),
            status,
            error: error.map(|e| ErrorInfo {
                code: e.code().to_owned(),
                message: e.to_string(),
            }),
            client: Some(self.client),
            detail: Value::Object(self.detail),
        };
        Some((
            b.scope,
            b.policy,
            NewAuditRecord {
                record,
                prompt_sealed,
                response_sealed,
            },
        ))
    }

    /// Writes the call's record, then releases its response. A streamed response is released
    /// at once: its stream writes the record before the terminal event.
    pub async fn finish(
        self,
        app: &AppState,
        result: Result<Response, GatewayError>,
        wire: Wire,
    ) -> Response {
        let rate = self.rate;
        let mut resp = if self.streaming {
            result.unwrap_or_else(|e| e.render(wire))
        } else {
            self.release(app, result, wire).await
        };
        if let Some(rate) = rate {
            crate::admission::rate_headers(resp.headers_mut(), &rate);
        }
        resp
    }

    async fn release(
        self,
        app: &AppState,
        result: Result<Response, GatewayError>,
        wire: Wire,
    ) -> Response {
        match result {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                let bytes = match http_body_util::BodyExt::collect(body).await {
                    Ok(c) => c.to_bytes(),
                    Err(_) => return GatewayError::Internal.render(wire),
                };
                let Some((scope, policy, entry)) = self
                    .entry(
                        app,
                        EventType::ApiCall,
                        parts.status.as_u16(),
                        None,
                        Some(&bytes),
                        None,
                    )
                    .await
                else {
                    return Response::from_parts(parts, axum::body::Body::from(bytes));
                };
                match write(app, &scope, &policy, entry).await {
                    Ok(()) => Response::from_parts(parts, axum::body::Body::from(bytes)),
                    Err(e) => e.render(wire),
                }
            }
            Err(err) => {
                let Some((scope, policy, entry)) = self
                    .entry(
                        app,
                        err.audit_event(),
                        err.status().as_u16(),
                        Some(&err),
                        None,
                        None,
                    )
                    .await
                else {
                    return err.render(wire);
                };
                match write(app, &scope, &policy, entry).await {
                    Ok(()) => err.render(wire),
                    Err(e) => e.render(wire),
                }
            }
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

/// Model version, tool calls and usage from an OpenAI- or Anthropic-shaped response.
fn read_response(
    v: &Value,
    model: &mut Option<ModelInfo>,
    tool_calls: &mut Vec<String>,
    tokens: &mut Option<Tokens>,
) {
    if let (Some(m), Some(version)) = (model.as_mut(), v.get("model").and_then(Value::as_str)) {
        m.version = Some(version.to_owned());
    }
    if let Some(choices) = v.get("choices").and_then(Value::as_array) {
        for c in choices {
            for t in c["message"]["tool_calls"].as_array().into_iter().flatten() {
                if let Some(n) = t["function"]["name"].as_str() {
                    tool_calls.push(n.to_owned());
                }
            }
        }
    }
    if let Some(content) = v.get("content").and_then(Value::as_array) {
        for b in content {
            if b["type"] == "tool_use" {
                if let Some(n) = b["name"].as_str() {
                    tool_calls.push(n.to_owned());
                }
            }
        }
    }
    if tokens.is_none() {
        let u = &v["usage"];
        let input = u["prompt_tokens"].as_u64().or(u["input_tokens"].as_u64());
        let output = u["completion_tokens"]
            .as_u64()
            .or(u["output_tokens"].as_u64());
        if let (Some(input), Some(output)) = (input, output) {
            *tokens = Some(Tokens { input, output });
        }
    }
}

/// A body per mode: its digest for the chain and, when kept, its sealed bytes.
async fn body(
    app: &AppState,
    scope: &TenantScope,
    id: &str,
    part: &str,
    mode: BodyMode,
    text: Option<&[u8]>,
) -> (Option<BodyDigest>, Option<Vec<u8>>) {
    let Some(text) = text.filter(|_| mode != BodyMode::None) else {
        return (None, None);
    };
    let kept: std::borrow::Cow<'_, [u8]> = match mode {
        BodyMode::Redacted => std::borrow::Cow::Owned(redacted(app, scope, text).into_bytes()),
        _ => std::borrow::Cow::Borrowed(text),
    };
    let digest = BodyDigest {
        mode,
        sha256: tenantgate_audit::sha256_hex(&kept),
        bytes: kept.len() as u64,
    };
    let sealed = match mode {
        BodyMode::Sealed | BodyMode::Redacted => {
            match app
                .keyring()
                .seal(scope, BODY_KIND, &body_aad_id(id, part), &kept)
                .await
            {
                Ok(s) => Some(s),
                Err(e) => {
                    // The digest still goes in the chain; the body is lost, and said so.
                    tracing::error!(target: "tenantgate::audit", error = %e, "audit body not sealed");
                    None
                }
            }
        }
        _ => None,
    };
    (Some(digest), sealed)
}

/// The text with every secret, PII match, canary and other tenant's identifier replaced.
fn redacted(app: &AppState, scope: &TenantScope, text: &[u8]) -> String {
    use tenantgate_guard::{Action, Direction, Policy};
    let text = String::from_utf8_lossy(text);
    let all = Policy {
        cross_tenant: Action::Redact,
        canary: Action::Redact,
        secrets: Action::Redact,
        pii: Action::Redact,
        injection: Action::Off,
        webhook_url: None,
    };
    let index = app.0.auth.load();
    let hits = index
        .scanner
        .scan(scope.tenant_id(), &text, Direction::Outbound, &all);
    tenantgate_guard::redact(&text, &hits)
}

/// A non-call event (configuration change, data access, incident) for an authenticated caller.
pub(crate) async fn event(
    app: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    event: EventType,
    detail: Value,
) -> Result<(), GatewayError> {
    let policy = app
        .0
        .auth
        .load()
        .audit_policy(ctx.principal.scope.tenant_id());
    let entry = event_record(request_id, event, actor(ctx), detail);
    write(app, &ctx.principal.scope, &policy, entry).await
}

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

/// What a stream needs to write its record at the end.
pub(crate) struct StreamAudit {
    pub app: AppState,
    pub call: CallAudit,
    pub body: Option<Vec<u8>>,
    /// Output tokens delivered so far, by the tokenizer (when admission counts tokens).
    output_tokens: Option<u64>,
}

impl StreamAudit {
    pub fn new(app: &AppState, call: CallAudit) -> Self {
        let body = call.wants_response().then(Vec::new);
        let count_output = call
            .admission
            .as_ref()
            .is_some_and(|(r, _)| r.prompt_tokens > 0);
        StreamAudit {
            app: app.clone(),
            call,
            body,
            output_tokens: count_output.then_some(0),
        }
    }

    pub fn observe(&mut self, frame: &Bytes) {
        if let Some(b) = &mut self.body {
            b.extend_from_slice(frame);
        }
        // What the caller received, counted, for when the provider's usage never arrives
        // (a client that left mid-stream, a provider that omits it).
        if let Some(n) = &mut self.output_tokens {
            if let Some((text, _)) = crate::stream_guard::text_of(frame) {
                *n += tenantgate_providers::tokens::count(&text);
            }
        }
    }

    /// The provider's usage where it reported it, else the tokenizer's count of the prompt
    /// and of the output delivered.
    fn usage(&self, reported: Option<Tokens>) -> Option<Tokens> {
        let Some(counted) = self.output_tokens else {
            return reported;
        };
        let prompt = self
            .call
            .admission
            .as_ref()
            .map_or(0, |(r, _)| r.prompt_tokens);
        let r = reported.unwrap_or_default();
        Some(Tokens {
            input: if r.input == 0 { prompt } else { r.input },
            output: r.output.max(counted),
        })
    }

    /// Builds and writes the stream's record; `Err` if it must not be released.
    pub async fn write(
        self,
        outcome: &str,
        error: Option<&GatewayError>,
        tokens: Option<Tokens>,
    ) -> Result<(), GatewayError> {
        let tokens = self.usage(tokens);
        let StreamAudit {
            app,
            mut call,
            body,
            ..
        } = self;
        call.note("stream", true);
        call.note("outcome", outcome);
        let status = if outcome == "client_disconnected" {
            499
        } else {
            200
        };
        let event = error.map_or(EventType::ApiCall, GatewayError::audit_event);
        let Some((scope, policy, entry)) =
            call.entry(&app, event, status, error, None, tokens).await
        else {
            return Ok(());
        };
        let entry = with_stream_body(&app, entry, &scope, &policy, body).await;
        write(&app, &scope, &policy, entry).await
    }

    /// Writes the record without waiting (the client is gone).
    pub fn write_detached(self, outcome: &'static str, tokens: Option<Tokens>) {
        tokio::spawn(async move {
            let _ = self.write(outcome, None, tokens).await;
        });
    }
}

/// Adds the streamed transcript (the frames the caller received) as the response body.
async fn with_stream_body(
    app: &AppState,
    mut entry: NewAuditRecord,
    scope: &TenantScope,
    policy: &AuditPolicy,
    body: Option<Vec<u8>>,
) -> NewAuditRecord {
    if let Some(text) = body {
        let (digest, sealed) = crate::audit::body(
            app,
            scope,
            &entry.record.id,
            "response",
            policy.response,
            Some(&text),
        )
        .await;
        entry.record.response = digest;
        entry.response_sealed = sealed;
    }
    entry
}
