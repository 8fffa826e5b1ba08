//! Configuration: one TOML file plus `TENANTGATE_*` environment overrides (`__` separates
//! levels: `TENANTGATE_DATABASE__URL` sets `database.url`). Validated once at start-up; every
//! message names the key at fault. Provider API keys are never read from the TOML file itself,
//! only from an environment variable or a secrets file the TOML names.
//!
//! One file per section: `server.rs` (`[server]`, `[demo]`), `database.rs`, `auth.rs` (OIDC
//! issuers), `encryption.rs`, `cache.rs`, `guard.rs`, `audit.rs`, `rag.rs`, `providers.rs`
//! (`[[providers]]`, `[[models]]`, prices), `finetune.rs` (`[fine_tuning]`), `console.rs` (`[console]`), `metrics.rs` (`[metrics]`, `[telemetry]`); `[limits]` is `crate::limits::LimitsConfig`. This
//! file holds `Config` itself, loading (defaults, file, environment) and the validation order.

mod audit;
mod auth;
mod cache;
mod console;
mod database;
mod encryption;
mod finetune;
mod guard;
mod lifecycle;
mod metrics;
mod providers;
mod rag;
mod routing;
mod server;

pub use audit::AuditConfig;
pub use auth::{AuthConfig, OidcConfig};
pub use cache::CacheConfig;
pub use console::ConsoleConfig;
pub use database::{DatabaseConfig, SqliteSync};
pub use encryption::EncryptionConfig;
pub use finetune::{supports_fine_tuning, FineTuningConfig};
pub use guard::GuardConfig;
pub use lifecycle::{LifecycleConfig, MAX_DELETION_WINDOW_SECS};
pub use metrics::{MetricsConfig, TelemetryConfig, MAX_TENANT_TOP_N};
pub use providers::{ModelConfig, Pricing, ProviderConfig, ProviderKind};
pub use rag::RagConfig;
pub use routing::{RoutingConfig, Strategy, TargetConfig};
pub use server::{DemoConfig, ServerConfig, TlsConfig};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::Path;

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
    pub lifecycle: LifecycleConfig,
    pub routing: RoutingConfig,
    pub fine_tuning: FineTuningConfig,
    pub console: ConsoleConfig,
    pub metrics: MetricsConfig,
    pub telemetry: TelemetryConfig,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
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
        // Sections in this order: the first error found is the one reported.
        self.server.validate()?;
        self.auth.validate()?;
        self.rag.validate()?;
        self.cache.validate()?;
        self.encryption.validate()?;
        self.audit.validate()?;
        self.lifecycle.validate()?;
        self.database.validate()?;
        self.routing.validate()?;
        self.console.validate()?;
        self.metrics.validate()?;
        self.telemetry.validate()?;
        providers::validate_providers(&self.providers)?;
        self.fine_tuning.validate(&self.providers)?;
        providers::validate_models(&self.models, &self.providers, self.demo.enabled)?;
        Ok(())
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
