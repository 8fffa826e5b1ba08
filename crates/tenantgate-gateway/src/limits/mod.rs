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
//! Which counters a call touches and their limits is decided once, as a list of [`Check`]s
//! (`checks.rs`); a counter is a [`Counter`] (what, whose, which window), and every decision
//! about one matches on it (`counter.rs` renders its storage key, the only place its text
//! form exists). The two backends only apply a list atomically:
//! - `Local`: in this process, under a mutex. Budgets survive a restart because each tenant's
//!   day and month counters are rebuilt at start from the audit log (every settled call's tokens
//!   and cost are in its record, durable before its response).
//! - `Redis`: one Lua script per reserve and per settle, so every replica shares one set of
//!   counters; every check reads and writes the same Redis keys.
//!
//! Files: `plan.rs` (limit sets, plan overlay, config), `counter.rs`, `checks.rs` (and the
//! windows, settlement), `local.rs`, `redis.rs`, `requests.rs` (request counting at the
//! front of a call), `headers.rs` (`x-ratelimit-*`), and here the [`Admission`] facade:
//! reserve, refuse, settle.
//!
//! Budgets fail closed when Redis is unreachable; rate limits too, unless
//! `limits.rate_limits_fail_open`.

mod checks;
mod counter;
mod headers;
mod local;
mod plan;
mod redis;
pub mod requests;

pub use checks::{checks, settlement, Check, Deltas, Held};
pub(crate) use checks::{day, held, minute, month, month_start_ms};
pub use counter::{Counter, Scope, Settle};
pub(crate) use headers::refused_rate;
pub use headers::{rate_headers, RateState};
pub use local::Local;
pub use plan::{LimitSet, LimitsBackend, LimitsConfig};
pub use requests::Counted;

use crate::error::GatewayError;
use requests::{is_request_check, tenant_requests};
use tenantgate_core::TenantId;

/// An admitted call: what to settle.
#[derive(Debug, Clone)]
#[must_use = "a reservation is settled by the call record that owns it (CallAudit::admitted)"]
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

/// The admission stage's state: config, backend, counters of reserved vs settled.
pub struct Admission {
    pub config: LimitsConfig,
    pub backend: Backend,
    /// Shared with `/metrics` (`crate::metrics`).
    pub stats: std::sync::Arc<AdmissionStats>,
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
            stats: std::sync::Arc::default(),
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
        let m = minute(ask.now_ms);
        let w = i64::from(c.anomaly_window_minutes.max(1));
        let trailing: Vec<Counter> = (1..=w)
            .map(|i| Counter::MinuteSpend { minute: m - i })
            .collect();
        let trailing: i64 = match &self.backend {
            Backend::Local(l) => trailing
                .iter()
                .map(|c| l.get(ask.tenant, c, ask.now_ms))
                .sum(),
            Backend::Redis(r) => r.get_many(ask.tenant, &trailing).await?.into_iter().sum(),
        };
        let avg = (trailing / w).max(0) as u64;
        let limit = c
            .anomaly_multiple
            .saturating_mul(avg.max(c.anomaly_floor_micros_per_minute));
        Ok(Some(Check {
            counter: Counter::MinuteSpend { minute: m },
            add: ask.cost.min(i64::MAX as u64) as i64,
            limit: Some(limit.min(i64::MAX as u64) as i64),
            // Read back as a trailing minute for the whole window.
            ttl_secs: (w as u64 + 2) * 60,
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
        let skip_requests = counted.is_some();
        self.reserve_where(ask, counted, |c| !(skip_requests && is_request_check(c)))
            .await
    }

    /// Reserves work done inside a call that is already admitted (a chat's retrieval query
    /// embedding): its tokens and spend count, but it is not another request and holds no
    /// concurrency slot of its own (the call it is part of holds one), so a tenant at its
    /// concurrency limit is not refused its own call's retrieval.
    pub async fn reserve_within(&self, ask: Ask<'_>) -> Result<Reservation, GatewayError> {
        self.reserve_where(ask, None, |c| {
            !is_request_check(c) && !matches!(c.counter, Counter::Concurrent { .. })
        })
        .await
    }

    async fn reserve_where(
        &self,
        ask: Ask<'_>,
        counted: Option<Counted>,
        keep: impl Fn(&Check) -> bool,
    ) -> Result<Reservation, GatewayError> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut checks = checks(
            ask.limits, ask.key, ask.user, ask.tokens, ask.cost, ask.now_ms,
        );
        checks.retain(|c| keep(c));
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
                let tenant_tokens = checks
                    .iter()
                    .zip(&values)
                    .find(|(c, _)| {
                        matches!(
                            c.counter,
                            Counter::Tokens {
                                scope: Scope::Tenant,
                                ..
                            }
                        )
                    })
                    .map(|(_, v)| *v);
                let rpm = ask.limits.requests_per_minute;
                let tpm = ask.limits.tokens_per_minute;
                let rate = RateState {
                    limit_requests: rpm,
                    remaining_requests: rpm
                        .map(|l| {
                            let used = tenant_requests(&checks, &values)
                                .or(counted.and_then(|c| c.tenant_requests))
                                .unwrap_or(0);
                            l.saturating_sub(used.max(0) as u64)
                        })
                        .unwrap_or(u64::MAX),
                    limit_tokens: tpm,
                    remaining_tokens: tpm
                        .map(|l| l.saturating_sub(tenant_tokens.unwrap_or(0).max(0) as u64))
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
                Err(self.refusal(&ask, &checks[index], current, reset_secs))
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

    /// What the caller is told when `c` refused the call: a used-up budget is
    /// `insufficient_quota` (retrying does not help), anything else a 429 to retry after
    /// the window's reset (a concurrency slot: after a second).
    fn refusal(&self, ask: &Ask<'_>, c: &Check, current: i64, reset_secs: u64) -> GatewayError {
        use std::sync::atomic::Ordering::Relaxed;
        let limit = c.limit.unwrap_or(0);
        let used_up = |unit: &str| {
            GatewayError::InsufficientQuota(format!(
                "This tenant's {} is used up ({current} of {limit} {unit}).",
                c.counter.what()
            ))
        };
        let rate_limited = |retry_after_s: u64| {
            GatewayError::RateLimited {
            message: format!(
                "limit of {limit} {} reached ({current} in use or counted); retry after {retry_after_s}s",
                c.counter.what()
            ),
            retry_after_s,
            rate: refused_rate(ask.limits, c, retry_after_s),
        }
        };
        match c.counter {
            Counter::DailyTokens { .. } | Counter::MonthlyTokens { .. } => used_up("tokens"),
            Counter::MonthlySpend { .. } => used_up("micro-dollars"),
            Counter::MinuteSpend { .. } => {
                self.stats.anomalies.fetch_add(1, Relaxed);
                tracing::warn!(target: "tenantgate::admission", tenant = %ask.tenant,
                    minute_spend_micros = current, threshold_micros = limit,
                    "spend anomaly: tenant throttled for the rest of the minute");
                rate_limited(reset_secs)
            }
            Counter::Concurrent { .. } => rate_limited(1),
            Counter::Requests { .. } | Counter::Tokens { .. } => rate_limited(reset_secs),
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
    pub async fn counter(&self, tenant: &TenantId, counter: &Counter) -> Result<i64, String> {
        match &self.backend {
            Backend::Local(l) => Ok(l.get(tenant, counter, crate::clock::now_ms())),
            Backend::Redis(r) => r.get(tenant, counter).await,
        }
    }
}
