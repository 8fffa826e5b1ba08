//! `[guard]`: the platform's side of the leak guard (per-tenant policies live in the store).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// The platform's incident webhook: every leak-guard finding of every tenant is POSTed
    /// here (tenant slug, detector, action, direction, time; never text).
    pub webhook_url: Option<String>,
    /// Let tenants register plain-http webhooks (tests, private networks). Off: tenant webhooks
    /// must be https.
    pub allow_http_webhooks: bool,
}
