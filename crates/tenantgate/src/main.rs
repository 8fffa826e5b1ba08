//! `tenantgate`: the gateway server and its admin CLI.

use anyhow::{bail, Context, Result};
use cli::{AuditCmd, Cli, Command, ConfigCmd, KeyCmd, KeysCmd, TenantCmd};
use serde_json::json;
use tenantgate_core::{PlatformAdmin, Role, TenantStatus};
// The CLI runs no audit writer: each command appends its own record (`AuditSink::Cli`).
use tenantgate_gateway::control::{create_key, AuditSink, KeySpec};
use tenantgate_gateway::identity::keys::ServerSecret;
use tenantgate_gateway::server::open_store;
use tenantgate_gateway::{Config, Server};
use tenantgate_store::Store;

mod bundle;
mod cli;
mod completions;
mod endpoint;
mod incident;
mod offboard;
mod onboard;
mod prompt;
mod provider;
use endpoint::endpoint;
use prompt::prompt;

// glibc malloc spent ~14% of the gateway's CPU in arena contention under load; mimalloc is a
// well-kept allocator with a small C core that removes most of it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // mimalloc asks for transparent huge pages on its arenas, and a 2 MiB page is resident as
    // soon as one byte of it is touched: with 10,000 tenants that was about a third of the
    // process's resident memory, idle and under load (`tenantgate-bench --bin memory`). The
    // flag is per process; MIMALLOC_ALLOW_THP set in the environment leaves the choice to it.
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
    let cli: Cli = completions::parse();
    let serve = matches!(cli.command, Command::Serve);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    // Traces are the server's only (`[telemetry]`); a configuration error is reported by
    // `run`, which loads it again.
    let telemetry = if serve {
        Config::load(cli.config.as_deref())
            .map(|c| c.telemetry)
            .unwrap_or_default()
    } else {
        Default::default()
    };
    let default_filter = if serve { "info" } else { "warn" };
    let guard = match tenantgate_gateway::telemetry::init(
        telemetry.otlp_endpoint.as_deref(),
        &telemetry.service_name,
        default_filter,
        Some(rt.handle().clone()),
    ) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(run(cli));
    // Spans still queued are sent before the process ends.
    rt.block_on(guard.shutdown());
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn print(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Prompt(args) = cli.command {
        return prompt(args).await;
    }
    if let Command::BleedTest(args) = cli.command {
        std::process::exit(tenantgate_bleed::main(args).await);
    }
    if let Command::Completions { shell } = cli.command {
        return Ok(completions::print::<Cli>(shell)?);
    }
    if let Command::Incident(cmd) = cli.command {
        return incident::run(cli.config, cmd).await;
    }
    if let Command::Audit(AuditCmd::Verify {
        file,
        public_key,
        since,
    }) = &cli.command
    {
        return audit_verify(file, public_key, since.as_deref());
    }
    let config = Config::load(cli.config.as_deref()).context("invalid configuration")?;
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Config(ConfigCmd::Check) => {
            tenantgate_gateway::upstream::Catalog::build(&config)
                .context("invalid configuration")?;
            if let Some(tls) = &config.server.tls {
                tenantgate_gateway::http::tls::acceptor(tls)?;
            }
            let store = open_store(&config).await?;
            print(&json!({
                "ok": true,
                "listen": config.server.listen.to_string(),
                "tls": config.server.tls.is_some(),
                "database": store.backend_name(),
                "providers": config.providers.iter().map(|p| &p.name).collect::<Vec<_>>(),
                "models": config.models.iter().map(|m| &m.name).collect::<Vec<_>>(),
                "demo": config.demo.enabled,
            }));
            Ok(())
        }
        Command::Tenant(TenantCmd::Create(c)) => onboard::create(&config, c).await,
        Command::Tenant(cmd) => tenant(config, cmd).await,
        Command::Apply { file, dry_run } => onboard::apply(&config, &file, dry_run).await,
        Command::Provider(cmd) => {
            let store = open_store(&config).await?;
            print(&provider::provider(&config, &store, &operator(), cmd).await?);
            Ok(())
        }
        Command::Key(cmd) => key(config, cmd).await,
        Command::Keys(cmd) => keys(config, cmd).await,
        Command::Prompt(_)
        | Command::BleedTest(_)
        | Command::Completions { .. }
        | Command::Incident(_) => Ok(()),
        Command::Audit(AuditCmd::Verify { .. }) => Ok(()),
        Command::Audit(AuditCmd::PublicKey) => {
            let seed = tenantgate_crypto::load_or_create_key(
                &config.audit.signing_key_file,
                "TENANTGATE_AUDIT_SIGNING_KEY",
                "audit.signing_key_file",
            )?;
            let pk = tenantgate_audit::Signer::from_seed(seed.bytes()).public_key();
            print(&json!(pk));
            Ok(())
        }
    }
}

