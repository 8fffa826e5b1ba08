//! `[console]`: the browser console under `/console` (sessions, cookies, sign-in).

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console at all (`/console` is a 404 otherwise).
    pub enabled: bool,
    /// A session ends this long after sign-in, used or not (and never after the OIDC token it
    /// acts with expires).
    pub session_ttl_secs: u64,
    /// A session unused this long ends.
    pub idle_timeout_secs: u64,
    /// A session's id is replaced (a new cookie) once it is this old, so a stolen cookie is
    /// useful for a bounded time.
    pub rotate_after_secs: u64,
    /// The cookie's `Secure` attribute. Browsers keep `Secure` cookies on `http://localhost`
    /// and `127.0.0.1` too; turn it off only behind a plain-HTTP proxy you trust.
    pub secure_cookies: bool,
    /// The console's external origin (`https://gateway.example.com`), for the OIDC redirect
    /// URI and the `Origin` check on changes. Unset: taken from the request's `Host`, over
    /// `http` (fine on a laptop; set it behind a proxy or TLS terminator).
    pub public_url: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl_secs: 8 * 3600,
            idle_timeout_secs: 30 * 60,
            rotate_after_secs: 15 * 60,
            secure_cookies: true,
            public_url: None,
        }
    }
}

impl ConsoleConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.session_ttl_secs == 0 || self.session_ttl_secs > 7 * 86_400 {
            return Err(invalid(
                "console.session_ttl_secs",
                "must be between 1 and 604800 (a week)",
            ));
        }
        if self.idle_timeout_secs == 0 || self.rotate_after_secs == 0 {
            return Err(invalid(
                "console.idle_timeout_secs",
                "idle_timeout_secs and rotate_after_secs must be at least 1",
            ));
        }
        if let Some(u) = &self.public_url {
            let ok = (u.starts_with("https://") || u.starts_with("http://"))
                && !u.ends_with('/')
                && u.len() < 512
                && !u.chars().any(|c| c.is_whitespace());
            if !ok {
                return Err(invalid(
                    "console.public_url",
                    "an origin like https://gateway.example.com (no trailing slash)",
                ));
            }
        }
        Ok(())
    }
}
