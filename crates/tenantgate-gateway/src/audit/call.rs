//! A model call's audit record: [`CallAudit`], filled as the call's stages pass and written by
//! [`CallAudit::finish`] before the response is released, and [`StreamAudit`], the same for a
//! stream (written before its terminal event). Split from `audit.rs` (the writer and events).

use crate::audit::Recorder;
use crate::audit::{body_aad_id, write, BODY_KIND};
use crate::clock::now_ms;
use crate::error::GatewayError;
use crate::identity::auth::AuthIndex;
use crate::identity::TenantContext;
use bytes::Bytes;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;
use tenantgate_audit::{
    Actor, AuditPolicy, BodyDigest, BodyMode, Client, ErrorInfo, EventType, ModelInfo, Record,
    Tokens,
};
use tenantgate_core::TenantScope;
use tenantgate_store::audit::NewAuditRecord;

/// What a call releases to its caller, and what its record is made from: the response body
/// (read for model version, tool calls and usage, and kept per the tenant's policy) and the
/// usage when it is known otherwise.
pub(crate) struct Released<T> {
    pub value: T,
    pub body: Option<Bytes>,
    pub tokens: Option<Tokens>,
}

/// Who the caller is and what its tenant's policy says, once authenticated.
struct Bound {
    rec: Recorder,
    /// The call's view of its tenant's configuration (for the redaction of kept bodies).
    view: Arc<AuthIndex>,
    scope: TenantScope,
    actor: Actor,
    policy: Arc<AuditPolicy>,
}

/// A call's audit record in the making, and its drop guard: once the caller authenticated,
/// the record (and the call's reservation) must be built exactly once. If the handler is
/// dropped first (the client disconnected, or shutdown passed its grace), `Drop` writes it
/// as `cancelled` (status 499) and settles the reservation on the server's task tracker.
#[must_use = "a call's record is written by finish (or by its drop guard as cancelled)"]
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
    admission: Option<(crate::limits::Reservation, crate::config::Pricing)>,
    /// The tenant's rate-limit state for the response headers (streams too).
    rate: Option<crate::limits::RateState>,
    /// Served from the response cache: settled at zero.
    cache_hit: bool,
    /// The request went to the provider (which bills its prompt from then on).
    sent: bool,
    /// Whether dropping it unbuilt writes a `cancelled` record (off for the guard's own copy).
    armed: bool,
    /// The endpoint it came in on, for `/metrics`.
    surface: Option<crate::telemetry::red::CallSurface>,
}

