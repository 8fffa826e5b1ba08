//! `tenantgate provider ...`: the provider-outage playbook from the operator's shell, on the
//! database as the platform operator (`tenantgate_gateway::control`, shared with
//! `/admin/v1/routing`). Drains reach every replica at its next snapshot reload and are
//! recorded in the platform's audit chain. Circuit breakers live in each replica's memory:
//! `GET /admin/v1/routing` on a replica shows its own.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};
use tenantgate_core::PlatformAdmin;
use tenantgate_gateway::control::{self, AuditSink};
use tenantgate_gateway::Config;
use tenantgate_store::Store;

#[derive(Subcommand)]
pub enum ProviderCmd {
    /// Every model's targets, and which providers are drained (with who, why and when).
    Status,
    /// Take a configured provider out of every model's targets, on every replica.
    Drain {
        provider: String,
        /// Why (recorded in the platform's audit chain), e.g. an incident number.
        #[arg(long)]
        reason: String,
    },
    /// Put a drained provider back.
    Undrain { provider: String },
}

pub async fn provider(
    config: &Config,
    store: &Store,
    admin: &PlatformAdmin,
    cmd: ProviderCmd,
) -> Result<Value> {
    Ok(match cmd {
        ProviderCmd::Status => {
            let drains = store.platform(admin).drains().await?;
            let models: Vec<Value> = config
                .models
                .iter()
                .map(|m| {
                    let targets: Vec<&str> = std::iter::once(m.provider.as_str())
                        .chain(m.targets.iter().map(|t| t.provider.as_str()))
                        .collect();
                    json!({"model": m.name, "strategy": m.strategy, "targets": targets,
                           "fallback": m.fallback})
                })
                .collect();
            json!({"models": models, "drains": drains})
        }
        ProviderCmd::Drain { provider, reason } => {
            let d = control::drain_provider(
                AuditSink::Cli(store),
                store,
                config,
                admin,
                &provider,
                &reason,
            )
            .await
            .map_err(|e| anyhow::anyhow!("provider {provider:?}: {e}"))?;
            json!(d)
        }
        ProviderCmd::Undrain { provider } => {
            control::undrain_provider(AuditSink::Cli(store), store, config, admin, &provider)
                .await
                .map_err(|e| anyhow::anyhow!("provider {provider:?}: {e}"))?;
            json!({"provider": provider, "drained": false})
        }
    })
}
