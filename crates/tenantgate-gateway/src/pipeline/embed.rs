//! Embedding calls: `/v1/embeddings` and the knowledge bases' own (ingest and retrieval
//! queries) take the same stages: authorize, admit, route (provider caches scoped to the
//! tenant), settle and record. A knowledge-base embedding is a model call of the tenant like
//! any other: on its allow-list, within its limits and budgets, in its audit chain.

use crate::audit::{CallAudit, Released};
use crate::error::{GatewayError, Wire};
use crate::pipeline::translate::provider_wire;
use crate::pipeline::{admit, authorize, codec, Deps, Labels, Reply, TenantContext};
use crate::upstream::transport::{self, malformed, Answer};
use crate::upstream::{cache, Endpoint};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};
use tenantgate_providers::{openai, Usage};

/// Inputs per provider request: within every OpenAI-compatible server's limit.
const BATCH: usize = 256;

/// Why a knowledge base embeds: named in the record (`purpose`) and in its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The test embedding that learns a new knowledge base's dimensions.
    Probe,
    /// A document's chunks.
    Ingest,
    /// A `/tenant/v1/knowledge/search` query.
    Search,
    /// A chat's retrieval query, inside the chat call's own admission.
    RagQuery,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Probe => "kb_probe",
            Purpose::Ingest => "kb_ingest",
            Purpose::Search => "kb_search",
            Purpose::RagQuery => "rag_query",
        }
    }

    /// How it is admitted: a retrieval query is part of an admitted chat (no request or
    /// concurrency slot of its own); the others are the knowledge-base API's own model calls.
    fn part(self) -> admit::Part {
        match self {
            Purpose::RagQuery => admit::Part::Within,
            Purpose::Probe | Purpose::Ingest | Purpose::Search => admit::Part::Call(None),
        }
    }
}

/// An embeddings call from an authorized, admitted request to the provider's answer.
/// `purpose` names a knowledge-base call (its record says so; errors name its parameter).
async fn embeddings(
    deps: &Deps<'_>,
    audit: &mut CallAudit,
    ctx: TenantContext,
    counted: Option<crate::limits::Counted>,
    mut body: Map<String, Value>,
    purpose: Option<Purpose>,
) -> Result<(Bytes, Option<Usage>, Labels, Duration), GatewayError> {
    audit.note("endpoint", "embeddings");
    if let Some(p) = purpose {
        audit.note("purpose", p.as_str());
    }
    audit.set_prompt(&body);
    let model = openai::embeddings_model(&body).map_err(codec)?;
    audit.set_requested_model(&model);
    let call = authorize::model(deps.catalog, &deps.endpoints, ctx, &model).await?;
    audit.set_model(
        &model,
        &call.route.upstream_model,
        &call.route.provider.name,
    );
    call.note_endpoint(audit);
    let admitted = admit::reserve(
        deps.admission(),
        &call,
        &audit.request_id,
        admit::Bound {
            prompt: &body,
            later_prompt_tokens: 0,
            max_output: 0,
        },
        match purpose {
            Some(p) => p.part(),
            None => admit::Part::Call(counted),
        },
    )
    .await?;
    audit.admitted(admitted, call.route.pricing);
    let route = &call.route;
    let provider = &route.provider;
    let mut labels = Labels {
        tenant: call.ctx.tenant.slug.clone(),
        model: model.clone(),
        usage: None,
    };
    let unsupported = || GatewayError::UnsupportedForModel {
        message: format!("the model `{model}` does not support embeddings"),
        param: Some(purpose.map_or("model", |_| "embedding_model").into()),
    };
    // Embeddings are an OpenAI-format endpoint; the demo model answers it in process.
    match (provider_wire(provider.kind), provider.kind) {
        (Wire::OpenAi, _) | (_, crate::config::ProviderKind::Demo) => {}
        (Wire::Anthropic, _) => return Err(unsupported()),
    }
    // The demo model answers with the name it was called by; a provider gets its own.
    let sent_model = match provider.kind {
        crate::config::ProviderKind::Demo => &model,
        crate::config::ProviderKind::Openai
        | crate::config::ProviderKind::Azure
        | crate::config::ProviderKind::OpenaiCompatible
        | crate::config::ProviderKind::Anthropic => &route.upstream_model,
    };
    body.insert("model".into(), json!(sent_model));
    cache::scope_embedding_caches(
        &mut body,
        call.ctx.principal.scope.tenant_id(),
        provider,
        deps.secret,
    );
    // Embeddings never fail over: another target's vectors would not be comparable with the
    // ones already indexed. A drained provider or an open circuit is a 503 with a retry hint.
    let permit = super::route::admit_single(deps, &call.ctx, route, &model)?;
    let started = Instant::now();
    audit.sent();
    let answer = transport::call(provider, Endpoint::Embeddings, sent_model, &body, false).await;
    let answer = super::route::settle_single(permit, answer)?;
    let Answer::Json(bytes) = answer else {
        return Err(malformed(&provider.name));
    };
    let usage = openai::response_usage(&bytes).map_err(|_| malformed(&provider.name))?;
    labels.usage = usage;
    Ok((bytes, usage, labels, started.elapsed()))
}

