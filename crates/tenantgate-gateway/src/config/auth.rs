//! `[auth]`: the snapshot reload interval and the trusted OIDC issuers (`[[auth.oidc]]`).

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How often each gateway checks the control-plane revision and reloads tenants and keys
    /// when it changed (changes made by another process: the CLI, another replica).
    pub reload_interval_ms: u64,
    /// OIDC issuers whose bearer tokens authenticate callers, beside API keys
    /// (`[[auth.oidc]]`, one table per issuer).
    pub oidc: Vec<OidcConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            reload_interval_ms: 100,
            oidc: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Each issuer once, with safe algorithms, and never both bound to a tenant and making
    /// platform admins.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.reload_interval_ms == 0 {
            return Err(invalid("auth.reload_interval_ms", "must be at least 1"));
        }
        for (i, o) in self.oidc.iter().enumerate() {
            let key = |f: &str| format!("auth.oidc[{i}].{f}");
            if o.issuer.is_empty() || o.audience.is_empty() {
                return Err(invalid(key("issuer"), "issuer and audience are required"));
            }
            if o.algorithms.is_empty()
                || o.algorithms
                    .iter()
                    .any(|a| !["RS256", "ES256", "EdDSA"].contains(&a.as_str()))
            {
                return Err(invalid(
                    key("algorithms"),
                    "use one or more of RS256, ES256, EdDSA",
                ));
            }
            if o.jwks_url.is_some() && o.jwks_file.is_some() {
                return Err(invalid(
                    key("jwks_url"),
                    "set jwks_url or jwks_file, not both",
                ));
            }
            if o.tenant.is_some() && o.platform_admins {
                return Err(invalid(
                    key("platform_admins"),
                    "an issuer bound to one tenant cannot make platform admins",
                ));
            }
            if o.jwks_min_refresh_secs == 0 {
                return Err(invalid(key("jwks_min_refresh_secs"), "must be at least 1"));
            }
            if o.console_client_id
                .as_ref()
                .is_some_and(|c| c != &o.audience)
            {
                return Err(invalid(
                    key("console_client_id"),
                    "the console signs in with the ID token, whose audience is the client id: set audience to the same value",
                ));
            }
            if self.oidc[..i].iter().any(|p| p.issuer == o.issuer) {
                return Err(invalid(key("issuer"), "each issuer may appear once"));
            }
        }
        Ok(())
    }
}

/// One trusted OIDC issuer. Tokens are verified against its JWKS (from `jwks_url`, from
/// `jwks_file`, or discovered at `{issuer}/.well-known/openid-configuration`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// Must equal the token's `iss` exactly.
    pub issuer: String,
    /// Must be among the token's `aud`.
    pub audience: String,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<PathBuf>,
    /// Accepted signature algorithms, a subset of RS256, ES256, EdDSA. HMAC and `none` are
    /// never accepted.
    pub algorithms: Vec<String>,
    /// Bind this issuer to one tenant (slug): an enterprise's own IdP. Its tokens authenticate
    /// only into that tenant, whatever their tenant claim says, and never as platform admins.
    pub tenant: Option<String>,
    /// Claim naming the tenant (slug or id) for issuers not bound to one. Dotted paths reach
    /// into objects (`app_metadata.tenant`).
    pub tenant_claim: String,
    /// Claim identifying the user (members, audit records, per-user limits).
    pub user_claim: String,
    /// Claim holding roles: an array or a space-separated string of `platform_admin`,
    /// `tenant_admin`, `member` (`realm_access.roles` for Keycloak).
    pub roles_claim: String,
    /// Whether this issuer may make platform admins (the platform's own IdP only).
    pub platform_admins: bool,
    /// Admit only users a tenant admin added as members (`/tenant/v1/members`).
    pub require_membership: bool,
    /// Allowed clock skew for `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Least time between two JWKS fetches (a token with an unknown `kid` triggers one).
    pub jwks_min_refresh_secs: u64,
    /// Keys older than this are refetched on the next token.
    pub jwks_max_age_secs: u64,
    /// The console's OIDC client at this issuer (authorization code flow with PKCE, a public
    /// client). Set, the console's sign-in page offers this issuer; the ID token it gets back
    /// must pass the checks above, so set `audience` to this client id.
    pub console_client_id: Option<String>,
    /// The sign-in button's name for this issuer ("Acme SSO").
    pub console_label: Option<String>,
    /// The scopes the console asks for (those that put the tenant and roles claims in the ID
    /// token at this IdP).
    pub console_scopes: String,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            jwks_url: None,
            jwks_file: None,
            algorithms: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
            tenant: None,
            tenant_claim: "tenant".into(),
            user_claim: "sub".into(),
            roles_claim: "roles".into(),
            platform_admins: false,
            require_membership: false,
            leeway_secs: 60,
            jwks_min_refresh_secs: 30,
            jwks_max_age_secs: 3600,
            console_client_id: None,
            console_label: None,
            console_scopes: "openid".into(),
        }
    }
}
