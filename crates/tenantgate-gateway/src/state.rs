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
    pub auth: ArcSwap<AuthIndex>,
    pub catalog: Catalog,
    pub keyring: Arc<tenantgate_store::Keyring>,
    pub prompts: crate::pipeline::compose::PromptCache,
    pub cache: Option<crate::upstream::cache::CacheBackend>,
    pub incidents: crate::pipeline::guard::Incidents,
    pub webhooks: reqwest::Client,
    pub audit: crate::audit::AuditLog,
    pub admission: crate::limits::Admission,
    /// Trusted OIDC issuers and their cached keys.
    pub oidc: crate::identity::oidc::Verifier,
    /// Knowledge-base indexes loaded in this process.
    pub knowledge: crate::knowledge::Knowledge,
    /// Calls refused because their tenant's stored policy is unreadable (`/metrics`).
    pub policy_refusals: std::sync::atomic::AtomicU64,
    /// Background work of this server (detached audit writes, settlements, reloads): shutdown
    /// waits for all of it before draining the audit writer.
    pub tasks: tokio_util::task::TaskTracker,
    /// Cancelled when shutdown's grace is over: requests still running are cut (dropped
    /// inside the runtime, so their drop guards record and settle them).
    pub grace_over: tokio_util::sync::CancellationToken,
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
        AppState(Arc::new(Inner {
            store,
            secret,
            // Empty until the first reload, which `Server::bind` runs before listening.
            auth: ArcSwap::from_pointee(AuthIndex::default()),
            catalog,
            keyring,
            prompts: crate::pipeline::compose::PromptCache::default(),
            cache,
            incidents: crate::pipeline::guard::Incidents::default(),
            webhooks: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            oidc: crate::identity::oidc::Verifier::new(&config.auth.oidc),
            knowledge: crate::knowledge::Knowledge::new(&config.rag),
            policy_refusals: std::sync::atomic::AtomicU64::new(0),
            tasks,
            grace_over: tokio_util::sync::CancellationToken::new(),
            audit,
            admission,
            config,
        }))
    }

    /// The tenant keyring (envelope encryption) of this gateway.
    pub fn keyring(&self) -> &tenantgate_store::Keyring {
        &self.0.keyring
    }

    /// The knowledge-base indexes loaded in this process.
    pub fn knowledge(&self) -> &crate::knowledge::Knowledge {
        &self.0.knowledge
    }

    pub fn store(&self) -> &Store {
        &self.0.store
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
        let snap = self.0.store.platform(&admin).auth_snapshot().await?;
        let index = AuthIndex::build(snap);
        let rev = index.revision;
        // Tenants this snapshot shows deleted (or no longer has) that the previous one served.
        let previous = self.0.auth.load();
        let gone: Vec<tenantgate_core::TenantId> = previous
            .tenant_ids()
            .filter(|t| previous.is_live(t) && !index.is_live(t))
            .cloned()
            .collect();
        drop(previous);
        tracing::debug!(
            revision = rev,
            tenants = index.tenant_count(),
            "auth snapshot reloaded"
        );
        self.0.auth.store(Arc::new(index));
        // A deletion made anywhere (the CLI, the platform API on another replica) reaches every
        // replica through this reload, and each drops the tenant's resident indexes and index
        // files: they are sealed with keys that are being shredded, and are the tenant's data.
        for t in &gone {
            self.0.knowledge.forget(t, None);
            tracing::info!(tenant = %t, "deleted tenant's knowledge-base indexes removed");
        }
        Ok(rev)
    }

    /// Runs `fut` on the server's task tracker: it outlives the request that started it (a
    /// caller that leaves does not cancel it) and shutdown waits for it.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.0.tasks.spawn(fut)
    }

    /// Leak-guard incidents recorded by this process.
    pub fn incidents(&self) -> &crate::pipeline::guard::Incidents {
        &self.0.incidents
    }

    pub fn auth_revision(&self) -> i64 {
        self.0.auth.load().revision
    }
}
