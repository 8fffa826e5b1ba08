//! `tenantgate tenant create` and `tenantgate apply FILE`: onboarding from the command line,
//! through the same operation as `POST /admin/v1/tenants` (`lifecycle::onboard`).
//!
//! `apply` is declarative: each tenant in the file that does not exist is onboarded (with an
//! idempotency key derived from its entry, so a rerun after a crash replays rather than
//! duplicates), each that exists is brought to the file's plan, status, model allow-list,
//! token cap and limits, and every change is recorded in the tenant's and the platform's
//! chains. A tenant the file does not name is never touched: deletion is never by omission.

use crate::{operator, print};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use sha2::Digest;
use std::path::Path;
use tenantgate_core::{IsolationTier, PlanTier, Tenant, TenantStatus};
use tenantgate_gateway::control::AuditSink;
use tenantgate_gateway::identity::keys::ServerSecret;
use tenantgate_gateway::lifecycle::onboard::{
    InviteSpec, KmsSpec, OnboardError, Onboarded, Onboarding, PromptSpec, TenantSpec,
};
use tenantgate_gateway::Config;
use tenantgate_store::Store;

#[derive(Args)]
pub(crate) struct TenantCreate {
    /// Lowercase identifier, e.g. acme-corp.
    #[arg(long)]
    slug: String,
    /// Display name (defaults to the slug).
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value = "free", value_parser = crate::completions::plan())]
    plan: PlanTier,
    /// Where the tenant's data lives: namespace (shared tables), schema (its own PostgreSQL
    /// schema, or its own SQLite file) or dedicated (its own database: --database).
    #[arg(long, default_value = "namespace", value_parser = crate::completions::isolation())]
    isolation: IsolationTier,
    /// For --isolation dedicated: the tenant's own database, a postgres:// URL without a
    /// password (give it through PGPASSWORD or ~/.pgpass) or an absolute data directory.
    #[arg(long)]
    database: Option<String>,
    /// Comma-separated tenant-facing model names; "*" allows every configured model.
    #[arg(long, value_delimiter = ',', default_value = "demo")]
    models: Vec<String>,
    /// Largest max_tokens a single request may ask for.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Limit overrides over the plan's (JSON, e.g. '{"monthly_spend_micros": 50000000}').
    #[arg(long)]
    limits: Option<String>,
    /// The tenant's own AWS KMS key (id or ARN) for its key-encryption key.
    #[arg(long, requires = "kms_region")]
    kms_key_id: Option<String>,
    #[arg(long)]
    kms_region: Option<String>,
    /// A KMS-compatible endpoint for --kms-key-id.
    #[arg(long)]
    kms_endpoint: Option<String>,
    /// A platform prompt template ([lifecycle.prompt_templates]) to copy as the default prompt.
    #[arg(long)]
    prompt_template: Option<String>,
    /// Also create a tenant_admin API key (printed once).
    #[arg(long)]
    admin_key: bool,
    /// Invite a user of this configured OIDC issuer as the first tenant_admin (with
    /// --invite-subject).
    #[arg(long, requires = "invite_subject")]
    invite_issuer: Option<String>,
    #[arg(long)]
    invite_subject: Option<String>,
    /// Retrying with the same key returns the first result instead of onboarding twice.
    #[arg(long)]
    idempotency_key: Option<String>,
}

impl TenantCreate {
    fn spec(self) -> Result<TenantSpec> {
        let limits = match self.limits {
            None => None,
            Some(l) => match serde_json::from_str(&l).context("--limits")? {
                Value::Object(m) => Some(m),
                _ => bail!("--limits: a JSON object of limits"),
            },
        };
        Ok(TenantSpec {
            slug: self.slug,
            display_name: self.name,
            plan: self.plan,
            isolation: self.isolation,
            database: self.database,
            allowed_models: self.models,
            max_tokens_per_request: self.max_tokens,
            limits,
            kms: match (self.kms_key_id, self.kms_region) {
                (Some(aws_key_id), Some(region)) => Some(KmsSpec {
                    aws_key_id,
                    region,
                    endpoint: self.kms_endpoint,
                }),
                _ => None,
            },
            prompt: self.prompt_template.map(|template| PromptSpec {
                template,
                name: None,
            }),
            admin_key: self.admin_key,
            admin_invite: match (self.invite_issuer, self.invite_subject) {
                (Some(issuer), Some(subject)) => Some(InviteSpec { issuer, subject }),
                _ => None,
            },
        })
    }
}

