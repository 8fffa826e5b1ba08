//! Request counting at the front of a model call: right after authentication, before the body
//! is read, the call takes one request from the tenant's, the key's and the end user's
//! per-minute request windows. A call refused later (a bad body, an unknown model, a policy)
//! has still used its request, so refusals cannot be sent without limit; once a window is
//! full the caller gets 429 before any other work. Admission then reserves the call's tokens
//! and spend without counting the request again ([`Admission::reserve_counted`]).

use crate::error::GatewayError;
use crate::limits::{
    checks, refused_rate, Admission, Applied, Backend, Check, Counter, LimitSet, Scope,
};
use tenantgate_core::TenantId;

/// A request counted at the front of its call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counted {
    /// The tenant's requests in this minute, this one included (`None`: no tenant limit).
    pub tenant_requests: Option<i64>,
}

/// Whether a check is one of the per-minute request windows.
pub(crate) fn is_request_check(c: &Check) -> bool {
    matches!(c.counter, Counter::Requests { .. })
}

/// The tenant's own per-minute request count among `checks`' values, if it was counted.
pub(crate) fn tenant_requests(checks: &[Check], values: &[i64]) -> Option<i64> {
    checks
        .iter()
        .zip(values)
        .find(|(c, _)| {
            matches!(
                c.counter,
                Counter::Requests {
                    scope: Scope::Tenant,
                    ..
                }
            )
        })
        .map(|(_, v)| *v)
}

impl Admission {
    /// Counts one request of `key` (and its tenant and end user) against the request windows
    /// that have a limit, or refuses it with 429. `Ok(None)`: not counted (the limits store
    /// is unreachable and rate limits fail open); admission counts it then.
    pub async fn count_request(
        &self,
        tenant: &TenantId,
        key: &str,
        user: Option<&str>,
        limits: &LimitSet,
        request_id: &str,
        now_ms: i64,
    ) -> Result<Option<Counted>, GatewayError> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut checks = checks(limits, key, user, 0, 0, now_ms);
        checks.retain(is_request_check);
        if checks.is_empty() {
            return Ok(Some(Counted::default()));
        }
        // Request counts are kept, never settled: no reservation is recorded for them.
        let applied = match &self.backend {
            Backend::Local(l) => Ok(l.reserve(tenant, request_id, &checks, 0, now_ms)),
            Backend::Redis(r) => r.reserve(tenant, request_id, &checks, 0, now_ms).await,
        };
        let reset_secs = (60 - now_ms.rem_euclid(60_000) / 1000).max(1) as u64;
        match applied {
            Ok(Applied::Ok(values)) => Ok(Some(Counted {
                tenant_requests: tenant_requests(&checks, &values),
            })),
            Ok(Applied::Refused { index, current }) => {
                self.stats.refused.fetch_add(1, Relaxed);
                let c = &checks[index];
                Err(GatewayError::RateLimited {
                    message: format!(
                        "limit of {} {} reached ({current} counted); retry after {reset_secs}s",
                        c.limit.unwrap_or(0),
                        c.counter.what()
                    ),
                    retry_after_s: reset_secs,
                    rate: refused_rate(limits, c, reset_secs),
                })
            }
            Err(e) => {
                self.stats.backend_errors.fetch_add(1, Relaxed);
                tracing::error!(target: "tenantgate::admission", error = %e, "limits backend unreachable");
                if self.config.rate_limits_fail_open {
                    Ok(None)
                } else {
                    Err(GatewayError::Unavailable(
                        "the limits store is unreachable; rate limits fail closed".into(),
                    ))
                }
            }
        }
    }
}
