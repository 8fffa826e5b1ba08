//! Console sessions (migration 0020): the browser console's server-side sessions.
//!
//! The store keeps opaque values: the gateway derives `id_hash` from the cookie's token with
//! its server secret, and seals the credential. A row is
//! found only by its hash, so a reader of the database learns no cookie; it expires by time,
//! is removed at sign-out, rotation and offboarding, and expired rows are swept.

use crate::{with_tx, Access, Result, Store};

/// One session, as the console reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub id_hash: String,
    /// The sign-in this id belongs to (rotation keeps it).
    pub sign_in_id: String,
    /// The credential the session acts with, sealed by the gateway.
    pub credential: Vec<u8>,
    pub tenant_id: Option<String>,
    pub created_at_ms: i64,
    pub last_seen_ms: i64,
    pub expires_at_ms: i64,
}

/// The console's session rows.
pub struct Sessions<'a> {
    store: &'a Store,
}

impl Store {
    /// The console's sessions (platform rows: a session is resolved before its owner is known).
    pub fn console_sessions(&self) -> Sessions<'_> {
        Sessions { store: self }
    }
}

type Row = (String, String, Vec<u8>, Option<String>, i64, i64, i64);

impl Sessions<'_> {
    pub async fn insert(&self, s: &ConsoleSession) -> Result<()> {
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query(
                "INSERT INTO console_sessions (id_hash, sign_in_id, credential, tenant_id, \
                 created_at_ms, last_seen_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&s.id_hash)
            .bind(&s.sign_in_id)
            .bind(&s.credential)
            .bind(&s.tenant_id)
            .bind(s.created_at_ms)
            .bind(s.last_seen_ms)
            .bind(s.expires_at_ms)
            .execute(&mut *tx)
            .await?;
        })
    }

    /// The live session with this id hash (`None` when unknown or expired at `now_ms`).
    pub async fn get(&self, id_hash: &str, now_ms: i64) -> Result<Option<ConsoleSession>> {
        let row: Option<Row> = with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query_as(
                "SELECT id_hash, sign_in_id, credential, tenant_id, created_at_ms, last_seen_ms, \
                 expires_at_ms FROM console_sessions WHERE id_hash = $1 AND expires_at_ms > $2",
            )
            .bind(id_hash)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?
        })?;
        Ok(row.map(|r| ConsoleSession {
            id_hash: r.0,
            sign_in_id: r.1,
            credential: r.2,
            tenant_id: r.3,
            created_at_ms: r.4,
            last_seen_ms: r.5,
            expires_at_ms: r.6,
        }))
    }

    /// Marks the session used at `now_ms` (the idle timeout counts from here).
    pub async fn touch(&self, id_hash: &str, now_ms: i64) -> Result<()> {
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query("UPDATE console_sessions SET last_seen_ms = $1 WHERE id_hash = $2")
                .bind(now_ms)
                .bind(id_hash)
                .execute(&mut *tx)
                .await?;
        })
    }

    /// Shortens a session's life to `expires_at_ms` (a rotated-out id keeps a few seconds for
    /// requests already in flight).
    pub async fn expire_at(&self, id_hash: &str, expires_at_ms: i64) -> Result<()> {
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query(
                "UPDATE console_sessions SET expires_at_ms = $1 \
                 WHERE id_hash = $2 AND expires_at_ms > $1",
            )
            .bind(expires_at_ms)
            .bind(id_hash)
            .execute(&mut *tx)
            .await?;
        })
    }

    /// Ends a sign-in: every id it was rotated through (sign-out). Returns how many rows went.
    pub async fn remove_sign_in(&self, sign_in_id: &str) -> Result<u64> {
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query("DELETE FROM console_sessions WHERE sign_in_id = $1")
                .bind(sign_in_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        })
    }

    /// Ends one session id. Returns whether it existed.
    pub async fn remove(&self, id_hash: &str) -> Result<bool> {
        let n = with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
                .bind(id_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        })?;
        Ok(n > 0)
    }

    /// Removes sessions expired before `now_ms`; returns how many.
    pub async fn sweep(&self, now_ms: i64) -> Result<u64> {
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query("DELETE FROM console_sessions WHERE expires_at_ms <= $1")
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        })
    }
}
