//! `tenantgate tenant delete|restore|certificate`: offboarding from the CLI
//! (`tenantgate_gateway::lifecycle::offboard`). The CLI runs no audit writer, so it cannot
//! certify a chain: it starts the deletion window (and with `--now` shreds the keys at once),
//! and a running gateway's finalizer removes the rows and writes the certificate.

use anyhow::{bail, Context, Result};
use serde_json::json;
use tenantgate_core::{PlatformAdmin, TenantStatus};
use tenantgate_gateway::control::AuditSink;
use tenantgate_gateway::lifecycle::offboard;
use tenantgate_gateway::Config;
use tenantgate_store::Store;

/// `tenant delete T --yes [--now | --window SECS]`.
#[derive(clap::Args)]
pub struct DeleteArgs {
    tenant: String,
    /// Confirm the deletion.
    #[arg(long)]
    yes: bool,
    /// No window: shred its keys now (no restore); a running gateway finishes at once.
    #[arg(long)]
    now: bool,
    /// The window in seconds.
    #[arg(long)]
    window: Option<u64>,
}

pub async fn delete(
    config: &Config,
    store: &Store,
    admin: &PlatformAdmin,
    args: DeleteArgs,
) -> Result<serde_json::Value> {
    let DeleteArgs {
        tenant,
        yes,
        now,
        window,
    } = args;
    if !yes {
        bail!("deleting a tenant destroys its encryption keys and cannot be undone after its window; pass --yes");
    }
    let tenant = tenant.as_str();
    let t = store.platform(admin).find_tenant(tenant).await?;
    match t.status {
        TenantStatus::Active | TenantStatus::Suspended | TenantStatus::PendingDeletion => {}
        TenantStatus::Deleted => bail!("tenant {tenant:?} is already deleted"),
    }
    let window = match (now, window) {
        (true, Some(_)) => bail!("--now and --window exclude each other"),
        (true, None) => 0,
        (false, w) => w.unwrap_or(config.lifecycle.deletion_window_secs),
    };
    if window > tenantgate_gateway::config::MAX_DELETION_WINDOW_SECS {
        bail!(
            "--window is at most {} seconds",
            tenantgate_gateway::config::MAX_DELETION_WINDOW_SECS
        );
    }
    let (t, pending) = offboard::request(AuditSink::Cli(store), store, admin, &t.id, window)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if window == 0 {
        let keyring = tenantgate_gateway::control::keyring(store, &config.encryption)?;
        offboard::shred_now(AuditSink::Cli(store), store, &keyring, admin, &t.id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(json!({
        "tenant": t,
        "deletion": pending,
        "finalized_by": "a running gateway, within lifecycle.finalize_interval_ms; \
            `tenantgate tenant certificate` shows the certificate then",
    }))
}

/// `tenant restore T`.
pub async fn restore(
    store: &Store,
    admin: &PlatformAdmin,
    tenant: &str,
) -> Result<serde_json::Value> {
    let t = store.platform(admin).find_tenant(tenant).await?;
    match t.status {
        TenantStatus::PendingDeletion => {}
        TenantStatus::Active | TenantStatus::Suspended => {
            bail!("tenant {tenant:?} is not pending deletion ({})", t.status)
        }
        TenantStatus::Deleted => bail!("tenant {tenant:?} is deleted; it cannot be restored"),
    }
    let t = offboard::restore(AuditSink::Cli(store), store, admin, &t.id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(json!(t))
}

/// `tenant certificate T [--out FILE]`: the certificate record; with `--out`, the platform
/// chain's export that proves it is written to FILE for `tenantgate audit verify`.
pub async fn certificate(
    config: &Config,
    store: &Store,
    admin: &PlatformAdmin,
    tenant: &str,
    out: Option<&std::path::Path>,
) -> Result<serde_json::Value> {
    let t = store.platform(admin).find_tenant(tenant).await?;
    let seed = tenantgate_crypto::load_or_create_key(
        &config.audit.signing_key_file,
        "TENANTGATE_AUDIT_SIGNING_KEY",
        "audit.signing_key_file",
    )?;
    let signer = tenantgate_audit::Signer::from_seed(seed.bytes());
    let Some((record, lines)) = offboard::certificate(store, admin, &signer, &t.id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    else {
        bail!("tenant {tenant:?} has no deletion certificate (not finalized yet)");
    };
    let jsonl = tenantgate_audit::jsonl(&lines);
    if let Some(path) = out {
        std::fs::write(path, &jsonl).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(json!({"tenant": t.id, "certificate": record, "export_jsonl": jsonl}))
}
