//! `tenant export` and `tenant import`: a tenant's export bundle written from the database, and
//! restored into another deployment (`tenantgate_gateway::lifecycle::{export, import}`).

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, PlatformAdmin, Role};
use tenantgate_gateway::control::{create_key, AuditSink, KeySpec};
use tenantgate_gateway::identity::keys::ServerSecret;
use tenantgate_gateway::lifecycle::{export, import};
use tenantgate_gateway::Config;
use tenantgate_store::Store;

#[derive(Args)]
pub struct ExportArgs {
    /// Tenant id or slug.
    tenant: String,
    /// Where to write the bundle (a tar archive).
    #[arg(long, short)]
    output: PathBuf,
}

#[derive(Args)]
pub struct ImportArgs {
    /// A bundle written by `tenant export` or `GET /tenant/v1/export`.
    file: PathBuf,
    /// The exporting deployment's audit signing key (hex, from its `audit public-key`): the
    /// manifest must be signed by it. The key the bundle names proves nothing.
    #[arg(long = "public-key")]
    public_key: String,
    /// The new tenant's slug (a bundle names its tenant by id only, so the slug is given).
    #[arg(long)]
    slug: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value = "free", value_parser = crate::completions::plan())]
    plan: PlanTier,
    #[arg(long, default_value = "namespace", value_parser = crate::completions::isolation())]
    isolation: IsolationTier,
    /// For --isolation dedicated: the tenant's own database (see `tenant create`).
    #[arg(long)]
    database: Option<String>,
    #[arg(long, value_delimiter = ',', default_value = "demo")]
    models: Vec<String>,
    #[arg(long)]
    max_tokens: Option<u32>,
}

pub async fn export_cmd(
    config: &Config,
    store: &Store,
    admin: &PlatformAdmin,
    a: ExportArgs,
) -> Result<()> {
    let t = store
        .platform(admin)
        .find_tenant(&a.tenant)
        .await
        .with_context(|| format!("tenant {:?}", a.tenant))?;
    let keyring = tenantgate_gateway::control::keyring(store, &config.encryption)?;
    let signer = signer(config)?;
    let done = export::operator_export(
        AuditSink::Cli(store),
        store,
        &keyring,
        &signer,
        admin,
        &t.id,
        &a.output,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    crate::print(&json!({
        "tenant": t.id.as_str(),
        "file": a.output.display().to_string(),
        "bytes": done.bytes,
        "files": done.files,
        "manifest_sha256": done.manifest_sha256,
        "chain_head": done.chain_head,
    }));
    Ok(())
}

pub async fn import_cmd(
    config: &Config,
    store: &Store,
    admin: &PlatformAdmin,
    a: ImportArgs,
) -> Result<()> {
    let bytes: [u8; 32] = hex::decode(a.public_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("--public-key must be 64 hex characters")?;
    let trusted = tenantgate_audit::PublicKey {
        key_id: tenantgate_audit::key_id(&bytes),
        public_key: a.public_key.trim().to_lowercase(),
    };
    let keyring = tenantgate_gateway::control::keyring(store, &config.encryption)?;
    let target = import::Target {
        store,
        keyring: &keyring,
        admin,
        sink: AuditSink::Cli(store),
        tenant: NewTenant {
            display_name: a.name.unwrap_or_else(|| a.slug.clone()),
            slug: a.slug,
            plan: a.plan,
            isolation: a.isolation,
            allowed_models: a.models,
            max_tokens_per_request: a.max_tokens,
        },
        dedicated: a.database.as_deref(),
    };
    let out = import::import(&a.file, &trusted, target)
        .await
        .map_err(anyhow::Error::msg)
        .context("nothing was imported")?;
    // Keys are never in a bundle: the new tenant's first admin key, shown once.
    let secret = ServerSecret::load_or_create(&config.server.secret_file)?;
    let (rec, key) = create_key(
        store,
        admin,
        &secret,
        &out.tenant.id,
        KeySpec {
            role: Role::TenantAdmin,
            name: Some("imported".into()),
            end_user: None,
            expires_at_ms: None,
        },
    )
    .await?;
    crate::print(&json!({
        "imported": out,
        "admin_key": {"id": rec.id.as_str(), "key": key, "note": "shown once; store it now"},
    }));
    Ok(())
}

fn signer(config: &Config) -> Result<tenantgate_audit::Signer> {
    let seed = tenantgate_crypto::load_or_create_key(
        &config.audit.signing_key_file,
        "TENANTGATE_AUDIT_SIGNING_KEY",
        "audit.signing_key_file",
    )?;
    Ok(tenantgate_audit::Signer::from_seed(seed.bytes()))
}