/// `/v1/embeddings`: the provider's answer passed through.
pub(super) async fn http(
    deps: &Deps<'_>,
    audit: &mut CallAudit,
    ctx: TenantContext,
    counted: Option<crate::limits::Counted>,
    body: Map<String, Value>,
) -> Result<Released<Reply>, GatewayError> {
    let (bytes, _, labels, waited) = embeddings(deps, audit, ctx, counted, body, None).await?;
    Ok(Reply::json(bytes, None, labels, waited))
}

/// Embeds `texts` with `model` for a knowledge base, as model calls of the tenant: one call
/// (one record, named `{request_id}_{purpose}` and numbered after the first) per provider
/// request of at most [`BATCH`] inputs, settled at the tokens the provider reported.
pub async fn texts(
    deps: &Deps<'_>,
    ctx: &TenantContext,
    request_id: &str,
    purpose: Purpose,
    model: &str,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, GatewayError> {
    let mut out = Vec::with_capacity(texts.len());
    for (i, batch) in texts.chunks(BATCH).enumerate() {
        let id = match i {
            0 => format!("{request_id}_{}", purpose.as_str()),
            i => format!("{request_id}_{}_{i}", purpose.as_str()),
        };
        let mut audit = CallAudit::new(id, &axum::http::HeaderMap::new(), None);
        audit.set_surface(crate::telemetry::red::CallSurface::Knowledge);
        audit.bind(deps.recorder, ctx);
        let body = match json!({"model": model, "input": batch, "encoding_format": "float"}) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let r = embeddings(deps, &mut audit, ctx.clone(), None, body, Some(purpose))
            .await
            .and_then(|(bytes, usage, ..)| {
                let vectors = vectors(&bytes, batch.len())?;
                Ok(Released {
                    value: vectors,
                    // The vectors are not kept in the record; their count and usage are.
                    body: None,
                    tokens: Some(tenantgate_audit::Tokens {
                        input: usage.map_or(0, |u| u.input_tokens),
                        output: 0,
                    }),
                })
            });
        out.extend(audit.record(r).await?);
    }
    Ok(out)
}

/// The embeddings of an OpenAI-format answer, in input order; every input must have one.
fn vectors(bytes: &[u8], inputs: usize) -> Result<Vec<Vec<f32>>, GatewayError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| GatewayError::UpstreamFailed(e.to_string()))?;
    let data = v["data"]
        .as_array()
        .ok_or_else(|| GatewayError::UpstreamFailed("embeddings response without data".into()))?;
    let mut out = vec![Vec::new(); inputs];
    for d in data {
        let i = d["index"].as_u64().unwrap_or(u64::MAX) as usize;
        let e: Vec<f32> = d["embedding"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_f64().map(|x| x as f32))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(slot) = out.get_mut(i) {
            *slot = e;
        }
    }
    if out.iter().any(Vec::is_empty) {
        return Err(GatewayError::UpstreamFailed(
            "embeddings response is missing inputs".into(),
        ));
    }
    Ok(out)
}
