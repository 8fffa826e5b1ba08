//! Shared application state: `Arc<Inner>`, the auth snapshot behind `ArcSwap`, no locks on the
//! request path.

use crate::config::Config;
use crate::identity::auth::AuthIndex;
use crate::identity::keys::ServerSecret;
use crate::upstream::Catalog;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tenantgate_core::PlatformAdmin;
use tenantgate_store::Store;

#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub config: Config,
    pub store: Store,
    pub secret: ServerSecret,
    /// Shared with `/metrics` (its unreadable-policy count).
    pub auth: Arc<ArcSwap<AuthIndex>>,
    pub catalog: Catalog,
    /// Tenants' own provider endpoints, opened in this process.
    pub endpoints: crate::upstream::endpoints::EndpointCache,
    /// A circuit breaker per provider endpoint, as this process sees them.
    pub breakers: Arc<crate::upstream::breaker::Breakers>,
    pub prompts: crate::pipeline::compose::PromptCache,
    pub cache: Option<crate::upstream::cache::CacheBackend>,
    /// Where leak-guard findings go (counters, audit, webhooks).
    pub incidents: crate::guard::IncidentSink,
    /// The audit writer's front, admission, the keyring, the task tracker and the shutdown
    /// signal: what a call's record and settlement need, also from a drop guard.
    pub rec: crate::audit::Recorder,
    /// Trusted OIDC issuers and their cached keys.
    pub oidc: crate::identity::oidc::Verifier,
    /// Knowledge-base indexes loaded in this process.
    pub knowledge: crate::knowledge::Knowledge,
    /// Calls refused because their tenant's stored policy is unreadable (`/metrics`).
    pub policy_refusals: Arc<std::sync::atomic::AtomicU64>,
    /// The `/metrics` registry, reading the stats above.
    pub metrics: crate::metrics::Metrics,
}

