//! Stage route: the tenant's response cache, the translation table, the provider, and
//! guard-outbound on what comes back (per frame for streams, `crate::stream`).

use crate::audit::{CallAudit, Released, StreamAudit};
use crate::error::{GatewayError, Wire};
use crate::guard::Guard;
use crate::pipeline::request::ChatRequest;
use crate::pipeline::translate::{self, Pair};
use crate::pipeline::{AuthorizedCall, Deps, Labels, Payload, Reply};
use crate::stream::guard::StreamGuard;
use crate::stream::StreamEnd;
use crate::upstream::cache;
use crate::upstream::transport::{self, Answer};
use futures_util::StreamExt;
use std::time::Instant;
use tenantgate_core::IsolationTier;

/// Sends a chat call to its provider (or answers it from the tenant's cache) and returns the
/// answer in the caller's wire, through guard-outbound.
pub(crate) async fn chat(
    deps: &Deps<'_>,
    call: &AuthorizedCall,
    mut req: ChatRequest,
    bound: Option<u64>,
    prompt_estimate: u64,
    guard: &Guard<'_>,
    audit: &mut CallAudit,
) -> Result<Released<Reply>, GatewayError> {
    let route = &call.route;
    let provider = &route.provider;
    let tenant = call.ctx.principal.scope.tenant_id();
    let pair = Pair::of(&req, route);
    let mut upstream = translate::request(pair, &mut req, route, bound)?;
    match pair.provider {
        // Provider prompt caches (and self-hosted prefix caches) are scoped to the tenant.
        Wire::OpenAi => cache::scope_provider_caches(&mut upstream, tenant, provider, deps.secret),
        Wire::Anthropic => {}
    }
    let mut labels = Labels {
        tenant: call.ctx.tenant.slug.clone(),
        model: req.model.clone(),
        usage: None,
    };
    let started = Instant::now();
    // The tenant's exact-match response cache: complete answers only, never for a tenant on
    // dedicated infrastructure; keyed by tenant, provider, model, wire pair and request.
    let cached = deps
        .cache
        .filter(|_| !req.stream && call.ctx.tenant.isolation != IsolationTier::Dedicated)
        .map(|c| {
            let key = cache::key(
                tenant,
                &provider.cache_label(),
                &route.upstream_model,
                // The model as the caller named it: a translated answer carries that name.
                &format!("{}/{}", pair.cache_label(), req.model),
                &upstream,
            );
            (c, key)
        });
    if let Some((c, key)) = &cached {
        if let Some(hit) = c.get(key).await {
            // Re-checked: the tenant's guard policy may have changed since it was stored.
            let hit = translate::cached(pair, hit, guard)?;
            audit.cache_hit();
            return Ok(Reply::json(hit, Some("hit"), labels, started.elapsed()));
        }
    }
    let sent_at = Instant::now();
    audit.sent();
    let answer = transport::call(
        provider,
        pair.endpoint(),
        &route.upstream_model,
        &upstream,
        req.stream,
    )
    .await?;
    match answer {
        Answer::Stream(frames) => {
            let transform = translate::stream(pair, &req, prompt_estimate);
            let guard = StreamGuard::new(deps.incidents, &call.ctx);
            let record = StreamAudit::new(audit.take_for_stream());
            let end = StreamEnd {
                request_id: audit.request_id.clone(),
                tenant: labels.tenant.clone(),
                model: labels.model.clone(),
                started: sent_at,
            };
            let s =
                crate::stream::transform_stream(frames, transform, end, Some(guard), Some(record));
            Ok(Released {
                value: Reply {
                    payload: Payload::Stream(s.boxed()),
                    cache: None,
                    labels,
                    waited: started.elapsed(),
                },
                body: None,
                tokens: None,
            })
        }
        Answer::Json(bytes) => {
            let (out, usage) = translate::response(pair, &provider.name, bytes, &req.model, guard)?;
            labels.usage = usage;
            let status = match cached {
                Some((c, key)) => {
                    c.put(key, out.clone()).await;
                    Some("miss")
                }
                None => None,
            };
            Ok(Reply::json(out, status, labels, started.elapsed()))
        }
    }
}
