//! Identity and control-plane records: a tenant's OIDC members, its own model narrowing and
//! display name, and break-glass grants. Tenant-side methods live on [`TenantStore`] (no tenant
//! id argument); granting and listing across tenants on [`Platform`].

use crate::platform::Platform;
use crate::tenant::{bump_revision, TenantStore};
use crate::{now_ms, with_tx, Access, Result, StoreError};
use serde::Serialize;
use sqlx::Row;
use tenantgate_core::{InvalidValue, Role, TenantId};

/// An OIDC user a tenant admin gave a role, keyed by the token's user claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub subject: String,
    pub role: Role,
    pub added_at_ms: i64,
}

/// A platform admin's time-boxed access to one tenant's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub id: String,
    pub tenant_id: TenantId,
    pub admin: String,
    pub reason: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

impl Grant {
    pub fn is_active_at(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && now_ms < self.expires_at_ms
    }
}

const GRANT_COLS: &str =
    "id, tenant_id, admin, reason, created_at_ms, expires_at_ms, revoked_at_ms";

fn grant_from_row<'r, R>(row: &'r R) -> Result<Grant>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database>,
{
    Ok(Grant {
        id: row.try_get("id")?,
        tenant_id: TenantId::parse(&row.try_get::<String, _>("tenant_id")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        admin: row.try_get("admin")?,
        reason: row.try_get("reason")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

/// A break-glass reason, trimmed: 4..=1000 characters.
pub fn validate_reason(reason: &str) -> Result<&str> {
    let reason = reason.trim();
    if reason.len() < 4 || reason.len() > 1000 {
        return Err(InvalidValue("a break-glass reason must be 4..=1000 characters".into()).into());
    }
    Ok(reason)
}

fn validate_subject(subject: &str) -> Result<()> {
    if subject.is_empty() || subject.len() > 256 || subject.chars().any(char::is_control) {
        return Err(
            InvalidValue("member subject must be 1..=256 printable characters".into()).into(),
        );
    }
    Ok(())
}

impl TenantStore<'_> {
    /// The tenant's OIDC members, by subject.
    pub async fn members(&self) -> Result<Vec<Member>> {
        let rows: Vec<(String, String, i64)> = with_tx!(
            self.store,
            Access::Tenant(self.id()),
            |tx| {
                sqlx::query_as(
                "SELECT subject, role, added_at_ms FROM tenant_members WHERE tenant_id = $1 ORDER BY subject",
            )
            .bind(self.id().as_str())
            .fetch_all(&mut *tx)
            .await?
            }
        )?;
        rows.into_iter()
            .map(|(subject, role, added_at_ms)| {
                Ok(Member {
                    subject,
                    role: role
                        .parse()
                        .map_err(|e: InvalidValue| StoreError::Corrupt(e.0))?,
                    added_at_ms,
                })
            })
            .collect()
    }

    /// Gives `subject` a role in this tenant (replacing its previous one). Only tenant roles.
    pub async fn set_member(&self, subject: &str, role: Role) -> Result<Member> {
        validate_subject(subject)?;
        if role == Role::PlatformAdmin {
            return Err(InvalidValue("members are tenant_admin or member".into()).into());
        }
        let now = now_ms();
        with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            sqlx::query(
                "INSERT INTO tenant_members (tenant_id, subject, role, added_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, subject) DO UPDATE SET role = excluded.role",
            )
            .bind(self.id().as_str())
            .bind(subject)
            .bind(role.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            bump_revision(&mut tx).await?;
        })?;
        Ok(Member {
            subject: subject.to_owned(),
            role,
            added_at_ms: now,
        })
    }

    /// Removes a member; `NotFound` if this tenant has no such member.
    pub async fn remove_member(&self, subject: &str) -> Result<()> {
        with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            let n = sqlx::query("DELETE FROM tenant_members WHERE tenant_id = $1 AND subject = $2")
                .bind(self.id().as_str())
                .bind(subject)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            bump_revision(&mut tx).await?;
        })
    }

    /// Narrows (or with `None`, stops narrowing) the platform's model allow-list for this
    /// tenant. The caller checks the names against the platform's list.
    pub async fn set_enabled_models(&self, models: Option<&[String]>) -> Result<()> {
        if let Some(m) = models {
            tenantgate_core::validate_model_policy(m, None)?;
        }
        let json = models
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.update_tenant("enabled_models", json).await
    }

    /// Renames the tenant (its display name; the slug is the platform's).
    pub async fn set_display_name(&self, name: &str) -> Result<()> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(InvalidValue("display name must be 1..=200 characters".into()).into());
        }
        self.update_tenant("display_name", Some(name.to_owned()))
            .await
    }

    async fn update_tenant(&self, column: &'static str, value: Option<String>) -> Result<()> {
        let sql = format!("UPDATE tenants SET {column} = $1, updated_at_ms = $2 WHERE id = $3");
        with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            sqlx::query(&sql)
                .bind(value.as_deref())
                .bind(now_ms())
                .bind(self.id().as_str())
                .execute(&mut *tx)
                .await?;
            bump_revision(&mut tx).await?;
        })
    }

    /// Every break-glass grant ever made on this tenant, newest first.
    pub async fn break_glass_grants(&self) -> Result<Vec<Grant>> {
        let sql = format!(
            "SELECT {GRANT_COLS} FROM break_glass_grants WHERE tenant_id = $1 ORDER BY created_at_ms DESC, id DESC"
        );
        with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            let rows = sqlx::query(&sql)
                .bind(self.id().as_str())
                .fetch_all(&mut *tx)
                .await?;
            rows.iter()
                .map(grant_from_row)
                .collect::<Result<Vec<_>>>()?
        })
    }
}

