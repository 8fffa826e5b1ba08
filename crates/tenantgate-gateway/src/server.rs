//! `Server::bind(config) -> local_addr() -> serve(shutdown)`. The binary and the tests use the
//! same path; tests bind `127.0.0.1:0`.

use crate::config::{Config, ConfigError};
use crate::control::{create_key, KeySpec};
use crate::identity::keys::{write_private, SecretError, ServerSecret};
use crate::state::AppState;
use crate::upstream::Catalog;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, PlatformAdmin, Role};
use tenantgate_store::{Store, StoreError, StoreOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    KeyFile(#[from] SecretError),
    #[error("store ({url}): {source}")]
    Store { url: String, source: StoreError },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cache.redis_url {0}")]
    Cache(String),
    #[error("demo bootstrap: {0}")]
    Demo(String),
    #[error("limits: {0}")]
    Limits(String),
    #[error("audit: {0}")]
    Audit(#[from] crate::audit::AuditStartError),
    #[error(transparent)]
    Tls(#[from] crate::http::tls::TlsError),
}

pub struct Server {
    listener: tokio::net::TcpListener,
    /// `[server.tls]`'s acceptor; `None` serves plain HTTP.
    tls: Option<crate::http::tls::TlsAcceptor>,
    /// `[metrics] listen`: `/metrics` alone, on a port of its own.
    metrics_listener: Option<tokio::net::TcpListener>,
    state: AppState,
    maintenance: Store,
    audit_writer: crate::audit::Writer,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

fn store_options(cfg: &Config) -> StoreOptions {
    cfg.database.store_options()
}

fn store_error(cfg: &Config) -> impl FnOnce(StoreError) -> StartError + '_ {
    move |source| StartError::Store {
        url: redact_url(&cfg.database.url),
        source,
    }
}

/// Opens the store the configuration names, as the operator (the CLI): on PostgreSQL the
/// owner's login switched to the runtime role. A server taking requests uses
/// [`open_request_store`].
pub async fn open_store(cfg: &Config) -> Result<Store, StartError> {
    Store::open(&store_options(cfg))
        .await
        .map_err(store_error(cfg))
}

/// Opens the store requests run on: on PostgreSQL a pool that logs in as the runtime role
/// itself (password derived from the server secret) or as `database.runtime_url`'s role, never
/// as the owner, so nothing a request can send (`RESET ROLE`) regains the owner's rights.
pub async fn open_request_store(cfg: &Config, secret: &ServerSecret) -> Result<Store, StartError> {
    let mut opts = store_options(cfg);
    opts.pg_login = match &cfg.database.runtime_url {
        Some(u) => tenantgate_store::PgLogin::Url(u.clone()),
        None => tenantgate_store::PgLogin::Password(secret.pg_runtime_password()),
    };
    Store::open(&opts).await.map_err(store_error(cfg))
}

/// The owner's handle for maintenance requests may not do (audit retention): on SQLite the
/// same store, on PostgreSQL one owner connection opened when first used.
pub async fn open_maintenance_store(cfg: &Config, store: &Store) -> Result<Store, StartError> {
    match store.db() {
        tenantgate_store::Db::Sqlite(_) => Ok(store.clone()),
        tenantgate_store::Db::Postgres(_) => Store::open_maintenance(&store_options(cfg))
            .await
            .map_err(store_error(cfg)),
    }
}

/// Drops the password from a database URL before it is shown anywhere.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Server {
    /// Validates config, opens and migrates the store, loads the auth snapshot, bootstraps the
    /// demo tenant if asked, and binds the listener. Any failure stops start-up.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        config.validate()?;
        // First: a certificate that cannot be used fails start-up before anything is opened.
        let tls = match &config.server.tls {
            Some(t) => Some(crate::http::tls::acceptor(t)?),
            None => None,
        };
        let catalog = Catalog::build(&config)?;
        let secret = ServerSecret::load_or_create(&config.server.secret_file)?;
        let store = open_request_store(&config, &secret).await?;
        let maintenance = open_maintenance_store(&config, &store).await?;
        if config.demo.enabled && config.demo.bootstrap_tenant {
            bootstrap_demo(&store, &secret, &config).await?;
        }
        let keyring = std::sync::Arc::new(crate::control::keyring(&store, &config.encryption)?);
        if config.demo.enabled {
            // The tokenizer's vocabulary is tens of MiB; only the demo model needs it.
            tenantgate_providers::tokens::warm_up();
        }
        let cache = match (&config.cache.enabled, &config.cache.redis_url) {
            (false, _) => None,
            (true, None) => Some(crate::upstream::cache::CacheBackend::Memory(
                crate::upstream::cache::ResponseCache::new(
                    config.cache.max_entries,
                    Duration::from_secs(config.cache.ttl_secs),
                    config.cache.max_entry_bytes,
                ),
            )),
            (true, Some(url)) => Some(crate::upstream::cache::CacheBackend::Redis(
                crate::upstream::cache::RedisCache::connect(
                    url,
                    &config.cache.redis_prefix,
                    Duration::from_secs(config.cache.ttl_secs),
                    config.cache.max_entry_bytes,
                )
                .await
                .map_err(|e| StartError::Cache(format!("{}: {e}", redact_url(url))))?,
            )),
        };
        let admission = crate::limits::Admission::start(config.limits.clone())
            .await
            .map_err(StartError::Limits)?;
        if let crate::limits::Backend::Local(local) = &admission.backend {
            rebuild_budgets(&store, local)
                .await
                .map_err(|source| StartError::Store {
                    url: redact_url(&config.database.url),
                    source,
                })?;
        }
        // Background work of this server: shutdown waits for all of it before it drains the
        // audit writer.
        let tasks = TaskTracker::new();
        let (audit, audit_writer) =
            crate::audit::AuditLog::start(store.clone(), &config.audit, tasks.clone())?;
        let state = AppState::new(
            config, store, secret, catalog, keyring, cache, audit, admission, tasks,
        );
        state
            .reload_auth(true)
            .await
            .map_err(|source| StartError::Store {
                url: redact_url(&state.0.config.database.url),
                source,
            })?;
        // Index files of tenants deleted while this replica was not running (the reload loop
        // handles deletions from now on).
        let swept = {
            let index = state.0.auth.load();
            state.0.knowledge.sweep(|t| index.is_live(t))
        };
        if swept > 0 {
            tracing::info!(tenants = swept, "removed index files of deleted tenants");
        }
        let addr = state.0.config.server.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let metrics_listener = match state.0.config.metrics.listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        Ok(Server {
            listener,
            tls,
            metrics_listener,
            tasks: state.0.rec.tasks.clone(),
            state,
            maintenance,
            audit_writer,
            cancel: CancellationToken::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.0.config.server.listen)
    }

    /// Where `/metrics` is served when `[metrics] listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Whether the listener speaks TLS (`[server.tls]`): `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests (bounded by
    /// `server.shutdown_grace_secs`) and stops background tasks.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Server {
            listener,
            tls,
            metrics_listener,
            state,
            maintenance,
            audit_writer,
            tasks,
            cancel,
        } = self;
        tasks.spawn(reload_loop(state.clone(), cancel.clone()));
        tasks.spawn(key_maintenance_loop(state.clone(), cancel.clone()));
        tasks.spawn(checkpoint_webhook_loop(state.clone(), cancel.clone()));
        tasks.spawn(audit_retention_loop(
            state.clone(),
            maintenance.clone(),
            cancel.clone(),
        ));
        tasks.spawn(crate::lifecycle::offboard::finalizer_loop(
            state.clone(),
            maintenance.clone(),
            cancel.clone(),
        ));
        let header_timeout = Duration::from_millis(state.0.config.server.header_read_timeout_ms);
        if let Some(l) = metrics_listener {
            let stop = cancel.clone();
            let app = crate::http::metrics_router(state.clone());
            tasks.spawn(async move {
                let stopped = stop.cancelled_owned();
                if let Err(e) =
                    crate::http::serve::serve(l, app, header_timeout, None, stopped).await
                {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            });
        }
        let grace = Duration::from_secs(state.0.config.server.shutdown_grace_secs);
        let app = crate::http::router(
            state.clone(),
            if state.0.config.console.enabled {
                crate::console::router()
            } else {
                axum::Router::new()
            },
        );
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = crate::http::serve::serve(listener, app, header_timeout, tls, async move {
            shutdown.await;
            let _ = stop_tx.send(());
        });
        let result = tokio::select! {
            r = serve => r,
            _ = async { let _ = stop_rx.await; tokio::time::sleep(grace).await } => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
                // Cut what still runs while the audit writer is alive: each cut call's guard
                // records and settles it on the tracker, which is waited for below.
                state.0.rec.grace_over.cancel();
                Ok(())
            }
        };
        cancel.cancel();
        // A knowledge-base merge still building is abandoned (its thread ends with the process).
        state.0.knowledge.stop();
        tasks.close();
        tasks.wait().await;
        // Every request has finished: drain the audit queue and sign the heads.
        audit_writer.stop().await;
        state.store().close().await;
        maintenance.close().await;
        result
    }
}

