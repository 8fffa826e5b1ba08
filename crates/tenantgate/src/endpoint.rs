//! `tenantgate tenant endpoint ...`: a tenant's own provider endpoints, on the database as the
//! platform operator (`tenantgate_gateway::control`, shared with the admin API). Each change
//! is recorded in the tenant's audit chain; neither the output nor the record holds the key.

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;
use tenantgate_core::PlatformAdmin;
use tenantgate_gateway::control::{self, AuditSink, EndpointSecret, Via};
use tenantgate_gateway::Config;
use tenantgate_store::Store;

#[derive(Subcommand)]
pub enum EndpointCmd {
    /// Set (or replace) the tenant's own endpoint and API key for a configured provider: its
    /// calls to that provider then go there, with its key, and never to the platform's.
    Set {
        tenant: String,
        /// A provider's name from the configuration (`[[providers]] name`).
        #[arg(long)]
        provider: String,
        /// Like the provider's `base_url` (`https://host/v1` for OpenAI-style providers).
        #[arg(long)]
        base_url: String,
        /// File holding the API key (first line); the key is never printed.
        #[arg(long)]
        api_key_file: PathBuf,
        /// Azure only (default: the platform provider's).
        #[arg(long)]
        api_version: Option<String>,
    },
    /// The tenant's own endpoints: providers and base URLs, never keys.
    List { tenant: String },
    /// Remove the tenant's own endpoint for a provider: its calls to it take the platform's
    /// endpoint again (a dedicated tenant's: that provider's models become unavailable).
    Remove {
        tenant: String,
        #[arg(long)]
        provider: String,
    },
}

pub async fn endpoint(
    config: &Config,
    store: &Store,
    admin: &PlatformAdmin,
    cmd: EndpointCmd,
) -> Result<serde_json::Value> {
    let keyring = control::keyring(store, &config.encryption)?;
    let find = |t: String| async move {
        store
            .platform(admin)
            .find_tenant(&t)
            .await
            .with_context(|| format!("tenant {t:?}"))
    };
    Ok(match cmd {
        EndpointCmd::Set {
            tenant,
            provider,
            base_url,
            api_key_file,
            api_version,
        } => {
            let t = find(tenant).await?;
            let api_key = read_key(&api_key_file)?;
            let info = control::set_endpoint(
                AuditSink::Cli(store),
                store,
                &keyring,
                config,
                admin,
                &t,
                &provider,
                EndpointSecret {
                    base_url,
                    api_key,
                    api_version,
                },
                Via::Cli,
            )
            .await?;
            json!({"tenant": t.slug, "endpoint": info})
        }
        EndpointCmd::List { tenant } => {
            let t = find(tenant).await?;
            let list = control::list_endpoints(store, &keyring, admin, &t).await?;
            json!({"tenant": t.slug, "endpoints": list})
        }
        EndpointCmd::Remove { tenant, provider } => {
            let t = find(tenant).await?;
            control::remove_endpoint(
                AuditSink::Cli(store),
                store,
                &keyring,
                admin,
                &t,
                &provider,
                Via::Cli,
            )
            .await?;
            json!({"tenant": t.slug, "provider": provider, "removed": true})
        }
    })
}

/// The key file's first line, trimmed (as a provider's `api_key_file` is read).
fn read_key(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--api-key-file {}", path.display()))?;
    let key = text.lines().next().unwrap_or_default().trim().to_owned();
    anyhow::ensure!(
        !key.is_empty(),
        "--api-key-file {} is empty",
        path.display()
    );
    Ok(key)
}
