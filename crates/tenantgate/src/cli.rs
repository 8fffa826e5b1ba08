//! The command line: every command, its arguments and their help, as clap derives them. What
//! each command does is in `main.rs` and the modules it names.

use crate::endpoint::EndpointCmd;
use crate::prompt::PromptArgs;
use crate::{bundle, completions, incident, offboard, onboard, provider};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tenantgate_core::{IsolationTier, PlanTier, Role};

#[derive(Parser)]
#[command(name = "tenantgate", version, about = "A multi-tenant LLM gateway")]
pub(crate) struct Cli {
    /// Configuration file (TOML). Without one, embedded defaults apply (SQLite under ./data,
    /// the offline demo model). TENANTGATE_* variables override either.
    #[arg(long, short, global = true, env = "TENANTGATE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the gateway.
    Serve,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Tenants' encryption keys: rotation and status (not API keys; see `key`).
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Providers: drain one out of every model's targets (the provider-outage playbook).
    #[command(subcommand)]
    Provider(provider::ProviderCmd),
    /// A tenant's system prompts, through a running gateway's tenant API, as that tenant.
    Prompt(PromptArgs),
    /// Incident playbooks: freeze, scope, evidence (and verify), contain, drain, status.
    #[command(subcommand)]
    Incident(incident::IncidentCmd),
    /// Audit exports: verify one offline; print the checkpoint signing key.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Bring the deployment's tenants to a file's (YAML or JSON, `tenants: [...]`): missing
    /// ones are onboarded, existing ones get the file's plan, status, models and limits.
    /// Tenants the file does not name are left alone.
    Apply {
        file: PathBuf,
        /// Print what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Prove tenant isolation on a live deployment: canary tenants, attacked from each other
    /// on every route, role and model path; exits 1 on any leak (report: human and JSON).
    BleedTest(tenantgate_bleed::Args),
    /// Print a shell completion script to stdout (e.g. `tenantgate completions bash >
    /// /etc/bash_completion.d/tenantgate`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    /// Verifies an export (JSONL or CSV) offline: chain, checkpoint and manifest signatures,
    /// bodies against digests. Exits 1 naming the first bad record.
    Verify {
        file: PathBuf,
        /// Trusted public key (hex, as `audit public-key` prints it); repeatable and required:
        /// keys listed in the export itself prove nothing (whoever rewrote it lists their own).
        #[arg(long = "public-key")]
        public_key: Vec<String>,
        /// An earlier export of the same tenant: FILE must extend it (the same records up to
        /// its head), so history it covered cannot have been rewritten since.
        #[arg(long)]
        since: Option<PathBuf>,
    },
    /// Prints the audit checkpoint signing key's public half (from this configuration).
    PublicKey,
}

#[derive(Subcommand)]
pub(crate) enum KeysCmd {
    /// Make a new key-encryption key version current for a tenant, re-wrap its data keys under
    /// it and destroy the previous versions.
    Rotate {
        #[arg(long)]
        tenant: String,
    },
    /// Key versions, data keys and pending re-wraps, for one tenant or every tenant.
    Status {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Wrap a tenant's key-encryption keys with a key in its own AWS KMS (customer-managed):
    /// a new KEK version under that key, its data keys re-wrapped, the old versions destroyed
    /// after retire_grace_secs. The gateway reaches the key with the credentials of its own
    /// environment (the standard AWS chain), which the key's policy must allow to Encrypt and
    /// Decrypt. Disabling the key, or revoking that access, makes the tenant's data unreadable
    /// and its calls fail (503 tenant_key_unavailable) within encryption.kek_cache_secs.
    UseKms {
        tenant: String,
        /// Key id, key ARN, alias name or alias ARN.
        #[arg(long)]
        aws_key_id: String,
        #[arg(long)]
        region: String,
        /// Another endpoint than the region's (a VPC endpoint, a local KMS for tests).
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Move a tenant back to the platform's key (the same rotation, under the master key).
    UsePlatform { tenant: String },
}

#[derive(Subcommand)]
pub(crate) enum ConfigCmd {
    /// Validate the configuration, resolve provider keys (never printed) and reach the store.
    Check,
}

#[derive(Subcommand)]
pub(crate) enum TenantCmd {
    /// Create a tenant.
    Create(onboard::TenantCreate),
    /// List tenants.
    List,
    /// Show one tenant (by id or slug) and, per layer, where its data lives.
    Show { tenant: String },
    /// Move a tenant's data to another isolation tier while it keeps serving: copy, verify,
    /// switch, purge the old copy. Resumes an interrupted move when run again.
    Move {
        tenant: String,
        /// The tier to move to (omit to resume or, with --abort, roll back a move in progress).
        #[arg(long, value_parser = completions::isolation())]
        to: Option<IsolationTier>,
        /// For --to dedicated: the tenant's own database (a postgres:// URL without a password)
        /// or an absolute data directory.
        #[arg(long)]
        database: Option<String>,
        /// Roll back a move that has not switched yet.
        #[arg(long)]
        abort: bool,
    },
    /// Suspend a tenant: its keys get 403 on every gateway within auth.reload_interval_ms.
    Suspend { tenant: String },
    /// Resume a suspended tenant.
    Resume { tenant: String },
    /// Change a tenant's plan (its default limits) on every gateway at once.
    SetPlan {
        tenant: String,
        #[arg(value_parser = completions::plan())]
        plan: PlanTier,
    },
    /// Offboard a tenant: its calls are refused at once, and after the window (default
    /// lifecycle.deletion_window_secs) a gateway shreds its keys, removes its data and writes a
    /// deletion certificate. `restore` cancels it within the window.
    Delete(offboard::DeleteArgs),
    /// Cancel a tenant's pending deletion: its prior status (active or suspended) back.
    Restore { tenant: String },
    /// A deleted tenant's deletion certificate; `--out FILE` writes the proving export.
    Certificate {
        tenant: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Replace a tenant's model allow-list and per-request token cap.
    SetModels {
        tenant: String,
        /// Comma-separated tenant-facing model names; "*" allows every configured model.
        #[arg(long, value_delimiter = ',', required = true)]
        models: Vec<String>,
        #[arg(long)]
        max_tokens: Option<u32>,
    },
    /// Show a tenant's limit overrides and kill switch, or change the overrides.
    Limits {
        tenant: String,
        /// JSON object of limits merged into the tenant's overrides, e.g.
        /// '{"monthly_spend_micros": 50000000, "requests_per_minute": 600}'. Limits it does
        /// not name are kept; a null removes that override (the plan's value applies again).
        #[arg(long)]
        set: Option<String>,
        /// Remove every override first (with --set: replace them).
        #[arg(long)]
        clear: bool,
    },
    /// Turn a tenant's kill switch on (its model calls are refused) or off.
    KillSwitch {
        tenant: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// A tenant's own provider endpoints and keys (set, list, remove).
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Write a tenant's export bundle (prompts, documents as uploaded, audit export, usage,
    /// key metadata, members; a signed manifest of checksums).
    Export(bundle::ExportArgs),
    /// Restore an export bundle as a new tenant, after checking its signature and checksums.
    Import(bundle::ImportArgs),
}

#[derive(Subcommand)]
pub(crate) enum KeyCmd {
    /// Create an API key; the key is printed once and never stored.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "member", value_parser = completions::key_role())]
        role: Role,
        #[arg(long)]
        name: Option<String>,
        /// End-user id bound to the key (requests cannot change it).
        #[arg(long)]
        user: Option<String>,
        /// Expire the key after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List a tenant's keys (prefixes and metadata only).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by id or visible prefix.
    Revoke { key: String },
}
