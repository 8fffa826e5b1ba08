//! `[encryption]`: the local KMS master key and the lifetimes of tenant key material.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// Local KMS master key (32 bytes, hex), created with mode 0600 on first start.
    /// `TENANTGATE_MASTER_KEY` (64 hex characters) overrides it. It wraps per-tenant KEKs only.
    pub master_key_file: PathBuf,
    /// How long an unwrapped tenant KEK stays in memory. For a tenant on a key in its own KMS
    /// (`tenantgate keys use-kms`) this is also the bound on revocation: its key is asked again
    /// once this has passed, and a disabled or revoked key fails the tenant's calls closed
    /// (503 `tenant_key_unavailable`) and leaves its data unreadable, data-key caches included.
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

/// An hour: a customer who disables its key expects its data to become unreadable promptly.
pub const MAX_KEK_CACHE_SECS: u64 = 3600;

impl EncryptionConfig {
    /// Data keys within the nonce budget; lifetimes of at least a second.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let e = self;
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
        if e.kek_cache_secs > MAX_KEK_CACHE_SECS {
            return Err(invalid(
                "encryption.kek_cache_secs",
                "must be at most 3600: it bounds how long a tenant's revocation of its own key takes to take effect",
            ));
        }
        Ok(())
    }
}
