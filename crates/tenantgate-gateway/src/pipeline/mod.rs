//! The request pipeline: one path for every model call, whatever the caller's wire and
//! whatever the provider's. It reads top to bottom as a call flows ([`Deps::run`], then [`chat`]):
//!
//! ```text
//! authorize::Identity::tenant    credential -> TenantContext (one view of the tenant)
//! authorize::tenant_key          a tenant on its own KMS key: the key still answers
//! admit::count_request           the call uses a request of its rate windows
//! request::parse                 body -> ChatRequest (the caller's wire, read once)
//! authorize::model               model -> AuthorizedCall (route the tenant may use)
//! ChatRequest::guard_inbound     leak guard on everything the client wrote
//! compose::Prompts::system_prompt  the tenant's system prompt, server-side
//! retrieve::plan                 the knowledge bases it searches (no embedding paid yet)
//! admit::reserve                 kill switch, limits, budgets: the call's maximum reserved
//! retrieve::context              the nearest chunks, guarded as data, into the request
//! route::chat                    response cache, translation table, provider, guard-outbound
//! CallAudit::record              settle and write the record, durable before release
//! ```
//!
//! Embedding calls ([`embed`]), the HTTP ones and the knowledge bases' own, take the same
//! stages that apply to them. The HTTP handlers are adapters: wire request ->
//! [`Input`] -> [`Deps::run`] -> [`Outcome`] -> wire rendering. Nothing in this module names the
//! server's state or the HTTP layer; each stage takes the previous stage's output and the
//! parts of [`Deps`] it needs (`tests/structure.rs` holds the rule).

pub mod admit;
pub mod authorize;
pub mod compose;
mod count;
pub mod embed;
use crate::guard;
pub mod request;
pub mod retrieve;
pub mod route;
mod surface;
pub mod translate;

pub use authorize::{AuthorizedCall, Identity, TenantContext};
pub(crate) use request::codec;
pub use request::Surface;

use crate::audit::{CallAudit, Recorder, Released};
use crate::error::{GatewayError, Wire};
use crate::limits::RateState;
use crate::telemetry::red::CallSurface;
use crate::telemetry::stage;
use axum::http::HeaderMap;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde_json::{Map, Value};
use std::time::Duration;
use tracing::Instrument;

/// The long-lived parts the stages use, borrowed for one call.
pub struct Deps<'a> {
    pub identity: Identity<'a>,
    pub catalog: &'a crate::upstream::Catalog,
    /// Tenants' own provider endpoints, opened on first use.
    pub endpoints: crate::upstream::endpoints::Endpoints<'a>,
    pub prompts: compose::Prompts<'a>,
    pub knowledge: retrieve::Knowledge<'a>,
    pub cache: Option<&'a crate::upstream::cache::CacheBackend>,
    /// Retries, failover and the endpoints' circuit breakers.
    pub routing: route::Routing<'a>,
    pub secret: &'a crate::identity::keys::ServerSecret,
    pub incidents: &'a guard::IncidentSink,
    pub recorder: &'a Recorder,
}

impl Deps<'_> {
    fn admission(&self) -> &crate::limits::Admission {
        &self.recorder.admission
    }
}

/// What a model call asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A chat call, on the endpoint it came in on.
    Chat(Surface),
    Embeddings,
    /// Anthropic's `/v1/messages/count_tokens`: authorized, guarded and recorded like a call
    /// to the model, answered by the gateway's tokenizer (no provider call, nothing billed).
    CountTokens,
}

impl Operation {
    /// The path the call came in on: what an incident freeze of a route names.
    pub fn path(self) -> &'static str {
        match self {
            Operation::Chat(Surface::ChatCompletions) => "/v1/chat/completions",
            Operation::Chat(Surface::Messages) => "/v1/messages",
            Operation::Chat(Surface::Responses) => "/v1/responses",
            Operation::Chat(Surface::Completions) => "/v1/completions",
            Operation::Embeddings => "/v1/embeddings",
            Operation::CountTokens => "/v1/messages/count_tokens",
        }
    }

    /// Every model-call path (the routes a freeze may name).
    pub const PATHS: [&'static str; 6] = [
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/responses",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/messages/count_tokens",
    ];
}

