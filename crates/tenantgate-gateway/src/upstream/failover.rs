//! The policy of a model call's attempts across its targets (`pipeline::route` runs them):
//! which targets in which order, which failures are worth another attempt, how long to wait
//! before retrying the same target, and the one answer when none served the call.
//!
//! Never after the first streamed byte: an attempt ends when the provider's response headers
//! arrive; a 2xx is the answer, streamed or not, and whatever happens to its body afterwards
//! is the call's, not the next target's (a stream cannot be replayed to a client that has
//! already seen part of it).

use super::breaker::Outcome;
use super::Route;
use crate::config::{RoutingConfig, Strategy};
use crate::error::GatewayError;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again (this target after a backoff, or the next target): the provider failed or is
    /// busy. `wait` is the provider's own `retry-after`, when it gave one.
    Retry {
        outcome: Outcome,
        wait: Option<Duration>,
    },
    /// The answer stands: the request itself was refused, or the failure is the gateway's.
    Final,
}

/// Whether a failed attempt is worth another one, and what it says about the endpoint.
pub fn classify(e: &GatewayError) -> Next {
    use GatewayError as E;
    match e {
        E::UpstreamFailed(_) | E::UpstreamTimeout => Next::Retry {
            outcome: Outcome::Failed,
            wait: None,
        },
        E::UpstreamRateLimited { retry_after, .. } => Next::Retry {
            outcome: Outcome::Busy,
            wait: retry_after
                .as_deref()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        },
        // A 4xx about the request: another target would refuse it too, and the endpoint is up.
        E::UpstreamRejected { .. } => Next::Final,
        // Everything else is decided before the provider is reached (or is the gateway's own
        // fault, e.g. a tenant endpoint that cannot be opened): not the provider's.
        _ => Next::Final,
    }
}

/// The wait before retry `k` (1-based) of the same target: full jitter over an exponential
/// bound, so replicas retrying together do not hit a recovering provider in step. A
/// provider's `retry-after` is honoured when it is within the bound; a longer one means this
/// target is not retried now.
pub fn backoff(cfg: &RoutingConfig, k: u32, provider_wait: Option<Duration>) -> Option<Duration> {
    if let Some(w) = provider_wait {
        return (w <= cfg.backoff_max()).then_some(w);
    }
    let cap = cfg
        .backoff_base_ms
        .saturating_mul(1u64 << k.saturating_sub(1).min(20))
        .min(cfg.backoff_max_ms);
    Some(Duration::from_millis(rand::thread_rng().gen_range(0..=cap)))
}

/// The targets in the order this call tries them: configuration order (`ordered`), or drawn
/// by weight without replacement (`weighted`: the first is the one that takes the call when
/// all are up; a weight of 0 is a standby, tried last).
pub fn order(strategy: Strategy, targets: Vec<(Arc<Route>, u32)>) -> Vec<Arc<Route>> {
    match strategy {
        Strategy::Ordered => targets.into_iter().map(|(r, _)| r).collect(),
        Strategy::Weighted => {
            let mut rng = rand::thread_rng();
            let mut left = targets;
            let mut out = Vec::with_capacity(left.len());
            while !left.is_empty() {
                let total: u64 = left.iter().map(|(_, w)| u64::from(*w)).sum();
                let pick = if total == 0 {
                    0
                } else {
                    let mut x = rng.gen_range(0..total);
                    left.iter()
                        .position(|(_, w)| {
                            let w = u64::from(*w);
                            if x < w {
                                true
                            } else {
                                x -= w;
                                false
                            }
                        })
                        .unwrap_or(0)
                };
                out.push(left.remove(pick).0);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;

    #[test]
    fn backoff_is_jittered_within_an_exponential_bound_and_honours_short_retry_after() {
        let cfg = RoutingConfig {
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            ..RoutingConfig::default()
        };
        for k in 1..8 {
            let cap = (100u64 << (k - 1)).min(1_000);
            for _ in 0..50 {
                let d = backoff(&cfg, k, None).unwrap();
                assert!(d <= Duration::from_millis(cap), "retry {k}: {d:?}");
            }
        }
        assert_eq!(
            backoff(&cfg, 1, Some(Duration::from_millis(500))),
            Some(Duration::from_millis(500))
        );
        assert_eq!(backoff(&cfg, 1, Some(Duration::from_secs(30))), None);
    }

    #[test]
    fn only_provider_failures_are_retried_and_only_outages_count_against_the_circuit() {
        assert!(matches!(
            classify(&GatewayError::UpstreamTimeout),
            Next::Retry {
                outcome: Outcome::Failed,
                ..
            }
        ));
        assert_eq!(
            classify(&GatewayError::UpstreamRateLimited {
                message: String::new(),
                retry_after: Some("2".into())
            }),
            Next::Retry {
                outcome: Outcome::Busy,
                wait: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(
            classify(&GatewayError::UpstreamRejected {
                status: 400,
                message: String::new()
            }),
            Next::Final
        );
        assert_eq!(classify(&GatewayError::Internal), Next::Final);
    }

    #[test]
    fn weighted_order_follows_the_weights_and_keeps_every_target() {
        let cfg = crate::config::Config {
            providers: ["a", "b"]
                .iter()
                .map(|n| crate::config::ProviderConfig {
                    name: (*n).into(),
                    kind: ProviderKind::OpenaiCompatible,
                    base_url: Some("http://127.0.0.1:9/v1".into()),
                    api_key_env: None,
                    api_key_file: None,
                    api_version: None,
                    connect_timeout_ms: 1,
                    request_timeout_ms: 1,
                    read_timeout_ms: 1,
                    pool_max_idle_per_host: 1,
                    cache_salt: None,
                })
                .collect(),
            models: vec![crate::config::ModelConfig {
                name: "m".into(),
                provider: "a".into(),
                weight: 3,
                strategy: Strategy::Weighted,
                targets: vec![crate::config::TargetConfig {
                    provider: "b".into(),
                    upstream_model: None,
                    weight: 1,
                    pricing: None,
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let catalog = super::super::Catalog::build(&cfg).unwrap();
        let plan = catalog.plan("m").unwrap();
        let mut first_a = 0;
        for _ in 0..4000 {
            let o = order(plan.strategy, plan.targets.clone());
            assert_eq!(o.len(), 2);
            if o[0].provider.name == "a" {
                first_a += 1;
            }
        }
        // 3:1 -> about 3000 of 4000; far outside chance either side.
        assert!((2700..3300).contains(&first_a), "{first_a}");
    }
}