/// Onboards one tenant; prints the tenant with what onboarding made (the admin key once).
pub(crate) async fn create(config: &Config, args: TenantCreate) -> Result<()> {
    let key = args.idempotency_key.clone();
    let spec = args.spec()?;
    let store = tenantgate_gateway::server::open_store(config).await?;
    let done = onboard(config, &store, &spec, key.as_deref()).await;
    store.close().await;
    print(&flatten(done?.body));
    Ok(())
}

/// The CLI's output keeps `tenant create`'s shape: the tenant's fields at the top, with the
/// credential and the onboarding steps beside them.
fn flatten(body: Value) -> Value {
    let Value::Object(mut b) = body else {
        return body;
    };
    let mut out = match b.remove("tenant") {
        Some(Value::Object(t)) => t,
        _ => Map::new(),
    };
    if let Some(steps) = b.remove("steps") {
        out.insert("onboarding".into(), json!({ "steps": steps }));
    }
    out.extend(b);
    Value::Object(out)
}

async fn onboard(
    config: &Config,
    store: &Store,
    spec: &TenantSpec,
    idempotency_key: Option<&str>,
) -> Result<Onboarded> {
    let admin = operator();
    let keyring = tenantgate_gateway::control::keyring(store, &config.encryption)?;
    let secret = ServerSecret::load_or_create(&config.server.secret_file)?;
    Onboarding {
        store,
        keyring: &keyring,
        config,
        secret: &secret,
        sink: AuditSink::Cli(store),
        admin: &admin,
        via: "cli",
    }
    .run(spec, idempotency_key)
    .await
    .map_err(|e| match e {
        OnboardError::Invalid { field, message } => anyhow::anyhow!("{field}: {message}"),
        e => anyhow::anyhow!("{e}"),
    })
}

/// One entry of an apply file: a tenant spec, and the status it should have.
struct Entry {
    spec: TenantSpec,
    status: Option<TenantStatus>,
}

fn entries(file: &Path) -> Result<Vec<Entry>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ApplyFile {
        tenants: Vec<Map<String, Value>>,
    }
    let parsed: ApplyFile =
        serde_yaml_ng::from_str(&text).with_context(|| format!("{}", file.display()))?;
    let mut out = Vec::with_capacity(parsed.tenants.len());
    let mut slugs = std::collections::HashSet::new();
    for (i, mut t) in parsed.tenants.into_iter().enumerate() {
        let status = match t.remove("status") {
            None => None,
            Some(Value::String(s)) => match s.as_str() {
                "active" => Some(TenantStatus::Active),
                "suspended" => Some(TenantStatus::Suspended),
                _ => bail!("tenants[{i}].status: active or suspended"),
            },
            Some(_) => bail!("tenants[{i}].status: active or suspended"),
        };
        let spec: TenantSpec =
            serde_json::from_value(Value::Object(t)).with_context(|| format!("tenants[{i}]"))?;
        if !slugs.insert(spec.slug.clone()) {
            bail!("tenants[{i}]: slug {:?} appears twice", spec.slug);
        }
        out.push(Entry { spec, status });
    }
    Ok(out)
}

/// `tenantgate apply FILE [--dry-run]`: every change listed, then made (unless dry-run).
pub(crate) async fn apply(config: &Config, file: &Path, dry_run: bool) -> Result<()> {
    let entries = entries(file)?;
    let store = tenantgate_gateway::server::open_store(config).await?;
    let out = apply_all(config, &store, entries, dry_run).await;
    store.close().await;
    let out = out?;
    let failed = out.iter().any(|r| r["action"] == "failed");
    print(&json!({ "dry_run": dry_run, "tenants": out }));
    if failed {
        bail!("some tenants were not applied (see \"failed\" above)");
    }
    Ok(())
}

async fn apply_all(
    config: &Config,
    store: &Store,
    entries: Vec<Entry>,
    dry_run: bool,
) -> Result<Vec<Value>> {
    let admin = operator();
    let existing: std::collections::HashMap<String, Tenant> = store
        .platform(&admin)
        .list_tenants()
        .await?
        .into_iter()
        .filter(|t| t.status != TenantStatus::Deleted)
        .map(|t| (t.slug.clone(), t))
        .collect();
    let mut out = Vec::new();
    for e in entries {
        let slug = e.spec.slug.clone();
        let r = match existing.get(&slug) {
            None if dry_run => Ok(json!({"slug": slug, "action": "create"})),
            None => create_entry(config, store, &e).await,
            Some(t) => update_entry(store, t, &e, dry_run).await,
        };
        out.push(r.unwrap_or_else(
            |err| json!({"slug": slug, "action": "failed", "error": format!("{err:#}")}),
        ));
    }
    Ok(out)
}

