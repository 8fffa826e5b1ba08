//! Stages authenticate and authorize: the request's credential becomes a [`TenantContext`]
//! (the caller, its tenant, and one view of the tenant's configuration that the whole call
//! reads), then an [`AuthorizedCall`] (the model resolved to a route the tenant may use).

use crate::clock::now_ms;
use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::identity::auth::{admit_token, authenticate_key, credential, AuthIndex, Caller};
use crate::identity::keys::ServerSecret;
use crate::identity::oidc::Verifier;
pub use crate::identity::TenantContext;
use crate::upstream::endpoints::Endpoints;
use crate::upstream::{Catalog, Owner, Route};
use arc_swap::ArcSwap;
use axum::http::HeaderMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tenantgate_core::{IsolationTier, Tenant, TenantStatus};

/// The call is permitted and resolved to the provider routes it may take.
pub struct AuthorizedCall {
    pub ctx: TenantContext,
    /// The first target this call tries: the model's name, defaults and output bound.
    pub route: Arc<Route>,
    /// Every target in the order this call tries them (`route` first), the fallback
    /// model's last; each one the tenant may reach.
    pub targets: Vec<Arc<Route>>,
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
            TenantStatus::PendingDeletion => Err(GatewayError::TenantPendingDeletion),
            // Its keys are revoked in the same transaction; this covers the reload window.
            TenantStatus::Deleted => Err(GatewayError::InvalidKey),
        }
    }
}

/// Where a tenant's call to one provider may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The built-in demo model: in process, no credential, no network.
    InProcess,
    /// The platform's endpoint with the platform's credential.
    Platform,
    /// The tenant's own endpoint with its own credential, and nowhere else.
    Own,
    /// Nowhere: for this tenant the model does not exist.
    NotAvailable,
}

/// The one rule for a tenant's calls to a provider of `kind`, given whether the tenant set
/// its own endpoint for it. A tenant with its own endpoint reaches that one only, whatever its
/// tier. A `dedicated` tenant never shares an endpoint, so a provider it has no endpoint for
/// is not available to it at all.
pub fn reach(isolation: IsolationTier, kind: ProviderKind, own: bool) -> Reach {
    match kind {
        // Nothing is shared with anyone: no credential, no network, no other tenant's state.
        ProviderKind::Demo => Reach::InProcess,
        ProviderKind::Openai
        | ProviderKind::Azure
        | ProviderKind::OpenaiCompatible
        | ProviderKind::Anthropic => match (own, isolation) {
            (true, _) => Reach::Own,
            (false, IsolationTier::Namespace | IsolationTier::Schema) => Reach::Platform,
            (false, IsolationTier::Dedicated) => Reach::NotAvailable,
        },
    }
}

/// The catalog route of `model` for `tenant`, whose own endpoints (as its snapshot lists them)
/// are `own`, and where it goes. Every refusal is the same `model_not_found` (status, body and
/// audit event): a distinct answer for "exists but not yours" would list the catalogue, other
/// tenants' models included, to any key. A model a dedicated tenant cannot reach (its
/// provider is one the tenant has no endpoint of its own for) is that same answer, not a 403
/// or a 503: it is not forbidden for now but absent from that tenant's catalogue, exactly like
/// a model outside its allow-list, and it is listed the same way ([`visible_models`]).
fn resolve<'c>(
    catalog: &'c Catalog,
    tenant: &Tenant,
    own: &[(String, i64)],
    model: &str,
) -> Result<Target<'c>, GatewayError> {
    let mut all = resolve_all(catalog, tenant, own, model)?;
    Ok(all.remove(0).0)
}

