//! `[audit]`: the checkpoint signing key, the group-commit writer and the witness.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

impl AuditConfig {
    /// The writer can make progress: intervals and timeouts of at least 1, a queue that holds a batch.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let a = self;
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
        Ok(())
    }
}
