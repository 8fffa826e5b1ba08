//! Admission: rate limits, concurrency limits and budgets per tenant, API key and end user,
//! as reserve-then-settle.
//!
//! Before the provider call, [`Admission::reserve`] checks and adds, in one atomic step, the
//! request and the estimated tokens and cost (prompt tokens from the tokenizer plus the output
//! bound) against every applicable counter. After the call, [`Admission::settle`] replaces the
//! estimate with the actual usage; settling is idempotent by request id. A reservation not
//! settled within `limits.reservation_ttl_secs` (a crashed or killed call) is released by the
//! next reservation of its tenant, so it never pins a budget.
//!
//! Which counters a call touches and their limits is decided here, once, as a list of
//! [`Check`]s; the two backends only apply a list atomically:
//! - `Local`: in this process, under a mutex. Budgets survive a restart because each tenant's
//!   day and month counters are rebuilt at start from the audit log (every settled call's tokens
//!   and cost are in its record, durable before its response).
//! - `Redis`: one Lua script per reserve and per settle, so every replica shares one set of
//!   counters; every check reads and writes the same Redis keys.
//!
//! Budgets fail closed when Redis is unreachable; rate limits too, unless
//! `limits.rate_limits_fail_open`.

mod redis;
pub mod requests;

use crate::error::GatewayError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use tenantgate_core::{PlanTier, TenantId};

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
            enterprise: LimitSet::default(),
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

/// How a counter's reserved amount is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// One counter a call touches: add `add` if the result stays within `limit`.
#[derive(Debug, Clone)]
pub struct Check {
    pub key: String,
    pub add: i64,
    pub limit: Option<i64>,
    pub ttl_secs: u64,
    pub settle: Settle,
    /// What to tell the caller when this check refuses.
    pub what: &'static str,
    pub budget: bool,
}

/// What a reservation holds, enough to settle or release it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Held {
    /// (counter key, amount added, how it settles), `Keep` ones left out.
    pub counters: Vec<(String, i64, Settle)>,
}

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
    match refused.settle {
        Settle::Keep => requests = requests.or(refused_limit),
        Settle::Tokens => tokens = tokens.or(refused_limit),
        Settle::Slot | Settle::Cost => {}
    }
    RateState {
        limit_requests: requests,
        remaining_requests: 0,
        limit_tokens: tokens,
        remaining_tokens: 0,
        reset_secs: retry_after_s,
    }
}

/// An admitted call: what to settle.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub tenant: TenantId,
    pub request_id: String,
    pub held: Held,
    pub est_tokens: u64,
    /// The prompt's tokens as the tokenizer counted them (0 if no limit counts tokens).
    pub prompt_tokens: u64,
    pub est_cost: u64,
    pub rate: RateState,
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

/// The counters a call touches, with the limits that apply.
pub fn checks(
    limits: &LimitSet,
    tenant: &TenantId,
    key: &str,
    user: Option<&str>,
    tokens: u64,
    cost: u64,
    now_ms: i64,
) -> Vec<Check> {
    let t = tenant.as_str();
    let (mi, d, mo) = (minute(now_ms), day(now_ms), month(now_ms));
    let lim = |v: Option<u64>| v.map(|x| x.min(i64::MAX as u64) as i64);
    let (tok, cost) = (
        tokens.min(i64::MAX as u64) as i64,
        cost.min(i64::MAX as u64) as i64,
    );
    let mut v = Vec::with_capacity(12);
    let mut scope = |sk: String, rpm: Option<u64>, tpm: Option<u64>, conc: Option<u64>| {
        if rpm.is_some() {
            v.push(Check {
                key: format!("{{{t}}}:rq:{sk}:{mi}"),
                add: 1,
                limit: lim(rpm),
                ttl_secs: 120,
                settle: Settle::Keep,
                what: "requests per minute",
                budget: false,
            });
        }
        if tpm.is_some() {
            v.push(Check {
                key: format!("{{{t}}}:tk:{sk}:{mi}"),
                add: tok,
                limit: lim(tpm),
                ttl_secs: 120,
                settle: Settle::Tokens,
                what: "tokens per minute",
                budget: false,
            });
        }
        if conc.is_some() {
            v.push(Check {
                key: format!("{{{t}}}:cc:{sk}"),
                add: 1,
                limit: lim(conc),
                ttl_secs: 0,
                settle: Settle::Slot,
                what: "concurrent requests",
                budget: false,
            });
        }
    };
    scope(
        "t".into(),
        limits.requests_per_minute,
        limits.tokens_per_minute,
        limits.concurrent_requests,
    );
    scope(
        format!("k:{key}"),
        limits.key_requests_per_minute,
        limits.key_tokens_per_minute,
        limits.key_concurrent_requests,
    );
    if let Some(u) = user {
        scope(
            format!("u:{u}"),
            limits.user_requests_per_minute,
            limits.user_tokens_per_minute,
            limits.user_concurrent_requests,
        );
    }
    // Budgets: always counted (the usage API and a later budget need them), limited if set.
    v.push(Check {
        key: format!("{{{t}}}:dt:{d}"),
        add: tok,
        limit: lim(limits.daily_tokens),
        ttl_secs: 3 * 86_400,
        settle: Settle::Tokens,
        what: "daily token budget",
        budget: true,
    });
    v.push(Check {
        key: format!("{{{t}}}:mt:{mo}"),
        add: tok,
        limit: lim(limits.monthly_tokens),
        ttl_secs: 40 * 86_400,
        settle: Settle::Tokens,
        what: "monthly token budget",
        budget: true,
    });
    v.push(Check {
        key: format!("{{{t}}}:ms:{mo}"),
        add: cost,
        limit: lim(limits.monthly_spend_micros),
        ttl_secs: 40 * 86_400,
        settle: Settle::Cost,
        what: "monthly spend budget",
        budget: true,
    });
    v
}

