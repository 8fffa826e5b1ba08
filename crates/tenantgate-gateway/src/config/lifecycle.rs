//! `[lifecycle]`: onboarding's platform prompt templates and how long an onboarding claim may
//! stay unfinished before another attempt takes it over; offboarding's deletion window and its
//! finalizer.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest deletion window an operator may ask for (a year): a bound on a client value.
pub const MAX_DELETION_WINDOW_SECS: u64 = 366 * 86_400;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Platform prompt templates a new tenant's default prompt can start from
    /// (`[lifecycle.prompt_templates] support = "You are ..."`), by name. Onboarding copies the
    /// text into the tenant's own prompts (sealed with its key) as version 1.
    pub prompt_templates: BTreeMap<String, String>,
    /// An onboarding claim not finished after this long belongs to a process that died: the
    /// next attempt with its idempotency key (or the server's start-up sweep) discards its
    /// partial tenant and runs again.
    pub onboarding_stale_secs: u64,
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
            prompt_templates: BTreeMap::new(),
            onboarding_stale_secs: 300,
            deletion_window_secs: 7 * 86_400,
            finalize_interval_ms: 60_000,
            finalize_lease_secs: 600,
            pg_vacuum_full: false,
        }
    }
}

impl LifecycleConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.onboarding_stale_secs < 10 {
            return Err(invalid(
                "lifecycle.onboarding_stale_secs",
                "must be at least 10 (a live onboarding must not be taken over)",
            ));
        }
        for (name, text) in &self.prompt_templates {
            tenantgate_store::prompts::validate_name(name)
                .map_err(|e| invalid(format!("lifecycle.prompt_templates.{name}"), e.0))?;
            if text.trim().is_empty() {
                return Err(invalid(
                    format!("lifecycle.prompt_templates.{name}"),
                    "a template must not be empty",
                ));
            }
        }
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
