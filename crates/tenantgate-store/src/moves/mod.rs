//! Moving a tenant's data to another place while calls keep flowing: its isolation tier
//! changing online (namespace -> schema -> dedicated and back).
//!
//! The caller drives four steps and records each in the tenant's audit chain between them
//! (`tenantgate tenant move`):
//! 1. [`Platform::move_begin`]: the move is recorded in the control plane (`tenant_moves`, so
//!    an interrupted one resumes or is aborted), the target is provisioned and cleared of any
//!    earlier attempt.
//! 2. [`Platform::move_copy`]: every data table is copied, page by page, while the tenant's
//!    calls keep writing to the source; each page's checksum is compared on both sides.
//! 3. [`Platform::move_switch`]: a fence row in the source makes it refuse the tenant's writes
//!    from then on (a trigger on every data table); with the source's writers drained (SQLite:
//!    the write lock; PostgreSQL: `LOCK TABLE .. IN SHARE MODE`, which waits for transactions
//!    in flight), what changed since the copy is copied, every table's row count and the small
//!    tables' checksums and the chain head are compared, and the placement switches (one
//!    revision bump: every replica's snapshot reload picks it up). A writer that still went to
//!    the source meanwhile fails on the fence, forgets the place and retries at the new one.
//! 4. [`Platform::move_purge`]: the source copy goes: key material first, then the rows (or
//!    the schema, file or dedicated schema as a whole).
//!
//! Chunk ids move as they are (resident indexes refer to them). Known limit: moving back into
//! a shared place whose chunk sequence has since handed out one of the tenant's ids fails at
//! the copy, before any switch; the move is then aborted with nothing changed.

use crate::backend::apply_pg_access;
use crate::places::{place_for, Data, Place, DATA_TABLES};
use crate::{now_ms, with_tx, Access, Db, Result, StoreError};
use sha2::{Digest, Sha256};
use sqlx::Row;
use tenantgate_core::{IsolationTier, TenantId};

mod tables;

use tables::{digest, insert_rows, read_rows, select, Kind, Page, Rows, Table, Val, PAGE, TABLES};

/// One page of `t` in `data` (`lo`, `hi`: id or seq bounds; ignored for whole tables).
async fn read_page(data: &Data, tenant: &TenantId, t: &Table, lo: i64, hi: i64) -> Result<Rows> {
    let sql = select(t, Some(t.page));
    with_tx!(data, Access::Tenant(tenant), |tx| {
        let q = sqlx::query(&sql).bind(tenant.as_str());
        match t.page {
            Page::Whole => read_rows!(tx, q, t.cols),
            Page::ById => read_rows!(tx, q.bind(lo), t.cols),
            Page::BySeq => read_rows!(tx, q.bind(lo).bind(hi), t.cols),
        }
    })
}

async fn write_rows(data: &Data, tenant: &TenantId, t: &Table, rows: &Rows) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    with_tx!(data, Access::Tenant(tenant), |tx| {
        insert_rows!(tx, t, rows);
    })
}

/// The largest id or seq of `t` for the tenant in `data` (0: none).
async fn max_key(data: &Data, tenant: &TenantId, t: &Table) -> Result<i64> {
    let col = match t.page {
        Page::ById => "id",
        Page::BySeq => "seq",
        Page::Whole => return Ok(0),
    };
    let sql = format!(
        "SELECT CAST(COALESCE(MAX({col}), 0) AS BIGINT) FROM {} WHERE tenant_id = $1",
        t.name
    );
    with_tx!(data, Access::Tenant(tenant), |tx| {
        sqlx::query_scalar::<_, i64>(&sql)
            .bind(tenant.as_str())
            .fetch_one(&mut *tx)
            .await?
    })
}

async fn count(data: &Data, tenant: &TenantId, table: &str) -> Result<i64> {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = $1");
    with_tx!(data, Access::Tenant(tenant), |tx| {
        sqlx::query_scalar::<_, i64>(&sql)
            .bind(tenant.as_str())
            .fetch_one(&mut *tx)
            .await?
    })
}

