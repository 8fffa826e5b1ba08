//! What a 429 says about the caller's rate windows (the headers themselves: `crate::rate`).

use crate::limits::{Check, Counter, LimitSet};
pub use crate::rate::{rate_headers, RateState};

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
