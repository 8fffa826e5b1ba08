//! HTTP edge: routes, the per-request middleware (request id, overhead header, one log line),
//! body reading with a size bound, and JSON parsing that fails in the caller's error shape.

mod admin;
pub mod api;
pub(crate) mod audit;
mod body;
mod bundle;
mod finetune;
mod incident;
mod knowledge;
mod lifecycle;
mod members;
mod model;
mod models;
mod provider_keys;
mod roles;
mod routing;
pub(crate) mod serve;
mod tenant;
pub mod tls;
mod usage;

use crate::error::{GatewayError, Wire};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The `route` label of a request no route matched (one value, whatever the path).
pub const UNMATCHED: &str = "unmatched";

/// Marks a control-API request the console made in process (the audit layer records it as
/// `via: console`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ViaConsole;

/// Time spent waiting on the provider, put in the response's extensions by the handler so the
/// edge can report the gateway's own overhead.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UpstreamTime(pub Duration);

/// Who and what a call was, for the edge log line (ids and names only, never content).
#[derive(Clone, Debug)]
pub(crate) struct CallInfo {
    pub tenant: String,
    pub model: String,
    pub usage: Option<tenantgate_providers::Usage>,
}

/// The request id and the caller's socket address, available to handlers through request
/// extensions.
#[derive(Clone, Debug)]
pub(crate) struct RequestId(pub String, pub Option<std::net::SocketAddr>);

impl RequestId {
    /// A call's audit record in the making, for this request.
    pub(crate) fn audit(&self, headers: &axum::http::HeaderMap) -> crate::audit::CallAudit {
        crate::audit::CallAudit::new(self.0.clone(), headers, self.1)
    }
}

/// Every route: the model API, the control API, `pages` (the console, mounted by the
/// composition root: the console is a client of this module, never the other way round),
/// and the operational endpoints, behind the edge.
pub fn router(state: AppState, pages: Router<AppState>) -> Router {
    // `/metrics` on its own listener (`metrics_router`) is not on this one.
    let metrics_here = state.0.config.metrics.listen.is_none();
    let router = Router::new()
        .route("/v1/chat/completions", post(model::chat_completions))
        .route("/v1/embeddings", post(model::embeddings))
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/{model}", get(models::get_model))
        .route("/v1/messages", post(model::messages))
        .route("/v1/responses", post(model::responses))
        .route("/v1/completions", post(model::completions))
        .route("/v1/messages/count_tokens", post(model::count_tokens))
        .route(
            "/v1/files",
            post(finetune::upload).get(finetune::list_files),
        )
        .route(
            "/v1/files/{file_id}",
            get(finetune::get_file).delete(finetune::delete_file),
        )
        .route("/v1/files/{file_id}/content", get(finetune::file_content))
        .route(
            "/v1/fine_tuning/jobs",
            post(finetune::create_job).get(finetune::list_jobs),
        )
        .route("/v1/fine_tuning/jobs/{job_id}", get(finetune::get_job))
        .route(
            "/v1/fine_tuning/jobs/{job_id}/cancel",
            post(finetune::cancel_job),
        )
        .route(
            "/v1/fine_tuning/jobs/{job_id}/events",
            get(finetune::events),
        )
        .route(
            "/v1/fine_tuning/jobs/{job_id}/checkpoints",
            get(finetune::checkpoints),
        )
        .merge(control_api(state.clone()))
        .merge(pages)
        .route("/openapi.json", get(openapi));
    let router = if metrics_here {
        router.route("/metrics", get(metrics))
    } else {
        router
    };
    router
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            in_flight,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}

/// The control API on its own, as the console calls it in process (`console::api`).
pub(crate) fn control_router(state: AppState) -> Router {
    control_api(state.clone())
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The tenant self-service and platform APIs ([`api::API_ROUTES`]). Every call an
/// authenticated tenant principal makes here is recorded in its tenant's audit chain (see
/// `audit::record_tenant_call`), denials included, routes added later included.
fn control_api(state: AppState) -> Router<AppState> {
    api::routes().route_layer(axum::middleware::from_fn_with_state(
        state,
        audit::record_tenant_call,
    ))
}

/// `GET /openapi.json`: the control-plane API description, generated from the route table.
async fn openapi() -> Response {
    axum::Json(api::openapi()).into_response()
}

fn wire_for(path: &str) -> Wire {
    if path.starts_with("/v1/messages") {
        Wire::Anthropic
    } else {
        Wire::OpenAi
    }
}

async fn fallback(req: Request) -> Response {
    let path = req.uri().path().to_owned();
    GatewayError::RouteNotFound(format!("{} {}", req.method(), crate::bounds::echo(&path)))
        .render(wire_for(&path))
}

async fn method_not_allowed(req: Request) -> Response {
    GatewayError::MethodNotAllowed.render(wire_for(req.uri().path()))
}

/// `/metrics` alone, for `[metrics] listen`: the platform's monitoring reaches this port,
/// callers reach the main one.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(fallback)
        .with_state(state)
}

