//! The audit writer's own SQLite connection, for a thread of its own.
//!
//! Why not the pool: sqlx runs every SQLite statement as a round trip to the connection's
//! worker thread, and a group commit is seven statements (begin, heads, records, bodies, heads,
//! commit): under load that was ~40 context switches per call, most of the gateway's CPU. Here
//! the writer thread runs the whole transaction in-process with cached prepared statements,
//! so a batch costs one hand-off in, one wake-up out and one sync. A connection of its own also
//! keeps its page cache warm (no other connection writes between its transactions) and its
//! statement journal in memory (the temp file per batch was an open, a write and a close).
//!
//! The transaction is the one [`crate::Store::audit_append`] runs (the same `plan`, the same
//! rows, the same triggers in the database); `tests/audit.rs` checks both produce one chain.

use crate::audit::{plan, NewAuditRecord};
use crate::{Result, StoreError};
use rusqlite::{params, OpenFlags, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use tenantgate_core::{PlatformAdmin, TenantId, TenantScope};

pub use crate::audit::Appended;

/// Traces one statement as sqlx traces the pool's (TRACE, target `sqlx::query`, the SQL text
/// only, never bound values), so one filter sees every statement the store runs
/// (`tests/queries.rs` tells the writer's apart by its span).
fn traced(sql: &'static str) -> &'static str {
    tracing::trace!(target: "sqlx::query", summary = sql, db.statement = sql);
    sql
}

/// An open connection to the store's SQLite file, owned by one thread.
pub struct AuditAppender {
    conn: rusqlite::Connection,
}

impl AuditAppender {
    /// Opens the file the store already created and migrated (WAL mode is a property of the
    /// file; the rest are per connection, set as the pool sets them).
    fn open(path: &Path, synchronous: i64) -> Result<AuditAppender> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(AuditAppender { conn })
    }

    /// Appends each scope's records to its tenant's chain, all in one transaction (as
    /// [`crate::Store::audit_append`]). Blocking: call it from the writer's own thread.
    pub fn append(
        &mut self,
        groups: &[(&TenantScope, &[NewAuditRecord])],
    ) -> Result<Vec<Vec<Appended>>> {
        let ids: Vec<(&TenantId, &[NewAuditRecord])> =
            groups.iter().map(|(s, e)| (s.tenant_id(), *e)).collect();
        self.append_ids(&ids)
    }

    /// Appends a platform operator's actions to `tenant`'s chain (as
    /// [`crate::Platform::audit_append`]).
    pub fn append_operator(
        &mut self,
        _admin: &PlatformAdmin,
        tenant: &TenantId,
        entries: &[NewAuditRecord],
    ) -> Result<Vec<Appended>> {
        Ok(self
            .append_ids(&[(tenant, entries)])?
            .pop()
            .unwrap_or_default())
    }

    fn append_ids(&mut self, ids: &[(&TenantId, &[NewAuditRecord])]) -> Result<Vec<Vec<Appended>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // The same tenant twice would read one head for both: refuse rather than fork.
        let mut seen: Vec<&str> = ids.iter().map(|g| g.0.as_str()).collect();
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            return Err(StoreError::Corrupt(
                "one tenant twice in an audit batch".into(),
            ));
        }
        // IMMEDIATE: the write lock up front, so the heads read below cannot move before the
        // commit (another process appending waits under the busy timeout).
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut heads: HashMap<String, (i64, Vec<u8>)> = HashMap::with_capacity(ids.len());
        {
            let mut get = tx.prepare_cached(traced(
                "SELECT seq, hash FROM audit_heads WHERE tenant_id = ?1",
            ))?;
            for (tenant, _) in ids {
                // No head yet: genesis (the upsert below creates the row); `plan` checks
                // the stored hash's length.
                let head = get
                    .query_row(params![tenant.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                    .unwrap_or((0, tenantgate_audit::GENESIS.to_vec()));
                heads.insert(tenant.as_str().to_owned(), head);
            }
        }
        let planned = plan(ids, &heads)?;
        {
            let mut rec = tx.prepare_cached(traced(
                "INSERT INTO audit_records (tenant_id, seq, ts_ms, request_id, event, key_id, \
                 user_id, model, status, input_tokens, output_tokens, cost_micros, record, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            ))?;
            for r in &planned.rows {
                rec.execute(params![
                    r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12, r.13
                ])?;
            }
            let mut body = tx.prepare_cached(traced(
                "INSERT INTO audit_bodies (tenant_id, seq, part, sealed) VALUES (?1, ?2, ?3, ?4)",
            ))?;
            for b in &planned.bodies {
                body.execute(params![b.0, b.1, b.2, b.3])?;
            }
            let mut head = tx.prepare_cached(traced(
                "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            ))?;
            for h in &planned.heads {
                head.execute(params![h.0, h.1, h.2])?;
            }
        }
        tx.commit()?;
        Ok(planned.out)
    }
}

impl crate::Store {
    /// Whether the audit writer gets a connection (and a thread) of its own: SQLite. On
    /// PostgreSQL it keeps using the pool (each statement is a network round trip there anyway,
    /// and replicas share the heads).
    pub fn audit_appender_wanted(&self) -> bool {
        matches!(self.db(), crate::Db::Sqlite(_))
    }

    /// SQLite: opens the audit writer's own connection to the store's (shared) file: it
    /// writes the chains of tenants whose data is in the shared tables (`Store::is_shared`);
    /// the others go through [`crate::Store::audit_append`], to their places.
    /// Opens it as durable as the
    /// pool's connections are (their `synchronous` setting, read back). `None` on PostgreSQL.
    pub async fn open_audit_appender(&self) -> Result<Option<AuditAppender>> {
        match self.db() {
            crate::Db::Sqlite(pool) => {
                let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(pool)
                    .await?;
                let path = pool.connect_options().get_filename().to_path_buf();
                AuditAppender::open(&path, synchronous).map(Some)
            }
            crate::Db::Postgres(_) => Ok(None),
        }
    }
}
