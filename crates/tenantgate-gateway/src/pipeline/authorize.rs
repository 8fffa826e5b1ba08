//! Stages authenticate and authorize: the request's credential becomes a [`TenantContext`]
//! (the caller, its tenant, and one view of the tenant's configuration that the whole call
//! reads), then an [`AuthorizedCall`] (the model resolved to a route the tenant may use).

use crate::clock::now_ms;
use crate::error::GatewayError;
use crate::identity::auth::{admit_token, authenticate_key, credential, AuthIndex, Caller};
use crate::identity::keys::ServerSecret;
use crate::identity::oidc::Verifier;
pub use crate::identity::TenantContext;
use crate::upstream::{Catalog, Route};
use arc_swap::ArcSwap;
use axum::http::HeaderMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tenantgate_core::TenantStatus;

/// The call is permitted and resolved to a provider route.
pub struct AuthorizedCall {
    pub ctx: TenantContext,
    pub route: Arc<Route>,
}

/// What authentication reads: the snapshot of tenants and keys, the trusted issuers, and the
/// secret key hashes are keyed with.
pub struct Identity<'a> {
    pub auth: &'a ArcSwap<AuthIndex>,
    pub oidc: &'a Verifier,
    pub secret: &'a ServerSecret,
    /// Calls refused because their tenant's stored policy is unreadable (`/metrics`).
    pub policy_refusals: &'a AtomicU64,
}

impl Identity<'_> {
    /// The request's credential, verified: an API key (hash lookup in the snapshot) or an
    /// OIDC bearer token (signature against the issuer's JWKS, then its claims). Returns the
    /// snapshot it was checked against with it.
    pub async fn caller(
        &self,
        headers: &HeaderMap,
    ) -> Result<(Caller, Arc<AuthIndex>), GatewayError> {
        let presented = credential(headers)?;
        if crate::identity::oidc::looks_like_jwt(presented) && !self.oidc.is_empty() {
            let token = self
                .oidc
                .verify(presented)
                .await
                .map_err(|e| GatewayError::InvalidToken(e.to_string()))?;
            let cfg = self
                .oidc
                .config(token.provider)
                .ok_or(GatewayError::Internal)?;
            let index = self.auth.load_full();
            return admit_token(&index, cfg, token).map(|c| (c, index));
        }
        let index = self.auth.load_full();
        authenticate_key(&index, self.secret, presented, now_ms())
            .map(|a| (Caller::Tenant(a), index))
    }

    /// Stage authenticate: credential -> principal -> tenant context. A suspended tenant stops
    /// here; a platform admin has no tenant context. A refusal for an unreadable policy is
    /// counted when `count` is set.
    pub async fn tenant(
        &self,
        headers: &HeaderMap,
        count: bool,
    ) -> Result<TenantContext, GatewayError> {
        let r = self.resolve(headers).await;
        if let (true, Err(GatewayError::PolicyUnreadable(_))) = (count, &r) {
            self.policy_refusals.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    async fn resolve(&self, headers: &HeaderMap) -> Result<TenantContext, GatewayError> {
        let (caller, view) = self.caller(headers).await?;
        let crate::identity::auth::Authenticated { principal, tenant } = match caller {
            Caller::Tenant(a) => a,
            Caller::Platform(_) => {
                return Err(GatewayError::Forbidden(
                    "platform admins act on tenants through /admin/v1; tenant data needs a break-glass grant".into(),
                ))
            }
        };
        match tenant.status {
            TenantStatus::Active => {
                // Fail closed: a tenant whose stored guard, audit or limits policy this
                // version cannot read is refused, never served on defaults (a `block` must
                // not become `flag` during a rolling upgrade).
                let unreadable = view.unreadable_policies(&tenant.id);
                if !unreadable.is_empty() {
                    let which: Vec<&str> = unreadable.iter().map(|k| k.as_str()).collect();
                    return Err(GatewayError::PolicyUnreadable(which.join(", ")));
                }
                Ok(TenantContext {
                    principal,
                    tenant,
                    view,
                })
            }
            TenantStatus::Suspended => Err(GatewayError::TenantSuspended),
            // Its keys are revoked in the same transaction; this covers the reload window.
            TenantStatus::Deleted => Err(GatewayError::InvalidKey),
        }
    }
}

/// Stage tenant key: a tenant whose keys are wrapped by a key in its own KMS is served only
/// while that key answers. Free while the tenant's unwrapped KEK is cached; past the cache's
/// bound (`encryption.kek_cache_secs`), one KMS call re-verifies it, and a refusal (the tenant
/// disabled the key or revoked the gateway's access) fails the call closed. A tenant on the
/// platform's key costs one lookup in the snapshot.
pub async fn tenant_key(
    kms: &dyn tenantgate_crypto::Kms,
    ctx: &TenantContext,
) -> Result<(), GatewayError> {
    if ctx.view.customer_key(&ctx.tenant.id).is_none() {
        return Ok(());
    }
    kms.ensure_live(&ctx.tenant.id)
        .await
        .map_err(|e| GatewayError::TenantKeyUnavailable(e.into()))
}

/// Stage authorize: the model exists in the catalog and is on the tenant's allow-list. Both
/// failures are the same `model_not_found` (status, body and audit event): a distinct answer
/// for "exists but not yours" would list the catalogue, other tenants' models included, to
/// any key. Every model choice (chat on both wires, embeddings, knowledge-base embeddings)
/// comes through here; `/v1/models/{id}` uses [`visible_models`], the same set.
pub fn model(
    catalog: &Catalog,
    ctx: TenantContext,
    model: &str,
) -> Result<AuthorizedCall, GatewayError> {
    let route = catalog
        .get(model)
        .filter(|_| ctx.tenant.allows_model(model))
        .ok_or_else(|| GatewayError::ModelNotFound(model.to_owned()))?;
    Ok(AuthorizedCall {
        ctx,
        route: route.clone(),
    })
}

/// The tenant's models that exist in the catalog: exactly what [`model`] would admit.
pub fn visible_models(catalog: &Catalog, ctx: &TenantContext) -> Vec<String> {
    catalog
        .names()
        .filter(|m| ctx.tenant.allows_model(m))
        .map(str::to_owned)
        .collect()
}

impl AuthorizedCall {
    /// Applies the tenant's per-request token cap: a larger request is refused; a request with
    /// no bound gets the cap. Returns the bound to send upstream, if any.
    pub fn bound_max_tokens(
        &self,
        requested: Option<u64>,
        param: &'static str,
    ) -> Result<Option<u64>, GatewayError> {
        match (requested, self.ctx.tenant.max_tokens_per_request) {
            (Some(r), Some(cap)) if r > u64::from(cap) => Err(GatewayError::MaxTokensExceeded {
                requested: r,
                cap,
                param,
            }),
            (Some(r), _) => Ok(Some(r)),
            (None, Some(cap)) => Ok(Some(u64::from(cap))),
            (None, None) => Ok(None),
        }
    }
}