/// Keeps the auth snapshot current. PostgreSQL pushes each control-plane change (LISTEN/NOTIFY,
/// delivered at commit), so replicas reload within milliseconds; the revision poll stays as the
/// fallback (and the only path on SQLite). A failing store keeps the last good snapshot.
async fn reload_loop(state: AppState, cancel: CancellationToken) {
    let interval = Duration::from_millis(state.0.config.auth.reload_interval_ms);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listener = None;
    let mut next_listen_attempt = tokio::time::Instant::now();
    loop {
        if listener.is_none() && tokio::time::Instant::now() >= next_listen_attempt {
            match state.store().change_listener().await {
                Ok(l) => listener = l,
                Err(e) => tracing::warn!(error = %e, "change notifications unavailable; polling"),
            }
            // SQLite (None) and failures retry rarely; polling covers the gap.
            next_listen_attempt = tokio::time::Instant::now() + Duration::from_secs(5);
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            r = notified => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "change listener failed; polling until it reconnects");
                    listener = None;
                }
            }
        }
        if let Err(e) = state.reload_auth(false).await {
            tracing::warn!(error = %e, "auth snapshot reload failed; serving the previous snapshot");
        }
    }
}

/// In-process budgets survive a restart: each tenant's day and month counters start from the
/// usage its audit records hold (settled calls only; reservations in flight at a crash are
/// gone with the calls).
async fn rebuild_budgets(store: &Store, local: &crate::limits::Local) -> Result<(), StoreError> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the gateway rebuilds every tenant's budget counters at start"
    )]
    let admin = PlatformAdmin::local_operator("budget-rebuild");
    let now = crate::clock::now_ms();
    let day_start = crate::limits::day(now) * 86_400_000;
    let month_start = crate::limits::month_start_ms(now);
    for u in store
        .platform(&admin)
        .usage_since(day_start, month_start)
        .await?
    {
        local.seed_budgets(
            &u.tenant,
            u.day_tokens,
            u.month_tokens,
            u.month_cost_micros,
            now,
        );
    }
    Ok(())
}

