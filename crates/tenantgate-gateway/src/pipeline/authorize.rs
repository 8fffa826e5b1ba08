//! The request pipeline's stages as typed steps. Each stage takes the previous stage's output,
//! so a later stage cannot run on a request an earlier one did not pass:
//!
//! `authenticate -> TenantContext -> authorize -> AuthorizedCall -> (route, in http/)`
//!
//! Admission (limits, budgets), composition, guards, settlement and audit slot in between as
//! their issues land; each will take and return one of these types.

use crate::error::GatewayError;
use crate::identity::auth::{admit_token, authenticate_key, credential, Authenticated, Caller};
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
    /// Stage 1: the request's credential, verified: an API key (hash lookup in the snapshot)
    /// or an OIDC bearer token (signature against the issuer's JWKS, then its claims).
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, GatewayError> {
        let presented = credential(headers)?;
        if crate::identity::oidc::looks_like_jwt(presented) && !self.0.oidc.is_empty() {
            let token = self
                .0
                .oidc
                .verify(presented)
                .await
                .map_err(|e| GatewayError::InvalidToken(e.to_string()))?;
            let cfg = self
                .0
                .oidc
                .config(token.provider)
                .ok_or(GatewayError::Internal)?;
            return admit_token(&self.0.auth.load(), cfg, token);
        }
        let index = self.0.auth.load();
        authenticate_key(&index, &self.0.secret, presented, now_ms()).map(Caller::Tenant)
    }

    /// Stages 1 and 2: credential -> principal -> tenant context. A suspended tenant stops
    /// here; a platform admin has no tenant context.
    pub async fn tenant_context(&self, headers: &HeaderMap) -> Result<TenantContext, GatewayError> {
        let r = self.resolve_tenant(headers).await;
        if let Err(GatewayError::PolicyUnreadable(_)) = &r {
            self.0
                .policy_refusals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    /// [`Self::tenant_context`] without counting refusals: for the route layer that resolves
    /// the caller only to record the call (the handler resolves it again, and counts).
    pub(crate) async fn resolve_tenant(
        &self,
        headers: &HeaderMap,
    ) -> Result<TenantContext, GatewayError> {
        let Authenticated { principal, tenant } = match self.caller(headers).await? {
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
                let index = self.0.auth.load();
                let unreadable = index.unreadable_policies(&tenant.id);
                if !unreadable.is_empty() {
                    let which: Vec<&str> = unreadable.iter().map(|k| k.as_str()).collect();
                    return Err(GatewayError::PolicyUnreadable(which.join(", ")));
                }
                Ok(TenantContext { principal, tenant })
            }
            TenantStatus::Suspended => Err(GatewayError::TenantSuspended),
            // Its keys are revoked in the same transaction; this covers the reload window.
            TenantStatus::Deleted => Err(GatewayError::InvalidKey),
        }
    }

    /// Stage 3: the model exists in the catalog and is on the tenant's allow-list. Both
    /// failures are the same `model_not_found` (status, body and audit event): a distinct
    /// answer for "exists but not yours" would list the catalogue, other tenants' models
    /// included, to any key. Every model choice (chat on both wires, embeddings, knowledge-base
    /// embeddings) comes through here; `/v1/models/{id}` uses `visible_models`, the same set.
    pub fn authorize(
        &self,
        ctx: TenantContext,
        model: &str,
    ) -> Result<AuthorizedCall, GatewayError> {
        let route = self
            .0
            .catalog
            .get(model)
            .filter(|_| ctx.tenant.allows_model(model))
            .ok_or_else(|| GatewayError::ModelNotFound(model.to_owned()))?;
        Ok(AuthorizedCall {
            ctx,
            route: route.clone(),
        })
    }

    /// The request-rate part of admission, at the front of a model call (right after
    /// authentication, before the body is read): the call uses one request of the tenant's,
    /// key's and end user's per-minute windows even if it is refused later.
    pub async fn count_request(
        &self,
        ctx: &TenantContext,
        request_id: &str,
    ) -> Result<Option<crate::limits::Counted>, GatewayError> {
        let tenant = ctx.principal.scope.tenant_id();
        let (overrides, _) = self.0.auth.load().limits(tenant);
        let adm = &self.0.admission;
        let limits = adm.config.plan(ctx.tenant.plan).overlay(&overrides);
        let key = ctx.principal.credential.to_string();
        adm.count_request(
            tenant,
            &key,
            ctx.principal.user.as_deref(),
            &limits,
            request_id,
            now_ms(),
        )
        .await
    }

    /// Stage admission: the kill switch, then every rate limit and budget of the tenant, key
    /// and end user, reserving the call's maximum (prompt tokens by the tokenizer plus the
    /// output bound, priced at the route's prices). Settled when the call's record is built.
    pub async fn admit(
        &self,
        call: &AuthorizedCall,
        request_id: &str,
        prompt: &serde_json::Map<String, serde_json::Value>,
        max_output: u64,
    ) -> Result<crate::limits::Reservation, GatewayError> {
        self.admit_counted(call, request_id, prompt, max_output, None)
            .await
    }

    /// [`Self::admit`] for a call whose request [`Self::count_request`] counted already.
    pub async fn admit_counted(
        &self,
        call: &AuthorizedCall,
        request_id: &str,
        prompt: &serde_json::Map<String, serde_json::Value>,
        max_output: u64,
        counted: Option<crate::limits::Counted>,
    ) -> Result<crate::limits::Reservation, GatewayError> {
        let index = self.0.auth.load();
        let tenant = call.ctx.principal.scope.tenant_id();
        let (overrides, kill_switch) = index.limits(tenant);
        if kill_switch {
            return Err(GatewayError::InsufficientQuota(
                "Spending is stopped: this tenant's kill switch is on.".into(),
            ));
        }
        let adm = &self.0.admission;
        let limits = adm.config.plan(call.ctx.tenant.plan).overlay(&overrides);
        let prompt_tokens = if limits.counts_tokens() {
            tenantgate_providers::tokens::count(&serde_json::to_string(prompt).unwrap_or_default())
        } else {
            0
        };
        let pricing = call.route.pricing;
        let key = call.ctx.principal.credential.to_string();
        adm.reserve_counted(
            crate::limits::Ask {
                tenant,
                key: &key,
                user: call.ctx.principal.user.as_deref(),
                request_id,
                limits: &limits,
                tokens: prompt_tokens + max_output,
                prompt_tokens,
                cost: pricing.cost(prompt_tokens, 0, max_output),
                now_ms: now_ms(),
            },
            counted,
        )
        .await
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