/// Copies the part of `t` past `from_key` (everything, for a whole table) and returns the
/// SHA-256 of what it copied, read back from the target and compared with the source's.
async fn copy_table(
    src: &Data,
    dst: &Data,
    tenant: &TenantId,
    t: &Table,
    from_key: i64,
) -> Result<(u64, String)> {
    let (mut hs, mut hd) = (Sha256::new(), Sha256::new());
    let mut n = 0u64;
    match t.page {
        Page::Whole => {
            let rows = read_page(src, tenant, t, 0, 0).await?;
            write_rows(dst, tenant, t, &rows).await?;
            digest(&mut hs, &rows);
            digest(&mut hd, &read_page(dst, tenant, t, 0, 0).await?);
            n += rows.len() as u64;
        }
        Page::ById => {
            let mut lo = from_key;
            loop {
                let rows = read_page(src, tenant, t, lo, 0).await?;
                let Some(Val::Int(last)) = rows.last().and_then(|r| r.first()).cloned() else {
                    break;
                };
                write_rows(dst, tenant, t, &rows).await?;
                digest(&mut hs, &rows);
                digest(&mut hd, &read_page(dst, tenant, t, lo, 0).await?);
                n += rows.len() as u64;
                lo = last;
            }
        }
        Page::BySeq => {
            let top = max_key(src, tenant, t).await?;
            let mut lo = from_key;
            while lo < top {
                let hi = top.min(lo + PAGE);
                let rows = read_page(src, tenant, t, lo, hi).await?;
                write_rows(dst, tenant, t, &rows).await?;
                digest(&mut hs, &rows);
                digest(&mut hd, &read_page(dst, tenant, t, lo, hi).await?);
                n += rows.len() as u64;
                lo = hi;
            }
        }
    }
    let (s, d) = (hex::encode(hs.finalize()), hex::encode(hd.finalize()));
    if s != d {
        return Err(StoreError::Corrupt(format!(
            "{}: the copy's checksum {d} differs from the source's {s}",
            t.name
        )));
    }
    Ok((n, s))
}

