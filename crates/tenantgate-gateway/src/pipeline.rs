//! The request pipeline's stages as typed steps. Each stage takes the previous stage's output,
//! so a later stage cannot run on a request an earlier one did not pass:
//!
//! `authenticate -> TenantContext -> authorize -> AuthorizedCall -> (route, in http/)`
//!
//! Admission (limits, budgets), composition, guards, settlement and audit slot in between as
//! their issues land; each will take and return one of these types.

use crate::auth::{authenticate, Authenticated};
use crate::error::GatewayError;
use crate::state::AppState;
use crate::upstream::Route;
use axum::http::HeaderMap;
use std::sync::Arc;
use tenantgate_core::{Principal, Tenant, TenantStatus};

/// Stage 2 output: a verified principal and its tenant's configuration snapshot.
pub struct TenantContext {
    pub principal: Principal,
    pub tenant: Arc<Tenant>,
}

/// Stage 3 output: the call is permitted and resolved to a provider route.
pub struct AuthorizedCall {
    pub ctx: TenantContext,
    pub route: Arc<Route>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl AppState {
    /// Stages 1 and 2: credential -> principal -> tenant context. A suspended tenant stops here.
    pub fn tenant_context(&self, headers: &HeaderMap) -> Result<TenantContext, GatewayError> {
        let index = self.0.auth.load();
        let Authenticated { principal, tenant } =
            authenticate(&index, &self.0.secret, headers, now_ms())?;
        match tenant.status {
            TenantStatus::Active => Ok(TenantContext { principal, tenant }),
            TenantStatus::Suspended => Err(GatewayError::TenantSuspended),
            // Its keys are revoked in the same transaction; this covers the reload window.
            TenantStatus::Deleted => Err(GatewayError::InvalidKey),
        }
    }

    /// Stage 3: the model exists in the catalog and is on the tenant's allow-list.
    pub fn authorize(
        &self,
        ctx: TenantContext,
        model: &str,
    ) -> Result<AuthorizedCall, GatewayError> {
        let route = self
            .0
            .catalog
            .get(model)
            .ok_or_else(|| GatewayError::ModelNotFound(model.to_owned()))?;
        if !ctx.tenant.allows_model(model) {
            return Err(GatewayError::ModelNotAllowed(model.to_owned()));
        }
        Ok(AuthorizedCall {
            ctx,
            route: route.clone(),
        })
    }

    /// The tenant's models that exist in the catalog: exactly what `authorize` would admit.
    pub fn visible_models(&self, ctx: &TenantContext) -> Vec<String> {
        self.0
            .catalog
            .names()
            .filter(|m| ctx.tenant.allows_model(m))
            .map(str::to_owned)
            .collect()
    }
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
