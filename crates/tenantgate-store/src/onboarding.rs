//! One-call onboarding's store side (issue 18): the idempotency claim of an onboarding request,
//! and discarding a tenant whose onboarding failed, so that nothing of it is left.
//!
//! The tables a tenant's rows can be in are listed once, for offboarding and this undo alike
//! ([`crate::offboard::CONTROL_TABLES`], `PLACE_TABLES`, [`crate::places::DATA_TABLES`]);
//! `tests/offboard.rs` fails if a table with a `tenant_id` column is in none of them.

use crate::offboard::{CONTROL_TABLES, PLACE_TABLES};
use crate::places::{Place, DATA_TABLES};
use crate::{now_ms, with_tx, Access, Result, StoreError};
use tenantgate_core::TenantId;

/// The audit tables: an onboarding that failed never wrote to them (its tenant-chain record is
/// the last step), and nothing but retention and offboarding may delete from them.
const AUDIT_TABLES: &[&str] = &[
    "audit_heads",
    "audit_records",
    "audit_bodies",
    "audit_checkpoints",
];

/// How long a finished onboarding's result can be replayed with its idempotency key.
pub const REPLAY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// What an idempotency key finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new (or its earlier claim was stale and is now this one's): onboard
    /// `tenant`. A stale claim's tenant is returned in `discard` to be removed first.
    New { discard: Option<TenantId> },
    /// The same request finished before: its sealed result, under `tenant`'s keys.
    Replay { tenant: TenantId, sealed: Vec<u8> },
    /// The same request is being onboarded now (by this or another replica).
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

impl crate::Platform<'_> {
    /// Claims `key` for an onboarding of `tenant` (the request's SHA-256 in `request`). A claim
    /// still `running` after `stale_ms` belongs to a process that died mid-onboarding: it is
    /// taken over and its tenant handed back to be discarded. Finished claims older than the
    /// replay window are removed first.
    pub async fn onboarding_claim(
        &self,
        key: &str,
        request: &str,
        tenant: &TenantId,
        stale_ms: i64,
    ) -> Result<Claim> {
        let now = now_ms();
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query(
                "DELETE FROM onboarding_requests WHERE state = 'done' AND created_at_ms < $1",
            )
            .bind(now - REPLAY_WINDOW_MS)
            .execute(&mut *tx)
            .await?;
            let inserted = sqlx::query(
                "INSERT INTO onboarding_requests (idempotency_key, request_sha256, tenant_id, \
                 state, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, 'running', $4, $4) \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(key)
            .bind(request)
            .bind(tenant.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                Claim::New { discard: None }
            } else {
                let (sha, owner, state, sealed, updated): (
                    String,
                    String,
                    String,
                    Option<Vec<u8>>,
                    i64,
                ) = sqlx::query_as(
                    "SELECT request_sha256, tenant_id, state, result_sealed, updated_at_ms \
                         FROM onboarding_requests WHERE idempotency_key = $1",
                )
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
                let owner = TenantId::parse(&owner)?;
                if sha != request {
                    Claim::Mismatch
                } else if state == "done" {
                    match sealed {
                        Some(sealed) => Claim::Replay {
                            tenant: owner,
                            sealed,
                        },
                        None => {
                            return Err(StoreError::Corrupt(
                                "a finished onboarding without its result".into(),
                            ))
                        }
                    }
                } else if updated > now - stale_ms {
                    Claim::InProgress
                } else {
                    // Taken over only if still stale as read (another replica may win it).
                    let n = sqlx::query(
                        "UPDATE onboarding_requests SET tenant_id = $1, updated_at_ms = $2 \
                         WHERE idempotency_key = $3 AND state = 'running' AND updated_at_ms = $4",
                    )
                    .bind(tenant.as_str())
                    .bind(now)
                    .bind(key)
                    .bind(updated)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n == 1 {
                        Claim::New {
                            discard: Some(owner),
                        }
                    } else {
                        Claim::InProgress
                    }
                }
            }
        })
    }

    /// Claims still `running` after `stale_ms`: (idempotency key, request SHA-256). Their
    /// processes died mid-onboarding; the sweep takes each over with [`Self::onboarding_claim`]
    /// and discards its tenant.
    pub async fn onboarding_stale(&self, stale_ms: i64) -> Result<Vec<(String, String)>> {
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query_as(
                "SELECT idempotency_key, request_sha256 FROM onboarding_requests \
                 WHERE state = 'running' AND updated_at_ms <= $1 ORDER BY created_at_ms",
            )
            .bind(now_ms() - stale_ms)
            .fetch_all(&mut *tx)
            .await?
        })
    }

    /// Keeps a claim alive while its onboarding runs (a step that waits long, e.g. on a KMS).
    pub async fn onboarding_touch(&self, key: &str) -> Result<()> {
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query("UPDATE onboarding_requests SET updated_at_ms = $1 WHERE idempotency_key = $2 AND state = 'running'")
                .bind(now_ms())
                .bind(key)
                .execute(&mut *tx)
                .await?;
        })
    }

    /// Marks the claim done with its result, sealed under the new tenant's keys.
    pub async fn onboarding_done(&self, key: &str, sealed: &[u8]) -> Result<()> {
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query(
                "UPDATE onboarding_requests SET state = 'done', result_sealed = $1, \
                 updated_at_ms = $2 WHERE idempotency_key = $3",
            )
            .bind(sealed)
            .bind(now_ms())
            .bind(key)
            .execute(&mut *tx)
            .await?;
        })
    }

    /// Removes every row of a tenant whose onboarding failed, in the control plane and in its
    /// place, then the place itself (schema, file, or its rows in a dedicated database); its
    /// key material is shredded by the caller first. Refused for a tenant with audit records:
    /// such a tenant was born (onboarding writes the tenant's chain last) and is offboarded,
    /// never discarded.
    pub async fn discard_tenant(&self, tenant: &TenantId) -> Result<()> {
        let place = self.store.place(tenant).await?;
        let data = self.store.data(tenant).await?;
        with_tx!(&data, Access::Tenant(tenant), |tx| {
            for t in AUDIT_TABLES {
                let n: i64 =
                    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t} WHERE tenant_id = $1"))
                        .bind(tenant.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                if n > 0 {
                    return Err(StoreError::Conflict(
                        "the tenant has audit records: it is offboarded, not discarded".into(),
                    ));
                }
            }
            for t in DATA_TABLES
                .iter()
                .chain(PLACE_TABLES)
                .filter(|t| !AUDIT_TABLES.contains(t))
            {
                sqlx::query(&format!("DELETE FROM {t} WHERE tenant_id = $1"))
                    .bind(tenant.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        })?;
        with_tx!(self.store, Access::Platform, |tx| {
            for t in CONTROL_TABLES
                .iter()
                .filter(|t| **t != "onboarding_requests")
            {
                sqlx::query(&format!("DELETE FROM {t} WHERE tenant_id = $1"))
                    .bind(tenant.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM tenants WHERE id = $1")
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?;
            crate::tenant::bump_revision(&mut tx).await?;
        })?;
        self.store.forget_place(tenant);
        if place != Place::Shared {
            self.unprovision(tenant, &place).await?;
        }
        Ok(())
    }

    /// Removes the claim of an onboarding that was rolled back: a retry with the same key
    /// runs again.
    pub async fn onboarding_release(&self, key: &str) -> Result<()> {
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query("DELETE FROM onboarding_requests WHERE idempotency_key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        })
    }
}