/// The per-tenant part of the audit witness: each checkpoint of a tenant whose guard policy
/// names a webhook (https, or http where the platform allows it) is POSTed there, so the tenant
/// holds its own copy of what was signed, outside the gateway's database. One attempt each,
/// bounded by the webhook client's timeout; a lagging receiver skips batches (the witness
/// files have them).
async fn checkpoint_webhook_loop(state: AppState, cancel: CancellationToken) {
    let mut rx = state.0.rec.log.subscribe_checkpoints();
    loop {
        let batch = tokio::select! {
            _ = cancel.cancelled() => return,
            b = rx.recv() => b,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(batches = n, "checkpoint webhooks skipped batches");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let index = state.0.auth.load_full();
        for cp in batch.iter() {
            let Ok(t) = tenantgate_core::TenantId::parse(&cp.tenant) else {
                continue;
            };
            let Some(url) = index.guard_policy(&t).webhook_url.clone() else {
                continue;
            };
            let event = serde_json::json!({"type": "tenantgate.checkpoint", "checkpoint": cp});
            let req = state
                .0
                .incidents
                .webhooks()
                .post(&url)
                .header("content-type", "application/json")
                .body(event.to_string());
            if let Err(e) = req.send().await {
                tracing::warn!(tenant = %t, error = %e, "checkpoint webhook delivery failed");
            }
        }
    }
}

/// Audit retention: each tenant's records older than its `retention_days` are pruned, up to a
/// signed checkpoint (so the rest still verifies).
async fn audit_retention_loop(state: AppState, maintenance: Store, cancel: CancellationToken) {
    let every = Duration::from_secs(state.0.config.audit.retention_sweep_secs);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                let pruned = audit_retention(&state, &maintenance).await;
                if pruned > 0 {
                    tracing::info!(records = pruned, "audit retention pruned records");
                }
            }
        }
    }
}