/// Deletes every row of `tenant`'s data in `data`, key material first, with the audit
/// tables' append-only triggers set aside for this one transaction (the owner's connection:
/// a move, an abort, or clearing a failed attempt). Not for request connections.
async fn delete_rows(data: &Data, tenant: &TenantId) -> Result<()> {
    const AUDIT: &[&str] = &["audit_bodies", "audit_records", "audit_checkpoints"];
    let deletes: Vec<String> = DATA_TABLES
        .iter()
        .map(|t| format!("DELETE FROM {t} WHERE tenant_id = $1"))
        .collect();
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
            for d in &deletes {
                sqlx::query(d)
                    .bind(tenant.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            for (_, sql) in &triggers {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            // Deleted pages are overwritten (secure_delete); fold the WAL's copies in too.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await?;
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            apply_pg_access(&mut tx, Access::Tenant(tenant), data.pg_schema()).await?;
            for t in AUDIT {
                sqlx::query(&format!("ALTER TABLE {t} DISABLE TRIGGER USER"))
                    .execute(&mut *tx)
                    .await?;
            }
            for d in &deletes {
                sqlx::query(d)
                    .bind(tenant.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            for t in AUDIT {
                sqlx::query(&format!("ALTER TABLE {t} ENABLE TRIGGER USER"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

async fn set_fence(data: &Data, tenant: &TenantId, on: bool) -> Result<()> {
    with_tx!(data, Access::Tenant(tenant), |tx| {
        if on {
            sqlx::query(
                "INSERT INTO tenant_fence (tenant_id, at_ms) VALUES ($1, $2) \
                 ON CONFLICT (tenant_id) DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query("DELETE FROM tenant_fence WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?;
        }
    })
}

/// Where a move stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MovePhase {
    /// Recorded; the target is being filled. Abortable.
    Copying,
    /// The placement points at the target; the source copy remains to be purged.
    Switched,
}

/// A move in progress.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MovePlan {
    pub tenant: TenantId,
    pub from: Place,
    pub to: Place,
    pub phase: MovePhase,
    /// Whether `move_begin` found an earlier, interrupted move and resumed it.
    pub resumed: bool,
}

/// One table's verification at the switch.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TableCheck {
    pub table: &'static str,
    pub rows: i64,
}

/// What the switch verified.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SwitchReport {
    pub tables: Vec<TableCheck>,
    /// The chain head both sides agreed on: (seq, hash).
    pub audit_head: (i64, String),
    /// How long the tenant's writes were fenced.
    pub fenced_ms: u64,
}

impl crate::Platform<'_> {
    /// Starts (or resumes) moving `tenant` to `to` (`dedicated`: its own database, for the
    /// dedicated tier). Runs on the owner's store (`Store::open_maintenance`): it provisions,
    /// and clears earlier attempts past the audit triggers.
    pub async fn move_begin(
        &self,
        tenant: &TenantId,
        to: Option<(IsolationTier, Option<&str>)>,
    ) -> Result<MovePlan> {
        let store = self.store;
        let row: Option<(String, String, String, String, String)> =
            with_tx!(store, Access::Platform, |tx| {
                sqlx::query_as(
                    "SELECT from_tier, from_location, to_tier, to_location, phase \
                     FROM tenant_moves WHERE tenant_id = $1",
                )
                .bind(tenant.as_str())
                .fetch_optional(&mut *tx)
                .await?
            })?;
        if let Some((ft, fl, tt, tl, phase)) = row {
            let plan = MovePlan {
                tenant: tenant.clone(),
                from: Place::from_row(&ft, fl, store.db())?,
                to: Place::from_row(&tt, tl, store.db())?,
                phase: match phase.as_str() {
                    "copying" => MovePhase::Copying,
                    "switched" => MovePhase::Switched,
                    other => return Err(StoreError::Corrupt(format!("move phase {other:?}"))),
                },
                resumed: true,
            };
            if let Some((tier, loc)) = to {
                let want = place_for(store, tenant, tier, loc)?;
                if want != plan.to {
                    return Err(StoreError::Conflict(format!(
                        "a move of this tenant to {:?} is in progress; finish or abort it first",
                        plan.to
                    )));
                }
            }
            return Ok(plan);
        }
        let Some((tier, loc)) = to else {
            return Err(StoreError::NotFound);
        };
        store.forget_place(tenant);
        let from = store.place(tenant).await?;
        let to = place_for(store, tenant, tier, loc)?;
        if from == to {
            return Err(StoreError::Invalid(tenantgate_core::InvalidValue(format!(
                "the tenant is already at {to:?}"
            ))));
        }
        self.provision(&to).await?;
        let (ft, fl) = from.row().unwrap_or(("namespace", String::new()));
        let (tt, tl) = to.row().unwrap_or(("namespace", String::new()));
        let now = now_ms();
        with_tx!(store, Access::Platform, |tx| {
            sqlx::query(
                "INSERT INTO tenant_moves (tenant_id, from_tier, from_location, to_tier, to_location, \
                 phase, started_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, 'copying', $6, $6)",
            )
            .bind(tenant.as_str())
            .bind(ft)
            .bind(fl)
            .bind(tt)
            .bind(tl)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| crate::conflict_or(e, "a move of this tenant"))?;
        })?;
        Ok(MovePlan {
            tenant: tenant.clone(),
            from,
            to,
            phase: MovePhase::Copying,
            resumed: false,
        })
    }

    /// Copies every data table from the source to the target while the tenant's calls keep
    /// writing to the source (step 2). Clears the target first, so a resumed copy starts over.
    pub async fn move_copy(&self, plan: &MovePlan) -> Result<Vec<TableCheck>> {
        let store = self.store;
        let t = &plan.tenant;
        let (src, dst) = (
            store.resolve(&plan.from).await?,
            store.resolve(&plan.to).await?,
        );
        delete_rows(&dst, t).await?;
        set_fence(&dst, t, false).await?;
        let mut out = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let (n, _) = copy_table(&src, &dst, t, table, 0).await?;
            out.push(TableCheck {
                table: table.name,
                rows: n as i64,
            });
        }
        Ok(out)
    }

    /// Fences the source, copies what changed since [`Self::move_copy`], verifies and switches
    /// the placement (step 3).
    pub async fn move_switch(&self, plan: &MovePlan) -> Result<SwitchReport> {
        let store = self.store;
        let t = &plan.tenant;
        let (src, dst) = (
            store.resolve(&plan.from).await?,
            store.resolve(&plan.to).await?,
        );
        let started = std::time::Instant::now();
        set_fence(&src, t, true).await?;
        // Drain the source's writers: nothing in flight may commit after the copy below.
        let hold = drain(&src).await?;
        let result = async {
            for table in TABLES {
                match table.page {
                    Page::Whole => {
                        let sql = format!("DELETE FROM {} WHERE tenant_id = $1", table.name);
                        with_tx!(&dst, Access::Tenant(t), |tx| {
                            sqlx::query(&sql).bind(t.as_str()).execute(&mut *tx).await?;
                        })?;
                        copy_table(&src, &dst, t, table, 0).await?;
                    }
                    Page::ById | Page::BySeq => {
                        let from = max_key(&dst, t, table).await?;
                        copy_table(&src, &dst, t, table, from).await?;
                    }
                }
            }
            // Chunks and sources of documents deleted since the copy.
            with_tx!(&dst, Access::Tenant(t), |tx| {
                for table in ["kb_chunks", "kb_sources"] {
                    sqlx::query(&format!(
                        "DELETE FROM {table} WHERE tenant_id = $1 AND doc_id NOT IN \
                         (SELECT id FROM kb_documents WHERE tenant_id = $1)"
                    ))
                    .bind(t.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                // Parts of training files deleted since the copy (ft_files is copied whole).
                sqlx::query(
                    "DELETE FROM ft_file_parts WHERE tenant_id = $1 AND file_id NOT IN \
                     (SELECT id FROM ft_files WHERE tenant_id = $1)",
                )
                .bind(t.as_str())
                .execute(&mut *tx)
                .await?;
            })?;
            let mut tables = Vec::with_capacity(TABLES.len());
            for table in TABLES {
                let (a, b) = (count(&src, t, table.name).await?, count(&dst, t, table.name).await?);
                if a != b {
                    return Err(StoreError::Corrupt(format!(
                        "{}: {b} rows copied of {a}; nothing switched",
                        table.name
                    )));
                }
                tables.push(TableCheck {
                    table: table.name,
                    rows: a,
                });
            }
            let (hs, hd) = (audit_head(&src, t).await?, audit_head(&dst, t).await?);
            if hs != hd {
                return Err(StoreError::Corrupt(
                    "the chain heads differ after the copy; nothing switched".into(),
                ));
            }
            if let Db::Postgres(_) = dst.db() {
                // Explicit ids do not move the target's sequence.
                with_tx!(&dst, Access::Tenant(t), |tx| {
                    for table in ["kb_chunks", "kb_sources", "ft_file_parts"] {
                        sqlx::query(&format!(
                            "SELECT setval(s, GREATEST((SELECT COALESCE(MAX(id), 1) FROM {table}), nextval(s))) \
                             FROM (SELECT pg_get_serial_sequence('{table}', 'id') AS s) x"
                        ))
                        .execute(&mut *tx)
                        .await?;
                    }
                })?;
            }
            self.set_place(t, &plan.to).await?;
            with_tx!(store, Access::Platform, |tx| {
                sqlx::query(
                    "UPDATE tenant_moves SET phase = 'switched', updated_at_ms = $1 WHERE tenant_id = $2",
                )
                .bind(now_ms())
                .bind(t.as_str())
                .execute(&mut *tx)
                .await?;
            })?;
            let (seq, hash) = hs.unwrap_or((0, vec![0; 32]));
            Ok(SwitchReport {
                tables,
                audit_head: (seq, hex::encode(hash)),
                fenced_ms: 0,
            })
        }
        .await;
        hold.release().await;
        let mut report = match result {
            Ok(r) => r,
            Err(e) => {
                // Not switched: the source takes writes again; a retry starts from the copy.
                if let Err(u) = set_fence(&src, t, false).await {
                    tracing::error!(tenant = %t, error = %u, "could not lift the fence after a failed switch");
                }
                return Err(e);
            }
        };
        report.fenced_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Removes the source copy after the switch (step 4): key material first (so nothing
    /// left there can be opened), then the rows.
    pub async fn move_purge(&self, plan: &MovePlan) -> Result<()> {
        let store = self.store;
        let t = &plan.tenant;
        if plan.phase != MovePhase::Switched {
            return Err(StoreError::Invalid(tenantgate_core::InvalidValue(
                "the move has not switched; purge only after the switch".into(),
            )));
        }
        let src = store.resolve(&plan.from).await?;
        // Rows only, key material first. The place itself stays, empty but for the fence: a
        // replica that still points there fails on the fence and retries at the new place.
        // Dropping a schema would turn that into a missing table, and deleting a SQLite file
        // another process holds open would let it write records into an unlinked file.
        delete_rows(&src, t).await?;
        with_tx!(store, Access::Platform, |tx| {
            sqlx::query("DELETE FROM tenant_moves WHERE tenant_id = $1")
                .bind(t.as_str())
                .execute(&mut *tx)
                .await?;
        })?;
        Ok(())
    }

    /// Rolls back a move that has not switched: the source takes writes again, the target's
    /// copy goes, and the move's record with it.
    pub async fn move_abort(&self, plan: &MovePlan) -> Result<()> {
        let store = self.store;
        let t = &plan.tenant;
        if plan.phase == MovePhase::Switched {
            return Err(StoreError::Invalid(tenantgate_core::InvalidValue(
                "the move has switched; finish it (purge) instead".into(),
            )));
        }
        let (src, dst) = (
            store.resolve(&plan.from).await?,
            store.resolve(&plan.to).await?,
        );
        set_fence(&src, t, false).await?;
        delete_rows(&dst, t).await?;
        if plan.to != Place::Shared {
            self.unprovision(t, &plan.to).await?;
        }
        with_tx!(store, Access::Platform, |tx| {
            sqlx::query("DELETE FROM tenant_moves WHERE tenant_id = $1")
                .bind(t.as_str())
                .execute(&mut *tx)
                .await?;
        })?;
        Ok(())
    }
}

async fn audit_head(d: &Data, t: &TenantId) -> Result<Option<(i64, Vec<u8>)>> {
    with_tx!(d, Access::Tenant(t), |tx| {
        sqlx::query_as::<_, (i64, Vec<u8>)>(
            "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1",
        )
        .bind(t.as_str())
        .fetch_optional(&mut *tx)
        .await?
    })
}

/// Holds a place's writers off while the switch copies what changed since the copy.
struct Drain {
    tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
}

impl Drain {
    async fn release(self) {
        if let Some(tx) = self.tx {
            let _ = tx.rollback().await;
        }
    }
}

/// PostgreSQL: `SHARE` locks on the data tables, which wait for every transaction writing
/// them and keep new writers out until released. SQLite: nothing to hold, because a writer
/// that started before the fence committed has committed too (one writer at a time), and
/// every later one fails on the fence.
async fn drain(data: &Data) -> Result<Drain> {
    match data.db() {
        Db::Sqlite(_) => Ok(Drain { tx: None }),
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            apply_pg_access(&mut tx, Access::Platform, data.pg_schema()).await?;
            sqlx::query(&format!(
                "LOCK TABLE {} IN SHARE MODE",
                DATA_TABLES.join(", ")
            ))
            .execute(&mut *tx)
            .await?;
            Ok(Drain { tx: Some(tx) })
        }
    }
}
