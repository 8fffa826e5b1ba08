//! The model-call adapters: `/v1/chat/completions`, `/v1/responses`, `/v1/completions` and
//! `/v1/embeddings` (OpenAI wire), `/v1/messages` and `/v1/messages/count_tokens` (Anthropic
//! wire). Each turns the wire request into a pipeline
//! [`Input`](crate::pipeline::Input), runs the one pipeline, and renders its
//! [`Outcome`](crate::pipeline::Outcome) in the caller's wire; none of them holds a stage.

use super::{annotate, json_response, read_body, require_json, sse_response, CallInfo, RequestId};
use crate::error::Wire;
use crate::pipeline::{Input, Operation, Outcome, Payload, Surface};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;

pub(super) async fn chat_completions(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    chat(&app, rid, headers, body, Surface::ChatCompletions).await
}

pub(super) async fn messages(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    chat(&app, rid, headers, body, Surface::Messages).await
}

pub(super) async fn responses(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    chat(&app, rid, headers, body, Surface::Responses).await
}

pub(super) async fn completions(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    chat(&app, rid, headers, body, Surface::Completions).await
}

pub(super) async fn count_tokens(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    model_call(
        &app,
        rid,
        headers,
        body,
        Wire::Anthropic,
        Operation::CountTokens,
    )
    .await
}

async fn chat(
    app: &AppState,
    rid: RequestId,
    headers: HeaderMap,
    body: Body,
    surface: Surface,
) -> Response {
    let op = Operation::Chat(surface);
    model_call(app, rid, headers, body, surface.wire(), op).await
}

pub(super) async fn embeddings(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    model_call(
        &app,
        rid,
        headers,
        body,
        Wire::OpenAi,
        Operation::Embeddings,
    )
    .await
}

async fn model_call(
    app: &AppState,
    rid: RequestId,
    headers: HeaderMap,
    body: Body,
    wire: Wire,
    op: Operation,
) -> Response {
    let audit = rid.audit(&headers);
    let max = app.0.config.server.max_body_bytes;
    let h = &headers;
    let input = Input {
        wire,
        op,
        headers: h,
        // Read only once the pipeline has authenticated the caller and counted the request.
        body: Box::pin(async move {
            require_json(h)?;
            read_body(body, max).await
        }),
    };
    render(app.deps().run(audit, input).await, wire)
}

/// The outcome in the caller's wire, with the gateway's headers.
fn render(outcome: Outcome, wire: Wire) -> Response {
    // A 429 carries its own rate headers (nothing remaining until its reset).
    let own_rate = matches!(
        outcome.result,
        Err(crate::error::GatewayError::RateLimited { .. })
    );
    let mut resp = match outcome.result {
        Ok(reply) => {
            let resp = match reply.payload {
                Payload::Json(bytes) => json_response(StatusCode::OK, bytes),
                Payload::Stream(s) => sse_response(Body::from_stream(s)),
            };
            let mut resp = annotate(
                resp,
                reply.waited,
                CallInfo {
                    tenant: reply.labels.tenant,
                    model: reply.labels.model,
                    usage: reply.labels.usage,
                },
            );
            if let Some(c) = reply.cache {
                resp.headers_mut()
                    .insert("x-tenantgate-cache", HeaderValue::from_static(c));
            }
            resp
        }
        Err(e) => e.render(wire),
    };
    if let Some(rate) = outcome.rate.filter(|_| !own_rate) {
        crate::limits::rate_headers(resp.headers_mut(), &rate);
    }
    if let Some(v) = outcome.sources.and_then(|s| HeaderValue::from_str(&s).ok()) {
        resp.headers_mut().insert("x-tenantgate-sources", v);
    }
    resp
}
