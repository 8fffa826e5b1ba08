//! `[routing]`: how a model call is retried and failed over across its targets, and when an
//! endpoint's circuit breaker opens (`crate::upstream::failover`, `crate::upstream::breaker`).
//! The targets themselves are each model's (`[[models]]` `targets`, `strategy`, `fallback`).

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Extra attempts on the same target after a retryable failure (429, 5xx, timeout,
    /// connection), with jittered exponential backoff. Moving on to the next target is not a
    /// retry and waits for nothing. 0 keeps one attempt per target.
    pub retries: u32,
    /// Backoff before retry k (1-based): a uniformly random wait in
    /// `[0, min(backoff_max_ms, backoff_base_ms * 2^(k-1))]` (full jitter).
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Consecutive failures of one endpoint that open its circuit (0: no breaker).
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before one probe call is let through
    /// (half-open); the probe's outcome closes or reopens it.
    pub breaker_open_ms: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            retries: 0,
            backoff_base_ms: 100,
            backoff_max_ms: 2_000,
            breaker_failures: 5,
            breaker_open_ms: 30_000,
        }
    }
}

impl RoutingConfig {
    pub fn backoff_max(&self) -> Duration {
        Duration::from_millis(self.backoff_max_ms)
    }

    pub fn breaker_open(&self) -> Duration {
        Duration::from_millis(self.breaker_open_ms)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.retries > 10 {
            return Err(invalid("routing.retries", "at most 10"));
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            return Err(invalid(
                "routing.backoff_base_ms",
                "must not exceed routing.backoff_max_ms",
            ));
        }
        if self.backoff_max_ms > 60_000 {
            return Err(invalid("routing.backoff_max_ms", "at most 60000"));
        }
        if self.breaker_failures > 0 && self.breaker_open_ms == 0 {
            return Err(invalid("routing.breaker_open_ms", "must be at least 1 ms"));
        }
        Ok(())
    }
}

/// How a model's targets are ordered for a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The first target first, then the next on failure (primary and secondaries).
    #[default]
    Ordered,
    /// A target drawn by weight first (traffic spread across regions), then the others by
    /// weight on failure.
    Weighted,
}

/// One more place a model can be served from, after the model's own `provider`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub provider: String,
    /// The provider's model (Azure: deployment) name there; defaults to the model's.
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// Share of traffic under `strategy = "weighted"`.
    #[serde(default = "one")]
    pub weight: u32,
    /// Its prices, if they differ from the model's: a call is charged what the target that
    /// answered costs.
    #[serde(default)]
    pub pricing: Option<super::Pricing>,
}

pub(super) fn one() -> u32 {
    1
}
