//! Offboarding, the store's side: the pending-deletion window (`tenant_deletions`, migration
//! 0017), the finalizer's claim, and the removal of every row a tenant has, in its place and
//! in the control plane, ending with a tombstone in `tenants`.
//!
//! What a tenant leaves is listed here as data: [`places::DATA_TABLES`] (its place),
//! [`PLACE_TABLES`] (in every database, beside the data tables) and [`CONTROL_TABLES`] (the
//! shared control plane). `tests/offboard.rs` finds every table with a `tenant_id` column in
//! the migrated schema of both backends and fails if one is in none of these lists, so a new
//! table cannot be forgotten by offboarding.

use crate::backend::apply_pg_access;
use crate::places::{Place, DATA_TABLES};
use crate::{now_ms, with_tx, Access, Db, Result, StoreError};
use tenantgate_core::{Tenant, TenantId, TenantStatus};

/// Control-plane tables with a `tenant_id` column, removed at finalization (children first).
/// `tenants` itself becomes a tombstone instead (its id stays, so the id is never reused and
/// the platform chain's records keep naming something).
pub const CONTROL_TABLES: &[&str] = &[
    "console_sessions",
    "incident_freezes",
    "api_keys",
    "tenant_members",
    "break_glass_grants",
    "tenant_guard_policy",
    "tenant_audit_policy",
    "tenant_limits",
    "tenant_prompt_settings",
    "knowledge_bases",
    "tenant_endpoints",
    "ft_jobs",
    "private_models",
    "tenant_kms_keys",
    "tenant_moves",
    "tenant_placement",
    "tenant_deletions",
    "onboarding_requests",
];

/// Tables every database has (the shared one and each place of its own) that hold a row per
/// tenant but are not data that moves: the move fence.
pub const PLACE_TABLES: &[&str] = &["tenant_fence"];

/// How far a finalization got (`tenant_deletions.phase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionPhase {
    /// Waiting for its window (or claimed and finalizing: its chain still exists).
    Pending,
    /// Keys shredded and the tenant's chain certified at its final head: the tenant's chain
    /// takes no more records.
    Certified,
    /// Its place's rows and storage are gone.
    Purged,
    /// The certificate is in the platform chain: only the tombstone remains to be written.
    Recorded,
}

impl DeletionPhase {
    fn as_str(self) -> &'static str {
        match self {
            DeletionPhase::Pending => "pending",
            DeletionPhase::Certified => "certified",
            DeletionPhase::Purged => "purged",
            DeletionPhase::Recorded => "recorded",
        }
    }

    fn parse(s: &str) -> Result<DeletionPhase> {
        Ok(match s {
            "pending" => DeletionPhase::Pending,
            "certified" => DeletionPhase::Certified,
            "purged" => DeletionPhase::Purged,
            "recorded" => DeletionPhase::Recorded,
            other => return Err(StoreError::Corrupt(format!("deletion phase {other:?}"))),
        })
    }
}

/// A requested deletion, as stored.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PendingDeletion {
    pub tenant: TenantId,
    /// What a restore puts back.
    pub prior_status: TenantStatus,
    pub requested_at_ms: i64,
    pub delete_after_ms: i64,
    pub phase: DeletionPhase,
    /// What finalization has destroyed so far (JSON object), carried across retries so the
    /// certificate names everything even if a replica died half-way.
    pub report: serde_json::Value,
}

/// A tenant's key material before it is shredded: what the certificate names.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct KeyInventory {
    pub kek_versions: Vec<i64>,
    pub data_keys: u64,
    /// Whether its KEKs were wrapped by its own KMS key (the key config goes too).
    pub customer_kms_key: bool,
}

/// Rows removed from one table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TableRows {
    pub table: String,
    pub rows: u64,
}

/// What purging a tenant's place removed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PurgedPlace {
    pub place: Place,
    pub rows: Vec<TableRows>,
    /// The storage of its own that went with it: a schema dropped, files deleted.
    pub storage_removed: Option<String>,
}

type DeletionRow = (String, String, i64, i64, String, String);

fn pending_from(r: DeletionRow) -> Result<PendingDeletion> {
    let (t, prior, req, after, phase, report) = r;
    Ok(PendingDeletion {
        tenant: TenantId::parse(&t)?,
        prior_status: prior
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("prior status {prior:?}")))?,
        requested_at_ms: req,
        delete_after_ms: after,
        phase: DeletionPhase::parse(&phase)?,
        report: serde_json::from_str(&report).unwrap_or(serde_json::Value::Null),
    })
}