/// A model call as the adapter hands it over: the body is read only after the caller
/// authenticated and its request was counted.
pub struct Input<'a> {
    pub wire: Wire,
    pub op: Operation,
    pub headers: &'a HeaderMap,
    pub body: BoxFuture<'a, Result<Bytes, GatewayError>>,
}

/// A successful call's answer, in the caller's wire.
pub enum Payload {
    Json(Bytes),
    Stream(BoxStream<'static, Result<Bytes, std::convert::Infallible>>),
}

/// Who and what a call was, for the edge's log line (names only, never content).
#[derive(Clone, Debug)]
pub struct Labels {
    pub tenant: String,
    pub model: String,
    /// Tokens the provider reported, when the answer was complete before release (a stream's
    /// are in its record): the edge's one log line per call carries them.
    pub usage: Option<tenantgate_providers::Usage>,
}

pub struct Reply {
    pub payload: Payload,
    /// `hit` or `miss` when the tenant's response cache was consulted.
    pub cache: Option<&'static str>,
    pub labels: Labels,
    /// Time spent waiting on the provider (for the gateway's own overhead).
    pub waited: Duration,
}

/// What the adapter renders: the reply or the error, and what the caller is told either way.
pub struct Outcome {
    pub result: Result<Reply, GatewayError>,
    pub rate: Option<RateState>,
    /// Provenance of retrieved context (no text), for `x-tenantgate-sources`.
    pub sources: Option<String>,
}

impl Deps<'_> {
    /// Runs one model call. `audit` is the call's record (and drop guard) from the moment
    /// the request arrived: it is bound to the tenant once authenticated, and settles and
    /// records the call however it ends.
    pub(crate) async fn run(&self, mut audit: CallAudit, input: Input<'_>) -> Outcome {
        let mut sources = None;
        let result = call(self, &mut audit, input, &mut sources).await;
        let rate = audit.rate();
        let result = audit.record(result).instrument(stage("record")).await;
        Outcome {
            result,
            rate,
            sources,
        }
    }
}

async fn call(
    deps: &Deps<'_>,
    audit: &mut CallAudit,
    input: Input<'_>,
    sources: &mut Option<String>,
) -> Result<Released<Reply>, GatewayError> {
    audit.set_surface(match input.op {
        Operation::Chat(s) => s.metrics_label(),
        Operation::Embeddings => CallSurface::Embeddings,
        Operation::CountTokens => CallSurface::CountTokens,
    });
    let ctx = deps
        .identity
        .tenant(input.headers, true)
        .instrument(stage("authorize"))
        .await?;
    audit.bind(deps.recorder, &ctx);
    authorize::not_frozen(&ctx, Some(input.op.path()), None)?;
    authorize::tenant_key(deps.recorder.keyring.kms().as_ref(), &ctx)
        .instrument(stage("authorize.tenant_key"))
        .await?;
    let counted = admit::count_request(deps.admission(), &ctx, &audit.request_id)
        .instrument(stage("admit.count"))
        .await?;
    let parse = stage("request.parse");
    let body = parse_object(&input.body.instrument(parse.clone()).await?)?;
    // Before any field reaches the audit record, a log line or a counter's key.
    parse.in_scope(|| crate::bounds::request_fields(&body))?;
    match input.op {
        Operation::Chat(surface) => {
            let req = parse.in_scope(|| request::parse(surface, body))?;
            drop(parse);
            chat(deps, audit, ctx, counted, req, sources).await
        }
        Operation::Embeddings => embed::http(deps, audit, ctx, counted, body).await,
        Operation::CountTokens => count::tokens(deps, audit, ctx, body).await,
    }
}

