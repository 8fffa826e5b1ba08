//! Configuration: one TOML file plus `TENANTGATE_*` environment overrides (`__` separates
//! levels: `TENANTGATE_DATABASE__URL` sets `database.url`). Validated once at start-up; every
//! message names the key at fault. Provider API keys are never read from the TOML file itself,
//! only from an environment variable or a secrets file the TOML names.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub demo: DemoConfig,
    pub encryption: EncryptionConfig,
    pub cache: CacheConfig,
    pub guard: GuardConfig,
    pub audit: AuditConfig,
    pub limits: crate::limits::LimitsConfig,
    pub rag: RagConfig,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest accepted request body; larger ones get 413 (a larger declared
    /// `content-length` at once, before any of the body is read).
    pub max_body_bytes: usize,
    /// The whole request body must arrive within this many milliseconds of the request head;
    /// a slower one gets 408 and its connection is closed (stalled uploads hold nothing).
    pub body_read_timeout_ms: u64,
    /// The request head (line and headers) must arrive within this many milliseconds, or the
    /// connection is closed: a client trickling headers (slowloris) holds nothing for long.
    pub header_read_timeout_ms: u64,
    /// File holding the 32-byte server secret that keys API-key hashes (HMAC-SHA-256). Created
    /// with mode 0600 on first start. `TENANTGATE_SERVER_SECRET` (64 hex chars) overrides it.
    pub secret_file: PathBuf,
    /// Seconds to let in-flight requests finish on shutdown.
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite:PATH` (embedded default) or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    /// PostgreSQL only: schema holding tenantgate's tables.
    pub pg_schema: String,
    /// PostgreSQL only: the LOGIN role request connections use (DML grants, owns nothing, no
    /// BYPASSRLS). The gateway creates it and sets its password, derived from the server secret
    /// (replicas sharing the secret derive the same one).
    pub pg_runtime_role: String,
    /// PostgreSQL only: log request connections in with this URL instead (a role the operator
    /// manages; it is granted DML at start, and the gateway refuses to start if it is a
    /// superuser, bypasses RLS or owns tables). `url` stays the owner, for migrations.
    pub runtime_url: Option<String>,
    /// SQLite only. `full` (default): every commit is fsynced, so an acknowledged call's audit
    /// record survives a power loss. `normal`: it survives a killed process but not a power
    /// loss; each commit is cheaper (see the audit benchmark in ARCHITECTURE.md).
    pub sqlite_synchronous: SqliteSync,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteSync {
    #[default]
    Full,
    Normal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How often each gateway checks the control-plane revision and reloads tenants and keys
    /// when it changed (changes made by another process: the CLI, another replica).
    pub reload_interval_ms: u64,
    /// OIDC issuers whose bearer tokens authenticate callers, beside API keys
    /// (`[[auth.oidc]]`, one table per issuer).
    pub oidc: Vec<OidcConfig>,
}

/// One trusted OIDC issuer. Tokens are verified against its JWKS (from `jwks_url`, from
/// `jwks_file`, or discovered at `{issuer}/.well-known/openid-configuration`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// Must equal the token's `iss` exactly.
    pub issuer: String,
    /// Must be among the token's `aud`.
    pub audience: String,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<PathBuf>,
    /// Accepted signature algorithms, a subset of RS256, ES256, EdDSA. HMAC and `none` are
    /// never accepted.
    pub algorithms: Vec<String>,
    /// Bind this issuer to one tenant (slug): an enterprise's own IdP. Its tokens authenticate
    /// only into that tenant, whatever their tenant claim says, and never as platform admins.
    pub tenant: Option<String>,
    /// Claim naming the tenant (slug or id) for issuers not bound to one. Dotted paths reach
    /// into objects (`app_metadata.tenant`).
    pub tenant_claim: String,
    /// Claim identifying the user (members, audit records, per-user limits).
    pub user_claim: String,
    /// Claim holding roles: an array or a space-separated string of `platform_admin`,
    /// `tenant_admin`, `member` (`realm_access.roles` for Keycloak).
    pub roles_claim: String,
    /// Whether this issuer may make platform admins (the platform's own IdP only).
    pub platform_admins: bool,
    /// Admit only users a tenant admin added as members (`/tenant/v1/members`).
    pub require_membership: bool,
    /// Allowed clock skew for `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Least time between two JWKS fetches (a token with an unknown `kid` triggers one).
    pub jwks_min_refresh_secs: u64,
    /// Keys older than this are refetched on the next token.
    pub jwks_max_age_secs: u64,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            jwks_url: None,
            jwks_file: None,
            algorithms: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
            tenant: None,
            tenant_claim: "tenant".into(),
            user_claim: "sub".into(),
            roles_claim: "roles".into(),
            platform_admins: false,
            require_membership: false,
            leeway_secs: 60,
            jwks_min_refresh_secs: 30,
            jwks_max_age_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Serve the built-in offline `demo` model.
    pub enabled: bool,
    /// On first start with no tenants, create tenant `demo` with an admin key written to
    /// `key_file` (mode 0600).
    pub bootstrap_tenant: bool,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// The platform's incident webhook: every leak-guard finding of every tenant is POSTed
    /// here (tenant slug, detector, action, direction, time; never text).
    pub webhook_url: Option<String>,
    /// Let tenants register plain-http webhooks (tests, private networks). Off: tenant webhooks
    /// must be https.
    pub allow_http_webhooks: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Exact-match response cache for non-streaming calls. Off by default: model output is not
    /// deterministic, so reusing it is a deployment's choice. Entries are keyed by tenant,
    /// provider, upstream model and a SHA-256 of the composed request; dedicated-tier tenants
    /// are never cached.
    pub enabled: bool,
    pub ttl_secs: u64,
    /// Entries kept in memory (least recently used evicted first).
    pub max_entries: usize,
    /// Largest response body cached, in bytes.
    pub max_entry_bytes: usize,
    /// Share the cache between replicas through Redis (e.g. `redis://127.0.0.1:6379`);
    /// unset keeps it in this process.
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys.
    pub redis_prefix: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            ttl_secs: 300,
            max_entries: 10_000,
            max_entry_bytes: 256 * 1024,
            redis_url: None,
            redis_prefix: "tenantgate:cache:".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// Local KMS master key (32 bytes, hex), created with mode 0600 on first start.
    /// `TENANTGATE_MASTER_KEY` (64 hex characters) overrides it. It wraps per-tenant KEKs only.
    pub master_key_file: PathBuf,
    /// How long an unwrapped tenant KEK stays in memory.
    pub kek_cache_secs: u64,
    /// How long a data key seals new records and stays cached for opening.
    pub dek_max_age_secs: u64,
    /// Records one data key may seal before a fresh one is made.
    pub dek_max_uses: u64,
    /// Rotate each tenant's KEK when its current version is older than this; 0 turns
    /// scheduled rotation off (on-demand rotation still works).
    pub rotate_after_days: u64,
    /// Seconds after a rotation before the previous KEK version may be destroyed (once no data
    /// key is wrapped by it): covers seals that read the old version just before the rotation.
    pub retire_grace_secs: u64,
    /// How often the background task checks for due rotations and pending re-wraps.
    pub maintenance_interval_secs: u64,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self {
            master_key_file: PathBuf::from("data/master.key"),
            kek_cache_secs: 300,
            dek_max_age_secs: 300,
            dek_max_uses: 1 << 20,
            rotate_after_days: 90,
            retire_grace_secs: 600,
            maintenance_interval_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Ed25519 checkpoint signing key (32-byte seed, hex), created with mode 0600 on first
    /// start. `TENANTGATE_AUDIT_SIGNING_KEY` overrides it. Replicas must share it.
    pub signing_key_file: PathBuf,
    /// How often each chain's new head is signed (a checkpoint); also the longest time a
    /// record can sit after the last checkpoint.
    pub checkpoint_interval_ms: u64,
    /// Records per group commit, at most.
    pub max_batch: usize,
    /// Records waiting for the writer, at most; beyond it callers wait.
    pub queue: usize,
    /// A call whose record is not durable within this time fails (or proceeds, if the
    /// tenant's policy is fail-open).
    pub write_timeout_ms: u64,
    /// How often retention pruning runs.
    pub retention_sweep_secs: u64,
    /// The witness: every checkpoint this gateway signs is also appended (fsynced) to JSON-lines
    /// files here, outside the database; the signer refuses to sign a chain that lost one. One
    /// directory per gateway process; copy it off the machine like any evidence.
    pub witness_dir: PathBuf,
}

/// Knowledge bases and retrieval.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RagConfig {
    /// Where index files live, one directory per tenant, each file sealed with the tenant's
    /// key. They are caches: the store holds the chunks, and a missing or stale file is
    /// rebuilt from them.
    pub index_dir: PathBuf,
    /// Memory bound for loaded indexes; the least recently used are evicted past it.
    pub max_resident_bytes: u64,
    /// Embedding model of knowledge bases that do not name one (must be in `models`).
    pub default_embedding_model: String,
    /// Chunk size and overlap in tokens (o200k).
    pub chunk_tokens: u32,
    pub chunk_overlap: u32,
    /// Largest document accepted.
    pub max_document_bytes: usize,
    /// Chunks retrieved for a chat request when it does not say (`tenantgate.top_k`).
    pub default_top_k: usize,
    pub max_top_k: usize,
    /// HNSW search breadth (higher: better recall, slower search).
    pub ef_search: usize,
    pub ef_construction: usize,
}