impl AppState {
    #[expect(
        clippy::too_many_arguments,
        reason = "the one constructor wiring every long-lived part, called once by Server::bind"
    )]
    pub(crate) fn new(
        config: Config,
        store: Store,
        secret: ServerSecret,
        catalog: Catalog,
        keyring: Arc<tenantgate_store::Keyring>,
        cache: Option<crate::upstream::cache::CacheBackend>,
        audit: crate::audit::AuditLog,
        admission: crate::limits::Admission,
        tasks: tokio_util::task::TaskTracker,
    ) -> Self {
        // Empty until the first reload, which `Server::bind` runs before listening.
        let auth = Arc::new(ArcSwap::from_pointee(AuthIndex::default()));
        let policy_refusals = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let knowledge =
            crate::knowledge::Knowledge::new(&config.rag, tasks.clone(), keyring.clone());
        let metrics_audit = audit.stats.clone();
        let metrics_admission = admission.stats.clone();
        // Label values: only the configured names (the catalog's), never a client's.
        let red = Arc::new(crate::telemetry::red::Red::new(
            catalog.routes().map(|r| r.name.as_str()),
            // The configured providers, and the demo model's (a route's own provider).
            catalog
                .providers()
                .map(|p| p.name.as_str())
                .chain(catalog.routes().map(|r| r.provider.name.as_str())),
            config.metrics.tenant_labels(),
        ));
        let breakers = Arc::new(crate::upstream::breaker::Breakers::new(
            config.routing.breaker_failures,
            config.routing.breaker_open(),
        ));
        let rec = crate::audit::Recorder::new(crate::audit::RecorderParts {
            red: red.clone(),
            log: audit,
            admission,
            keyring,
            tasks,
            grace_over: tokio_util::sync::CancellationToken::new(),
        });
        let incidents =
            crate::guard::IncidentSink::new(rec.clone(), config.guard.webhook_url.clone());
        let metrics = crate::metrics::Metrics::new(crate::metrics::Sources {
            incidents: incidents.counts.clone(),
            audit: metrics_audit,
            admission: metrics_admission,
            knowledge: knowledge.stats.clone(),
            auth: auth.clone(),
            policy_refusals: policy_refusals.clone(),
            red,
            breakers: breakers.clone(),
        });
        AppState(Arc::new(Inner {
            store,
            secret,
            auth,
            catalog,
            endpoints: crate::upstream::endpoints::EndpointCache::default(),
            breakers,
            prompts: crate::pipeline::compose::PromptCache::default(),
            cache,
            incidents,
            oidc: crate::identity::oidc::Verifier::new(&config.auth.oidc),
            knowledge,
            policy_refusals,
            metrics,
            rec,
            config,
        }))
    }

    /// What the pipeline's stages use, borrowed for one call.
    pub(crate) fn deps(&self) -> crate::pipeline::Deps<'_> {
        let i = &self.0;
        crate::pipeline::Deps {
            identity: self.identity(),
            catalog: &i.catalog,
            endpoints: crate::upstream::endpoints::Endpoints {
                cache: &i.endpoints,
                auth: &i.auth,
                keyring: &i.rec.keyring,
            },
            prompts: crate::pipeline::compose::Prompts {
                cache: &i.prompts,
                store: &i.store,
                keyring: &i.rec.keyring,
            },
            knowledge: crate::pipeline::retrieve::Knowledge {
                indexes: &i.knowledge,
                store: &i.store,
                keyring: &i.rec.keyring,
                config: &i.config.rag,
            },
            cache: i.cache.as_ref(),
            routing: crate::pipeline::route::Routing {
                config: &i.config.routing,
                breakers: &i.breakers,
            },
            secret: &i.secret,
            incidents: &i.incidents,
            recorder: &i.rec,
        }
    }

    /// What authentication reads.
    pub(crate) fn identity(&self) -> crate::pipeline::Identity<'_> {
        crate::pipeline::Identity {
            auth: &self.0.auth,
            oidc: &self.0.oidc,
            secret: &self.0.secret,
            policy_refusals: &self.0.policy_refusals,
        }
    }

    /// The request's credential, verified (a tenant principal or a platform admin).
    pub async fn caller(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<crate::identity::auth::Caller, crate::error::GatewayError> {
        self.identity().caller(headers).await.map(|(c, _)| c)
    }

    /// A tenant principal's context (refusals for an unreadable policy counted).
    pub async fn tenant_context(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<crate::pipeline::TenantContext, crate::error::GatewayError> {
        self.identity().tenant(headers, true).await
    }

    /// [`Self::tenant_context`] without counting refusals: for the route layer that resolves
    /// the caller only to record the call (the handler resolves it again, and counts).
    pub(crate) async fn resolve_tenant(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<crate::pipeline::TenantContext, crate::error::GatewayError> {
        self.identity().tenant(headers, false).await
    }

    /// The tenant's models that exist in the catalog.
    pub fn visible_models(&self, ctx: &crate::pipeline::TenantContext) -> Vec<String> {
        crate::pipeline::authorize::visible_models(&self.0.catalog, ctx)
    }

    /// The audit writer's front and what recording needs.
    pub(crate) fn recorder(&self) -> &crate::audit::Recorder {
        &self.0.rec
    }

    /// The tenant keyring (envelope encryption) of this gateway.
    pub fn keyring(&self) -> &tenantgate_store::Keyring {
        &self.0.rec.keyring
    }

    /// The knowledge-base indexes loaded in this process.
    pub fn knowledge(&self) -> &crate::knowledge::Knowledge {
        &self.0.knowledge
    }

    /// The tenants' own provider endpoints opened in this process.
    pub fn endpoints(&self) -> &crate::upstream::endpoints::EndpointCache {
        &self.0.endpoints
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The audit writer's front (operator records, lifecycle steps, signing a head now).
    pub fn audit_log(&self) -> &crate::audit::AuditLog {
        &self.0.rec.log
    }

    /// The checkpoint signer (exports' manifests).
    pub fn audit_signer(&self) -> &tenantgate_audit::Signer {
        &self.0.rec.log.signer
    }

    /// Reloads tenants and keys from the store if the control-plane revision moved (or always,
    /// with `force`). Returns the revision now served.
    pub async fn reload_auth(&self, force: bool) -> Result<i64, tenantgate_store::StoreError> {
        let current = self.0.auth.load().revision;
        if !force && self.0.store.revision().await? == current {
            return Ok(current);
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "the gateway process loads every tenant's keys into its auth snapshot"
        )]
        let admin = PlatformAdmin::local_operator("gateway-auth-reload");
        let platform = self.0.store.platform(&admin);
        let snap = platform.auth_snapshot().await?;
        // Read after the snapshot: a key change committed in between is seen here, and its
        // revision bump brings one more reload.
        let customer_keys = platform.customer_keys().await?;
        let index = AuthIndex::build(snap).with_customer_keys(customer_keys);
        let rev = index.revision;
        // Tenants this snapshot shows deleted (or no longer has) that the previous one served.
        let previous = self.0.auth.load();
        let gone: Vec<tenantgate_core::TenantId> = previous
            .tenant_ids()
            .filter(|t| previous.is_live(t) && !index.is_live(t))
            .cloned()
            .collect();
        // A tenant moved to (or off, or between) keys of its own by another process: what this
        // one cached of its keys was unwrapped under the old arrangement.
        for t in index.customer_keys_changed(&previous) {
            self.keyring().key_changed(&t);
        }
        drop(previous);
        tracing::debug!(
            revision = rev,
            tenants = index.tenant_count(),
            "auth snapshot reloaded"
        );
        self.0.auth.store(Arc::new(index));
        // Opened endpoints the new snapshot no longer lists (changed, removed, or their tenant
        // deleted) leave memory now, keys included, not at the tenant's next call.
        self.0.endpoints.retain_current(&self.0.auth.load());
        // A deletion made anywhere (the CLI, the platform API on another replica) reaches every
        // replica through this reload, and each drops the tenant's resident indexes and index
        // files: they are sealed with keys that are being shredded, and are the tenant's data.
        for t in &gone {
            self.0.knowledge.forget(t, None);
            tracing::info!(tenant = %t, "deleted tenant's knowledge-base indexes removed");
        }
        Ok(rev)
    }

    /// Leak-guard incidents recorded by this process.
    pub fn incidents(&self) -> &crate::guard::Incidents {
        &self.0.incidents.counts
    }

    pub fn auth_revision(&self) -> i64 {
        self.0.auth.load().revision
    }
}
