//! Domain types shared by every tenantgate crate.
//!
//! Architecture Invariant: this crate does no I/O and depends on no runtime (no tokio, sqlx, axum).
//! Architecture Invariant: a [`TenantScope`] is never built from client input; see its docs.

mod ids;
mod tenant;

pub use ids::{KeyId, TenantId, PLATFORM_CHAIN};
pub use tenant::{
    validate_model_policy, validate_slug, ApiKeyRecord, IsolationTier, NewApiKey, NewTenant,
    PlanTier, Role, Tenant, TenantStatus,
};

/// Proof that the current request or operation acts for exactly one tenant.
///
/// It has no public fields and implements neither `Default`, `Deserialize` nor `From<TenantId>`:
/// the only ways to obtain one are [`TenantScope::from_verified_credential`] (the authentication
/// stage, after a credential was verified) and [`TenantScope::from_break_glass`] (the audited
/// break-glass path). The
/// workspace `clippy.toml` disallows calling the constructor anywhere else, and a test counts the
/// call sites.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TenantScope {
    tenant: TenantId,
}

impl TenantScope {
    /// Build a scope for a tenant whose credential has just been verified.
    ///
    /// Call sites are restricted by `clippy.toml` (`disallowed-methods`); each allowed site
    /// carries an `#[expect(clippy::disallowed_methods, reason = ..)]`.
    pub fn from_verified_credential(tenant: TenantId) -> Self {
        Self { tenant }
    }

    /// Build a scope for a platform admin reading one tenant's data under an active, recorded
    /// break-glass grant. Restricted by `clippy.toml` like [`Self::from_verified_credential`];
    /// the one allowed site checks the grant in the store and records the read in the tenant's
    /// audit chain.
    pub fn from_break_glass(tenant: TenantId) -> Self {
        Self { tenant }
    }

    /// Build a scope for a platform operator's lifecycle operation on one tenant: writing its
    /// first content while onboarding it (its default prompt, the sealed onboarding result),
    /// before it has any credential; its export bundle; restoring a bundle into a tenant the
    /// same operation created. Taking the operator's capability, it is no path for a tenant
    /// principal. Restricted by `clippy.toml` like the others; the allowed sites are under
    /// the gateway's `lifecycle/`, and each operation is recorded in the tenant's chain and
    /// the platform's.
    pub fn for_lifecycle(_admin: &PlatformAdmin, tenant: TenantId) -> Self {
        Self { tenant }
    }

    pub fn tenant_id(&self) -> &TenantId {
        &self.tenant
    }
}

impl std::fmt::Debug for TenantScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TenantScope({})", self.tenant)
    }
}

/// Capability for cross-tenant operations (creating tenants, listing every tenant, loading the
/// authentication snapshot). Every cross-tenant store method takes `&PlatformAdmin`, so such
/// calls are easy to find and cannot be made from a tenant-scoped code path by accident.
#[derive(Debug)]
pub struct PlatformAdmin {
    actor: String,
}

impl PlatformAdmin {
    /// The operator running the CLI or the gateway process itself: whoever holds the database
    /// credentials already holds every tenant's rows, so this grants nothing new. Restricted by
    /// `clippy.toml` like the scope constructor.
    pub fn local_operator(actor: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
        }
    }

    /// A platform admin whose OIDC token (with the `platform_admin` role, from an issuer the
    /// platform trusts for it) was just verified; `subject` is the token's user claim.
    /// Restricted by `clippy.toml`; the authentication stage is the one allowed site.
    pub fn from_verified_credential(subject: impl Into<String>) -> Self {
        Self {
            actor: subject.into(),
        }
    }

    pub fn actor(&self) -> &str {
        &self.actor
    }
}

/// The verified credential a principal presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A tenant API key.
    ApiKey(KeyId),
    /// An OIDC bearer token; `subject` is its user claim.
    Token { issuer: String, subject: String },
}

impl std::fmt::Display for Credential {
    /// The value per-credential limits and audit records key on: the key id, or
    /// `oidc:<subject>` for a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::ApiKey(k) => write!(f, "{k}"),
            Credential::Token { subject, .. } => write!(f, "oidc:{subject}"),
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub scope: TenantScope,
    pub credential: Credential,
    pub role: Role,
    /// End-user identifier bound to the credential (never taken from the request body).
    pub user: Option<String>,
}

/// A value that failed validation; the message names what was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidValue(pub String);