impl Default for RagConfig {
    fn default() -> Self {
        Self {
            index_dir: PathBuf::from("data/indexes"),
            max_resident_bytes: 256 << 20,
            default_embedding_model: "demo".into(),
            chunk_tokens: 400,
            chunk_overlap: 40,
            max_document_bytes: 20 << 20,
            default_top_k: 4,
            max_top_k: 20,
            ef_search: 100,
            ef_construction: 100,
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key_file: PathBuf::from("data/audit-signing.key"),
            checkpoint_interval_ms: 5_000,
            max_batch: 4_096,
            queue: 65_536,
            write_timeout_ms: 5_000,
            retention_sweep_secs: 3_600,
            witness_dir: PathBuf::from("data/audit-witness"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// api.openai.com (Bearer key; sends `max_completion_tokens`).
    Openai,
    /// Azure OpenAI: deployments in the path, `api-version` query, `api-key` header.
    Azure,
    /// vLLM, Ollama, LM Studio and other OpenAI-compatible servers (key optional).
    OpenaiCompatible,
    /// api.anthropic.com messages API.
    Anthropic,
    /// The built-in offline demo model.
    Demo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// OpenAI-style base including `/v1` for openai and openai_compatible; the resource
    /// endpoint for azure; `https://api.anthropic.com` for anthropic.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the API key (first line).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Azure only.
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Whole-request bound, streams included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Longest silence between two reads of an upstream response.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_ms: u64,
    #[serde(default = "default_pool_idle")]
    pub pool_max_idle_per_host: usize,
    /// Send a tenant-derived `cache_salt` (vLLM's and SGLang's prefix-cache salt), replacing
    /// any the client sent, so a self-hosted server's KV/prefix cache is never shared across
    /// tenants. Unset: on for `openai_compatible`. Off: no `cache_salt` goes upstream at all
    /// (for servers that reject it). Only `openai_compatible` may set it: the OpenAI and Azure
    /// APIs reject unknown parameters and are scoped with `prompt_cache_key` instead.
    #[serde(default)]
    pub cache_salt: Option<bool>,
}

fn default_connect_timeout() -> u64 {
    5_000
}
fn default_request_timeout() -> u64 {
    600_000
}
fn default_read_timeout() -> u64 {
    120_000
}
fn default_pool_idle() -> usize {
    256
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Tenant-facing name (what clients send as `model`, what allow-lists contain).
    pub name: String,
    pub provider: String,
    /// The provider's model (Azure: deployment) name; defaults to `name`.
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// Default `max_tokens` sent to providers that require one (Anthropic) when neither the
    /// client nor the tenant set a bound.
    #[serde(default = "default_max_output")]
    pub default_max_tokens: u32,
    /// Prices in integer micro-dollars per million tokens; calls to a model without one cost 0.
    #[serde(default)]
    pub pricing: Option<Pricing>,
}

/// A model's prices, integer micro-dollars per million tokens (1 USD = 1,000,000).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pricing {
    pub input_per_mtok: u64,
    pub output_per_mtok: u64,
    /// Prompt tokens the provider served from its prompt cache.
    pub cached_input_per_mtok: u64,
}

impl Pricing {
    /// The cost of a call in micro-dollars, rounded up (never under-charged).
    pub fn cost(&self, input: u64, cached_input: u64, output: u64) -> u64 {
        let fresh = input.saturating_sub(cached_input);
        let num = u128::from(fresh) * u128::from(self.input_per_mtok)
            + u128::from(cached_input.min(input)) * u128::from(self.cached_input_per_mtok)
            + u128::from(output) * u128::from(self.output_per_mtok);
        u64::try_from(num.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

fn default_max_output() -> u32 {
    4096
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            body_read_timeout_ms: 30_000,
            header_read_timeout_ms: 30_000,
            secret_file: PathBuf::from("data/server.secret"),
            shutdown_grace_secs: 30,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite:data/tenantgate.db".to_owned(),
            max_connections: 8,
            pg_schema: tenantgate_store::DEFAULT_PG_SCHEMA.to_owned(),
            pg_runtime_role: tenantgate_store::DEFAULT_PG_RUNTIME_ROLE.to_owned(),
            runtime_url: None,
            sqlite_synchronous: SqliteSync::Full,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            reload_interval_ms: 100,
            oidc: Vec::new(),
        }
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bootstrap_tenant: true,
            key_file: PathBuf::from("data/demo-key.txt"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Defaults, then the TOML file (if given), then `TENANTGATE_*` variables; validated.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(invalid(
                    "--config",
                    format!("file {} does not exist", f.display()),
                ));
            }
            fig = fig.merge(Toml::file(f));
        }
        // Only double-underscore variables are configuration keys; TENANTGATE_CONFIG and
        // TENANTGATE_SERVER_SECRET are read elsewhere.
        fig = fig.merge(
            Env::prefixed("TENANTGATE_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        let cfg: Config = fig.extract().map_err(Box::new)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Structural checks that need no environment (names unique, references resolve).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        if self.server.body_read_timeout_ms == 0 {
            return Err(invalid("server.body_read_timeout_ms", "must be at least 1"));
        }
        if self.server.header_read_timeout_ms == 0 {
            return Err(invalid(
                "server.header_read_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.auth.reload_interval_ms == 0 {
            return Err(invalid("auth.reload_interval_ms", "must be at least 1"));
        }
        for (i, o) in self.auth.oidc.iter().enumerate() {
            let key = |f: &str| format!("auth.oidc[{i}].{f}");
            if o.issuer.is_empty() || o.audience.is_empty() {
                return Err(invalid(key("issuer"), "issuer and audience are required"));
            }
            if o.algorithms.is_empty()
                || o.algorithms
                    .iter()
                    .any(|a| !["RS256", "ES256", "EdDSA"].contains(&a.as_str()))
            {
                return Err(invalid(
                    key("algorithms"),
                    "use one or more of RS256, ES256, EdDSA",
                ));
            }
            if o.jwks_url.is_some() && o.jwks_file.is_some() {
                return Err(invalid(
                    key("jwks_url"),
                    "set jwks_url or jwks_file, not both",
                ));
            }
            if o.tenant.is_some() && o.platform_admins {
                return Err(invalid(
                    key("platform_admins"),
                    "an issuer bound to one tenant cannot make platform admins",
                ));
            }
            if o.jwks_min_refresh_secs == 0 {
                return Err(invalid(key("jwks_min_refresh_secs"), "must be at least 1"));
            }
            if self.auth.oidc[..i].iter().any(|p| p.issuer == o.issuer) {
                return Err(invalid(key("issuer"), "each issuer may appear once"));
            }
        }
        let r = &self.rag;
        if r.chunk_tokens < 16 || r.chunk_overlap >= r.chunk_tokens {
            return Err(invalid(
                "rag.chunk_tokens",
                "chunk_tokens must be at least 16 and larger than chunk_overlap",
            ));
        }
        if r.default_top_k == 0 || r.max_top_k < r.default_top_k || r.ef_search < r.max_top_k {
            return Err(invalid(
                "rag.max_top_k",
                "need 1 <= default_top_k <= max_top_k <= ef_search",
            ));
        }
        if self.cache.enabled && (self.cache.max_entries == 0 || self.cache.ttl_secs == 0) {
            return Err(invalid(
                "cache.max_entries",
                "an enabled cache needs max_entries and ttl_secs of at least 1",
            ));
        }
        let e = &self.encryption;
        if e.dek_max_uses == 0 || e.dek_max_uses > 1 << 32 {
            return Err(invalid(
                "encryption.dek_max_uses",
                "must be between 1 and 2^32 (random 96-bit nonces)",
            ));
        }
        if e.dek_max_age_secs == 0 || e.kek_cache_secs == 0 || e.maintenance_interval_secs == 0 {
            return Err(invalid(
                "encryption.dek_max_age_secs",
                "durations must be at least 1 second",
            ));
        }
        let a = &self.audit;
        if a.checkpoint_interval_ms == 0 || a.write_timeout_ms == 0 || a.retention_sweep_secs == 0 {
            return Err(invalid(
                "audit.checkpoint_interval_ms",
                "audit intervals and timeouts must be at least 1",
            ));
        }
        if a.max_batch == 0 || a.queue < a.max_batch {
            return Err(invalid(
                "audit.queue",
                "max_batch must be at least 1 and queue at least max_batch",
            ));
        }
        if self.database.url.is_empty() {
            return Err(invalid("database.url", "must not be empty"));
        }
        let mut names = HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let key = |f: &str| format!("providers[{i}].{f}");
            if p.name.is_empty() || !names.insert(p.name.as_str()) {
                return Err(invalid(
                    key("name"),
                    format!("{:?} is empty or defined twice", p.name),
                ));
            }
            if p.name == "demo" && p.kind != ProviderKind::Demo {
                return Err(invalid(
                    key("name"),
                    "\"demo\" is reserved for the built-in demo provider",
                ));
            }
            if p.api_key_env.is_some() && p.api_key_file.is_some() {
                return Err(invalid(
                    key("api_key_env"),
                    "set api_key_env or api_key_file, not both",
                ));
            }
            let needs_key = matches!(
                p.kind,
                ProviderKind::Openai | ProviderKind::Azure | ProviderKind::Anthropic
            );
            if needs_key && p.api_key_env.is_none() && p.api_key_file.is_none() {
                return Err(invalid(
                    key("api_key_env"),
                    format!(
                        "provider {:?} of kind {:?} needs api_key_env or api_key_file",
                        p.name, p.kind
                    ),
                ));
            }
            if p.cache_salt == Some(true) && p.kind != ProviderKind::OpenaiCompatible {
                return Err(invalid(
                    key("cache_salt"),
                    "only openai_compatible providers (vLLM, SGLang) take a cache_salt",
                ));
            }
            if p.kind == ProviderKind::Azure {
                if p.base_url.is_none() {
                    return Err(invalid(
                        key("base_url"),
                        "azure needs the resource endpoint, e.g. https://NAME.openai.azure.com",
                    ));
                }
                if p.api_version.is_none() {
                    return Err(invalid(
                        key("api_version"),
                        "azure needs an api_version, e.g. 2024-10-21",
                    ));
                }
            }
            if p.kind == ProviderKind::OpenaiCompatible && p.base_url.is_none() {
                return Err(invalid(
                    key("base_url"),
                    "openai_compatible needs a base_url, e.g. http://localhost:8000/v1",
                ));
            }
            if let Some(u) = &p.base_url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(invalid(
                        key("base_url"),
                        format!("{u:?} must start with http:// or https://"),
                    ));
                }
            }
            if p.connect_timeout_ms == 0 || p.request_timeout_ms == 0 || p.read_timeout_ms == 0 {
                return Err(invalid(
                    key("request_timeout_ms"),
                    "timeouts must be at least 1 ms",
                ));
            }
        }
        let mut models = HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            let key = |f: &str| format!("models[{i}].{f}");
            if m.name.is_empty()
                || m.name.chars().any(char::is_whitespace)
                || !models.insert(m.name.as_str())
            {
                return Err(invalid(
                    key("name"),
                    format!("{:?} is empty, has whitespace or is defined twice", m.name),
                ));
            }
            if self.demo.enabled && m.name == "demo" {
                return Err(invalid(
                    key("name"),
                    "\"demo\" is the built-in demo model; disable demo.enabled to reuse the name",
                ));
            }
            if !self.providers.iter().any(|p| p.name == m.provider) {
                return Err(invalid(
                    key("provider"),
                    format!("unknown provider {:?}", m.provider),
                ));
            }
            if m.default_max_tokens == 0 {
                return Err(invalid(key("default_max_tokens"), "must be at least 1"));
            }
        }
        Ok(())
    }
}

impl ProviderConfig {
    /// Whether requests to this provider carry a tenant-derived `cache_salt`.
    pub fn sends_cache_salt(&self) -> bool {
        self.cache_salt
            .unwrap_or(self.kind == ProviderKind::OpenaiCompatible)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Reads the provider's API key from its environment variable or file. The value is
    /// wrapped so it never appears in `Debug` output or logs.
    pub fn api_key(&self, index: usize) -> Result<Option<SecretString>, ConfigError> {
        if let Some(var) = &self.api_key_env {
            return match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(SecretString::from(v.trim().to_owned()))),
                _ => Err(invalid(
                    format!("providers[{index}].api_key_env"),
                    format!("environment variable {var} is not set"),
                )),
            };
        }
        if let Some(path) = &self.api_key_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    format!("providers[{index}].api_key_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let first = text.lines().next().unwrap_or_default().trim().to_owned();
            if first.is_empty() {
                return Err(invalid(
                    format!("providers[{index}].api_key_file"),
                    format!("{} is empty", path.display()),
                ));
            }
            return Ok(Some(SecretString::from(first)));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, toml).unwrap();
        Config::load(Some(&p))
    }

