//! `[lifecycle]`: onboarding's platform prompt templates and how long an onboarding claim may
//! stay unfinished before another attempt takes it over.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            prompt_templates: BTreeMap::new(),
            onboarding_stale_secs: 300,
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
        Ok(())
    }
}