/// The platform's page (tenant ids only in the bounded top-N family, `crate::metrics`); with
/// `[metrics] token` only for `Authorization: Bearer <token>`.
async fn metrics(State(app): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = &app.0.config.metrics.token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_secret(given, token) {
            return (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Bearer")],
                "a metrics token is required\n",
            )
                .into_response();
        }
    }
    (
        [("content-type", crate::metrics::CONTENT_TYPE)],
        app.0.metrics.render(),
    )
        .into_response()
}

/// Compares two secrets in time independent of where they differ and of their lengths (the
/// digests are compared, every byte).
fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::Digest;
    let (a, b) = (sha2::Sha256::digest(given), sha2::Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Holds every request on the server's task tracker (shutdown waits for it) and, once
/// shutdown's grace is over, cuts a request still running: its handler is dropped here,
/// inside the runtime, so its drop guards record and settle it before the audit writer stops.
async fn in_flight(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let _held = app.0.rec.tasks.token();
    let wire = wire_for(req.uri().path());
    tokio::select! {
        r = next.run(req) => r,
        _ = app.0.rec.grace_over.cancelled() => {
            GatewayError::Unavailable("the gateway is shutting down".into()).render(wire)
        }
    }
}

/// Ready means a call can complete: the store answers and the audit writer takes records
/// (it first signs the heads left unsigned at start, in batches).
async fn readyz(State(app): State<AppState>) -> Response {
    if !app.0.rec.log.is_ready() {
        return GatewayError::Unavailable("the audit writer is starting".into())
            .render(Wire::OpenAi);
    }
    match app.store().revision().await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(_) => GatewayError::Unavailable("store unreachable".into()).render(Wire::OpenAi),
    }
}

async fn edge(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let timeout_ms = app.0.config.server.body_read_timeout_ms;
    let (parts, raw) = req.into_parts();
    let (handler_body, leftover) = body::wrap(raw, timeout_ms);
    let mut req = Request::from_parts(parts, handler_body);
    let request_id = format!("req_{}", uuid::Uuid::now_v7().simple());
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    req.extensions_mut()
        .insert(RequestId(request_id.clone(), peer));
    let method: Method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The route's template (`/v1/models/{model}`), never the path: a bounded label.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(UNMATCHED, |m| m.as_str())
        .to_owned();
    let (span, trace) = crate::telemetry::request(&method, &route, req.headers());
    let mut resp = async {
        let resp = match body::check_encoding(req.headers()) {
            Ok(()) => next.run(req).await,
            Err(e) => e.render(wire_for(&path)),
        };
        // A request answered before its body was read keeps its connection (bounded: see body.rs).
        leftover.drain().await;
        resp
    }
    .instrument(span.clone())
    .await;
    let _in_span = span.enter();
    let upstream = resp
        .extensions()
        .get::<UpstreamTime>()
        .map(|u| u.0)
        .unwrap_or_default();
    let overhead = started.elapsed().saturating_sub(upstream);
    let red = &app.0.rec.red;
    red.request(&route, &method, resp.status().as_u16());
    if resp.extensions().get::<CallInfo>().is_some() {
        red.latency(overhead, (!upstream.is_zero()).then_some(upstream));
    }
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", overhead.as_secs_f64() * 1000.0)) {
        h.insert("x-tenantgate-overhead-ms", v);
    }
    let info = resp.extensions().get::<CallInfo>();
    let path = match api::template_of(&path) {
        Some(route) => route,
        None => crate::bounds::for_log(&path),
    };
    let status = resp.status().as_u16();
    let tenant = info.map(|i| i.tenant.as_str()).unwrap_or("-");
    let model = info.map(|i| i.model.as_str()).unwrap_or("-");
    let (overhead_us, upstream_ms) = (overhead.as_micros() as u64, upstream.as_millis() as u64);
    // One line per call (a second line for usage cost as much again under load: it was a
    // write to stderr per call); tokens only when the provider reported them before release.
    if let Some((trace_id, span_id)) = &trace {
        let usage = info.and_then(|i| i.usage);
        tracing::info!(
            request_id = %request_id, %method, %path, status, tenant, model, overhead_us,
            upstream_ms, input_tokens = usage.map(|u| u.input_tokens),
            output_tokens = usage.map(|u| u.output_tokens), trace_id = %trace_id,
            span_id = %span_id, "request"
        );
        return resp;
    }
    match info.and_then(|i| i.usage) {
        Some(u) => tracing::info!(
            request_id = %request_id, %method, %path, status, tenant, model, overhead_us,
            upstream_ms, input_tokens = u.input_tokens, output_tokens = u.output_tokens,
            "request"
        ),
        None => tracing::info!(
            request_id = %request_id, %method, %path, status, tenant, model, overhead_us,
            upstream_ms, "request"
        ),
    }
    resp
}

pub(crate) use body::{read_body, require_json};

pub(crate) fn json_response(status: StatusCode, body: bytes::Bytes) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| GatewayError::Internal.render(Wire::OpenAi))
}

pub(crate) fn sse_response(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no")
        .body(body)
        .unwrap_or_else(|_| GatewayError::Internal.render(Wire::OpenAi))
}

/// Attaches timing and call info for the edge.
pub(crate) fn annotate(mut resp: Response, upstream: Duration, info: CallInfo) -> Response {
    resp.extensions_mut().insert(UpstreamTime(upstream));
    resp.extensions_mut().insert(info);
    resp
}
