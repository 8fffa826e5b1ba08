//! Incident freezes (migration 0021): a platform operator's hold on the model calls of one
//! tenant, one model-call route or one model, on every replica. The list is in the auth
//! snapshot ([`crate::AuthSnapshot::freezes`]); a change moves the control-plane revision, so
//! every replica reloads it (PostgreSQL NOTIFY, or SQLite's poll of `auth.reload_interval_ms`).
//! Only [`Platform`] places or lifts one: no tenant handle reaches the table.
//!
//! Also here, for the containment playbook: ending every console session of a tenant.

use crate::platform::Platform;
use crate::tenant::bump_revision;
use crate::{now_ms, with_tx, Access, Result, StoreError};
use serde::Serialize;
use tenantgate_core::TenantId;

/// What a freeze holds. Closed set: the string forms are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FreezeKind {
    /// Every model call of one tenant.
    Tenant,
    /// Every call on one model-call route (`/v1/chat/completions`, ...), whoever makes it.
    Route,
    /// Every call to one tenant-facing model name, whoever makes it.
    Model,
}

impl FreezeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FreezeKind::Tenant => "tenant",
            FreezeKind::Route => "route",
            FreezeKind::Model => "model",
        }
    }

    pub fn parse(s: &str) -> Result<FreezeKind> {
        Ok(match s {
            "tenant" => FreezeKind::Tenant,
            "route" => FreezeKind::Route,
            "model" => FreezeKind::Model,
            other => return Err(StoreError::Corrupt(format!("freeze kind {other:?}"))),
        })
    }
}

/// A freeze, as it is stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Freeze {
    pub id: String,
    pub kind: FreezeKind,
    /// The tenant's id, the route's path or the model's name.
    pub target: String,
    pub reason: String,
    /// The platform admin who placed it.
    pub actor: String,
    pub created_at_ms: i64,
}

type Row = (String, String, String, String, String, i64);

fn from_row((id, kind, target, reason, actor, created_at_ms): Row) -> Result<Freeze> {
    Ok(Freeze {
        id,
        kind: FreezeKind::parse(&kind)?,
        target,
        reason,
        actor,
        created_at_ms,
    })
}

const COLS: &str = "id, kind, target, reason, actor, created_at_ms";

/// Every freeze, oldest first (the snapshot reads it in its own transaction).
pub(crate) const SELECT_ALL: &str = "SELECT id, kind, target, reason, actor, created_at_ms \
     FROM incident_freezes ORDER BY created_at_ms, id";

pub(crate) type FreezeRow = Row;

pub(crate) fn parse_rows(rows: Vec<Row>) -> Result<Vec<Freeze>> {
    rows.into_iter().map(from_row).collect()
}

impl Platform<'_> {
    /// Places a freeze on `target` (a tenant id for [`FreezeKind::Tenant`]). `Conflict` if
    /// the same target is frozen already (one hold per target: lifting it is one act).
    pub async fn freeze(&self, kind: FreezeKind, target: &str, reason: &str) -> Result<Freeze> {
        let f = Freeze {
            id: format!("frz_{}", uuid::Uuid::now_v7().simple()),
            kind,
            target: target.to_owned(),
            reason: reason.to_owned(),
            actor: self.actor().to_owned(),
            created_at_ms: now_ms(),
        };
        let tenant = match kind {
            FreezeKind::Tenant => Some(target.to_owned()),
            FreezeKind::Route | FreezeKind::Model => None,
        };
        tracing::warn!(actor = %f.actor, kind = kind.as_str(), freeze = %f.id, "incident freeze");
        let inserted = with_tx!(self.store, Access::Platform, |tx| {
            let n = sqlx::query(
                "INSERT INTO incident_freezes (id, kind, target, tenant_id, reason, actor, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (kind, target) DO NOTHING",
            )
            .bind(&f.id)
            .bind(kind.as_str())
            .bind(&f.target)
            .bind(tenant.as_deref())
            .bind(&f.reason)
            .bind(&f.actor)
            .bind(f.created_at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                bump_revision(&mut tx).await?;
            }
            n
        })?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "this {} is frozen already; lift that freeze first",
                kind.as_str()
            )));
        }
        Ok(f)
    }

    /// Lifts the freeze `id`; `NotFound` if there is none.
    pub async fn unfreeze(&self, id: &str) -> Result<Freeze> {
        let sql = format!("SELECT {COLS} FROM incident_freezes WHERE id = $1");
        let row: Option<Row> = with_tx!(self.store, Access::Platform, |tx| {
            let row: Option<Row> = sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if row.is_some() {
                sqlx::query("DELETE FROM incident_freezes WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                bump_revision(&mut tx).await?;
            }
            row
        })?;
        let f = from_row(row.ok_or(StoreError::NotFound)?)?;
        tracing::warn!(actor = self.actor(), freeze = %f.id, "incident freeze lifted");
        Ok(f)
    }

    /// Every freeze, oldest first.
    pub async fn freezes(&self) -> Result<Vec<Freeze>> {
        let rows: Vec<Row> = with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query_as(SELECT_ALL).fetch_all(&mut *tx).await?
        })?;
        parse_rows(rows)
    }

    /// Ends every console session signed into `tenant` (containment). Returns how many.
    pub async fn end_console_sessions(&self, tenant: &TenantId) -> Result<u64> {
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query("DELETE FROM console_sessions WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected()
        })
    }
}
