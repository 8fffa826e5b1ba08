//! `[lifecycle]`: offboarding's deletion window and its finalizer.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

/// The longest deletion window an operator may ask for (a year): a bound on a client value.
pub const MAX_DELETION_WINDOW_SECS: u64 = 366 * 86_400;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// How long a tenant whose deletion was requested stays restorable (its calls refused)
    /// before it is finalized, when the request names no window. 0 finalizes at once.
    pub deletion_window_secs: u64,
    /// How often each gateway looks for tenants past their window.
    pub finalize_interval_ms: u64,
    /// How long a claim on a finalization holds before another replica may take it over (a
    /// replica that died mid-way).
    pub finalize_lease_secs: u64,
    /// PostgreSQL: after removing a tenant's rows, `VACUUM FULL` the shared tables (rewritten
    /// into new files: no data file keeps the deleted rows' bytes) instead of a plain
    /// `VACUUM` (their space is reused, their bytes stay in the pages until overwritten).
    /// FULL locks each table while it is rewritten: every tenant's writes to it wait.
    pub pg_vacuum_full: bool,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            deletion_window_secs: 7 * 86_400,
            finalize_interval_ms: 60_000,
            finalize_lease_secs: 600,
            pg_vacuum_full: false,
        }
    }
}

impl LifecycleConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.deletion_window_secs > MAX_DELETION_WINDOW_SECS {
            return Err(invalid(
                "lifecycle.deletion_window_secs",
                format!("at most {MAX_DELETION_WINDOW_SECS} (a year)"),
            ));
        }
        if self.finalize_interval_ms == 0 || self.finalize_lease_secs == 0 {
            return Err(invalid(
                "lifecycle.finalize_interval_ms",
                "the finalizer's interval and lease must be at least 1",
            ));
        }
        Ok(())
    }
}
