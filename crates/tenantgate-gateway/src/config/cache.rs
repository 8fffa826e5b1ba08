//! `[cache]`: the exact-match response cache.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

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

impl CacheConfig {
    /// An enabled cache must be able to hold an entry.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && (self.max_entries == 0 || self.ttl_secs == 0) {
            return Err(invalid(
                "cache.max_entries",
                "an enabled cache needs max_entries and ttl_secs of at least 1",
            ));
        }
        Ok(())
    }
}