async fn create_entry(config: &Config, store: &Store, e: &Entry) -> Result<Value> {
    // The same entry gives the same key: a rerun after a crash replays, and an edited entry
    // for a tenant that was never made is a new request.
    let key = format!(
        "apply:{}:{}",
        e.spec.slug,
        hex::encode(sha2::Sha256::digest(serde_json::to_vec(&e.spec)?))
    );
    let done = onboard(config, store, &e.spec, Some(&key)).await?;
    let mut r = json!({"slug": e.spec.slug, "action": if done.replayed { "replayed" } else { "created" },
        "tenant": done.tenant.as_str()});
    if let Some(k) = done.body.get("admin_key") {
        r["admin_key"] = k.clone();
    }
    if e.status == Some(TenantStatus::Suspended) {
        let admin = operator();
        store
            .platform(&admin)
            .set_status(&done.tenant, TenantStatus::Suspended)
            .await?;
        record(store, &done.tenant, json!({"status": "suspended"})).await?;
    }
    Ok(r)
}

/// What differs between the tenant and its entry, made to match unless `dry_run`. Only what
/// can change after onboarding is compared; a different tier is reported, not moved.
async fn update_entry(store: &Store, t: &Tenant, e: &Entry, dry_run: bool) -> Result<Value> {
    let admin = operator();
    let p = store.platform(&admin);
    let s = &e.spec;
    let mut changes = Map::new();
    let mut notes = Vec::new();
    if t.plan != s.plan {
        changes.insert("plan".into(), json!([t.plan, s.plan]));
    }
    if let Some(want) = e.status {
        if want != t.status {
            changes.insert("status".into(), json!([t.status, want]));
        }
    }
    if t.allowed_models != s.allowed_models || t.max_tokens_per_request != s.max_tokens_per_request
    {
        changes.insert(
            "models".into(),
            json!([
                [t.allowed_models, t.max_tokens_per_request],
                [s.allowed_models, s.max_tokens_per_request]
            ]),
        );
    }
    let stored = p.limits(&t.id).await?.map(|(o, _)| o);
    let stored: Map<String, Value> = stored
        .and_then(|o| serde_json::from_str(&o).ok())
        .unwrap_or_default();
    let wanted = s.limits.clone().unwrap_or_default();
    if stored != wanted {
        serde_json::from_value::<tenantgate_gateway::limits::LimitSet>(Value::Object(
            wanted.clone(),
        ))
        .context("limits")?;
        changes.insert("limits".into(), json!([stored, wanted]));
    }
    if t.isolation != s.isolation {
        notes.push(format!(
            "isolation is {} in the deployment and {} in the file: `tenantgate tenant move` changes it",
            t.isolation, s.isolation
        ));
    }
    let action = if changes.is_empty() {
        "unchanged"
    } else {
        "update"
    };
    if !dry_run && !changes.is_empty() {
        if let Some(status) = e.status.filter(|_| changes.contains_key("status")) {
            p.set_status(&t.id, status).await?;
        }
        if changes.contains_key("plan") {
            p.set_plan(&t.id, s.plan).await?;
        }
        if changes.contains_key("models") {
            p.set_models(&t.id, &s.allowed_models, s.max_tokens_per_request)
                .await?;
        }
        if changes.contains_key("limits") {
            p.set_limits(&t.id, Some(&serde_json::to_string(&wanted)?), None)
                .await?;
        }
        record(store, &t.id, Value::Object(changes.clone())).await?;
    }
    Ok(json!({
        "slug": s.slug,
        "action": if dry_run || action == "unchanged" { action } else { "updated" },
        "changes": changes,
        "notes": notes,
    }))
}

/// An applied change, in the tenant's chain and the platform's.
async fn record(store: &Store, tenant: &tenantgate_core::TenantId, changed: Value) -> Result<()> {
    let admin = operator();
    tenantgate_gateway::lifecycle::record_step(
        AuditSink::Cli(store),
        &admin,
        tenant,
        tenantgate_audit::EventType::ConfigurationChange,
        json!({"action": "tenant.apply", "via": "cli", "changed": changed}),
    )
    .await
    .map_err(|e| anyhow::anyhow!("the change was made but not recorded in the audit log: {e}"))
}
