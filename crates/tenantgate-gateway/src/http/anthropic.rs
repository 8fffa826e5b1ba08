//! The Anthropic surface: `/v1/messages`, for Anthropic-format models (and the demo model).

use super::openai::{codec, demo_upstream, log_usage};
use super::{
    annotate, call_labels, json_response, send_ok, stream_reply, tenant_request, upstream_bytes,
    upstream_json, RequestId,
};
use crate::config::ProviderKind;
use crate::error::{GatewayError, Wire};
use crate::pipeline::compose;
use crate::state::AppState;
use crate::stream::Transform;
use crate::upstream::Endpoint;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use std::time::Instant;
use tenantgate_providers::anthropic::{self, StreamUsage};
use tenantgate_providers::{demo, translate_rev};

pub(super) async fn messages(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut audit = rid.audit(&headers);
    let mut sources = None;
    let r = inner(&app, rid.0, &headers, body, &mut audit, &mut sources).await;
    let mut resp = audit.finish(&app, r, Wire::Anthropic).await;
    if let Some(v) = sources {
        resp.headers_mut().insert("x-tenantgate-sources", v);
    }
    resp
}

async fn inner(
    app: &AppState,
    request_id: String,
    headers: &HeaderMap,
    body: Body,
    audit: &mut crate::audit::CallAudit,
    sources_out: &mut Option<axum::http::HeaderValue>,
) -> Result<Response, GatewayError> {
    let (ctx, mut req, counted) = tenant_request(app, headers, body, audit).await?;
    let ext = compose::take_extension(&mut req)?;
    let meta = anthropic::messages_meta(&req).map_err(codec)?;
    audit.set_requested_model(&meta.model);
    let call = app.authorize(ctx, &meta.model)?;
    audit.set_model(&meta.model, &call.route);
    // Stage guard inbound: everything the client wrote, its `system` included, before the
    // tenant's own (trusted, unscanned) system prompt joins it.
    app.guard_anthropic_request(&call.ctx, &mut req)?;
    if let Some((system, policy)) = app.system_prompt(&call.ctx, &ext).await? {
        compose::apply_anthropic(&mut req, system, policy)?;
    }
    // Stage compose, retrieval: the tenant's own knowledge bases, guarded as data before they
    // join `system`.
    if let Some(rc) = app
        .retrieval_context(&call.ctx, &request_id, &ext, &req)
        .await?
    {
        crate::knowledge::add_context_anthropic(&mut req, rc.block);
        audit.note("rag_sources", crate::knowledge::audit_sources(&rc.sources));
        *sources_out = crate::knowledge::sources_header(&rc.sources);
    }
    audit.set_prompt(&req);
    call.bound_max_tokens(Some(meta.max_tokens), "max_tokens")?;
    let admitted = app
        .admit_counted(&call, &request_id, &req, meta.max_tokens, counted)
        .await?;
    // The prompt as admission counted it (0 when the tenant's limits count no tokens).
    let prompt_estimate = admitted.prompt_tokens;
    audit.admitted(admitted, call.route.pricing);
    let (info, end) = call_labels(request_id, &call, &meta.model);
    let guard = || crate::stream::guard::StreamGuard::new(app, &call.ctx);
    let mut sa = || crate::audit::StreamAudit::new(app, audit.take_for_stream());
    let route = call.route;
    let provider = &route.provider;
    let started = Instant::now();
    let passthrough = || Transform::AnthropicPassthrough(StreamUsage::default());
    match provider.kind {
        ProviderKind::Demo => {
            let req = serde_json::Value::Object(req);
            if meta.stream {
                let upstream = demo_upstream(demo::stream_events(&req, &meta));
                return Ok(stream_reply(
                    upstream,
                    passthrough(),
                    end,
                    started.elapsed(),
                    info,
                    guard(),
                    sa(),
                ));
            }
            let mut out = demo::respond(&req, &meta);
            log_usage(&end, anthropic::usage_from(&out));
            app.guard_anthropic_response(&call.ctx, &mut out)?;
            Ok(annotate(Json(out).into_response(), started.elapsed(), info))
        }
        ProviderKind::Anthropic => {
            req.insert("model".into(), json!(route.upstream_model));
            let resp = send_ok(provider, Endpoint::Messages, &route.upstream_model, &req).await?;
            if meta.stream {
                let upstream = upstream_bytes(provider.name.clone(), resp);
                return Ok(stream_reply(
                    upstream,
                    passthrough(),
                    end,
                    started.elapsed(),
                    info,
                    guard(),
                    sa(),
                ));
            }
            let (bytes, v) = upstream_json(&provider.name, resp).await?;
            log_usage(&end, anthropic::usage_from(&v));
            let bytes = app.guard_passthrough(&call.ctx, bytes, true)?;
            Ok(annotate(
                json_response(StatusCode::OK, bytes),
                started.elapsed(),
                info,
            ))
        }
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::OpenaiCompatible => {
            // An Anthropic client in front of an OpenAI-format model: translate both ways.
            let mut oreq = translate_rev::anthropic_request_to_openai(&req, &route.upstream_model)
                .map_err(codec)?;
            let openai_hosted = matches!(provider.kind, ProviderKind::Openai | ProviderKind::Azure);
            if openai_hosted {
                if let Some(v) = oreq.remove("max_tokens") {
                    oreq.insert("max_completion_tokens".into(), v);
                }
            }
            crate::upstream::cache::scope_provider_caches(
                &mut oreq,
                call.ctx.principal.scope.tenant_id(),
                provider,
                &app.0.secret,
            );
            let resp = send_ok(provider, Endpoint::Chat, &route.upstream_model, &oreq).await?;
            if meta.stream {
                let upstream = upstream_bytes(provider.name.clone(), resp);
                let t = Transform::OpenAiToAnthropic(
                    translate_rev::OpenAiToAnthropicStream::with_prompt_estimate(
                        &meta.model,
                        prompt_estimate,
                    ),
                );
                return Ok(stream_reply(
                    upstream,
                    t,
                    end,
                    started.elapsed(),
                    info,
                    guard(),
                    sa(),
                ));
            }
            let (_, v) = upstream_json(&provider.name, resp).await?;
            let mut out = translate_rev::openai_response_to_anthropic(&v, &meta.model);
            log_usage(&end, anthropic::usage_from(&out));
            app.guard_anthropic_response(&call.ctx, &mut out)?;
            Ok(annotate(Json(out).into_response(), started.elapsed(), info))
        }
    }
}
