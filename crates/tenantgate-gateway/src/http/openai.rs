//! The OpenAI surface: `/v1/chat/completions`, `/v1/embeddings`, `/v1/models`.

use super::{
    annotate, call_labels, json_response, send_ok, stream_reply, tenant_request, upstream_bytes,
    upstream_json, upstream_passthrough, CallInfo, RequestId,
};
use crate::config::ProviderKind;
use crate::error::{GatewayError, Wire};
use crate::pipeline::compose;
use crate::pipeline::TenantContext;
use crate::state::AppState;
use crate::stream::{StreamEnd, Transform};
use crate::upstream::Endpoint;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tenantgate_core::IsolationTier;
use tenantgate_providers::translate::{
    anthropic_response_to_openai, openai_request_to_anthropic, AnthropicToOpenAiStream,
};
use tenantgate_providers::{anthropic, demo, embed, openai, sse, tokens, CodecError};

pub(crate) fn codec(e: CodecError) -> GatewayError {
    GatewayError::InvalidRequest {
        message: e.message,
        param: e.param,
    }
}

pub(super) async fn chat_completions(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut audit = rid.audit(&headers);
    let mut sources = None;
    let r = chat(&app, rid.0, &headers, body, &mut audit, &mut sources).await;
    let mut resp = audit.finish(&app, r, Wire::OpenAi).await;
    if let Some(v) = sources {
        resp.headers_mut().insert("x-tenantgate-sources", v);
    }
    resp
}

