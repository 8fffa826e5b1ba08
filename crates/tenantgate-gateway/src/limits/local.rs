//! The in-process limits backend: every counter and held reservation of this process under
//! one mutex, so a check and its write are one step.

use std::collections::HashMap;
use std::sync::Mutex;
use tenantgate_core::TenantId;

use crate::limits::checks::{DAY_TTL_SECS, MONTH_TTL_SECS};
use crate::limits::{day, held, month, Applied, Check, Counter, Held};

/// In-process counters.
#[derive(Default)]
pub struct Local {
    state: Mutex<LocalState>,
}

#[derive(Default)]
struct LocalState {
    /// Rendered counter key ([`Counter::key`]) -> (value, expires at or 0).
    counters: HashMap<String, (i64, i64)>,
    /// Held reservations per tenant: request id -> (expires at, what it holds).
    reservations: HashMap<TenantId, HashMap<String, (i64, Held)>>,
    /// Reservations released by expiry, kept (a day) so a late settle counts the actual usage
    /// once: request id -> forget at. Settled ids are simply gone: no per-call marker.
    expired: HashMap<String, i64>,
    ops: u64,
}

impl LocalState {
    fn get(&self, key: &str, now_ms: i64) -> i64 {
        match self.counters.get(key) {
            Some((v, exp)) if *exp == 0 || *exp > now_ms => *v,
            _ => 0,
        }
    }

    fn add(&mut self, key: &str, delta: i64, ttl_secs: u64, now_ms: i64) -> i64 {
        let cur = self.get(key, now_ms);
        let exp = if ttl_secs == 0 {
            0
        } else {
            now_ms + ttl_secs as i64 * 1000
        };
        let keep_exp = self.counters.get(key).map(|c| c.1).filter(|e| *e > now_ms);
        let v = cur + delta;
        self.counters
            .insert(key.to_owned(), (v, keep_exp.unwrap_or(exp).max(exp)));
        v
    }

    /// Adds `delta` to a counter that still exists, keeping its expiry. A window that
    /// already expired (a call outliving its minute) is not brought back: as in the Redis
    /// backend, where settling skips keys that are gone.
    fn adjust(&mut self, key: &str, delta: i64, now_ms: i64) {
        if let Some((v, exp)) = self.counters.get_mut(key) {
            if *exp == 0 || *exp > now_ms {
                *v += delta;
            }
        }
    }

    /// Releases `tenant`'s reservations that expired.
    fn sweep(&mut self, tenant: &TenantId, now_ms: i64) {
        let mut released = Vec::new();
        if let Some(held) = self.reservations.get_mut(tenant) {
            held.retain(|rid, (exp, h)| {
                if *exp <= now_ms {
                    released.push((rid.clone(), std::mem::take(&mut h.counters)));
                    false
                } else {
                    true
                }
            });
        }
        for (rid, counters) in released {
            for (c, add) in counters {
                self.adjust(&c.key(tenant), -add, now_ms);
            }
            self.expired.insert(rid, now_ms + 86_400_000);
        }
        self.ops += 1;
        if self.ops.is_multiple_of(4096) {
            self.counters.retain(|_, (_, e)| *e == 0 || *e > now_ms);
            self.expired.retain(|_, e| *e > now_ms);
            self.reservations.retain(|_, m| !m.is_empty());
        }
    }
}

impl Local {
    pub fn reserve(
        &self,
        tenant: &TenantId,
        rid: &str,
        checks: &[Check],
        ttl_ms: i64,
        now_ms: i64,
    ) -> Applied {
        // Rendered before the lock is taken: the lock is shared by every call of the process.
        let keys: Vec<String> = checks.iter().map(|c| c.counter.key(tenant)).collect();
        let Ok(mut s) = self.state.lock() else {
            return Applied::Refused {
                index: 0,
                current: 0,
            };
        };
        s.sweep(tenant, now_ms);
        for (i, (c, key)) in checks.iter().zip(&keys).enumerate() {
            let cur = s.get(key, now_ms);
            if c.limit.is_some_and(|l| cur + c.add > l) {
                return Applied::Refused {
                    index: i,
                    current: cur,
                };
            }
        }
        let values = checks
            .iter()
            .zip(&keys)
            .map(|(c, key)| s.add(key, c.add, c.ttl_secs, now_ms))
            .collect();
        // Only counters that settle need a reservation (a request count alone is kept).
        let held = held(checks);
        if !held.counters.is_empty() {
            s.reservations
                .entry(tenant.clone())
                .or_default()
                .insert(rid.to_owned(), (now_ms + ttl_ms, held));
        }
        Applied::Ok(values)
    }

