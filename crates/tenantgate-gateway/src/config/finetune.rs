//! `[fine_tuning]`: where tenants' training files go and how large they may be. Whether a
//! tenant may fine-tune at all is its plan's (`limits.<plan>.fine_tuning`, enterprise by
//! default) or its limits override's.

use super::{invalid, ConfigError, ProviderConfig, ProviderKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FineTuningConfig {
    /// The provider training files are uploaded to (its files API, with the platform's
    /// credential or the tenant's own endpoint for it); jobs run on base models of this
    /// provider. Default: the first configured OpenAI, Azure or OpenAI-compatible provider.
    pub provider: Option<String>,
    /// The largest training file accepted. The body is read whole (bounded by this and by
    /// `server.body_read_timeout_ms`), validated line by line, then sealed in 1 MiB parts.
    pub max_file_bytes: usize,
    /// The most lines (examples) a training file may have.
    pub max_lines: usize,
}

impl Default for FineTuningConfig {
    fn default() -> Self {
        Self {
            provider: None,
            max_file_bytes: 64 << 20,
            max_lines: 1_000_000,
        }
    }
}

/// Whether a provider of `kind` has a fine-tuning API the gateway can drive.
pub fn supports_fine_tuning(kind: ProviderKind) -> bool {
    match kind {
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::OpenaiCompatible => true,
        ProviderKind::Anthropic | ProviderKind::Demo => false,
    }
}

impl FineTuningConfig {
    /// The provider training files go to, if any provider can fine-tune.
    pub fn provider<'c>(&'c self, providers: &'c [ProviderConfig]) -> Option<&'c str> {
        match &self.provider {
            Some(p) => Some(p.as_str()),
            None => providers
                .iter()
                .find(|p| supports_fine_tuning(p.kind))
                .map(|p| p.name.as_str()),
        }
    }

    pub(super) fn validate(&self, providers: &[ProviderConfig]) -> Result<(), ConfigError> {
        if self.max_file_bytes == 0 || self.max_lines == 0 {
            return Err(invalid(
                "fine_tuning.max_file_bytes",
                "max_file_bytes and max_lines must be positive",
            ));
        }
        if let Some(name) = &self.provider {
            match providers.iter().find(|p| &p.name == name) {
                Some(p) if supports_fine_tuning(p.kind) => {}
                Some(_) => {
                    return Err(invalid(
                        "fine_tuning.provider",
                        format!("provider {name:?} has no fine-tuning API (openai, azure or openai_compatible only)"),
                    ))
                }
                None => {
                    return Err(invalid(
                        "fine_tuning.provider",
                        format!("no provider {name:?} is configured"),
                    ))
                }
            }
        }
        Ok(())
    }
}