/// A chat call on either wire, from its parsed request to its answer.
async fn chat(
    deps: &Deps<'_>,
    audit: &mut CallAudit,
    ctx: TenantContext,
    counted: Option<crate::limits::Counted>,
    mut req: request::ChatRequest,
    sources: &mut Option<String>,
) -> Result<Released<Reply>, GatewayError> {
    audit.set_requested_model(&req.model);
    let surface = req.surface;
    if let Some(label) = surface.audit_label() {
        audit.note("surface", label);
    }
    let call = authorize::model(deps.catalog, &deps.endpoints, ctx, &req.model)
        .instrument(stage("authorize.model"))
        .await?;
    audit.set_model(
        &req.model,
        &call.route.upstream_model,
        &call.route.provider.name,
    );
    call.note_endpoint(audit);
    let guard = guard::Guard::new(&call.ctx, deps.incidents);
    stage("guard.inbound").in_scope(|| {
        req.guard_inbound(&guard)?;
        // Template variables are client text too: scanned before they are rendered into the
        // tenant's (otherwise unscanned) system prompt.
        guard.guard_values(&mut req.ext.variables, tenantgate_guard::Direction::Inbound)
    })?;
    let compose = stage("compose");
    if let Some((system, policy)) = deps
        .prompts
        .system_prompt(&call.ctx, &req.ext)
        .instrument(compose.clone())
        .await?
    {
        compose.in_scope(|| req.apply_system(system, policy))?;
    }
    drop(compose);
    // The record holds the prompt from here, refusals included; retrieval replaces it below.
    audit.set_prompt(&req.body);
    let bound = call.bound_max_tokens(req.max_tokens, req.max_tokens_param)?;
    let max_output = bound
        .unwrap_or(u64::from(call.route.default_max_tokens))
        .saturating_mul(req.choices);
    let retrieval =
        stage("retrieve.plan").in_scope(|| retrieve::plan(&deps.knowledge, &call.ctx, &req))?;
    let admitted = admit::reserve(
        deps.admission(),
        &call,
        &audit.request_id,
        admit::Bound {
            prompt: &req.body,
            later_prompt_tokens: retrieval.as_ref().map_or(0, retrieve::Plan::allowance),
            max_output,
        },
        admit::Part::Call(counted),
    )
    .instrument(stage("admit.reserve"))
    .await?;
    let mut prompt_estimate = admitted.prompt_tokens;
    audit.admitted(admitted, call.route.pricing);
    let request_id = audit.request_id.clone();
    let retrieved = match retrieval {
        Some(plan) => {
            retrieve::context(deps, &call.ctx, &guard, &request_id, plan)
                .instrument(stage("retrieve.context"))
                .await?
        }
        None => None,
    };
    if let Some(rc) = retrieved {
        if prompt_estimate > 0 {
            let added = tenantgate_providers::tokens::count(&rc.block);
            prompt_estimate += added;
            audit.add_prompt_tokens(added);
        }
        audit.note("rag_sources", rc.audit_sources());
        *sources = rc.header();
        req.add_context(rc.block);
        audit.set_prompt(&req.body);
    }
    let answer = route::chat(deps, &call, req, bound, prompt_estimate, &guard, audit)
        .instrument(stage("route"))
        .await?;
    // A complete answer, fresh or cached, is guarded in chat's shape and rendered in the
    // surface's last (a stream renders per frame, `crate::stream::Render`).
    surface::render_json(surface, answer)
}

impl Reply {
    /// A complete JSON answer, kept in the call's record as its response body.
    fn json(
        body: Bytes,
        cache: Option<&'static str>,
        labels: Labels,
        waited: Duration,
    ) -> Released<Reply> {
        Released {
            value: Reply {
                payload: Payload::Json(body.clone()),
                cache,
                labels,
                waited,
            },
            body: Some(body),
            tokens: None,
        }
    }
}

/// The usage line of a complete (non-streamed) answer; a stream reports its own at its end.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(GatewayError::BadJson(
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(GatewayError::BadJson(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::{Operation, Surface};

    #[test]
    fn every_operation_has_one_of_the_freezable_paths_and_each_path_one_operation() {
        let ops = [
            Operation::Chat(Surface::ChatCompletions),
            Operation::Chat(Surface::Messages),
            Operation::Chat(Surface::Responses),
            Operation::Chat(Surface::Completions),
            Operation::Embeddings,
            Operation::CountTokens,
        ];
        let paths: Vec<&str> = ops.iter().map(|o| o.path()).collect();
        assert_eq!(paths, Operation::PATHS);
    }
}
