//! `[[providers]]` (where model calls go, and how the gateway authenticates to them) and
//! `[[models]]` (the tenant-facing catalogue, each model on one provider, with its prices).

use super::{invalid, ConfigError};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

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
    /// More places the model is served from, after `provider` (other providers or regions),
    /// tried on failure (`strategy = "ordered"`) or sharing traffic by weight (`"weighted"`).
    #[serde(default)]
    pub targets: Vec<super::TargetConfig>,
    #[serde(default)]
    pub strategy: super::Strategy,
    /// `provider`'s weight under `strategy = "weighted"`.
    #[serde(default = "super::routing::one")]
    pub weight: u32,
    /// Another model (on the tenant's allow-list) tried when every target of this one failed
    /// or is unavailable (circuit open, drained). Its own fallback is not followed.
    #[serde(default)]
    pub fallback: Option<String>,
}

impl Default for ModelConfig {
    /// A model on no provider yet: for building configurations in code.
    fn default() -> Self {
        Self {
            name: String::new(),
            provider: String::new(),
            upstream_model: None,
            default_max_tokens: default_max_output(),
            pricing: None,
            targets: Vec::new(),
            strategy: super::Strategy::Ordered,
            weight: 1,
            fallback: None,
        }
    }
}

/// A model's prices, integer micro-dollars per million tokens (1 USD = 1,000,000).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pricing {
    pub input_per_mtok: u64,
    pub output_per_mtok: u64,
    /// Prompt tokens the provider served from its prompt cache.
    pub cached_input_per_mtok: u64,
    /// Fine-tuning: per million tokens the provider reports it trained on (`trained_tokens`),
    /// charged to the tenant's spend when a job succeeds.
    pub training_per_mtok: u64,
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

    /// The cost of a fine-tuning job that trained on `trained` tokens, rounded up.
    pub fn training_cost(&self, trained: u64) -> u64 {
        let num = u128::from(trained) * u128::from(self.training_per_mtok);
        u64::try_from(num.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

fn default_max_output() -> u32 {
    4096
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

/// Provider names unique (`demo` reserved), keys named where the kind needs one, URLs and
/// timeouts usable.
pub(super) fn validate_providers(providers: &[ProviderConfig]) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for (i, p) in providers.iter().enumerate() {
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
    Ok(())
}

/// Model names unique and without whitespace, each on a configured provider.
pub(super) fn validate_models(
    models: &[ModelConfig],
    providers: &[ProviderConfig],
    demo_enabled: bool,
) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for (i, m) in models.iter().enumerate() {
        let key = |f: &str| format!("models[{i}].{f}");
        if m.name.is_empty()
            || m.name.chars().any(char::is_whitespace)
            || !names.insert(m.name.as_str())
        {
            return Err(invalid(
                key("name"),
                format!("{:?} is empty, has whitespace or is defined twice", m.name),
            ));
        }
        if demo_enabled && m.name == "demo" {
            return Err(invalid(
                key("name"),
                "\"demo\" is the built-in demo model; disable demo.enabled to reuse the name",
            ));
        }
        if !providers.iter().any(|p| p.name == m.provider) {
            return Err(invalid(
                key("provider"),
                format!("unknown provider {:?}", m.provider),
            ));
        }
        if m.default_max_tokens == 0 {
            return Err(invalid(key("default_max_tokens"), "must be at least 1"));
        }
        for (j, t) in m.targets.iter().enumerate() {
            if !providers.iter().any(|p| p.name == t.provider) {
                return Err(invalid(
                    key(&format!("targets[{j}].provider")),
                    format!("unknown provider {:?}", t.provider),
                ));
            }
        }
        let weights = std::iter::once(m.weight).chain(m.targets.iter().map(|t| t.weight));
        if m.strategy == super::Strategy::Weighted && weights.clone().all(|w| w == 0) {
            return Err(invalid(
                key("weight"),
                "at least one target needs a weight above 0",
            ));
        }
        if weights.clone().any(|w| w > 1_000_000) {
            return Err(invalid(key("weight"), "weights are at most 1000000"));
        }
    }
    // Fallbacks name configured models (checked once every name is known), never themselves.
    for (i, m) in models.iter().enumerate() {
        if let Some(f) = &m.fallback {
            let known = models.iter().any(|o| &o.name == f) || (demo_enabled && f == "demo");
            if !known || f == &m.name {
                return Err(invalid(
                    format!("models[{i}].fallback"),
                    format!("{f:?} is not another configured model"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