/// One retention pass over every tenant on the owner's `maintenance` store (the request role
/// cannot delete audit rows); each cut checkpoint's signature is checked first. Returns the
/// records pruned.
pub async fn audit_retention(state: &AppState, maintenance: &Store) -> u64 {
    #[expect(
        clippy::disallowed_methods,
        reason = "retention runs over every tenant's chain, each by its own policy"
    )]
    let admin = PlatformAdmin::local_operator("audit-retention");
    let index = state.0.auth.load_full();
    let p = maintenance.platform(&admin);
    let key = state.0.rec.log.signer.public_key();
    let now = crate::clock::now_ms();
    let mut pruned = 0;
    for t in index.tenant_ids() {
        // A policy this gateway cannot read has no retention it knows: the default could
        // delete years a tenant chose to keep, and a deletion cannot be undone. Skip it.
        if !index.unreadable_policies(t).is_empty() {
            tracing::warn!(tenant = %t, "audit retention skipped: the tenant's policy is unreadable");
            continue;
        }
        let days = i64::from(index.audit_policy(t).retention_days);
        match p.audit_prune(t, now - days * 86_400_000, &key).await {
            Ok(n) => pruned += n,
            Err(e) => tracing::warn!(tenant = %t, error = %e, "audit retention failed"),
        }
    }
    pruned
}

async fn key_maintenance_loop(state: AppState, cancel: CancellationToken) {
    let cfg = state.0.config.encryption.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.maintenance_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rotate_after =
        (cfg.rotate_after_days > 0).then(|| Duration::from_secs(cfg.rotate_after_days * 86_400));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = key_maintenance(&state, rotate_after).await {
                    tracing::warn!(error = %e, "key maintenance failed; retrying at the next tick");
                }
                if let Err(e) = onboarding_sweep(&state).await {
                    tracing::warn!(error = %e, "undoing unfinished onboardings failed; retrying at the next tick");
                }
                crate::console::sweep_sessions(&state).await;
            }
        }
    }
}

/// Undoes onboardings a process died in the middle of (`lifecycle::onboard`): they are found
/// on this loop's first tick after start and then at every maintenance tick.
pub async fn onboarding_sweep(state: &AppState) -> Result<usize, String> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the gateway's own sweep spans every tenant's onboarding"
    )]
    let admin = PlatformAdmin::local_operator("gateway-onboarding-sweep");
    crate::lifecycle::onboard::Onboarding::of_server(state, &admin, "sweep")
        .sweep()
        .await
}