/// The outcome of one atomic check-and-add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Everything added; each counter's value after adding, in check order.
    Ok(Vec<i64>),
    /// Nothing added: check `index` would have gone to `current + add > limit`.
    Refused { index: usize, current: i64 },
}

/// The counters' home.
pub enum Backend {
    Local(Local),
    Redis(crate::limits::redis::RedisLimits),
}

/// In-process counters.
#[derive(Default)]
pub struct Local {
    state: Mutex<LocalState>,
}

#[derive(Default)]
struct LocalState {
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
            for (k, add, _) in counters {
                self.adjust(&k, -add, now_ms);
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
        let Ok(mut s) = self.state.lock() else {
            return Applied::Refused {
                index: 0,
                current: 0,
            };
        };
        s.sweep(tenant, now_ms);
        for (i, c) in checks.iter().enumerate() {
            let cur = s.get(&c.key, now_ms);
            if c.limit.is_some_and(|l| cur + c.add > l) {
                return Applied::Refused {
                    index: i,
                    current: cur,
                };
            }
        }
        let values = checks
            .iter()
            .map(|c| s.add(&c.key, c.add, c.ttl_secs, now_ms))
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
        on_held: &[(String, i64)],
        late: &[(String, i64)],
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
        for (k, d) in deltas {
            s.adjust(k, *d, now_ms);
        }
        true
    }

    /// Sets a counter (rebuilding budgets from the audit log at start).
    pub fn seed(&self, key: &str, value: i64, ttl_secs: u64, now_ms: i64) {
        if let Ok(mut s) = self.state.lock() {
            s.counters
                .insert(key.to_owned(), (value, now_ms + ttl_secs as i64 * 1000));
        }
    }

    pub fn get(&self, key: &str, now_ms: i64) -> i64 {
        self.state.lock().map(|s| s.get(key, now_ms)).unwrap_or(0)
    }
}

pub(crate) fn held(checks: &[Check]) -> Held {
    Held {
        counters: checks
            .iter()
            .filter(|c| c.settle != Settle::Keep)
            .map(|c| (c.key.clone(), c.add, c.settle))
            .collect(),
    }
}

/// Counter adjustments: (key, delta).
pub type Deltas = Vec<(String, i64)>;

/// The settlement deltas of a held reservation for the actual usage, and the amounts to add
/// if the reservation already expired (the consumption happened all the same).
pub fn settlement(held: &Held, tokens: u64, cost: u64) -> (Deltas, Deltas) {
    let (tok, cost) = (
        tokens.min(i64::MAX as u64) as i64,
        cost.min(i64::MAX as u64) as i64,
    );
    let mut on_held = Vec::with_capacity(held.counters.len());
    let mut late = Vec::new();
    for (k, add, how) in &held.counters {
        match how {
            Settle::Keep => {}
            Settle::Tokens => {
                on_held.push((k.clone(), tok - add));
                late.push((k.clone(), tok));
            }
            Settle::Cost => {
                on_held.push((k.clone(), cost - add));
                late.push((k.clone(), cost));
            }
            Settle::Slot => on_held.push((k.clone(), -add)),
        }
    }
    (on_held, late)
}

use crate::limits::requests::is_request_check;
pub use crate::limits::requests::Counted;

