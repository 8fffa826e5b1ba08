//! Stage route: the tenant's response cache, then the call's targets in order (retries,
//! failover, circuit breakers: `crate::upstream::failover`), each through the translation
//! table to its provider, and guard-outbound on what comes back (per frame for streams,
//! `crate::stream`).

use crate::audit::{CallAudit, Released, StreamAudit};
use crate::config::RoutingConfig;
use crate::error::{GatewayError, Wire};
use crate::guard::Guard;
use crate::pipeline::request::ChatRequest;
use crate::pipeline::translate::{self, Pair};
use crate::pipeline::{AuthorizedCall, Deps, Labels, Payload, Reply};
use crate::stream::guard::StreamGuard;
use crate::stream::StreamEnd;
use crate::telemetry::red::AttemptOutcome;
use crate::upstream::breaker::{Admit, Breakers, Outcome};
use crate::upstream::failover::{self, Next};
use crate::upstream::transport::{self, Answer};
use crate::upstream::{cache, Route};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantgate_core::IsolationTier;
use tracing::Instrument;

/// What the route stage reads to spread a call over its targets.
pub struct Routing<'a> {
    pub config: &'a RoutingConfig,
    pub breakers: &'a Breakers,
}

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
    let tenant = call.ctx.principal.scope.tenant_id();
    // The request in the caller's wire, kept for the other targets' translations only when
    // there are others (one copy, never on a single-target model).
    let original = (call.targets.len() > 1).then(|| req.body.clone());
    let first = prepare(deps, call, &mut req, &call.route, bound)?;
    let mut labels = Labels {
        tenant: call.ctx.tenant.slug.clone(),
        model: req.model.clone(),
        usage: None,
    };
    let started = Instant::now();
    // The tenant's exact-match response cache: complete answers only, never for a tenant on
    // dedicated infrastructure; keyed by tenant, provider, model, wire pair and request (as
    // prepared for the first target: whichever target answers, the answer is the model's).
    let cached = deps
        .cache
        .filter(|_| !req.stream && call.ctx.tenant.isolation != IsolationTier::Dedicated)
        .map(|c| {
            let key = cache::key(
                tenant,
                &call.route.provider.cache_label(),
                &call.route.upstream_model,
                // The model as the caller named it: a translated answer carries that name.
                &format!("{}/{}", first.0.cache_label(), req.model),
                &first.1,
            );
            (c, key)
        });
    if let Some((c, key)) = &cached {
        if let Some(hit) = c.get(key).await {
            // Re-checked: the tenant's guard policy may have changed since it was stored.
            let hit = translate::cached(first.0, hit, guard)?;
            audit.cache_hit();
            return Ok(Reply::json(hit, Some("hit"), labels, started.elapsed()));
        }
    }
    audit.sent();
    let sent = attempts(deps, call, &mut req, original, first, bound, audit).await?;
    let Sent {
        route,
        pair,
        answer,
        sent_at,
    } = sent;
    if !Arc::ptr_eq(&route, &call.route) {
        deps.recorder.red.failover();
        // Recorded and settled as what was actually called.
        audit.set_model(&req.model, &route.upstream_model, &route.provider.name);
        audit.set_pricing(route.pricing);
        super::authorize::note_endpoint(&route, audit);
    }
    match answer {
        Answer::Stream(frames) => {
            let transform = translate::stream(pair, &req, prompt_estimate);
            let guard = StreamGuard::new(deps.incidents, &call.ctx);
            let live = deps.recorder.red.stream(audit.started());
            let record = StreamAudit::new(audit.take_for_stream());
            let end = StreamEnd {
                request_id: audit.request_id.clone(),
                tenant: labels.tenant.clone(),
                model: labels.model.clone(),
                started: sent_at,
            };
            let s = crate::stream::transform_stream(
                frames,
                transform,
                end,
                Some(guard),
                Some(record),
                Some(live),
            );
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
            let (out, usage) =
                translate::response(pair, &route.provider.name, bytes, &req.model, guard)?;
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

/// The request as `route`'s provider takes it, and the (caller, provider) wire pair.
fn prepare(
    deps: &Deps<'_>,
    call: &AuthorizedCall,
    req: &mut ChatRequest,
    route: &Route,
    bound: Option<u64>,
) -> Result<(Pair, Map<String, Value>), GatewayError> {
    let pair = Pair::of(req, route);
    let mut upstream = translate::request(pair, req, route, bound)?;
    match pair.provider {
        // Provider prompt caches (and self-hosted prefix caches) are scoped to the tenant.
        Wire::OpenAi => cache::scope_provider_caches(
            &mut upstream,
            call.ctx.principal.scope.tenant_id(),
            &route.provider,
            deps.secret,
        ),
        Wire::Anthropic => {}
    }
    Ok((pair, upstream))
}

/// The answer of the target that served the call.
struct Sent {
    route: Arc<Route>,
    pair: Pair,
    answer: Answer,
    sent_at: Instant,
}

/// The call's attempts: each target in order (a drained provider's and an open circuit's
/// skipped), each retried `routing.retries` times after a jittered backoff on a provider
/// failure, until one answers. An answer ends the attempts, streamed or not: nothing is
/// retried after the provider's response headers (the first streamed byte). When no target
/// served the call: a single target's own error, or the 503 `upstream_unavailable` with when
/// to retry. More than one attempt, or a skip, is in the call's record (`attempts`).
async fn attempts(
    deps: &Deps<'_>,
    call: &AuthorizedCall,
    req: &mut ChatRequest,
    mut original: Option<Map<String, Value>>,
    first: (Pair, Map<String, Value>),
    bound: Option<u64>,
    audit: &mut CallAudit,
) -> Result<Sent, GatewayError> {
    let cfg = deps.routing.config;
    let view = &call.ctx.view;
    let mut log: Vec<Value> = Vec::new();
    let mut last: Option<GatewayError> = None;
    // The soonest a skipped or failed target may be tried again.
    let mut retry_in: Option<Duration> = None;
    let mut first = Some(first);
    let n = call.targets.len();
    for (i, route) in call.targets.iter().enumerate() {
        let provider = &route.provider;
        if view.is_drained(&provider.name) {
            deps.recorder
                .red
                .attempt(&provider.name, AttemptOutcome::Drained);
            log.push(json!({"provider": provider.name, "model": route.upstream_model, "outcome": "drained"}));
            continue;
        }
        let endpoint = provider.cache_label();
        // The request prepared before the cache lookup is the first target's only: a
        // skipped first target leaves it unused, never sent to another target.
        let prepared = if i == 0 { first.take() } else { None };
        let (pair, upstream) = match prepared {
            Some(p) => p,
            None => {
                // The last target takes the original; the others a copy of it.
                req.body = if i + 1 == n {
                    original.take().unwrap_or_default()
                } else {
                    original.clone().unwrap_or_default()
                };
                match prepare(deps, call, req, route, bound) {
                    Ok(p) => p,
                    // This target cannot take the request (a translation it does not
                    // support): the next one may.
                    Err(e) => {
                        log.push(json!({"provider": provider.name, "model": route.upstream_model, "outcome": e.code()}));
                        last = Some(e);
                        continue;
                    }
                }
            }
        };
        let mut k = 0u32;
        loop {
            let permit = match deps.routing.breakers.admit(&endpoint) {
                Admit::Go(p) => p,
                Admit::Skip { retry_in: r } => {
                    deps.recorder
                        .red
                        .attempt(&provider.name, AttemptOutcome::CircuitOpen);
                    retry_in = Some(retry_in.map_or(r, |x| x.min(r)));
                    log.push(json!({"provider": provider.name, "model": route.upstream_model, "outcome": "circuit_open"}));
                    break;
                }
            };
            let sent_at = Instant::now();
            let result = transport::call(
                provider,
                pair.endpoint(),
                &route.upstream_model,
                &upstream,
                req.stream,
            )
            .instrument(crate::telemetry::stage("upstream"))
            .await;
            let ms = sent_at.elapsed().as_millis() as u64;
            match result {
                Ok(answer) => {
                    deps.recorder
                        .red
                        .attempt(&provider.name, AttemptOutcome::Ok);
                    permit.settle(Outcome::Healthy);
                    if !log.is_empty() {
                        log.push(json!({"provider": provider.name, "model": route.upstream_model, "outcome": "ok", "ms": ms}));
                        audit.note("attempts", Value::Array(log));
                    }
                    return Ok(Sent {
                        route: route.clone(),
                        pair,
                        answer,
                        sent_at,
                    });
                }
                Err(e) => {
                    log.push(json!({"provider": provider.name, "model": route.upstream_model, "outcome": e.code(), "ms": ms}));
                    match failover::classify(&e) {
                        Next::Final => {
                            deps.recorder
                                .red
                                .attempt(&provider.name, AttemptOutcome::Final);
                            permit.settle(Outcome::Healthy);
                            audit.note("attempts", Value::Array(log));
                            return Err(e);
                        }
                        Next::Retry { outcome, wait } => {
                            deps.recorder
                                .red
                                .attempt(&provider.name, AttemptOutcome::Retryable);
                            permit.settle(outcome);
                            last = Some(e);
                            k += 1;
                            let pause = (k <= cfg.retries)
                                .then(|| failover::backoff(cfg, k, wait))
                                .flatten();
                            match pause {
                                Some(d) => tokio::time::sleep(d).await,
                                None => {
                                    if let Some(w) = wait {
                                        retry_in = Some(retry_in.map_or(w, |x| x.min(w)));
                                    }
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    audit.note("attempts", Value::Array(log.clone()));
    let tried = log.iter().filter(|a| a["ms"].is_u64()).count();
    match last {
        // One target, tried and failed: its own error (502, 504, 429), as without routing.
        Some(e) if n == 1 && tried > 0 => Err(e),
        _ => {
            let skipped = log.len() - tried;
            let why = match (tried, skipped) {
                (0, _) => format!("{skipped} target(s) unavailable: circuit open or drained"),
                (_, 0) => format!("{tried} attempt(s) failed"),
                _ => format!("{tried} attempt(s) failed, {skipped} target(s) unavailable"),
            };
            let secs = retry_in.map_or(cfg.breaker_open_ms.div_ceil(1000).clamp(1, 60), |d| {
                (d.as_millis() as u64).div_ceil(1000).max(1)
            });
            Err(GatewayError::NoUpstream {
                model: req.model.clone(),
                why,
                retry_after_s: secs,
            })
        }
    }
}

/// A call that has one target only (embeddings): refused with the 503 `upstream_unavailable`
/// if its provider is drained or its circuit open, else admitted through the circuit.
pub(crate) fn admit_single<'b>(
    deps: &Deps<'b>,
    ctx: &crate::identity::TenantContext,
    route: &Route,
    model: &str,
) -> Result<crate::upstream::breaker::Permit<'b>, GatewayError> {
    let unavailable = |why: &str, retry: Duration| GatewayError::NoUpstream {
        model: model.to_owned(),
        why: why.to_owned(),
        retry_after_s: (retry.as_millis() as u64).div_ceil(1000).max(1),
    };
    if ctx.view.is_drained(&route.provider.name) {
        return Err(unavailable(
            "its provider is drained",
            deps.routing.config.breaker_open(),
        ));
    }
    match deps.routing.breakers.admit(&route.provider.cache_label()) {
        Admit::Go(p) => Ok(p),
        Admit::Skip { retry_in } => Err(unavailable("its provider's circuit is open", retry_in)),
    }
}

/// Settles a single-target attempt's circuit with its result, which it returns.
pub(crate) fn settle_single(
    permit: crate::upstream::breaker::Permit<'_>,
    result: Result<Answer, GatewayError>,
) -> Result<Answer, GatewayError> {
    let outcome = match &result {
        Ok(_) => Outcome::Healthy,
        Err(e) => match failover::classify(e) {
            Next::Retry { outcome, .. } => outcome,
            Next::Final => Outcome::Healthy,
        },
    };
    permit.settle(outcome);
    result
}