/// Every target of `model` the tenant can reach, in configuration order with its weight
/// (each by [`reach`]: a target on a provider a dedicated tenant has no endpoint for is not
/// among them). None at all is the same `model_not_found` as an unknown model.
fn resolve_all<'c>(
    catalog: &'c Catalog,
    tenant: &Tenant,
    own: &[(String, i64)],
    model: &str,
) -> Result<Vec<(Target<'c>, u32)>, GatewayError> {
    let not_found = || GatewayError::ModelNotFound(model.to_owned());
    let plan = catalog
        .plan(model)
        .filter(|_| tenant.allows_model(model))
        .ok_or_else(not_found)?;
    let found: Vec<(Target<'c>, u32)> = plan
        .targets
        .iter()
        .filter_map(|(route, weight)| {
            let has_own = own.iter().any(|(p, _)| *p == route.provider.name);
            match reach(tenant.isolation, route.provider.kind, has_own) {
                Reach::InProcess | Reach::Platform => Some((Target::Catalog(route), *weight)),
                Reach::Own => Some((Target::OwnEndpoint(route), *weight)),
                Reach::NotAvailable => None,
            }
        })
        .collect();
    if found.is_empty() {
        return Err(not_found());
    }
    Ok(found)
}

/// What [`resolve`] found: the catalog's route as it is, or to be taken to the tenant's own
/// endpoint for its provider.
#[derive(Debug)]
enum Target<'c> {
    Catalog(&'c Arc<Route>),
    OwnEndpoint(&'c Arc<Route>),
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

/// The platform's incident freezes (`lifecycle::incident`): a call of a frozen tenant, on a
/// frozen route (`route`: the call's path) or to a frozen model is refused, from the snapshot
/// (no query). Checked right after authentication with the route, and again in [`model`] with
/// the model, so knowledge-base embeddings are held too.
pub fn not_frozen(
    ctx: &TenantContext,
    route: Option<&str>,
    model: Option<&str>,
) -> Result<(), GatewayError> {
    use tenantgate_store::incident::FreezeKind;
    let held = |kind: FreezeKind, target: &str, what: &'static str| {
        ctx.view
            .frozen(kind, target)
            .map(|id| GatewayError::Frozen {
                what,
                id: id.to_owned(),
            })
    };
    let found = held(FreezeKind::Tenant, ctx.tenant.id.as_str(), "tenant")
        .or_else(|| route.and_then(|r| held(FreezeKind::Route, r, "route")))
        .or_else(|| model.and_then(|m| held(FreezeKind::Model, m, "model")));
    match found {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Stage authorize: the model exists in the catalog, is on the tenant's allow-list and is
/// reachable for the tenant ([`resolve`]); the route is the tenant's own endpoint when it has
/// one for the model's provider. Every model choice (chat on both wires, embeddings,
/// knowledge-base embeddings) comes through here; `/v1/models/{id}` uses [`visible_models`],
/// the same set.
pub async fn model(
    catalog: &Catalog,
    endpoints: &Endpoints<'_>,
    ctx: TenantContext,
    model: &str,
) -> Result<AuthorizedCall, GatewayError> {
    not_frozen(&ctx, None, Some(model))?;
    // The tenant's own fine-tuned models first (from the snapshot), then the catalog. A
    // private model exists at one provider only (where it was trained): one target, on its
    // base model's route, never failed over.
    if let Some(pm) = private(&ctx, model) {
        // It runs on its base model's route: a freeze of the base model holds it too.
        not_frozen(&ctx, None, Some(&pm.base_model))?;
        let own = ctx.view.own_endpoints(ctx.principal.scope.tenant_id());
        let base = match resolve(catalog, &ctx.tenant, own, &pm.base_model)? {
            Target::Catalog(route) => route.clone(),
            Target::OwnEndpoint(shared) => endpoints.route(&ctx, shared).await?,
        };
        let route = Arc::new(Route {
            name: pm.name.clone(),
            provider: base.provider.clone(),
            upstream_model: pm.upstream_model.clone(),
            default_max_tokens: base.default_max_tokens,
            pricing: base.pricing,
        });
        return Ok(AuthorizedCall {
            ctx,
            route: route.clone(),
            targets: vec![route],
        });
    }
    let mut targets = open_targets(catalog, endpoints, &ctx, model).await?;
    // The route policy's fallback model, on the same terms as if the caller had named it (its
    // allow-list, its reach); tried after every target of the model itself. Its own fallback
    // is not followed.
    // A frozen fallback is not taken (a freeze of M holds every call that would reach M).
    let fallback = catalog
        .plan(model)
        .and_then(|p| p.fallback.as_deref())
        .filter(|f| not_frozen(&ctx, None, Some(f)).is_ok());
    if let Some(fallback) = fallback {
        match open_targets(catalog, endpoints, &ctx, fallback).await {
            Ok(more) => targets.extend(more),
            Err(GatewayError::ModelNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(AuthorizedCall {
        ctx,
        route: targets[0].clone(),
        targets,
    })
}

/// `model`'s targets the tenant can reach, each on the tenant's own endpoint where it has one
/// for the target's provider, in the order of the model's strategy.
async fn open_targets(
    catalog: &Catalog,
    endpoints: &Endpoints<'_>,
    ctx: &TenantContext,
    model: &str,
) -> Result<Vec<Arc<Route>>, GatewayError> {
    let own = ctx.view.own_endpoints(ctx.principal.scope.tenant_id());
    let found = resolve_all(catalog, &ctx.tenant, own, model)?;
    let strategy = catalog
        .plan(model)
        .map_or(crate::config::Strategy::Ordered, |p| p.strategy);
    let mut routes = Vec::with_capacity(found.len());
    for (target, weight) in found {
        let route = match target {
            Target::Catalog(route) => route.clone(),
            Target::OwnEndpoint(shared) => endpoints.route(ctx, shared).await?,
        };
        routes.push((route, weight));
    }
    Ok(crate::upstream::failover::order(strategy, routes))
}

/// The caller's tenant's private (fine-tuned) model named `model`, from the snapshot. Only the
/// caller's own tenant's list is read, so another tenant's private model is not found here and
/// then not in the catalog either: `model_not_found`, exactly like an unknown model
/// (`tests/fine_tuning.rs`). It runs on its base model's route, which the tenant must still be
/// allowed to reach (`resolve`).
fn private<'v>(
    ctx: &'v TenantContext,
    model: &str,
) -> Option<&'v tenantgate_store::finetune::PrivateModel> {
    ctx.view
        .private_models(ctx.principal.scope.tenant_id())
        .iter()
        .find(|m| m.name == model)
}

/// The tenant's models that exist in the catalog and it can reach: exactly what [`model`]
/// would admit.
pub fn visible_models(catalog: &Catalog, ctx: &TenantContext) -> Vec<String> {
    let own = ctx.view.own_endpoints(ctx.principal.scope.tenant_id());
    let mut v = visible(catalog, &ctx.tenant, own);
    // Its private models whose base it can still reach: exactly what `model` admits.
    v.extend(
        ctx.view
            .private_models(ctx.principal.scope.tenant_id())
            .iter()
            .filter(|m| resolve(catalog, &ctx.tenant, own, &m.base_model).is_ok())
            .map(|m| m.name.clone()),
    );
    v
}

fn visible(catalog: &Catalog, tenant: &Tenant, own: &[(String, i64)]) -> Vec<String> {
    catalog
        .routes()
        .filter(|r| resolve(catalog, tenant, own, &r.name).is_ok())
        .map(|r| r.name.clone())
        .collect()
}

impl AuthorizedCall {
    /// The prices a reservation is made at: the dearest of every target's, part by part, so
    /// a call failed over to a dearer target is never admitted under its budget.
    pub fn reserve_pricing(&self) -> crate::config::Pricing {
        self.targets
            .iter()
            .fold(self.route.pricing, |a, r| crate::config::Pricing {
                input_per_mtok: a.input_per_mtok.max(r.pricing.input_per_mtok),
                output_per_mtok: a.output_per_mtok.max(r.pricing.output_per_mtok),
                cached_input_per_mtok: a.cached_input_per_mtok.max(r.pricing.cached_input_per_mtok),
                training_per_mtok: a.training_per_mtok.max(r.pricing.training_per_mtok),
            })
    }

    /// Puts in the call's record that it went to the tenant's own endpoint, and which
    /// revision of it: the evidence that a tenant's calls reached only its own endpoints.
    pub(crate) fn note_endpoint(&self, audit: &mut crate::audit::CallAudit) {
        note_endpoint(&self.route, audit);
    }

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

/// [`AuthorizedCall::note_endpoint`] for the target that answered.
pub(crate) fn note_endpoint(route: &Route, audit: &mut crate::audit::CallAudit) {
    match route.provider.owner {
        Owner::Platform => {}
        Owner::Tenant { revision } => audit.note("tenant_endpoint_revision", revision),
    }
}

#[cfg(test)]
mod tests {
    use super::{reach, resolve, visible, Reach, Target};
    use crate::config::{Config, ModelConfig, ProviderConfig, ProviderKind};
    use crate::error::GatewayError;
    use crate::upstream::Catalog;
    use tenantgate_core::{IsolationTier, PlanTier, Tenant, TenantId, TenantStatus};

    const NETWORK: [ProviderKind; 4] = [
        ProviderKind::Openai,
        ProviderKind::Azure,
        ProviderKind::OpenaiCompatible,
        ProviderKind::Anthropic,
    ];
    const TIERS: [IsolationTier; 3] = [
        IsolationTier::Namespace,
        IsolationTier::Schema,
        IsolationTier::Dedicated,
    ];

    #[test]
    fn a_tenant_with_its_own_endpoint_reaches_only_that_one_on_every_tier() {
        for kind in NETWORK {
            for tier in TIERS {
                assert_eq!(reach(tier, kind, true), Reach::Own, "{kind:?} {tier:?}");
            }
        }
    }

    #[test]
    fn a_dedicated_tenant_never_reaches_a_shared_endpoint() {
        for kind in NETWORK {
            assert_eq!(
                reach(IsolationTier::Dedicated, kind, false),
                Reach::NotAvailable,
                "{kind:?}"
            );
            // The tiers that share the provider layer take the platform's endpoint.
            for tier in [IsolationTier::Namespace, IsolationTier::Schema] {
                assert_eq!(
                    reach(tier, kind, false),
                    Reach::Platform,
                    "{kind:?} {tier:?}"
                );
            }
        }
    }

    #[test]
    fn the_in_process_demo_model_stays_available_to_every_tier() {
        for tier in TIERS {
            for own in [false, true] {
                assert_eq!(reach(tier, ProviderKind::Demo, own), Reach::InProcess);
            }
        }
    }

    fn catalog() -> Catalog {
        let mut cfg = Config::default();
        cfg.demo.enabled = true;
        let provider = |name: &str, kind| ProviderConfig {
            name: name.into(),
            kind,
            base_url: Some("http://127.0.0.1:9/v1".into()),
            api_key_env: None,
            api_key_file: None,
            api_version: None,
            connect_timeout_ms: 1_000,
            request_timeout_ms: 1_000,
            read_timeout_ms: 1_000,
            pool_max_idle_per_host: 1,
            cache_salt: None,
        };
        cfg.providers = vec![
            provider("shared-openai", ProviderKind::OpenaiCompatible),
            provider("shared-anthropic", ProviderKind::Anthropic),
        ];
        let model = |name: &str, provider: &str| ModelConfig {
            name: name.into(),
            provider: provider.into(),
            upstream_model: None,
            default_max_tokens: 16,
            pricing: None,
            ..Default::default()
        };
        cfg.models = vec![
            model("gpt", "shared-openai"),
            model("claude", "shared-anthropic"),
        ];
        Catalog::build(&cfg).unwrap()
    }

    fn tenant(isolation: IsolationTier) -> Tenant {
        Tenant {
            id: TenantId::parse("t1").unwrap(),
            slug: "acme".into(),
            display_name: "Acme".into(),
            plan: PlanTier::Pro,
            isolation,
            status: TenantStatus::Active,
            allowed_models: vec!["*".into()],
            enabled_models: None,
            max_tokens_per_request: None,
            created_at_ms: 0,
        }
    }

    #[test]
    fn a_dedicated_tenant_is_answered_model_not_found_for_a_provider_it_has_no_endpoint_for() {
        let catalog = catalog();
        let dedicated = tenant(IsolationTier::Dedicated);
        let own = [("shared-anthropic".to_owned(), 7)];
        // Exactly the answer for a model that does not exist at all.
        let unknown = resolve(&catalog, &dedicated, &own, "no-such-model").unwrap_err();
        assert_eq!(unknown, GatewayError::ModelNotFound("no-such-model".into()));
        assert_eq!(
            resolve(&catalog, &dedicated, &own, "gpt").unwrap_err(),
            GatewayError::ModelNotFound("gpt".into())
        );
        let Target::OwnEndpoint(route) = resolve(&catalog, &dedicated, &own, "claude").unwrap()
        else {
            panic!("claude is on the tenant's own endpoint")
        };
        assert_eq!(route.name, "claude");
        let Target::Catalog(route) = resolve(&catalog, &dedicated, &own, "demo").unwrap() else {
            panic!("the demo model is the catalog's")
        };
        assert_eq!(route.name, "demo");
        // Listed as it is answered: the unreachable model is not there.
        assert_eq!(visible(&catalog, &dedicated, &own), ["claude", "demo"]);
        // With no endpoint at all, only the in-process demo model is left.
        assert_eq!(visible(&catalog, &dedicated, &[]), ["demo"]);
        // The same tenant on the namespace tier shares the platform's endpoint instead.
        let namespace = tenant(IsolationTier::Namespace);
        assert!(matches!(
            resolve(&catalog, &namespace, &own, "gpt").unwrap(),
            Target::Catalog(r) if r.name == "gpt"
        ));
        assert_eq!(
            visible(&catalog, &namespace, &own),
            ["claude", "demo", "gpt"]
        );
    }
}
