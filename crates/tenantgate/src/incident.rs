//! `tenantgate incident ...`: the incident playbooks from the operator's shell, on the
//! database as the platform operator (`tenantgate_gateway::lifecycle::incident`, shared with
//! `/admin/v1/incidents`). Each command is recorded in the platform's audit chain and in the
//! tenant's when it names one. `docs/incidents.md` puts them in order per playbook.

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use std::path::PathBuf;
use tenantgate_gateway::control::AuditSink;
use tenantgate_gateway::lifecycle::incident::{self, evidence, scope, FreezeTarget};
use tenantgate_gateway::server::open_store;
use tenantgate_gateway::Config;

#[derive(Subcommand)]
pub enum IncidentCmd {
    /// Hold every model call of a tenant, of a route (a model-call path such as
    /// /v1/chat/completions) or to a model, on every replica (from each one's next snapshot
    /// reload: auth.reload_interval_ms on SQLite, at once on PostgreSQL). Callers get 403
    /// incident_freeze in their SDK's shape; only a platform admin lifts it.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["tenant", "route", "model"])))]
    Freeze {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        route: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// Why (recorded), e.g. an incident number.
        #[arg(long)]
        reason: String,
    },
    /// Lift a freeze by its id (`incident status` lists them).
    Unfreeze { id: String },
    /// Which tenants, calls (record ids) and window an identifier or canary appeared in, from
    /// every tenant's audit chain (record fields, kept bodies) and the guard's incidents. JSON.
    Scope {
        #[arg(long)]
        needle: String,
        /// Window start, Unix milliseconds (default: the beginning).
        #[arg(long)]
        from: Option<i64>,
        /// Window end, Unix milliseconds, exclusive (default: now and after).
        #[arg(long)]
        to: Option<i64>,
    },
    /// Write a tenant's signed evidence bundle for a window (tar): its audit export, the
    /// platform chain's, the guard's incidents, what holds its calls, a signed manifest.
    Evidence {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        from: Option<i64>,
        #[arg(long)]
        to: Option<i64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an evidence bundle offline (no configuration): manifest signature, files'
    /// hashes, both audit exports, incidents. Exits 1 naming what failed.
    Verify {
        file: PathBuf,
        /// Trusted public key (hex, from `tenantgate audit public-key`); repeatable, required.
        #[arg(long = "public-key")]
        public_key: Vec<String>,
    },
    /// Contain a tenant: kill switch on, frozen, every API key revoked, break-glass grants and
    /// console sessions ended, encryption keys rotated; each step reported.
    Contain {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        reason: String,
    },
    /// Take a configured provider out of every model's targets, on every replica.
    Drain {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        reason: String,
    },
    /// Put a drained provider back.
    Undrain {
        #[arg(long)]
        provider: String,
    },
    /// Freezes, drains and kill switches (circuit breakers: each replica's
    /// GET /admin/v1/incidents/status).
    Status,
}

fn window(from: Option<i64>, to: Option<i64>) -> tenantgate_audit::Window {
    tenantgate_audit::Window {
        from_ms: from.unwrap_or(0),
        to_ms: to.unwrap_or(i64::MAX),
    }
}

fn failed(e: tenantgate_gateway::error::GatewayError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Runs one command. `verify` needs no configuration and touches no database.
pub async fn run(config: Option<PathBuf>, cmd: IncidentCmd) -> Result<()> {
    if let IncidentCmd::Verify { file, public_key } = &cmd {
        return verify(file, public_key);
    }
    let config = Config::load(config.as_deref()).context("invalid configuration")?;
    let store = open_store(&config).await?;
    let admin = crate::operator();
    let sink = AuditSink::Cli(&store);
    let out: Value = match cmd {
        IncidentCmd::Verify { .. } => Value::Null,
        IncidentCmd::Freeze {
            tenant,
            route,
            model,
            reason,
        } => {
            let target = match (tenant, route, model) {
                (Some(t), _, _) => FreezeTarget::Tenant(t),
                (None, Some(r), _) => FreezeTarget::Route(r),
                (None, None, Some(m)) => FreezeTarget::Model(m),
                (None, None, None) => anyhow::bail!("name --tenant, --route or --model"),
            };
            let f = incident::freeze(sink, &store, &config, &admin, target, &reason)
                .await
                .map_err(failed)?;
            json!({"freeze": f, "reaches": "every replica at its next snapshot reload \
                   (auth.reload_interval_ms on SQLite; NOTIFY on PostgreSQL)"})
        }
        IncidentCmd::Unfreeze { id } => {
            let f = incident::unfreeze(sink, &store, &admin, &id)
                .await
                .map_err(failed)?;
            json!({"lifted": f})
        }
        IncidentCmd::Scope { needle, from, to } => {
            let keyring = tenantgate_gateway::control::keyring(&store, &config.encryption)?;
            let w = window(from, to);
            let q = scope::Query {
                needle,
                from_ms: w.from_ms,
                to_ms: w.to_ms,
            };
            json!(scope::scope(sink, &store, &keyring, &admin, &q)
                .await
                .map_err(failed)?)
        }
        IncidentCmd::Evidence {
            tenant,
            from,
            to,
            out,
        } => {
            let keyring = tenantgate_gateway::control::keyring(&store, &config.encryption)?;
            let seed = tenantgate_crypto::load_or_create_key(
                &config.audit.signing_key_file,
                "TENANTGATE_AUDIT_SIGNING_KEY",
                "audit.signing_key_file",
            )?;
            let signer = tenantgate_audit::Signer::from_seed(seed.bytes());
            let (bytes, manifest) = evidence::build(
                sink,
                &store,
                &keyring,
                &signer,
                &admin,
                &tenant,
                window(from, to),
            )
            .await
            .map_err(failed)?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            json!({"file": out.display().to_string(), "bytes": bytes.len(), "manifest": manifest})
        }
        IncidentCmd::Contain { tenant, reason } => {
            let keyring = tenantgate_gateway::control::keyring(&store, &config.encryption)?;
            let steps = incident::contain(sink, &store, &keyring, &admin, &tenant, &reason)
                .await
                .map_err(failed)?;
            json!({"tenant": tenant, "steps": steps})
        }
        IncidentCmd::Drain { provider, reason } => {
            json!(
                incident::drain(sink, &store, &config, &admin, &provider, &reason)
                    .await
                    .map_err(failed)?
            )
        }
        IncidentCmd::Undrain { provider } => {
            incident::undrain(sink, &store, &config, &admin, &provider)
                .await
                .map_err(failed)?;
            json!({"provider": provider, "drained": false})
        }
        IncidentCmd::Status => {
            let mut v = json!(incident::status(&store, &admin).await.map_err(failed)?);
            v["circuits"] = json!("each replica's own: GET /admin/v1/incidents/status on it");
            v
        }
    };
    crate::print(&out);
    store.close().await;
    Ok(())
}

fn verify(file: &std::path::Path, keys: &[String]) -> Result<()> {
    let pinned = keys
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
        .collect::<Result<Vec<_>>>()?;
    let size = std::fs::metadata(file)
        .with_context(|| file.display().to_string())?
        .len();
    if size > evidence::MAX_BUNDLE_BYTES {
        anyhow::bail!("{}: larger than a bundle can be", file.display());
    }
    let bytes = std::fs::read(file).with_context(|| file.display().to_string())?;
    match evidence::verify(&bytes, &pinned) {
        Ok(v) => {
            crate::print(&json!({"valid": true, "bundle": v}));
            Ok(())
        }
        Err(e) => {
            crate::print(&json!({"valid": false, "error": e}));
            std::process::exit(1);
        }
    }
}