const DELETION_COLS: &str =
    "tenant_id, prior_status, requested_at_ms, delete_after_ms, phase, report";

impl crate::Platform<'_> {
    /// Starts (or, for a tenant already pending, reschedules) a tenant's deletion: status
    /// `pending_deletion` until `delete_after_ms`, its prior status kept for a restore. One
    /// transaction with the revision bump, so every replica refuses its calls at its reload.
    pub async fn request_deletion(
        &self,
        id: &TenantId,
        delete_after_ms: i64,
    ) -> Result<(Tenant, PendingDeletion)> {
        tracing::info!(actor = self.actor(), tenant = %id, delete_after_ms, "tenant deletion requested");
        let now = now_ms();
        with_tx!(self.store, Access::Platform, |tx| {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let status: TenantStatus = match status {
                None => return Err(StoreError::NotFound),
                Some(s) => s
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("tenant status {s:?}")))?,
            };
            match status {
                TenantStatus::Active | TenantStatus::Suspended => {
                    sqlx::query(
                        "INSERT INTO tenant_deletions (tenant_id, prior_status, requested_at_ms, \
                         delete_after_ms, claimed_until_ms, phase, report) \
                         VALUES ($1, $2, $3, $4, NULL, 'pending', '{}')",
                    )
                    .bind(id.as_str())
                    .bind(status.as_str())
                    .bind(now)
                    .bind(delete_after_ms)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE tenants SET status = $1, updated_at_ms = $2 WHERE id = $3")
                        .bind(TenantStatus::PendingDeletion.as_str())
                        .bind(now)
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                // A second request only moves the deadline (`--now` on a pending tenant).
                TenantStatus::PendingDeletion => {
                    sqlx::query(
                        "UPDATE tenant_deletions SET delete_after_ms = $1 WHERE tenant_id = $2",
                    )
                    .bind(delete_after_ms)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                TenantStatus::Deleted => return Err(StoreError::NotFound),
            }
            crate::tenant::bump_revision(&mut tx).await?;
        })?;
        let t = self.get_tenant(id).await?;
        let p = self
            .pending_deletion(id)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok((t, p))
    }

    /// Cancels a pending deletion that finalization has not begun: the tenant gets its prior
    /// status back. `Conflict` once a finalizer claimed it.
    pub async fn cancel_deletion(&self, id: &TenantId) -> Result<Tenant> {
        tracing::info!(actor = self.actor(), tenant = %id, "tenant deletion cancelled");
        let now = now_ms();
        with_tx!(self.store, Access::Platform, |tx| {
            let row: Option<(String, Option<i64>, String, String)> = sqlx::query_as(
                "SELECT prior_status, claimed_until_ms, phase, report FROM tenant_deletions \
                 WHERE tenant_id = $1",
            )
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let Some((prior, claimed, phase, report)) = row else {
                return Err(StoreError::NotFound);
            };
            // Claimed by a finalizer, or its keys already shredded (`delete --now` from the
            // CLI): nothing to restore to.
            if claimed.is_some() || phase != DeletionPhase::Pending.as_str() || report != "{}" {
                return Err(StoreError::Conflict(
                    "the deletion is being finalized and can no longer be cancelled".into(),
                ));
            }
            sqlx::query("DELETE FROM tenant_deletions WHERE tenant_id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE tenants SET status = $1, updated_at_ms = $2 WHERE id = $3 AND status = $4",
            )
            .bind(&prior)
            .bind(now)
            .bind(id.as_str())
            .bind(TenantStatus::PendingDeletion.as_str())
            .execute(&mut *tx)
            .await?;
            crate::tenant::bump_revision(&mut tx).await?;
        })?;
        self.get_tenant(id).await
    }

    /// The tenant's requested deletion, if any.
    pub async fn pending_deletion(&self, id: &TenantId) -> Result<Option<PendingDeletion>> {
        let sql = format!("SELECT {DELETION_COLS} FROM tenant_deletions WHERE tenant_id = $1");
        let row: Option<DeletionRow> = with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query_as(&sql)
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?
        })?;
        row.map(pending_from).transpose()
    }

    /// Tenants whose window has passed and whom no live claim holds, oldest deadline first.
    pub async fn due_deletions(&self, now: i64) -> Result<Vec<TenantId>> {
        let rows: Vec<String> = with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query_scalar(
                "SELECT tenant_id FROM tenant_deletions WHERE delete_after_ms <= $1 \
                 AND (claimed_until_ms IS NULL OR claimed_until_ms < $1) \
                 ORDER BY delete_after_ms LIMIT 100",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?
        })?;
        rows.iter()
            .map(|t| TenantId::parse(t).map_err(Into::into))
            .collect()
    }

    /// Claims a due deletion for `lease_ms` with one conditional update: of several replicas
    /// (or a CLI) racing for it, exactly one gets `Some`. A claim whose holder died lapses and
    /// is taken over; every step is idempotent or skipped by its phase.
    pub async fn claim_deletion(
        &self,
        id: &TenantId,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<PendingDeletion>> {
        let n = with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query(
                "UPDATE tenant_deletions SET claimed_until_ms = $1 WHERE tenant_id = $2 \
                 AND delete_after_ms <= $3 AND (claimed_until_ms IS NULL OR claimed_until_ms < $3)",
            )
            .bind(now.saturating_add(lease_ms))
            .bind(id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        })?;
        if n == 0 {
            return Ok(None);
        }
        self.pending_deletion(id).await
    }

    /// Records how far finalization got and what it destroyed so far.
    pub async fn set_deletion_phase(
        &self,
        id: &TenantId,
        phase: DeletionPhase,
        report: &serde_json::Value,
    ) -> Result<()> {
        let report = report.to_string();
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query("UPDATE tenant_deletions SET phase = $1, report = $2 WHERE tenant_id = $3")
                .bind(phase.as_str())
                .bind(&report)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        })
    }

    /// The tenant's key material, counted before it is shredded.
    pub async fn key_inventory(&self, id: &TenantId) -> Result<KeyInventory> {
        let data = self.store.data(id).await?;
        let (versions, keys): (Vec<i64>, i64) = with_tx!(&data, Access::Platform, |tx| {
            let v: Vec<i64> = sqlx::query_scalar(
                "SELECT version FROM tenant_keks WHERE tenant_id = $1 ORDER BY version",
            )
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await?;
            let k: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM tenant_data_keys WHERE tenant_id = $1")
                    .bind(id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
            (v, k)
        })?;
        let customer: i64 = with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query_scalar("SELECT COUNT(*) FROM tenant_kms_keys WHERE tenant_id = $1")
                .bind(id.as_str())
                .fetch_one(&mut *tx)
                .await?
        })?;
        Ok(KeyInventory {
            kek_versions: versions,
            data_keys: keys.max(0) as u64,
            customer_kms_key: customer > 0,
        })
    }

    /// Removes every row of `id` in its place (the data tables and the fence), past the audit
    /// tables' append-only triggers (set aside for this one transaction: call this on the
    /// owner's maintenance store, after the tenant's chain was certified and its keys
    /// shredded), then the place's own storage: a schema dropped, a SQLite file deleted. On
    /// SQLite the WAL is folded in and truncated (pages were overwritten: `secure_delete`); on
    /// PostgreSQL the touched tables are vacuumed. Idempotent.
    pub async fn purge_tenant_place(&self, id: &TenantId) -> Result<PurgedPlace> {
        let store = self.store;
        let place = store.place(id).await?;
        let data = store.resolve(&place).await?;
        let rows = delete_counted(&data, id).await?;
        let storage_removed = match &place {
            Place::Shared => None,
            Place::PgSchema(s) => Some(format!("postgres schema {s} dropped")),
            Place::SqliteFile(p) => Some(format!("sqlite file {} deleted", p.display())),
            Place::Dedicated(u) if u.starts_with("sqlite:") => Some(format!(
                "dedicated sqlite file {} deleted",
                u.trim_start_matches("sqlite:")
            )),
            Place::Dedicated(_) => Some("dedicated postgres database: its rows deleted".into()),
        };
        drop(data);
        self.unprovision(id, &place).await?;
        store.forget_place(id);
        Ok(PurgedPlace {
            place,
            rows,
            storage_removed,
        })
    }

    /// Removes the tenant's control-plane rows ([`CONTROL_TABLES`] but `tenant_deletions`,
    /// which carries the phase until the tombstone) and its fence in the shared database.
    pub async fn purge_tenant_control(&self, id: &TenantId) -> Result<Vec<TableRows>> {
        let mut out = Vec::new();
        with_tx!(self.store, Access::Platform, |tx| {
            for t in CONTROL_TABLES
                .iter()
                .chain(PLACE_TABLES)
                .filter(|t| **t != "tenant_deletions")
            {
                let n = sqlx::query(&format!("DELETE FROM {t} WHERE tenant_id = $1"))
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                out.push(TableRows {
                    table: (*t).to_owned(),
                    rows: n,
                });
            }
            crate::tenant::bump_revision(&mut tx).await?;
        })?;
        Ok(out)
    }

    /// The last step: `tenants` keeps a tombstone (status `deleted`, slug and display name
    /// replaced by the id, no models), and the deletion's own row goes, in one transaction.
    pub async fn tombstone_tenant(&self, id: &TenantId) -> Result<Tenant> {
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query(
                "UPDATE tenants SET status = $1, slug = id, display_name = id, \
                 allowed_models = '[]', max_tokens_per_request = NULL, updated_at_ms = $2 \
                 WHERE id = $3",
            )
            .bind(TenantStatus::Deleted.as_str())
            .bind(now_ms())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM tenant_deletions WHERE tenant_id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            crate::tenant::bump_revision(&mut tx).await?;
        })?;
        self.get_tenant(id).await
    }

    /// Folds SQLite's WAL into the shared file and truncates it, or vacuums the shared
    /// control-plane and data tables on PostgreSQL. A plain VACUUM makes the deleted rows'
    /// space reusable but leaves their bytes in the pages until overwritten; `full` (VACUUM
    /// FULL) rewrites each table and its indexes into new files, so no data file keeps them,
    /// at the price of an exclusive lock per table while it is rewritten (every tenant's
    /// writes to it wait). PostgreSQL's own WAL segments keep the rows until recycled.
    pub async fn compact_after_purge(&self, full: bool) -> Result<()> {
        match self.store.db() {
            Db::Sqlite(pool) => {
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(pool)
                    .await?;
            }
            Db::Postgres(pool) => {
                for t in CONTROL_TABLES
                    .iter()
                    .chain(PLACE_TABLES)
                    .chain(DATA_TABLES)
                    .chain(["tenants"].iter())
                {
                    // VACUUM runs outside a transaction, as the owner (the maintenance store).
                    let sql = if full {
                        format!("VACUUM FULL {t}")
                    } else {
                        format!("VACUUM {t}")
                    };
                    if let Err(e) = sqlx::raw_sql(&sql).execute(pool).await {
                        tracing::warn!(table = t, error = %e, "vacuum after offboarding failed");
                    }
                }
            }
        }
        Ok(())
    }
}

