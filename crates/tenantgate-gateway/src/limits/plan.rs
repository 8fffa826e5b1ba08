//! Limit sets: what a plan allows, a tenant's overrides overlaid on it, and the limits
//! configuration (backend, Redis, reservation TTL, anomaly breaker, one set per plan).

use serde::{Deserialize, Serialize};
use tenantgate_core::PlanTier;

/// Which backend holds the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitsBackend {
    #[default]
    Local,
    Redis,
}

/// Limits; `None` is unlimited. A tenant's effective set is its plan's, overlaid field by
/// field with its own overrides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSet {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub concurrent_requests: Option<u64>,
    pub daily_tokens: Option<u64>,
    pub monthly_tokens: Option<u64>,
    /// Integer micro-dollars (1 USD = 1,000,000).
    pub monthly_spend_micros: Option<u64>,
    pub key_requests_per_minute: Option<u64>,
    pub key_tokens_per_minute: Option<u64>,
    pub key_concurrent_requests: Option<u64>,
    pub user_requests_per_minute: Option<u64>,
    pub user_tokens_per_minute: Option<u64>,
    pub user_concurrent_requests: Option<u64>,
    /// Fine-tuning (`/v1/files`, `/v1/fine_tuning/jobs`) is allowed: the enterprise plan's
    /// default; a platform admin turns it on for another tenant with a limits override.
    pub fine_tuning: Option<bool>,
}

impl LimitSet {
    /// `self` with every field `over` sets replaced.
    pub fn overlay(self, over: &LimitSet) -> LimitSet {
        let o = |a: Option<u64>, b: Option<u64>| b.or(a);
        LimitSet {
            requests_per_minute: o(self.requests_per_minute, over.requests_per_minute),
            tokens_per_minute: o(self.tokens_per_minute, over.tokens_per_minute),
            concurrent_requests: o(self.concurrent_requests, over.concurrent_requests),
            daily_tokens: o(self.daily_tokens, over.daily_tokens),
            monthly_tokens: o(self.monthly_tokens, over.monthly_tokens),
            monthly_spend_micros: o(self.monthly_spend_micros, over.monthly_spend_micros),
            key_requests_per_minute: o(self.key_requests_per_minute, over.key_requests_per_minute),
            key_tokens_per_minute: o(self.key_tokens_per_minute, over.key_tokens_per_minute),
            key_concurrent_requests: o(self.key_concurrent_requests, over.key_concurrent_requests),
            user_requests_per_minute: o(
                self.user_requests_per_minute,
                over.user_requests_per_minute,
            ),
            user_tokens_per_minute: o(self.user_tokens_per_minute, over.user_tokens_per_minute),
            user_concurrent_requests: o(
                self.user_concurrent_requests,
                over.user_concurrent_requests,
            ),
            fine_tuning: over.fine_tuning.or(self.fine_tuning),
        }
    }

    /// Whether any token or spend budget applies (these fail closed).
    pub fn has_budget(&self) -> bool {
        self.daily_tokens.is_some()
            || self.monthly_tokens.is_some()
            || self.monthly_spend_micros.is_some()
    }

    /// Whether the call needs a token estimate at all.
    pub fn counts_tokens(&self) -> bool {
        self.has_budget()
            || self.tokens_per_minute.is_some()
            || self.key_tokens_per_minute.is_some()
            || self.user_tokens_per_minute.is_some()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub backend: LimitsBackend,
    /// Redis backend: `redis://host:6379`.
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    /// When Redis is unreachable, admit calls of tenants without budgets (rate limits are then
    /// not enforced). Budgets always fail closed.
    pub rate_limits_fail_open: bool,
    /// A reservation not settled within this time is released.
    pub reservation_ttl_secs: u64,
    /// Spend anomaly breaker: a tenant whose spend in the current minute would exceed this
    /// multiple of its average over the previous `anomaly_window_minutes` (or of
    /// `anomaly_floor_micros_per_minute`, whichever is larger) is throttled for the rest of the
    /// minute, and the event logged and recorded. 0 turns it off.
    pub anomaly_multiple: u64,
    pub anomaly_window_minutes: u32,
    pub anomaly_floor_micros_per_minute: u64,
    pub free: LimitSet,
    pub pro: LimitSet,
    pub enterprise: LimitSet,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let usd = 1_000_000;
        LimitsConfig {
            backend: LimitsBackend::Local,
            redis_url: None,
            redis_prefix: "tenantgate:limits:".into(),
            rate_limits_fail_open: false,
            reservation_ttl_secs: 300,
            anomaly_multiple: 10,
            anomaly_window_minutes: 15,
            anomaly_floor_micros_per_minute: 1_000_000,
            free: LimitSet {
                requests_per_minute: Some(60),
                tokens_per_minute: Some(100_000),
                concurrent_requests: Some(4),
                daily_tokens: Some(1_000_000),
                monthly_tokens: Some(10_000_000),
                monthly_spend_micros: Some(10 * usd),
                ..Default::default()
            },
            pro: LimitSet {
                requests_per_minute: Some(10_000),
                tokens_per_minute: Some(10_000_000),
                concurrent_requests: Some(256),
                monthly_spend_micros: Some(10_000 * usd),
                ..Default::default()
            },
            enterprise: LimitSet {
                fine_tuning: Some(true),
                ..Default::default()
            },
        }
    }
}

impl LimitsConfig {
    pub fn plan(&self, plan: PlanTier) -> &LimitSet {
        match plan {
            PlanTier::Free => &self.free,
            PlanTier::Pro => &self.pro,
            PlanTier::Enterprise => &self.enterprise,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_replaces_only_what_is_set() {
        let base = LimitsConfig::default().pro;
        let o = LimitSet {
            monthly_spend_micros: Some(5),
            ..Default::default()
        };
        let e = base.overlay(&o);
        assert_eq!(e.monthly_spend_micros, Some(5));
        assert_eq!(e.requests_per_minute, base.requests_per_minute);
    }
}