const ANOMALY: &str = "per-minute spend (spend anomaly breaker)";

/// The admission stage's state: config, backend, counters of reserved vs settled.
pub struct Admission {
    pub config: LimitsConfig,
    pub backend: Backend,
    pub stats: AdmissionStats,
}

#[derive(Default)]
pub struct AdmissionStats {
    pub admitted: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
    pub settled: std::sync::atomic::AtomicU64,
    pub backend_errors: std::sync::atomic::AtomicU64,
    pub anomalies: std::sync::atomic::AtomicU64,
    pub reserved_micros: std::sync::atomic::AtomicU64,
    pub settled_micros: std::sync::atomic::AtomicU64,
}

impl AdmissionStats {
    pub fn render(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        format!(
            "# TYPE tenantgate_admission_admitted_total counter\ntenantgate_admission_admitted_total {}\n\
             # TYPE tenantgate_admission_refused_total counter\ntenantgate_admission_refused_total {}\n\
             # TYPE tenantgate_admission_settled_total counter\ntenantgate_admission_settled_total {}\n\
             # TYPE tenantgate_admission_backend_errors_total counter\ntenantgate_admission_backend_errors_total {}\n\
             # TYPE tenantgate_admission_spend_anomalies_total counter\ntenantgate_admission_spend_anomalies_total {}\n\
             # TYPE tenantgate_admission_reserved_micros_total counter\ntenantgate_admission_reserved_micros_total {}\n\
             # TYPE tenantgate_admission_settled_micros_total counter\ntenantgate_admission_settled_micros_total {}\n",
            self.admitted.load(Relaxed),
            self.refused.load(Relaxed),
            self.settled.load(Relaxed),
            self.backend_errors.load(Relaxed),
            self.anomalies.load(Relaxed),
            self.reserved_micros.load(Relaxed),
            self.settled_micros.load(Relaxed),
        )
    }
}

/// Who is calling and what the call may cost at most.
pub struct Ask<'a> {
    pub tenant: &'a TenantId,
    pub key: &'a str,
    pub user: Option<&'a str>,
    pub request_id: &'a str,
    pub limits: &'a LimitSet,
    pub tokens: u64,
    /// Of `tokens`, the prompt's.
    pub prompt_tokens: u64,
    pub cost: u64,
    pub now_ms: i64,
}