async fn serve(config: Config) -> Result<()> {
    let server = Server::bind(config).await?;
    let state = server.state();
    tracing::info!(addr = %server.local_addr(), database = state.store().backend_name(), "tenantgate listening");
    server.serve(shutdown_signal()).await?;
    tracing::info!("tenantgate stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn operator() -> PlatformAdmin {
    let who = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    #[expect(
        clippy::disallowed_methods,
        reason = "the admin CLI runs with the database credentials: it is the platform operator"
    )]
    PlatformAdmin::local_operator(format!("cli:{who}"))
}

/// `audit verify`: offline, no configuration or database needed.
fn audit_verify(
    file: &std::path::Path,
    keys: &[String],
    since: Option<&std::path::Path>,
) -> Result<()> {
    let pinned: Vec<tenantgate_audit::PublicKey> = keys
        .iter()
        .map(|k| {
            let bytes: [u8; 32] = hex::decode(k.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("--public-key must be 64 hex characters")?;
            Ok(tenantgate_audit::PublicKey {
                key_id: tenantgate_audit::key_id(&bytes),
                public_key: k.trim().to_lowercase(),
            })
        })
        .collect::<Result<_>>()?;
    if pinned.is_empty() {
        // The export lists its signer's key; trusting it would accept an export re-signed by
        // whoever rewrote it. The key comes from `tenantgate audit public-key` (or the tenant
        // API's /tenant/v1/audit/public-key), fetched once and kept.
        print(
            &json!({"valid": false, "error": "no trusted key: pass --public-key (from `tenantgate audit public-key`)"}),
        );
        std::process::exit(2);
    }
    let verify_file = |path: &std::path::Path| -> Result<
        Result<tenantgate_audit::Report, tenantgate_audit::VerifyError>,
    > {
        let data = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        Ok(if data.starts_with(b"type,") {
            tenantgate_audit::verify_csv(&data, Some(&pinned))
        } else {
            let text = std::str::from_utf8(&data).context("the export is not UTF-8")?;
            tenantgate_audit::verify_jsonl(text, Some(&pinned))
        })
    };
    let mut result = verify_file(file)?;
    if let (Some(old_path), Ok(new)) = (since, &result) {
        result = match verify_file(old_path)? {
            Ok(old) => tenantgate_audit::verify_extends(new, &old).map(|()| new.clone()),
            Err(e) => Err(tenantgate_audit::VerifyError::Export(format!(
                "the earlier export {} does not verify: {e}",
                old_path.display()
            ))),
        };
    }
    match result {
        Ok(r) => {
            print(&json!({
                "valid": true,
                "tenant": r.tenant,
                "records": r.records,
                "first_seq": r.first_seq,
                "last_seq": r.last_seq,
                "anchor_seq": r.anchor_seq,
                "checkpoints": r.checkpoints,
                "bodies_absent": r.bodies_absent,
                "keys_pinned": r.keys_pinned,
                "key_ids": r.key_ids,
                "extends": since.map(|p| p.display().to_string()),
            }));
            Ok(())
        }
        Err(e) => {
            print(
                &json!({"valid": false, "first_bad_seq": e.first_bad_seq(), "error": e.to_string()}),
            );
            std::process::exit(1);
        }
    }
}

async fn tenant(config: Config, cmd: TenantCmd) -> Result<()> {
    let store: Store = open_store(&config).await?;
    let admin = operator();
    let p = store.platform(&admin);
    let find = |t: String| {
        let p = store.platform(&admin);
        async move {
            p.find_tenant(&t)
                .await
                .with_context(|| format!("tenant {t:?}"))
        }
    };
    match cmd {
        TenantCmd::Export(a) => return bundle::export_cmd(&config, &store, &admin, a).await,
        TenantCmd::Import(a) => return bundle::import_cmd(&config, &store, &admin, a).await,
        // Onboarding runs above (`onboard::create`), not on this store.
        TenantCmd::Create(_) => {}
        TenantCmd::List => print(&json!(p.list_tenants().await?)),
        TenantCmd::Show { tenant } => {
            // The tenant and, layer by layer, where its data lives and what it shares: the
            // answer to a security questionnaire's data-location questions.
            let t = find(tenant).await?;
            let placement = p.placement(&t.id).await?;
            let keyring = tenantgate_gateway::control::keyring(&store, &config.encryption)?;
            // The provider layer's own endpoints (names and base URLs, never a key).
            let endpoints =
                tenantgate_gateway::control::list_endpoints(&store, &keyring, &admin, &t)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let mut v = json!(t);
            v["placement"] = json!(placement);
            v["placement"]["provider_endpoints"] = json!(endpoints);
            print(&v);
        }
        TenantCmd::Move {
            tenant,
            to,
            database,
            abort,
        } => {
            let t = find(tenant).await?;
            let maintenance =
                tenantgate_gateway::server::open_maintenance_store(&config, &store).await?;
            let out = tenantgate_gateway::control::move_tenant(
                AuditSink::Cli(&store),
                &store,
                &maintenance,
                &admin,
                &t.id,
                to.map(|tier| (tier, database.as_deref())),
                abort,
            )
            .await
            .map_err(anyhow::Error::msg)?;
            print(&json!(out));
        }
        TenantCmd::Suspend { tenant } => {
            let t = find(tenant).await?;
            let t = p.set_status(&t.id, TenantStatus::Suspended).await?;
            lifecycle_event(
                &store,
                &t.id,
                json!({"action": "tenant.suspend", "via": "cli"}),
            )
            .await?;
            print(&json!(t));
        }
        TenantCmd::Resume { tenant } => {
            let t = find(tenant).await?;
            let t = p.set_status(&t.id, TenantStatus::Active).await?;
            lifecycle_event(
                &store,
                &t.id,
                json!({"action": "tenant.resume", "via": "cli"}),
            )
            .await?;
            print(&json!(t));
        }
        TenantCmd::SetPlan { tenant, plan } => {
            let t = find(tenant).await?;
            let from = t.plan;
            let t = p.set_plan(&t.id, plan).await?;
            lifecycle_event(
                &store,
                &t.id,
                json!({"action": "tenant.set_plan", "via": "cli", "from": from, "to": plan}),
            )
            .await?;
            print(&json!(t));
        }
        TenantCmd::Delete(a) => print(&offboard::delete(&config, &store, &admin, a).await?),
        TenantCmd::Restore { tenant } => print(&offboard::restore(&store, &admin, &tenant).await?),
        TenantCmd::Certificate { tenant, out } => {
            print(&offboard::certificate(&config, &store, &admin, &tenant, out.as_deref()).await?)
        }
        TenantCmd::SetModels {
            tenant,
            models,
            max_tokens,
        } => {
            let t = find(tenant).await?;
            let t = p.set_models(&t.id, &models, max_tokens).await?;
            operator_event(&store, &admin, &t.id, "tenant.set_models").await?;
            print(&json!(t));
        }
        TenantCmd::Limits { tenant, set, clear } => {
            let t = find(tenant).await?;
            if set.is_some() || clear {
                let current = match p.limits(&t.id).await? {
                    Some((stored, _)) if !clear => stored,
                    _ => "{}".into(),
                };
                let merged = merge_limits(&current, set.as_deref())?;
                p.set_limits(&t.id, Some(&merged), None).await?;
                operator_event(&store, &admin, &t.id, "tenant.set_limits").await?;
            }
            let (overrides, kill_switch) = p
                .limits(&t.id)
                .await?
                .unwrap_or_else(|| ("{}".into(), false));
            let overrides: serde_json::Value = serde_json::from_str(&overrides)?;
            print(
                &json!({"tenant": t.slug, "plan": t.plan, "overrides": overrides, "kill_switch": kill_switch}),
            );
        }
        TenantCmd::KillSwitch { tenant, state } => {
            let t = find(tenant).await?;
            let on = state == "on";
            p.set_limits(&t.id, None, Some(on)).await?;
            operator_event(
                &store,
                &admin,
                &t.id,
                if on {
                    "tenant.kill_switch.on"
                } else {
                    "tenant.kill_switch.off"
                },
            )
            .await?;
            print(&json!({"tenant": t.slug, "kill_switch": on}));
        }
        TenantCmd::Endpoint(cmd) => print(&endpoint(&config, &store, &admin, cmd).await?),
    }
    store.close().await;
    Ok(())
}

/// Records a lifecycle change in the tenant's audit chain and the platform's.
async fn lifecycle_event(
    store: &Store,
    tenant: &tenantgate_core::TenantId,
    detail: serde_json::Value,
) -> Result<()> {
    tenantgate_gateway::lifecycle::record_step(
        AuditSink::Cli(store),
        &operator(),
        tenant,
        tenantgate_audit::EventType::ConfigurationChange,
        detail,
    )
    .await
    .map_err(|e| anyhow::anyhow!("the change was made but not recorded in the audit log: {e}"))
}

/// Records an operator change in the tenant's audit chain.
async fn operator_event(
    store: &Store,
    admin: &tenantgate_core::PlatformAdmin,
    tenant: &tenantgate_core::TenantId,
    action: &str,
) -> Result<()> {
    tenantgate_gateway::control::record_operator_event(
        AuditSink::Cli(store),
        admin,
        tenant,
        tenantgate_audit::EventType::ConfigurationChange,
        json!({"action": action}),
    )
    .await
    .map_err(anyhow::Error::msg)
    .context("the change was made but could not be recorded in the tenant's audit log")
}

/// Records a change of a tenant's key in its audit chain, with what it changed to (the key's
/// name and where it is: configuration, not a secret).
async fn key_event(
    store: &Store,
    admin: &tenantgate_core::PlatformAdmin,
    tenant: &tenantgate_core::TenantId,
    detail: serde_json::Value,
) -> Result<()> {
    tenantgate_gateway::control::record_operator_event(
        AuditSink::Cli(store),
        admin,
        tenant,
        tenantgate_audit::EventType::ConfigurationChange,
        detail,
    )
    .await
    .map_err(anyhow::Error::msg)
    .context("the key was changed but the change could not be recorded in the tenant's audit log")
}

async fn key(config: Config, cmd: KeyCmd) -> Result<()> {
    let store: Store = open_store(&config).await?;
    let admin = operator();
    let p = store.platform(&admin);
    match cmd {
        KeyCmd::Create {
            tenant,
            role,
            name,
            user,
            expires_in_days,
        } => {
            if role == Role::PlatformAdmin {
                bail!("API keys carry tenant_admin or member");
            }
            let t = p
                .find_tenant(&tenant)
                .await
                .with_context(|| format!("tenant {tenant:?}"))?;
            let secret = ServerSecret::load_or_create(&config.server.secret_file)?;
            let expires_at_ms = expires_in_days.map(|d| now_ms() + i64::from(d) * 86_400_000);
            let (rec, plaintext) = create_key(
                &store,
                &admin,
                &secret,
                &t.id,
                KeySpec {
                    role,
                    name,
                    end_user: user,
                    expires_at_ms,
                },
            )
            .await?;
            operator_event(&store, &admin, &t.id, "key.create").await?;
            let mut v = json!(rec);
            v["key"] = json!(plaintext);
            v["note"] = json!("store this key now; it is not shown again");
            print(&v);
        }
        KeyCmd::List { tenant } => {
            let t = p
                .find_tenant(&tenant)
                .await
                .with_context(|| format!("tenant {tenant:?}"))?;
            print(&json!(p.list_keys(&t.id).await?));
        }
        KeyCmd::Revoke { key } => {
            let rec = p.revoke_key(&key).await?;
            operator_event(&store, &admin, &rec.tenant_id, "key.revoke").await?;
            print(&json!(rec));
        }
    }
    store.close().await;
    Ok(())
}

async fn keys(config: Config, cmd: KeysCmd) -> Result<()> {
    let store: Store = open_store(&config).await?;
    let admin = operator();
    let keyring = tenantgate_gateway::control::keyring(&store, &config.encryption)?;
    let p = store.platform(&admin);
    match cmd {
        KeysCmd::Rotate { tenant } => {
            let t = p
                .find_tenant(&tenant)
                .await
                .with_context(|| format!("tenant {tenant:?}"))?;
            let rotated = keyring.rotate(&admin, &t.id).await?;
            operator_event(&store, &admin, &t.id, "keys.rotate").await?;
            print(&json!(rotated));
        }
        KeysCmd::UseKms {
            tenant,
            aws_key_id,
            region,
            endpoint,
        } => {
            let t = p
                .find_tenant(&tenant)
                .await
                .with_context(|| format!("tenant {tenant:?}"))?;
            let key = tenantgate_crypto::CustomerKey::Aws {
                key_id: aws_key_id,
                region,
                endpoint,
            };
            let moved = keyring
                .use_customer_key(&admin, &t.id, Some(&key))
                .await
                .context("the tenant's key was not changed")?;
            key_event(
                &store,
                &admin,
                &t.id,
                json!({"action": "keys.use_kms", "provider": key.provider(), "wrapped_by": key.wrapped_by(), "region": key.region(), "endpoint": key.endpoint(), "kek_version": moved.current_version}),
            )
            .await?;
            print(&json!(moved));
        }
        KeysCmd::UsePlatform { tenant } => {
            let t = p
                .find_tenant(&tenant)
                .await
                .with_context(|| format!("tenant {tenant:?}"))?;
            let moved = keyring
                .use_customer_key(&admin, &t.id, None)
                .await
                .context("the tenant's key was not changed")?;
            key_event(
                &store,
                &admin,
                &t.id,
                json!({"action": "keys.use_platform", "wrapped_by": tenantgate_crypto::LOCAL, "kek_version": moved.current_version}),
            )
            .await?;
            print(&json!(moved));
        }
        KeysCmd::Status { tenant } => {
            let tenants = match tenant {
                Some(t) => vec![p
                    .find_tenant(&t)
                    .await
                    .with_context(|| format!("tenant {t:?}"))?],
                None => p.list_tenants().await?,
            };
            let mut out = Vec::new();
            for t in tenants {
                let mut v = json!(keyring.status(&admin, &t.id).await?);
                v["slug"] = json!(t.slug);
                out.push(v);
            }
            print(&json!(out));
        }
    }
    store.close().await;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `changes` (a JSON object of limits) merged into the stored overrides: named limits are
/// replaced, a null removes one, the rest are kept. Both sides are validated as a `LimitSet`,
/// so an unknown limit name or a bad value is refused before anything is written.
fn merge_limits(stored: &str, changes: Option<&str>) -> Result<String> {
    use tenantgate_gateway::limits::LimitSet;
    let mut merged: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(stored)?
    {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    if let Some(text) = changes {
        let serde_json::Value::Object(changes) = serde_json::from_str(text).context("--set")?
        else {
            bail!("--set: expected a JSON object of limits");
        };
        serde_json::from_value::<LimitSet>(serde_json::Value::Object(changes.clone()))
            .context("--set")?;
        for (name, value) in changes {
            if value.is_null() {
                merged.remove(&name);
            } else {
                merged.insert(name, value);
            }
        }
    }
    let parsed: LimitSet =
        serde_json::from_value(serde_json::Value::Object(merged)).context("--set")?;
    Ok(serde_json::to_string(&parsed)?)
}
