//! The `x-ratelimit-*` headers: an admitted call's rate state, and what a 429 says.

use crate::limits::{Check, Counter, LimitSet};

/// The tenant's rate-limit state after admission, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateState {
    pub limit_requests: Option<u64>,
    pub remaining_requests: u64,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: u64,
    /// Seconds until the minute windows reset.
    pub reset_secs: u64,
}

/// The rate-limit headers of a 429: the families an admitted call of this tenant carries (plus
/// the refused key or user minute limit if the tenant has none), nothing remaining until the
/// refusal's reset. A concurrency refusal adds no family of its own (it is not a per-minute
/// limit); its `Retry-After` says when to try again.
pub(crate) fn refused_rate(limits: &LimitSet, refused: &Check, retry_after_s: u64) -> RateState {
    let refused_limit = refused.limit.map(|l| l.max(0) as u64);
    let (mut requests, mut tokens) = (limits.requests_per_minute, limits.tokens_per_minute);
    match refused.counter {
        Counter::Requests { .. } => requests = requests.or(refused_limit),
        Counter::Tokens { .. } => tokens = tokens.or(refused_limit),
        // Not a per-minute request or token limit: no header family of its own. (Budgets
        // are refused with `insufficient_quota`, never with rate headers.)
        Counter::Concurrent { .. }
        | Counter::MinuteSpend { .. }
        | Counter::DailyTokens { .. }
        | Counter::MonthlyTokens { .. }
        | Counter::MonthlySpend { .. } => {}
    }
    RateState {
        limit_requests: requests,
        remaining_requests: 0,
        limit_tokens: tokens,
        remaining_tokens: 0,
        reset_secs: retry_after_s,
    }
}

/// The `x-ratelimit-*` headers OpenAI's SDKs read.
pub fn rate_headers(h: &mut axum::http::HeaderMap, r: &RateState) {
    use axum::http::HeaderValue;
    let mut put = |name: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(name, v);
        }
    };
    if let Some(l) = r.limit_requests {
        put("x-ratelimit-limit-requests", l.to_string());
        put(
            "x-ratelimit-remaining-requests",
            r.remaining_requests.to_string(),
        );
        put("x-ratelimit-reset-requests", format!("{}s", r.reset_secs));
    }
    if let Some(l) = r.limit_tokens {
        put("x-ratelimit-limit-tokens", l.to_string());
        put(
            "x-ratelimit-remaining-tokens",
            r.remaining_tokens.to_string(),
        );
        put("x-ratelimit-reset-tokens", format!("{}s", r.reset_secs));
    }
}