pub(crate) fn actor(ctx: &TenantContext) -> Actor {
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
            sent: false,
            armed: true,
            surface: None,
        }
    }

    /// The call was admitted: its reservation is settled with the actual usage.
    pub fn admitted(&mut self, r: crate::limits::Reservation, pricing: crate::config::Pricing) {
        self.rate = Some(r.rate);
        self.admission = Some((r, pricing));
    }

    /// The target that answered, when it is not the one admission priced: the call is
    /// settled at the prices of what was actually called.
    pub fn set_pricing(&mut self, pricing: crate::config::Pricing) {
        if let Some((_, p)) = &mut self.admission {
            *p = pricing;
        }
    }

    /// Prompt tokens added after admission (retrieved context), counted into what a call
    /// cancelled before its response consumed.
    pub fn add_prompt_tokens(&mut self, n: u64) {
        if let Some((r, _)) = &mut self.admission {
            if r.prompt_tokens > 0 {
                r.prompt_tokens += n;
            }
        }
    }

    /// The caller is authenticated: from here on the call is recorded in its tenant's chain.
    pub fn bind(&mut self, rec: &Recorder, ctx: &TenantContext) {
        let policy = ctx.view.audit_policy(ctx.principal.scope.tenant_id());
        self.bound = Some(Bound {
            rec: rec.clone(),
            view: ctx.view.clone(),
            scope: ctx.principal.scope.clone(),
            actor: actor(ctx),
            policy,
        });
    }

    /// The model as the caller named it, and where it was routed.
    pub fn set_model(&mut self, requested: &str, upstream_model: &str, provider: &str) {
        self.model = Some(ModelInfo {
            requested: requested.to_owned(),
            resolved: Some(upstream_model.to_owned()),
            provider: Some(provider.to_owned()),
            version: None,
        });
    }

    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The endpoint the call came in on (a `/metrics` label).
    pub fn set_surface(&mut self, surface: crate::telemetry::red::CallSurface) {
        self.surface = Some(surface);
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

    /// The request is about to go to the provider: a call cancelled from here is charged its
    /// prompt (see `cancelled_usage`); one cancelled before (during retrieval) is not.
    pub fn sent(&mut self) {
        self.sent = true;
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
        self.detach()
    }

    /// Moves the record out, leaving this one empty (unbound: its drop writes nothing).
    fn detach(&mut self) -> CallAudit {
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
            sent: self.sent,
            armed: true,
            surface: self.surface,
        }
    }

    /// What a call cancelled before its response was read consumed, as far as the gateway can
    /// tell: the prompt (sent to the provider, which bills it) and no output (none was
    /// received, and dropping the handler closed the provider connection). The reserved
    /// maximum would charge output nobody got; zero would let a caller that always hangs up
    /// spend the provider's input for free. `None` when nothing was counted (no token limit,
    /// or a cache hit).
    fn cancelled_usage(&self) -> Option<Tokens> {
        let (r, _) = self.admission.as_ref()?;
        (r.prompt_tokens > 0 && self.sent && !self.cache_hit).then_some(Tokens {
            input: r.prompt_tokens,
            output: 0,
        })
    }

    /// Builds the record (sealing kept bodies with the tenant's key). `None` when the caller
    /// never authenticated: there is no tenant chain to write to.
    pub async fn entry(
        mut self,
        event: EventType,
        status: u16,
        error: Option<&GatewayError>,
        response: Option<&[u8]>,
        tokens: Option<Tokens>,
    ) -> Option<(TenantScope, Arc<AuditPolicy>, NewAuditRecord)> {
        // Taken first: from here the record is this function's, so the drop guard stands down.
        let b = self.bound.take()?;
        let mut model = self.model.take();
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
            b.rec.admission.settle(r, input + output, cost).await;
        }
        // Every authenticated call passes here once, whatever its ending: `/metrics` counts
        // it here (names outside the catalog become `unknown` there).
        b.rec.red.call(&crate::telemetry::red::CallRecord {
            surface: self.surface,
            model: model.as_ref().map(|m| m.requested.as_str()),
            provider: model.as_ref().and_then(|m| m.provider.as_deref()),
            status,
            tenant: b.scope.tenant_id().as_str(),
            tokens: tokens.map(|t| (t.input, t.output)),
            cost_micros: cost_micros.map_or(0, |c| c.max(0) as u64),
        });
        let id = std::mem::take(&mut self.request_id);
        let (prompt, prompt_sealed) = keep_body(
            &b.rec,
            &b.view,
            &b.scope,
            &id,
            "prompt",
            b.policy.prompt,
            self.prompt.as_deref(),
        )
        .await;
        let (response, response_sealed) = keep_body(
            &b.rec,
            &b.view,
            &b.scope,
            &id,
            "response",
            b.policy.response,
            response,
        )
        .await;
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
            client: Some(std::mem::take(&mut self.client)),
            detail: Value::Object(std::mem::take(&mut self.detail)),
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

    /// The record stage: settles the call and writes its record, then hands back what may be
    /// released (the write's own failure replaces it when the tenant's audit fails closed). A
    /// streamed call's record is written by its stream before the terminal event, so its
    /// result passes through. Runs on the server's task tracker and waits for it: a caller
    /// that leaves while its record is being written cannot cancel the write or the
    /// settlement half-way.
    pub async fn record<T: Send + 'static>(
        self,
        result: Result<Released<T>, GatewayError>,
    ) -> Result<T, GatewayError> {
        let rec = match &self.bound {
            Some(b) if !self.streaming => b.rec.clone(),
            // Unauthenticated (no chain to write to), or a stream (it writes its own).
            _ => return result.map(|r| r.value),
        };
        let tracker = rec.clone();
        tracker
            .spawn(async move { self.write_then_release(&rec, result).await })
            .await
            .unwrap_or(Err(GatewayError::Internal))
    }

    async fn write_then_release<T>(
        self,
        rec: &Recorder,
        result: Result<Released<T>, GatewayError>,
    ) -> Result<T, GatewayError> {
        let (event, status, error, body, tokens) = match &result {
            Ok(r) => (EventType::ApiCall, 200, None, r.body.as_deref(), r.tokens),
            Err(e) => (e.audit_event(), e.status().as_u16(), Some(e), None, None),
        };
        let Some((scope, policy, entry)) = self.entry(event, status, error, body, tokens).await
        else {
            return result.map(|r| r.value);
        };
        write(rec, &scope, &policy, entry).await?;
        result.map(|r| r.value)
    }

    /// The tenant's rate-limit state for the response headers, once admitted.
    pub fn rate(&self) -> Option<crate::limits::RateState> {
        self.rate
    }
}

