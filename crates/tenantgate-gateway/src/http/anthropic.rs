//! The Anthropic surface: `/v1/messages`, for Anthropic-format models (and the demo model).

use super::openai::{codec, demo_upstream, log_usage};
use super::{
    annotate, json_response, parse_object, read_body, sse_response, upstream_bytes, upstream_json,
    upstream_status_error, CallInfo, RequestId,
};
use crate::config::ProviderKind;
use crate::error::{GatewayError, Wire};
use crate::state::AppState;
use crate::stream::{transform_stream, StreamEnd, Transform};
use crate::upstream::Endpoint;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use std::time::Instant;
use tenantgate_providers::anthropic::{self, StreamUsage};
use tenantgate_providers::demo;

pub(super) async fn messages(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    inner(&app, rid.0, &headers, body)
        .await
        .unwrap_or_else(|e| e.render(Wire::Anthropic))
}

async fn inner(
    app: &AppState,
    request_id: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let ctx = app.tenant_context(headers)?;
    let bytes = read_body(body, app.0.config.server.max_body_bytes).await?;
    let mut req = parse_object(&bytes)?;
    let meta = anthropic::messages_meta(&req).map_err(codec)?;
    let call = app.authorize(ctx, &meta.model)?;
    call.bound_max_tokens(Some(meta.max_tokens), "max_tokens")?;
    let route = call.route.clone();
    let provider = route.provider.clone();
    let info = CallInfo {
        tenant: call.ctx.tenant.slug.clone(),
        model: meta.model.clone(),
    };
    let end = StreamEnd {
        request_id,
        tenant: info.tenant.clone(),
        model: info.model.clone(),
        started: Instant::now(),
    };
    let started = Instant::now();
    match provider.kind {
        ProviderKind::Demo => {
            let areq = serde_json::Value::Object(req);
            if meta.stream {
                let t = Transform::AnthropicPassthrough(StreamUsage::default());
                let s = transform_stream(demo_upstream(demo::stream_events(&areq, &meta)), t, end);
                return Ok(annotate(sse_response(Body::from_stream(s)), started.elapsed(), info));
            }
            let out = demo::respond(&areq, &meta);
            log_usage(&end, anthropic::usage_from(&out));
            Ok(annotate(Json(out).into_response(), started.elapsed(), info))
        }
        ProviderKind::Anthropic => {
            req.insert("model".into(), json!(route.upstream_model));
            let body = serde_json::to_vec(&req).map_err(|_| GatewayError::Internal)?;
            let resp = provider.send(Endpoint::Messages, &route.upstream_model, body).await?;
            if !resp.status().is_success() {
                return Err(upstream_status_error(&provider.name, resp).await);
            }
            if meta.stream {
                let waited = started.elapsed();
                let t = Transform::AnthropicPassthrough(StreamUsage::default());
                let s = transform_stream(upstream_bytes(provider.name.clone(), resp), t, end);
                return Ok(annotate(sse_response(Body::from_stream(s)), waited, info));
            }
            let (bytes, v) = upstream_json(&provider.name, resp).await?;
            log_usage(&end, anthropic::usage_from(&v));
            Ok(annotate(json_response(StatusCode::OK, bytes), started.elapsed(), info))
        }
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::OpenaiCompatible => Err(GatewayError::UnsupportedForModel {
            message: format!("the model `{}` is served by an OpenAI-format provider; call it through /v1/chat/completions", meta.model),
            param: Some("model".into()),
        }),
    }
}
