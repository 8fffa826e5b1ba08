//! Which counters a call touches, with the limits that apply, and how each settles.
//! Decided once here as a list of [`Check`]s; the backends only apply a list atomically.

use crate::limits::{Counter, LimitSet, Scope, Settle};

/// One counter a call touches: add `add` if the result stays within `limit`.
#[derive(Debug, Clone)]
pub struct Check {
    pub counter: Counter,
    pub add: i64,
    pub limit: Option<i64>,
    /// How long the counter outlives its last write (0: no expiry).
    pub ttl_secs: u64,
}

/// What a reservation holds, enough to settle or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// (counter, amount added), the ones that settle as [`Settle::Keep`] left out.
    pub counters: Vec<(Counter, i64)>,
}

pub(crate) fn minute(now_ms: i64) -> i64 {
    now_ms.div_euclid(60_000)
}

pub(crate) fn day(now_ms: i64) -> i64 {
    now_ms.div_euclid(86_400_000)
}

/// Months since 1970-01 (UTC), from a Unix day number.
pub(crate) fn month(now_ms: i64) -> i64 {
    // civil_from_days (Howard Hinnant), year and month only.
    let z = day(now_ms) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y - 1970) * 12 + (m - 1)
}

/// Unix milliseconds at the start of `month(now_ms)`.
pub(crate) fn month_start_ms(now_ms: i64) -> i64 {
    // Walk back day by day at most 31 days: cheap, and exact by construction.
    let m = month(now_ms);
    let mut d = day(now_ms);
    while month((d - 1) * 86_400_000) == m {
        d -= 1;
    }
    d * 86_400_000
}

/// How long a day's token counter is kept: past its day, for the usage API's late readers.
pub(crate) const DAY_TTL_SECS: u64 = 3 * 86_400;
/// How long a month's token and spend counters are kept.
pub(crate) const MONTH_TTL_SECS: u64 = 40 * 86_400;

/// The counters a call touches, with the limits that apply.
pub fn checks(
    limits: &LimitSet,
    key: &str,
    user: Option<&str>,
    tokens: u64,
    cost: u64,
    now_ms: i64,
) -> Vec<Check> {
    let (mi, d, mo) = (minute(now_ms), day(now_ms), month(now_ms));
    let lim = |v: Option<u64>| v.map(|x| x.min(i64::MAX as u64) as i64);
    let (tok, cost) = (
        tokens.min(i64::MAX as u64) as i64,
        cost.min(i64::MAX as u64) as i64,
    );
    let mut v = Vec::with_capacity(12);
    let mut scope = |scope: Scope, rpm: Option<u64>, tpm: Option<u64>, conc: Option<u64>| {
        if rpm.is_some() {
            v.push(Check {
                counter: Counter::Requests {
                    scope: scope.clone(),
                    minute: mi,
                },
                add: 1,
                limit: lim(rpm),
                ttl_secs: 120,
            });
        }
        if tpm.is_some() {
            v.push(Check {
                counter: Counter::Tokens {
                    scope: scope.clone(),
                    minute: mi,
                },
                add: tok,
                limit: lim(tpm),
                ttl_secs: 120,
            });
        }
        if conc.is_some() {
            v.push(Check {
                counter: Counter::Concurrent { scope },
                add: 1,
                limit: lim(conc),
                ttl_secs: 0,
            });
        }
    };
    scope(
        Scope::Tenant,
        limits.requests_per_minute,
        limits.tokens_per_minute,
        limits.concurrent_requests,
    );
    scope(
        Scope::Key(key.to_owned()),
        limits.key_requests_per_minute,
        limits.key_tokens_per_minute,
        limits.key_concurrent_requests,
    );
    if let Some(u) = user {
        scope(
            Scope::User(u.to_owned()),
            limits.user_requests_per_minute,
            limits.user_tokens_per_minute,
            limits.user_concurrent_requests,
        );
    }
    // Budgets: always counted (the usage API and a later budget need them), limited if set.
    v.push(Check {
        counter: Counter::DailyTokens { day: d },
        add: tok,
        limit: lim(limits.daily_tokens),
        ttl_secs: DAY_TTL_SECS,
    });
    v.push(Check {
        counter: Counter::MonthlyTokens { month: mo },
        add: tok,
        limit: lim(limits.monthly_tokens),
        ttl_secs: MONTH_TTL_SECS,
    });
    v.push(Check {
        counter: Counter::MonthlySpend { month: mo },
        add: cost,
        limit: lim(limits.monthly_spend_micros),
        ttl_secs: MONTH_TTL_SECS,
    });
    v
}

pub(crate) fn held(checks: &[Check]) -> Held {
    Held {
        counters: checks
            .iter()
            .filter(|c| c.counter.settle() != Settle::Keep)
            .map(|c| (c.counter.clone(), c.add))
            .collect(),
    }
}

/// Counter adjustments: (counter, delta).
pub type Deltas = Vec<(Counter, i64)>;

/// The settlement deltas of a held reservation for the actual usage, and the amounts to add
/// if the reservation already expired (the consumption happened all the same).
pub fn settlement(held: &Held, tokens: u64, cost: u64) -> (Deltas, Deltas) {
    let (tok, cost) = (
        tokens.min(i64::MAX as u64) as i64,
        cost.min(i64::MAX as u64) as i64,
    );
    let mut on_held = Vec::with_capacity(held.counters.len());
    let mut late = Vec::new();
    for (c, add) in &held.counters {
        match c.settle() {
            Settle::Keep => {}
            Settle::Tokens => {
                on_held.push((c.clone(), tok - add));
                late.push((c.clone(), tok));
            }
            Settle::Cost => {
                on_held.push((c.clone(), cost - add));
                late.push((c.clone(), cost));
            }
            Settle::Slot => on_held.push((c.clone(), -add)),
        }
    }
    (on_held, late)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_month_starts() {
        // 2026-11-23 and 2026-11-01, 2024-02-29 and 2024-02-01.
        assert_eq!(month(1_795_392_000_000), (2026 - 1970) * 12 + 10);
        assert_eq!(month_start_ms(1_795_392_000_000), 1_793_491_200_000);
        assert_eq!(month_start_ms(1_709_164_800_000), 1_706_745_600_000);
        assert_eq!(month(0), 0);
    }
}