/// One pass: rotates KEKs older than `rotate_after`, then re-wraps what previous rotations left
/// (bounded per tenant, so a pass stays short) and destroys previous versions whose grace is
/// over, whatever made the rotation. Returns (rotated, re-wrapped).
pub async fn key_maintenance(
    state: &AppState,
    rotate_after: Option<Duration>,
) -> Result<(usize, usize), tenantgate_store::KeyringError> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the gateway's own key maintenance spans every tenant"
    )]
    let admin = PlatformAdmin::local_operator("gateway-key-maintenance");
    let keyring = state.keyring();
    let mut rotated = 0;
    if let Some(max_age) = rotate_after {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        for (tenant, created_at_ms) in keyring.tenants_with_keys(&admin).await? {
            if now - created_at_ms > max_age.as_millis() as i64 {
                match keyring.rotate(&admin, &tenant).await {
                    Ok(_) => rotated += 1,
                    Err(e) => skip_tenant(&tenant, e)?,
                }
            }
        }
    }
    let mut rewrapped = 0;
    for tenant in keyring.tenants_with_previous_versions(&admin).await? {
        match keyring.rewrap(&admin, &tenant, 1_000).await {
            Ok(n) => rewrapped += n,
            Err(e) => skip_tenant(&tenant, e)?,
        }
    }
    Ok((rotated, rewrapped))
}

/// A tenant whose own key refuses (it disabled the key or revoked the gateway's access) cannot
/// be rotated or re-wrapped until it restores the key: it is left for a later pass, and the
/// other tenants' maintenance goes on. Any other failure ends the pass.
fn skip_tenant(
    tenant: &tenantgate_core::TenantId,
    e: tenantgate_store::KeyringError,
) -> Result<(), tenantgate_store::KeyringError> {
    match e {
        tenantgate_store::KeyringError::KeyUnavailable(why) => {
            tracing::warn!(tenant = %tenant, reason = %why, "tenant key maintenance skipped: its own key is unavailable");
            Ok(())
        }
        e => Err(e),
    }
}

async fn bootstrap_demo(
    store: &Store,
    secret: &ServerSecret,
    cfg: &Config,
) -> Result<(), StartError> {
    let demo_err = |e: StoreError| StartError::Demo(e.to_string());
    #[expect(
        clippy::disallowed_methods,
        reason = "first-start bootstrap of the demo tenant by the gateway process itself"
    )]
    let admin = PlatformAdmin::local_operator("gateway-demo-bootstrap");
    let platform = store.platform(&admin);
    if !platform.list_tenants().await.map_err(demo_err)?.is_empty() {
        return Ok(());
    }
    let tenant = platform
        .create_tenant(&NewTenant {
            slug: "demo".into(),
            display_name: "Demo tenant".into(),
            plan: PlanTier::Free,
            isolation: IsolationTier::Namespace,
            allowed_models: vec!["*".into()],
            max_tokens_per_request: Some(4096),
        })
        .await
        .map_err(demo_err)?;
    let (_, plaintext) = create_key(
        store,
        &admin,
        secret,
        &tenant.id,
        KeySpec {
            role: Role::TenantAdmin,
            name: Some("demo admin".into()),
            end_user: None,
            expires_at_ms: None,
        },
    )
    .await
    .map_err(demo_err)?;
    let path = &cfg.demo.key_file;
    let _ = std::fs::remove_file(path);
    write_private(path, format!("{plaintext}\n").as_bytes())
        .map_err(|e| StartError::Demo(format!("{}: {e}", path.display())))?;
    tracing::info!(tenant = %tenant.id, key_file = %path.display(), "created demo tenant; its admin API key is in the key file");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            super::redact_url("postgres://app@db/x"),
            "postgres://app@db/x"
        );
        assert_eq!(super::redact_url("sqlite:data/t.db"), "sqlite:data/t.db");
    }
}
