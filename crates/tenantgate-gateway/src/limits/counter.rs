//! A counter's identity: what it counts, whose it is and over which window, as a type.
//!
//! Every decision about a counter (how it settles, whether it is a budget, what a refusal
//! says, which `x-ratelimit-*` family it feeds) matches on [`Counter`]; its storage key is
//! rendered in one place, [`Counter::key`], for both backends. The variants are the only
//! combinations that exist: a spend budget is the tenant's, never a key's or a user's.

use tenantgate_core::TenantId;

/// Whose per-minute or concurrency counter it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The tenant as a whole.
    Tenant,
    /// One of the tenant's API keys (its key id).
    Key(String),
    /// One end user of the tenant (the id the caller names).
    User(String),
}

/// One counter of a tenant. Windows are numbered from the Unix epoch, UTC: `minute` and `day`
/// as [`crate::limits::minute`] and [`crate::limits::day`], `month` as months since 1970-01.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Requests in one minute.
    Requests { scope: Scope, minute: i64 },
    /// Tokens (prompt and output) in one minute.
    Tokens { scope: Scope, minute: i64 },
    /// Calls in flight: no window, a slot is given back when the call settles.
    Concurrent { scope: Scope },
    /// The tenant's token budget of one day.
    DailyTokens { day: i64 },
    /// The tenant's token budget of one month.
    MonthlyTokens { month: i64 },
    /// The tenant's spend budget of one month, in micro-dollars.
    MonthlySpend { month: i64 },
    /// The tenant's spend in one minute, read by the spend anomaly breaker.
    MinuteSpend { minute: i64 },
}

/// How a counter's reserved amount is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Request counts stay counted.
    Keep,
    /// Reserved tokens become the actual tokens.
    Tokens,
    /// Reserved cost becomes the actual cost.
    Cost,
    /// A concurrency slot is given back.
    Slot,
}

impl Counter {
    /// The key both backends store this counter under (Redis adds its prefix). The tenant id
    /// is the Redis hash tag, so all of a tenant's counters live in one cluster slot. The text
    /// form is the one Redis deployments already hold; do not change it.
    pub fn key(&self, tenant: &TenantId) -> String {
        let t = tenant.as_str();
        match self {
            Counter::Requests { scope, minute } => format!("{{{t}}}:rq:{}:{minute}", scope.key()),
            Counter::Tokens { scope, minute } => format!("{{{t}}}:tk:{}:{minute}", scope.key()),
            Counter::Concurrent { scope } => format!("{{{t}}}:cc:{}", scope.key()),
            Counter::DailyTokens { day } => format!("{{{t}}}:dt:{day}"),
            Counter::MonthlyTokens { month } => format!("{{{t}}}:mt:{month}"),
            Counter::MonthlySpend { month } => format!("{{{t}}}:ms:{month}"),
            Counter::MinuteSpend { minute } => format!("{{{t}}}:sm:{minute}"),
        }
    }

    /// How the amount a reservation added to this counter is settled.
    pub fn settle(&self) -> Settle {
        match self {
            Counter::Requests { .. } => Settle::Keep,
            Counter::Tokens { .. }
            | Counter::DailyTokens { .. }
            | Counter::MonthlyTokens { .. } => Settle::Tokens,
            Counter::MonthlySpend { .. } | Counter::MinuteSpend { .. } => Settle::Cost,
            Counter::Concurrent { .. } => Settle::Slot,
        }
    }

    /// The limit's name in a refusal's message.
    pub fn what(&self) -> &'static str {
        match self {
            Counter::Requests { .. } => "requests per minute",
            Counter::Tokens { .. } => "tokens per minute",
            Counter::Concurrent { .. } => "concurrent requests",
            Counter::DailyTokens { .. } => "daily token budget",
            Counter::MonthlyTokens { .. } => "monthly token budget",
            Counter::MonthlySpend { .. } => "monthly spend budget",
            Counter::MinuteSpend { .. } => "per-minute spend (spend anomaly breaker)",
        }
    }
}

impl Scope {
    fn key(&self) -> String {
        match self {
            Scope::Tenant => "t".to_owned(),
            Scope::Key(k) => format!("k:{k}"),
            Scope::User(u) => format!("u:{u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    /// The rendered keys are what Redis already holds: a change here orphans live counters.
    #[test]
    fn keys_keep_their_stored_form() {
        let t = TenantId::parse("t1").unwrap();
        let cases = [
            (
                Counter::Requests {
                    scope: Scope::Tenant,
                    minute: 7,
                },
                "{t1}:rq:t:7",
            ),
            (
                Counter::Tokens {
                    scope: Scope::Key("key_1".into()),
                    minute: 7,
                },
                "{t1}:tk:k:key_1:7",
            ),
            (
                Counter::Concurrent {
                    scope: Scope::User("u:x".into()),
                },
                "{t1}:cc:u:u:x",
            ),
            (Counter::DailyTokens { day: 3 }, "{t1}:dt:3"),
            (Counter::MonthlyTokens { month: 4 }, "{t1}:mt:4"),
            (Counter::MonthlySpend { month: 4 }, "{t1}:ms:4"),
            (Counter::MinuteSpend { minute: 9 }, "{t1}:sm:9"),
        ];
        for (c, key) in cases {
            assert_eq!(c.key(&t), key, "{c:?}");
        }
    }
}