/// Demo model events framed as the Anthropic SSE bytes a real provider would send, so the demo
/// goes through exactly the streaming path of a real Anthropic model.
pub(super) fn demo_upstream(
    events: Vec<(&'static str, Value)>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, GatewayError>> + Send + 'static {
    futures_util::stream::iter(
        events
            .into_iter()
            .map(|(e, d)| Ok(sse::named_frame(e, &d.to_string()))),
    )
}

async fn chat(
    app: &AppState,
    request_id: String,
    headers: &HeaderMap,
    body: Body,
    audit: &mut crate::audit::CallAudit,
    sources_out: &mut Option<axum::http::HeaderValue>,
) -> Result<Response, GatewayError> {
    let (ctx, mut req, counted) = tenant_request(app, headers, body, audit).await?;
    let ext = compose::take_extension(&mut req)?;
    let meta = openai::chat_meta(&req).map_err(codec)?;
    audit.set_requested_model(&meta.model);
    let call = app.authorize(ctx, &meta.model)?;
    audit.set_model(&meta.model, &call.route);
    // Stage guard inbound: everything the client wrote, whatever its role, before the
    // tenant's own (trusted, unscanned) system prompt joins it.
    app.guard_openai_request(&call.ctx, &mut req)?;
    // Stage compose: the tenant's system prompt, server-side.
    if let Some((system, policy)) = app.system_prompt(&call.ctx, &ext).await? {
        compose::apply_openai(&mut req, system, policy)?;
    }
    // Stage compose, retrieval: the tenant's own knowledge bases, guarded as data before they
    // join the request.
    if let Some(rc) = app
        .retrieval_context(&call.ctx, &request_id, &ext, &req)
        .await?
    {
        crate::knowledge::add_context_openai(&mut req, rc.block);
        audit.note("rag_sources", crate::knowledge::audit_sources(&rc.sources));
        *sources_out = crate::knowledge::sources_header(&rc.sources);
    }
    audit.set_prompt(&req);
    let param = if req.contains_key("max_completion_tokens") {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    let bound = call.bound_max_tokens(meta.max_tokens, param)?;
    let max_out = bound.unwrap_or(u64::from(call.route.default_max_tokens));
    // `max_tokens` bounds each choice: `n` choices may produce n times as much.
    let choices = req.get("n").and_then(Value::as_u64).unwrap_or(1);
    let admitted = app
        .admit_counted(
            &call,
            &request_id,
            &req,
            max_out.saturating_mul(choices),
            counted,
        )
        .await?;
    audit.admitted(admitted, call.route.pricing);
    let (info, end) = call_labels(request_id, &call, &meta.model);
    let guard = || crate::stream::guard::StreamGuard::new(app, &call.ctx);
    let mut sa = || crate::audit::StreamAudit::new(app, audit.take_for_stream());
    let route = call.route;
    let provider = &route.provider;
    let started = Instant::now();
    match provider.kind {
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::OpenaiCompatible => {
            openai::rewrite_chat_for_upstream(&mut req, &route.upstream_model, meta.stream);
            if let (None, Some(b)) = (meta.max_tokens, bound) {
                // OpenAI's own API wants max_completion_tokens; older compatible servers know max_tokens.
                let field = if provider.kind == ProviderKind::OpenaiCompatible {
                    "max_tokens"
                } else {
                    "max_completion_tokens"
                };
                req.insert(field.into(), json!(b));
            }
            // Provider prompt caches (and self-hosted prefix caches) are scoped to the tenant.
            crate::upstream::cache::scope_provider_caches(
                &mut req,
                call.ctx.principal.scope.tenant_id(),
                provider,
                &app.0.secret,
            );
            let cache = app
                .0
                .cache
                .as_ref()
                .filter(|_| !meta.stream && call.ctx.tenant.isolation != IsolationTier::Dedicated)
                .map(|c| {
                    (
                        c,
                        crate::upstream::cache::key(
                            call.ctx.principal.scope.tenant_id(),
                            &provider.name,
                            &route.upstream_model,
                            "openai-chat",
                            &req,
                        ),
                    )
                });
            if let Some((c, k)) = &cache {
                if let Some(hit) = c.get(k).await {
                    // Re-checked: the tenant's guard policy may have changed since it was stored.
                    let hit = app.guard_passthrough(&call.ctx, hit, false)?;
                    audit.cache_hit();
                    let mut resp = json_response(StatusCode::OK, hit);
                    resp.headers_mut().insert(
                        "x-tenantgate-cache",
                        axum::http::HeaderValue::from_static("hit"),
                    );
                    return Ok(annotate(resp, started.elapsed(), info));
                }
            }
            let resp = send_ok(provider, Endpoint::Chat, &route.upstream_model, &req).await?;
            if meta.stream {
                let t = Transform::OpenAiPassthrough {
                    include_usage: meta.include_usage,
                    usage: None,
                    done: false,
                };
                let upstream = upstream_bytes(provider.name.clone(), resp);
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
            let (bytes, usage) = upstream_passthrough(&provider.name, resp).await?;
            log_usage(&end, usage);
            let bytes = app.guard_passthrough(&call.ctx, bytes, false)?;
            let mut resp = json_response(StatusCode::OK, bytes.clone());
            if let Some((c, k)) = cache {
                c.put(k, bytes).await;
                resp.headers_mut().insert(
                    "x-tenantgate-cache",
                    axum::http::HeaderValue::from_static("miss"),
                );
            }
            Ok(annotate(resp, started.elapsed(), info))
        }
        ProviderKind::Anthropic | ProviderKind::Demo => {
            let default_max = bound.unwrap_or(u64::from(route.default_max_tokens));
            let areq = openai_request_to_anthropic(&req, &route.upstream_model, default_max)
                .map_err(codec)?;
            let translate = || {
                Transform::AnthropicToOpenAi(AnthropicToOpenAiStream::new(
                    &meta.model,
                    meta.include_usage,
                ))
            };
            let reply = if provider.kind == ProviderKind::Demo {
                let ameta = anthropic::messages_meta(&areq).map_err(codec)?;
                let areq = Value::Object(areq);
                if meta.stream {
                    let upstream = demo_upstream(demo::stream_events(&areq, &ameta));
                    return Ok(stream_reply(
                        upstream,
                        translate(),
                        end,
                        started.elapsed(),
                        info,
                        guard(),
                        sa(),
                    ));
                }
                demo::respond(&areq, &ameta)
            } else {
                let resp =
                    send_ok(provider, Endpoint::Messages, &route.upstream_model, &areq).await?;
                if meta.stream {
                    let upstream = upstream_bytes(provider.name.clone(), resp);
                    return Ok(stream_reply(
                        upstream,
                        translate(),
                        end,
                        started.elapsed(),
                        info,
                        guard(),
                        sa(),
                    ));
                }
                upstream_json(&provider.name, resp).await?.1
            };
            let mut out = anthropic_response_to_openai(&reply, &meta.model);
            log_usage(&end, openai::usage_from(&out));
            app.guard_openai_response(&call.ctx, &mut out)?;
            Ok(annotate(Json(out).into_response(), started.elapsed(), info))
        }
    }
}

pub(super) fn log_usage(end: &StreamEnd, usage: Option<tenantgate_providers::Usage>) {
    let u = usage.unwrap_or_default();
    tracing::info!(request_id = %end.request_id, tenant = %end.tenant, model = %end.model,
        input_tokens = u.input_tokens, output_tokens = u.output_tokens, "usage");
}

pub(super) async fn embeddings(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut audit = rid.audit(&headers);
    let r = embed_inner(&app, rid.0, &headers, body, &mut audit).await;
    audit.finish(&app, r, Wire::OpenAi).await
}

async fn embed_inner(
    app: &AppState,
    request_id: String,
    headers: &HeaderMap,
    body: Body,
    audit: &mut crate::audit::CallAudit,
) -> Result<Response, GatewayError> {
    let (ctx, mut req, counted) = tenant_request(app, headers, body, audit).await?;
    let model = openai::embeddings_model(&req).map_err(codec)?;
    audit.set_requested_model(&model);
    let call = app.authorize(ctx, &model)?;
    audit.set_model(&model, &call.route);
    audit.note("endpoint", "embeddings");
    audit.set_prompt(&req);
    let admitted = app
        .admit_counted(&call, &request_id, &req, 0, counted)
        .await?;
    audit.admitted(admitted, call.route.pricing);
    let (info, end) = call_labels(request_id, &call, &model);
    let route = call.route;
    let provider = &route.provider;
    let started = Instant::now();
    match provider.kind {
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::OpenaiCompatible => {
            req.insert("model".into(), json!(route.upstream_model));
            crate::upstream::cache::scope_embedding_caches(
                &mut req,
                call.ctx.principal.scope.tenant_id(),
                provider,
                &app.0.secret,
            );
            let resp = send_ok(provider, Endpoint::Embeddings, &route.upstream_model, &req).await?;
            let (bytes, usage) = upstream_passthrough(&provider.name, resp).await?;
            log_usage(&end, usage);
            Ok(annotate(
                json_response(StatusCode::OK, bytes),
                started.elapsed(),
                info,
            ))
        }
        ProviderKind::Demo => {
            let out = demo_embeddings(&req, &model)?;
            log_usage(&end, openai::usage_from(&out));
            Ok(annotate(Json(out).into_response(), started.elapsed(), info))
        }
        ProviderKind::Anthropic => Err(GatewayError::UnsupportedForModel {
            message: format!("the model `{model}` does not support embeddings"),
            param: Some("model".into()),
        }),
    }
}

fn demo_embeddings(
    req: &serde_json::Map<String, Value>,
    model: &str,
) -> Result<Value, GatewayError> {
    let inputs: Vec<&str> = match &req["input"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| GatewayError::InvalidRequest {
                    message: "the demo embedder accepts strings only".into(),
                    param: Some("input".into()),
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(GatewayError::InvalidRequest {
                message: "'input' must be a string or an array of strings".into(),
                param: Some("input".into()),
            })
        }
    };
    let dims = match req.get("dimensions").and_then(Value::as_u64) {
        None => embed::DEMO_DIMS,
        Some(d) if (1..=3072).contains(&d) => d as usize,
        Some(_) => {
            return Err(GatewayError::InvalidRequest {
                message: "'dimensions' must be between 1 and 3072".into(),
                param: Some("dimensions".into()),
            })
        }
    };
    let base64 = req.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut total = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            total += tokens::count(text);
            let v = embed::embed(text, dims);
            let emb = if base64 {
                json!(base64::engine::general_purpose::STANDARD.encode(embed::le_bytes(&v)))
            } else {
                json!(v)
            };
            json!({"object":"embedding","index":i,"embedding":emb})
        })
        .collect();
    Ok(
        json!({"object":"list","data":data,"model":model,"usage":{"prompt_tokens":total,"total_tokens":total}}),
    )
}

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "tenantgate"})
}

pub(super) async fn list_models(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let run = async || -> Result<Response, GatewayError> {
        let ctx: TenantContext = app.tenant_context(&headers).await?;
        let data: Vec<Value> = app
            .visible_models(&ctx)
            .iter()
            .map(|m| model_object(m))
            .collect();
        Ok(annotate(
            Json(json!({"object":"list","data":data})).into_response(),
            Duration::ZERO,
            CallInfo {
                tenant: ctx.tenant.slug.clone(),
                model: "-".into(),
            },
        ))
    };
    run().await.unwrap_or_else(|e| e.render(Wire::OpenAi))
}

/// A model the tenant may not use answers 404, exactly like one that does not exist.
pub(super) async fn get_model(
    State(app): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Response {
    let run = async || -> Result<Response, GatewayError> {
        let ctx = app.tenant_context(&headers).await?;
        if app.visible_models(&ctx).contains(&model) {
            Ok(Json(model_object(&model)).into_response())
        } else {
            Err(GatewayError::ModelNotFound(crate::bounds::echo(&model)))
        }
    };
    run().await.unwrap_or_else(|e| e.render(Wire::OpenAi))
}