impl Drop for CallAudit {
    /// The guard: an authenticated call whose record was never built (its handler was
    /// dropped: the client disconnected, or shutdown passed its grace) is recorded as
    /// `cancelled` with status 499 (nginx's "client closed request"; `shutdown` with the 503
    /// the caller got when shutdown cut it) and its reservation
    /// settled at what it consumed, which frees its concurrency slot at once instead of after
    /// `reservation_ttl_secs`. The work is detached on the server's task tracker.
    fn drop(&mut self) {
        if !self.armed || self.bound.is_none() {
            return;
        }
        let mut call = self.detach();
        // The guard's own copy never guards again (no loop if it cannot run either).
        call.armed = false;
        let Some(rec) = call.bound.as_ref().map(|b| b.rec.clone()) else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::error!(target: "tenantgate::audit", request_id = %call.request_id,
                "a cancelled call could not be recorded: no runtime");
            return;
        }
        // Cut by shutdown, the caller got a 503 (`http::in_flight`); otherwise it left.
        let (outcome, status) = if rec.grace_over.is_cancelled() {
            ("shutdown", 503)
        } else {
            ("cancelled", 499)
        };
        call.note("outcome", outcome);
        let tokens = call.cancelled_usage();
        let a = rec.clone();
        rec.spawn(async move {
            if let Some((scope, _, entry)) = call
                .entry(EventType::ApiCall, status, None, None, tokens)
                .await
            {
                // Nobody is waiting for it: a failure is counted and logged by `append`.
                let _ = a.log.append(&scope, entry).await;
            }
        });
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
    // A Responses object's function-call items.
    for item in v
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if item["type"] == "function_call" {
            if let Some(n) = item["name"].as_str() {
                tool_calls.push(n.to_owned());
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
async fn keep_body(
    rec: &Recorder,
    view: &AuthIndex,
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
        BodyMode::Redacted => std::borrow::Cow::Owned(redacted(view, scope, text).into_bytes()),
        _ => std::borrow::Cow::Borrowed(text),
    };
    let digest = BodyDigest {
        mode,
        sha256: tenantgate_audit::sha256_hex(&kept),
        bytes: kept.len() as u64,
    };
    let sealed = match mode {
        BodyMode::Sealed | BodyMode::Redacted => {
            match rec
                .keyring
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
fn redacted(index: &AuthIndex, scope: &TenantScope, text: &[u8]) -> String {
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
    let hits = index
        .scanner
        .scan(scope.tenant_id(), &text, Direction::Outbound, &all);
    tenantgate_guard::redact(&text, &hits)
}

/// What a stream needs to write its record at the end.
pub(crate) struct StreamAudit {
    pub call: CallAudit,
    pub body: Option<Vec<u8>>,
    /// Output tokens delivered so far, by the tokenizer (when admission counts tokens).
    output_tokens: Option<u64>,
}

impl StreamAudit {
    pub fn new(call: CallAudit) -> Self {
        let body = call.wants_response().then(Vec::new);
        let count_output = call
            .admission
            .as_ref()
            .is_some_and(|(r, _)| r.prompt_tokens > 0);
        StreamAudit {
            call,
            body,
            output_tokens: count_output.then_some(0),
        }
    }

    /// Whether the text of each frame is wanted (to count the output delivered).
    pub fn counts_output(&self) -> bool {
        self.output_tokens.is_some()
    }

    /// One frame the caller received, and its text if [`Self::counts_output`].
    pub fn observe(&mut self, frame: &Bytes, text: Option<&str>) {
        if let Some(b) = &mut self.body {
            b.extend_from_slice(frame);
        }
        // What the caller received, counted, for when the provider's usage never arrives
        // (a client that left mid-stream, a provider that omits it).
        if let (Some(n), Some(text)) = (&mut self.output_tokens, text) {
            *n += tenantgate_providers::tokens::count(text);
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
    /// Runs on the server's task tracker and waits for it, like [`CallAudit::record`]: a
    /// client that leaves while the record is being written cannot cut the write or the
    /// settlement half-way (the drop guard already stood down).
    pub async fn write(
        self,
        outcome: &'static str,
        error: Option<&GatewayError>,
        tokens: Option<Tokens>,
    ) -> Result<(), GatewayError> {
        let Some(rec) = self.call.bound.as_ref().map(|b| b.rec.clone()) else {
            return Ok(());
        };
        let error = error.cloned();
        rec.spawn(async move { self.write_now(outcome, error.as_ref(), tokens).await })
            .await
            .unwrap_or(Err(GatewayError::Internal))
    }

    async fn write_now(
        self,
        outcome: &'static str,
        error: Option<&GatewayError>,
        tokens: Option<Tokens>,
    ) -> Result<(), GatewayError> {
        let tokens = self.usage(tokens);
        let StreamAudit { mut call, body, .. } = self;
        let Some((rec, view)) = call.bound.as_ref().map(|b| (b.rec.clone(), b.view.clone())) else {
            return Ok(());
        };
        call.note("stream", true);
        call.note("outcome", outcome);
        let status = if outcome == "client_disconnected" {
            499
        } else {
            200
        };
        let event = error.map_or(EventType::ApiCall, GatewayError::audit_event);
        let Some((scope, policy, entry)) = call.entry(event, status, error, None, tokens).await
        else {
            return Ok(());
        };
        let entry = with_stream_body(&rec, &view, entry, &scope, &policy, body).await;
        write(&rec, &scope, &policy, entry).await
    }

    /// Writes the record without waiting (the client is gone).
    pub fn write_detached(self, outcome: &'static str, tokens: Option<Tokens>) {
        let Some(rec) = self.call.bound.as_ref().map(|b| b.rec.clone()) else {
            return;
        };
        rec.spawn(async move {
            let _ = self.write_now(outcome, None, tokens).await;
        });
    }
}

/// Adds the streamed transcript (the frames the caller received) as the response body.
async fn with_stream_body(
    rec: &Recorder,
    view: &AuthIndex,
    mut entry: NewAuditRecord,
    scope: &TenantScope,
    policy: &AuditPolicy,
    body: Option<Vec<u8>>,
) -> NewAuditRecord {
    if let Some(text) = body {
        let (digest, sealed) = keep_body(
            rec,
            view,
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