/// Deletes every row of `tenant` in `data` (data tables, then the fence), key material first,
/// returning the count per table; the audit tables' triggers are set aside for this one
/// transaction (as `moves` does on the owner's connection).
async fn delete_counted(data: &crate::places::Data, tenant: &TenantId) -> Result<Vec<TableRows>> {
    let tables: Vec<&str> = DATA_TABLES.iter().chain(PLACE_TABLES).copied().collect();
    let mut out = Vec::with_capacity(tables.len());
    match data.db() {
        Db::Sqlite(pool) => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let triggers: Vec<(String, String)> = sqlx::query_as(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' \
                 AND tbl_name IN ('audit_bodies', 'audit_records', 'audit_checkpoints') \
                 AND name NOT LIKE '%_fenced_%'",
            )
            .fetch_all(&mut *tx)
            .await?;
            for (name, _) in &triggers {
                sqlx::query(&format!("DROP TRIGGER {name}"))
                    .execute(&mut *tx)
                    .await?;
            }
            for t in &tables {
                let n = sqlx::query(&format!("DELETE FROM {t} WHERE tenant_id = $1"))
                    .bind(tenant.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                out.push(TableRows {
                    table: (*t).to_owned(),
                    rows: n,
                });
            }
            for (_, sql) in &triggers {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await?;
        }
        Db::Postgres(pool) => {
            const AUDIT: &[&str] = &["audit_bodies", "audit_records", "audit_checkpoints"];
            let mut tx = pool.begin().await?;
            apply_pg_access(&mut tx, Access::Tenant(tenant), data.pg_schema()).await?;
            for t in AUDIT {
                sqlx::query(&format!("ALTER TABLE {t} DISABLE TRIGGER USER"))
                    .execute(&mut *tx)
                    .await?;
            }
            for t in &tables {
                let n = sqlx::query(&format!("DELETE FROM {t} WHERE tenant_id = $1"))
                    .bind(tenant.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                out.push(TableRows {
                    table: (*t).to_owned(),
                    rows: n,
                });
            }
            for t in AUDIT {
                sqlx::query(&format!("ALTER TABLE {t} ENABLE TRIGGER USER"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
    }
    Ok(out)
}

impl<'a> crate::Platform<'a> {
    /// A chain read as the platform: the platform's own chain (`PLATFORM_CHAIN`: offboarding
    /// steps and deletion certificates, which outlive every tenant) for its export.
    pub fn chain(&self, id: &'a TenantId) -> crate::audit::TenantAudit<'a> {
        crate::audit::TenantAudit {
            store: self.store,
            id,
        }
    }
}