    #[test]
    fn errors_name_the_key() {
        let e = load_str("[server]\nlisten = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
        let e = load_str("[server]\nlistne = \"127.0.0.1:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listne"), "{e}");
        let e = load_str("[[providers]]\nname=\"o\"\nkind=\"openai\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("providers[0].api_key_env"), "{e}");
        let e = load_str("[[providers]]\nname=\"o\"\nkind=\"openai_compatible\"\nbase_url=\"http://x/v1\"\n[[models]]\nname=\"m\"\nprovider=\"nope\"\n").unwrap_err().to_string();
        assert!(e.starts_with("models[0].provider"), "{e}");
        let e = load_str("[[providers]]\nname=\"o\"\nkind=\"openai\"\napi_key=\"sk-123\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("api_key"), "{e}");
    }

    #[test]
    fn missing_env_key_is_reported_without_a_value() {
        let p = ProviderConfig {
            name: "o".into(),
            kind: ProviderKind::Openai,
            base_url: None,
            api_key_env: Some("TENANTGATE_TEST_SURELY_UNSET_VAR".into()),
            api_key_file: None,
            api_version: None,
            connect_timeout_ms: 1,
            request_timeout_ms: 1,
            read_timeout_ms: 1,
            pool_max_idle_per_host: 1,
            cache_salt: None,
        };
        let e = p.api_key(3).unwrap_err().to_string();
        assert_eq!(e, "providers[3].api_key_env: environment variable TENANTGATE_TEST_SURELY_UNSET_VAR is not set");
    }

    #[test]
    fn oidc_issuers_parse_and_unsafe_settings_are_refused() {
        let ok = "[[auth.oidc]]\nissuer = \"https://idp\"\naudience = \"tg\"\n\
                  roles_claim = \"realm_access.roles\"\nplatform_admins = true\n\
                  [[auth.oidc]]\nissuer = \"https://acme\"\naudience = \"tg\"\ntenant = \"acme\"\n";
        let cfg = load_str(ok).unwrap();
        assert_eq!(cfg.auth.oidc.len(), 2);
        assert_eq!(cfg.auth.oidc[1].tenant.as_deref(), Some("acme"));
        for (bad, key) in [
            ("algorithms = [\"HS256\"]", "algorithms"),
            ("algorithms = [\"none\"]", "algorithms"),
            (
                "tenant = \"acme\"\nplatform_admins = true",
                "platform_admins",
            ),
            ("jwks_url = \"https://x\"\njwks_file = \"/k\"", "jwks_url"),
        ] {
            let toml = format!("[[auth.oidc]]\nissuer = \"https://i\"\naudience = \"a\"\n{bad}\n");
            let e = load_str(&toml).unwrap_err().to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
        let e = load_str("[[auth.oidc]]\nissuer = \"https://i\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("audience"), "{e}");
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The documented example must stay loadable: every key in it exists.
    #[test]
    fn example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tenantgate.example.toml");
        let cfg = Config::load(Some(&path)).unwrap();
        assert_eq!(cfg.providers.len(), 4);
        assert_eq!(cfg.models.len(), 4);
        assert_eq!(cfg.auth.reload_interval_ms, 100);
    }
}