    /// Applies `on_held` if the reservation is still held, `late` if it expired (and was
    /// released); nothing if it was settled already: once per request id.
    pub fn settle(
        &self,
        tenant: &TenantId,
        rid: &str,
        on_held: &[(Counter, i64)],
        late: &[(Counter, i64)],
        now_ms: i64,
    ) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        let held = s
            .reservations
            .get_mut(tenant)
            .and_then(|m| m.remove(rid))
            .is_some();
        let deltas = if held {
            on_held
        } else if s.expired.remove(rid).is_some() {
            late
        } else {
            return false;
        };
        for (c, d) in deltas {
            s.adjust(&c.key(tenant), *d, now_ms);
        }
        true
    }

    /// Sets a tenant's budget counters of the current day and month (rebuilt from the audit
    /// log at start: every settled call's tokens and cost are in its record).
    pub fn seed_budgets(
        &self,
        tenant: &TenantId,
        day_tokens: i64,
        month_tokens: i64,
        month_cost_micros: i64,
        now_ms: i64,
    ) {
        let (d, m) = (day(now_ms), month(now_ms));
        let seeds = [
            (Counter::DailyTokens { day: d }, day_tokens, DAY_TTL_SECS),
            (
                Counter::MonthlyTokens { month: m },
                month_tokens,
                MONTH_TTL_SECS,
            ),
            (
                Counter::MonthlySpend { month: m },
                month_cost_micros,
                MONTH_TTL_SECS,
            ),
        ]
        .map(|(c, v, ttl)| (c.key(tenant), (v, now_ms + ttl as i64 * 1000)));
        if let Ok(mut s) = self.state.lock() {
            s.counters.extend(seeds);
        }
    }

    pub fn get(&self, tenant: &TenantId, counter: &Counter, now_ms: i64) -> i64 {
        let key = counter.key(tenant);
        self.state.lock().map(|s| s.get(&key, now_ms)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use crate::limits::{checks, settlement, LimitSet};

    fn tid() -> TenantId {
        TenantId::parse("01a206c5-7d5b-7763-abd8-b9ab9f4ec1cf").unwrap()
    }

    #[test]
    fn reserve_is_all_or_nothing_and_settle_is_idempotent() {
        let l = Local::default();
        let t = tid();
        let limits = LimitSet {
            requests_per_minute: Some(10),
            monthly_spend_micros: Some(1000),
            ..Default::default()
        };
        let now = 1_795_392_000_000;
        let c = checks(&limits, "k", None, 100, 600, now);
        assert!(matches!(
            l.reserve(&t, "r1", &c, 60_000, now),
            Applied::Ok(_)
        ));
        // A second 600 would exceed 1000: refused, and nothing (not even the request count) added.
        let c2 = checks(&limits, "k", None, 100, 600, now);
        assert!(matches!(
            l.reserve(&t, "r2", &c2, 60_000, now),
            Applied::Refused { .. }
        ));
        let rq = &c[0].counter;
        assert_eq!(l.get(&t, rq, now), 1);
        // Settle r1 at its actual 200: the difference goes back.
        let (on_held, late) = settlement(&held(&c), 40, 200);
        assert!(l.settle(&t, "r1", &on_held, &late, now));
        assert!(
            !l.settle(&t, "r1", &on_held, &late, now),
            "a second settle is a no-op"
        );
        let spend = c
            .iter()
            .find(|c| matches!(c.counter, Counter::MonthlySpend { .. }))
            .unwrap();
        assert_eq!(l.get(&t, &spend.counter, now), 200);
        assert!(matches!(
            l.reserve(&t, "r3", &c2, 60_000, now),
            Applied::Ok(_)
        ));
    }

    #[test]
    fn an_expired_reservation_is_released_and_a_late_settle_counts_once() {
        let l = Local::default();
        let t = tid();
        let limits = LimitSet {
            concurrent_requests: Some(1),
            ..Default::default()
        };
        let now = 1_795_392_000_000;
        let c = checks(&limits, "k", None, 10, 50, now);
        assert!(matches!(l.reserve(&t, "r1", &c, 1000, now), Applied::Ok(_)));
        assert!(matches!(
            l.reserve(&t, "r2", &c, 1000, now),
            Applied::Refused { .. }
        ));
        // After the TTL the slot (and the reserved cost) come back.
        assert!(matches!(
            l.reserve(&t, "r2", &c, 1000, now + 1001),
            Applied::Ok(_)
        ));
        let spend = c
            .iter()
            .find(|c| matches!(c.counter, Counter::MonthlySpend { .. }))
            .unwrap();
        assert_eq!(
            l.get(&t, &spend.counter, now + 1001),
            50,
            "only r2's reservation"
        );
        let (on_held, late) = settlement(&held(&c), 10, 30);
        assert!(l.settle(&t, "r1", &on_held, &late, now + 1002));
        assert_eq!(
            l.get(&t, &spend.counter, now + 1002),
            80,
            "r1's actual 30 counted once"
        );
    }

    #[test]
    fn settling_after_a_window_expired_does_not_resurrect_it() {
        let l = Local::default();
        let t = tid();
        let limits = LimitSet {
            tokens_per_minute: Some(1000),
            ..Default::default()
        };
        let now = 1_795_392_000_000;
        let c = checks(&limits, "k", None, 100, 0, now);
        assert!(matches!(
            l.reserve(&t, "r1", &c, 600_000, now),
            Applied::Ok(_)
        ));
        let tpm = &c
            .iter()
            .find(|c| matches!(c.counter, Counter::Tokens { .. }))
            .unwrap()
            .counter;
        let later = now + 200_000;
        let (on_held, late) = settlement(&held(&c), 40, 0);
        assert!(l.settle(&t, "r1", &on_held, &late, later));
        assert_eq!(l.get(&t, tpm, later), 0);
        let s = l.state.lock().unwrap();
        assert!(s
            .counters
            .get(&tpm.key(&t))
            .is_none_or(|(_, e)| *e != 0 && *e <= later));
    }
}