impl Platform<'_> {
    /// Records a break-glass grant for `admin` on `tenant`, valid until `expires_at_ms`.
    pub async fn create_grant(
        &self,
        tenant: &TenantId,
        reason: &str,
        expires_at_ms: i64,
    ) -> Result<Grant> {
        let reason = validate_reason(reason)?;
        let g = Grant {
            id: format!("bg_{}", uuid::Uuid::now_v7().simple()),
            tenant_id: tenant.clone(),
            admin: self.actor().to_owned(),
            reason: reason.to_owned(),
            created_at_ms: now_ms(),
            expires_at_ms,
            revoked_at_ms: None,
        };
        tracing::warn!(actor = %g.admin, tenant = %tenant, grant = %g.id, expires_at_ms, "break-glass grant");
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query(
                "INSERT INTO break_glass_grants (id, tenant_id, admin, reason, created_at_ms, expires_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&g.id)
            .bind(g.tenant_id.as_str())
            .bind(&g.admin)
            .bind(&g.reason)
            .bind(g.created_at_ms)
            .bind(g.expires_at_ms)
            .execute(&mut *tx)
            .await?;
        })?;
        Ok(g)
    }

    /// Grants, newest first: every tenant's, or one tenant's.
    pub async fn grants(&self, tenant: Option<&TenantId>) -> Result<Vec<Grant>> {
        let sql = format!(
            "SELECT {GRANT_COLS} FROM break_glass_grants WHERE (CAST($1 AS TEXT) IS NULL OR tenant_id = CAST($1 AS TEXT)) \
             ORDER BY created_at_ms DESC, id DESC LIMIT 1000"
        );
        with_tx!(self.store, Access::Platform, |tx| {
            let rows = sqlx::query(&sql)
                .bind(tenant.map(TenantId::as_str))
                .fetch_all(&mut *tx)
                .await?;
            rows.iter()
                .map(grant_from_row)
                .collect::<Result<Vec<_>>>()?
        })
    }

    /// This admin's grant on `tenant` that is active at `now`, if any.
    pub async fn active_grant(&self, tenant: &TenantId, now: i64) -> Result<Option<Grant>> {
        Ok(self
            .grants(Some(tenant))
            .await?
            .into_iter()
            .find(|g| g.admin == self.actor() && g.is_active_at(now)))
    }

    /// Ends a grant early; `NotFound` if there is no such active grant.
    pub async fn revoke_grant(&self, id: &str) -> Result<Grant> {
        let now = now_ms();
        let sql = format!("SELECT {GRANT_COLS} FROM break_glass_grants WHERE id = $1");
        with_tx!(self.store, Access::Platform, |tx| {
            let n = sqlx::query(
                "UPDATE break_glass_grants SET revoked_at_ms = $1 \
                 WHERE id = $2 AND revoked_at_ms IS NULL AND expires_at_ms > $1",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            let row = sqlx::query(&sql).bind(id).fetch_one(&mut *tx).await?;
            grant_from_row(&row)?
        })
    }
}