impl Admission {
    pub async fn start(config: LimitsConfig) -> Result<Admission, String> {
        let backend = match config.backend {
            LimitsBackend::Local => Backend::Local(Local::default()),
            LimitsBackend::Redis => {
                let url = config
                    .redis_url
                    .as_deref()
                    .ok_or("limits.backend = \"redis\" needs limits.redis_url")?;
                Backend::Redis(
                    crate::limits::redis::RedisLimits::connect(url, &config.redis_prefix)
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        Ok(Admission {
            config,
            backend,
            stats: AdmissionStats::default(),
        })
    }

    /// The spend-rate check of the anomaly breaker: this minute's spend may not exceed the
    /// configured multiple of the trailing average (read first: the breaker is a heuristic,
    /// the budgets are the hard limit).
    async fn anomaly_check(&self, ask: &Ask<'_>) -> Result<Option<Check>, String> {
        let c = &self.config;
        if c.anomaly_multiple == 0 || ask.cost == 0 {
            return Ok(None);
        }
        let t = ask.tenant.as_str();
        let m = minute(ask.now_ms);
        let w = i64::from(c.anomaly_window_minutes.max(1));
        let keys: Vec<String> = (1..=w).map(|i| format!("{{{t}}}:sm:{}", m - i)).collect();
        let trailing: i64 = match &self.backend {
            Backend::Local(l) => keys.iter().map(|k| l.get(k, ask.now_ms)).sum(),
            Backend::Redis(r) => r.get_many(&keys).await?.into_iter().sum(),
        };
        let avg = (trailing / w).max(0) as u64;
        let limit = c
            .anomaly_multiple
            .saturating_mul(avg.max(c.anomaly_floor_micros_per_minute));
        Ok(Some(Check {
            key: format!("{{{t}}}:sm:{m}"),
            add: ask.cost.min(i64::MAX as u64) as i64,
            limit: Some(limit.min(i64::MAX as u64) as i64),
            ttl_secs: (w as u64 + 2) * 60,
            settle: Settle::Cost,
            what: ANOMALY,
            budget: false,
        }))
    }

    /// Reserves the call's maximum against every limit, or refuses it.
    pub async fn reserve(&self, ask: Ask<'_>) -> Result<Reservation, GatewayError> {
        self.reserve_counted(ask, None).await
    }

    /// [`Self::reserve`] for a call whose request [`Self::count_request`] already counted:
    /// its request windows are not counted twice.
    pub async fn reserve_counted(
        &self,
        ask: Ask<'_>,
        counted: Option<Counted>,
    ) -> Result<Reservation, GatewayError> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut checks = checks(
            ask.limits, ask.tenant, ask.key, ask.user, ask.tokens, ask.cost, ask.now_ms,
        );
        if counted.is_some() {
            checks.retain(|c| !is_request_check(c));
        }
        match self.anomaly_check(&ask).await {
            Ok(Some(c)) => checks.push(c),
            Ok(None) => {}
            // Only the breaker's read failed; the reserve below meets the same backend.
            Err(e) => tracing::warn!(target: "tenantgate::admission", error = %e,
                "anomaly breaker read failed"),
        }
        let ttl_ms = self.config.reservation_ttl_secs as i64 * 1000;
        let applied = match &self.backend {
            Backend::Local(l) => {
                Ok(l.reserve(ask.tenant, ask.request_id, &checks, ttl_ms, ask.now_ms))
            }
            Backend::Redis(r) => {
                r.reserve(ask.tenant, ask.request_id, &checks, ttl_ms, ask.now_ms)
                    .await
            }
        };
        let reset_secs = (60 - ask.now_ms.rem_euclid(60_000) / 1000).max(1) as u64;
        match applied {
            Ok(Applied::Ok(values)) => {
                self.stats.admitted.fetch_add(1, Relaxed);
                self.stats.reserved_micros.fetch_add(ask.cost, Relaxed);
                let value_of = |prefix: &str| {
                    checks
                        .iter()
                        .zip(&values)
                        .find(|(c, _)| c.key.contains(prefix))
                        .map(|(_, v)| *v)
                };
                let rpm = ask.limits.requests_per_minute;
                let tpm = ask.limits.tokens_per_minute;
                let rate = RateState {
                    limit_requests: rpm,
                    remaining_requests: rpm
                        .map(|l| {
                            let used = value_of(":rq:t:")
                                .or(counted.and_then(|c| c.tenant_requests))
                                .unwrap_or(0);
                            l.saturating_sub(used.max(0) as u64)
                        })
                        .unwrap_or(u64::MAX),
                    limit_tokens: tpm,
                    remaining_tokens: tpm
                        .map(|l| l.saturating_sub(value_of(":tk:t:").unwrap_or(0).max(0) as u64))
                        .unwrap_or(u64::MAX),
                    reset_secs,
                };
                Ok(Reservation {
                    tenant: ask.tenant.clone(),
                    request_id: ask.request_id.to_owned(),
                    held: held(&checks),
                    est_tokens: ask.tokens,
                    prompt_tokens: ask.prompt_tokens,
                    est_cost: ask.cost,
                    rate,
                })
            }
            Ok(Applied::Refused { index, current }) => {
                self.stats.refused.fetch_add(1, Relaxed);
                let c = &checks[index];
                let limit = c.limit.unwrap_or(0);
                if c.budget {
                    Err(GatewayError::InsufficientQuota(format!(
                        "This tenant's {} is used up ({current} of {limit}{}).",
                        c.what,
                        if c.settle == Settle::Cost {
                            " micro-dollars"
                        } else {
                            " tokens"
                        }
                    )))
                } else {
                    if c.what == ANOMALY {
                        self.stats.anomalies.fetch_add(1, Relaxed);
                        tracing::warn!(target: "tenantgate::admission", tenant = %ask.tenant,
                            minute_spend_micros = current, threshold_micros = limit,
                            "spend anomaly: tenant throttled for the rest of the minute");
                    }
                    let retry_after_s = if c.settle == Settle::Slot {
                        1
                    } else {
                        reset_secs
                    };
                    Err(GatewayError::RateLimited {
                        message: format!(
                            "limit of {limit} {} reached ({current} in use or counted); retry after {retry_after_s}s",
                            c.what
                        ),
                        retry_after_s,
                        rate: refused_rate(ask.limits, c, retry_after_s),
                    })
                }
            }
            Err(e) => {
                self.stats.backend_errors.fetch_add(1, Relaxed);
                tracing::error!(target: "tenantgate::admission", error = %e, "limits backend unreachable");
                if ask.limits.has_budget() || !self.config.rate_limits_fail_open {
                    Err(GatewayError::Unavailable(
                        "the limits store is unreachable; budgets fail closed".into(),
                    ))
                } else {
                    Ok(Reservation {
                        tenant: ask.tenant.clone(),
                        request_id: ask.request_id.to_owned(),
                        held: Held {
                            counters: Vec::new(),
                        },
                        est_tokens: ask.tokens,
                        prompt_tokens: ask.prompt_tokens,
                        est_cost: ask.cost,
                        rate: RateState {
                            reset_secs,
                            ..Default::default()
                        },
                    })
                }
            }
        }
    }

    /// Settles a reservation with the actual usage (idempotent by request id).
    pub async fn settle(&self, r: &Reservation, tokens: u64, cost: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if r.held.counters.is_empty() {
            return;
        }
        let (on_held, late) = settlement(&r.held, tokens, cost);
        let now = crate::clock::now_ms();
        let done = match &self.backend {
            Backend::Local(l) => Ok(l.settle(&r.tenant, &r.request_id, &on_held, &late, now)),
            Backend::Redis(x) => x.settle(&r.tenant, &r.request_id, &on_held, &late).await,
        };
        match done {
            Ok(true) => {
                self.stats.settled.fetch_add(1, Relaxed);
                self.stats.settled_micros.fetch_add(cost, Relaxed);
            }
            Ok(false) => {}
            Err(e) => {
                self.stats.backend_errors.fetch_add(1, Relaxed);
                tracing::error!(target: "tenantgate::admission", error = %e,
                    "settlement failed; the reservation is released when it expires");
            }
        }
    }

    /// The current value of one of a tenant's counters (usage reporting, tests).
    pub async fn counter(&self, key: &str) -> Result<i64, String> {
        match &self.backend {
            Backend::Local(l) => Ok(l.get(key, crate::clock::now_ms())),
            Backend::Redis(r) => r.get(key).await,
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn tid() -> TenantId {
        TenantId::parse("01a206c5-7d5b-7763-abd8-b9ab9f4ec1cf").unwrap()
    }

    #[test]
    fn months_and_month_starts() {
        // 2026-11-23 and 2026-11-01, 2024-02-29 and 2024-02-01.
        assert_eq!(month(1_795_392_000_000), (2026 - 1970) * 12 + 10);
        assert_eq!(month_start_ms(1_795_392_000_000), 1_793_491_200_000);
        assert_eq!(month_start_ms(1_709_164_800_000), 1_706_745_600_000);
        assert_eq!(month(0), 0);
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
        let c = checks(&limits, &t, "k", None, 100, 600, now);
        assert!(matches!(
            l.reserve(&t, "r1", &c, 60_000, now),
            Applied::Ok(_)
        ));
        // A second 600 would exceed 1000: refused, and nothing (not even the request count) added.
        let c2 = checks(&limits, &t, "k", None, 100, 600, now);
        assert!(matches!(
            l.reserve(&t, "r2", &c2, 60_000, now),
            Applied::Refused { .. }
        ));
        let rq = &c[0].key;
        assert_eq!(l.get(rq, now), 1);
        // Settle r1 at its actual 200: the difference goes back.
        let (on_held, late) = settlement(&held(&c), 40, 200);
        assert!(l.settle(&t, "r1", &on_held, &late, now));
        assert!(
            !l.settle(&t, "r1", &on_held, &late, now),
            "a second settle is a no-op"
        );
        let spend = c.iter().find(|c| c.settle == Settle::Cost).unwrap();
        assert_eq!(l.get(&spend.key, now), 200);
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
        let c = checks(&limits, &t, "k", None, 10, 50, now);
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
        let spend = c.iter().find(|c| c.settle == Settle::Cost).unwrap();
        assert_eq!(l.get(&spend.key, now + 1001), 50, "only r2's reservation");
        let (on_held, late) = settlement(&held(&c), 10, 30);
        assert!(l.settle(&t, "r1", &on_held, &late, now + 1002));
        assert_eq!(
            l.get(&spend.key, now + 1002),
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
        let c = checks(&limits, &t, "k", None, 100, 0, now);
        assert!(matches!(
            l.reserve(&t, "r1", &c, 600_000, now),
            Applied::Ok(_)
        ));
        let tpm = &c
            .iter()
            .find(|c| c.what == "tokens per minute")
            .unwrap()
            .key;
        let later = now + 200_000;
        let (on_held, late) = settlement(&held(&c), 40, 0);
        assert!(l.settle(&t, "r1", &on_held, &late, later));
        assert_eq!(l.get(tpm, later), 0);
        let s = l.state.lock().unwrap();
        assert!(s
            .counters
            .get(tpm.as_str())
            .is_none_or(|(_, e)| *e != 0 && *e <= later));
    }

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
