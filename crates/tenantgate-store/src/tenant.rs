//! The tenant-bound handle. Its public methods take no tenant id: the tenant comes from the
//! [`TenantScope`] the handle was made with.

use crate::rows::{key_from_row, tenant_from_row, KEY_COLS, TENANT_COLS};
use crate::{now_ms, with_tx, Access, Result, Store, StoreError};
use tenantgate_core::{ApiKeyRecord, KeyId, NewApiKey, Tenant, TenantId, TenantScope};

pub struct TenantStore<'a> {
    pub(crate) store: &'a Store,
    scope: &'a TenantScope,
}

impl<'a> TenantStore<'a> {
    pub(crate) fn new(store: &'a Store, scope: &'a TenantScope) -> Self {
        Self { store, scope }
    }

    pub(crate) fn id(&self) -> &'a TenantId {
        self.scope.tenant_id()
    }

    /// This tenant's own record.
    pub async fn get(&self) -> Result<Tenant> {
        get_tenant(self.store, Access::Tenant(self.id()), self.id()).await
    }

    pub async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        list_keys(self.store, Access::Tenant(self.id()), self.id()).await
    }

    pub async fn create_key(&self, key: &NewApiKey) -> Result<ApiKeyRecord> {
        create_key(self.store, Access::Tenant(self.id()), self.id(), key).await
    }

    /// The tenant's leak-prevention policy as stored (JSON), if it set one.
    pub async fn guard_policy(&self) -> Result<Option<String>> {
        with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            sqlx::query_scalar("SELECT policy FROM tenant_guard_policy WHERE tenant_id = $1")
                .bind(self.id().as_str())
                .fetch_optional(&mut *tx)
                .await?
        })
    }

    /// Replaces the tenant's leak-prevention policy (JSON, validated by the caller).
    pub async fn set_guard_policy(&self, policy_json: &str) -> Result<()> {
        with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            sqlx::query(
                "INSERT INTO tenant_guard_policy (tenant_id, policy, updated_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(self.id().as_str())
            .bind(policy_json)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            bump_revision(&mut tx).await?;
        })
    }

    /// The tenant's limit overrides (JSON) and kill switch, if it ever set either.
    pub async fn limits(&self) -> Result<Option<(String, bool)>> {
        get_limits(self.store, Access::Tenant(self.id()), self.id()).await
    }

    /// Sets the kill switch (keeping the overrides).
    pub async fn set_kill_switch(&self, on: bool) -> Result<()> {
        set_limits(
            self.store,
            Access::Tenant(self.id()),
            self.id(),
            None,
            Some(on),
        )
        .await
    }

    /// This tenant's audit chain.
    pub fn audit(&self) -> crate::audit::TenantAudit<'a> {
        crate::audit::TenantAudit {
            store: self.store,
            id: self.id(),
        }
    }

    /// Revokes one of this tenant's keys. Another tenant's key id answers `NotFound`.
    pub async fn revoke_key(&self, key: &KeyId) -> Result<()> {
        revoke_key(self.store, Access::Tenant(self.id()), self.id(), key).await
    }
}

// The functions below are shared with the platform module; each one takes the tenant id as an
// explicit predicate, and in PostgreSQL the `Access` also sets the RLS variable.

pub(crate) async fn get_tenant(store: &Store, access: Access<'_>, id: &TenantId) -> Result<Tenant> {
    let sql = format!("SELECT {TENANT_COLS} FROM tenants WHERE id = $1");
    with_tx!(store, access, |tx| {
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        match row {
            Some(r) => tenant_from_row(&r)?,
            None => return Err(StoreError::NotFound),
        }
    })
}

pub(crate) async fn list_keys(
    store: &Store,
    access: Access<'_>,
    tenant: &TenantId,
) -> Result<Vec<ApiKeyRecord>> {
    let sql =
        format!("SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at_ms, id");
    with_tx!(store, access, |tx| {
        let rows = sqlx::query(&sql)
            .bind(tenant.as_str())
            .fetch_all(&mut *tx)
            .await?;
        rows.iter().map(key_from_row).collect::<Result<Vec<_>>>()?
    })
}

pub(crate) async fn create_key(
    store: &Store,
    access: Access<'_>,
    tenant: &TenantId,
    key: &NewApiKey,
) -> Result<ApiKeyRecord> {
    if let Some(name) = &key.name {
        if name.len() > 200 {
            return Err(tenantgate_core::InvalidValue("key name longer than 200".into()).into());
        }
    }
    let rec = ApiKeyRecord {
        id: KeyId::parse(&uuid::Uuid::now_v7().to_string())?,
        tenant_id: tenant.clone(),
        prefix: key.prefix.clone(),
        hash: key.hash.clone(),
        name: key.name.clone(),
        role: key.role,
        end_user: key.end_user.clone(),
        created_at_ms: now_ms(),
        expires_at_ms: key.expires_at_ms,
        revoked_at_ms: None,
    };
    with_tx!(store, access, |tx| {
        // The tenant must exist and be visible under `access` (RLS in PostgreSQL).
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, prefix, hash, name, role, end_user, \
             created_at_ms, expires_at_ms, revoked_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)",
        )
        .bind(rec.id.as_str())
        .bind(rec.tenant_id.as_str())
        .bind(&rec.prefix)
        .bind(&rec.hash)
        .bind(&rec.name)
        .bind(rec.role.as_str())
        .bind(&rec.end_user)
        .bind(rec.created_at_ms)
        .bind(rec.expires_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::conflict_or(e, "key"))?;
        bump_revision(&mut tx).await?;
        rec
    })
}

pub(crate) async fn revoke_key(
    store: &Store,
    access: Access<'_>,
    tenant: &TenantId,
    key: &KeyId,
) -> Result<()> {
    with_tx!(store, access, |tx| {
        let n = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $1) \
             WHERE id = $2 AND tenant_id = $3",
        )
        .bind(now_ms())
        .bind(key.as_str())
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        bump_revision(&mut tx).await?;
    })
}

/// Marks the control plane changed, in the caller's transaction, so it commits atomically with
/// the change it announces.
pub(crate) async fn bump_revision<'c, DB>(tx: &mut sqlx::Transaction<'c, DB>) -> Result<()>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    sqlx::query("UPDATE control_revision SET revision = revision + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(crate) async fn get_limits(
    store: &Store,
    access: Access<'_>,
    id: &TenantId,
) -> Result<Option<(String, bool)>> {
    let row: Option<(String, bool)> = with_tx!(store, access, |tx| {
        sqlx::query_as("SELECT overrides, kill_switch FROM tenant_limits WHERE tenant_id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
    })?;
    Ok(row)
}

/// Sets the overrides and/or the kill switch (a `None` keeps the stored value).
pub(crate) async fn set_limits(
    store: &Store,
    access: Access<'_>,
    id: &TenantId,
    overrides: Option<&str>,
    kill_switch: Option<bool>,
) -> Result<()> {
    with_tx!(store, access, |tx| {
        let cur: Option<(String, bool)> =
            sqlx::query_as("SELECT overrides, kill_switch FROM tenant_limits WHERE tenant_id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let (o, k) = cur.unwrap_or_else(|| ("{}".to_owned(), false));
        sqlx::query(
            "INSERT INTO tenant_limits (tenant_id, overrides, kill_switch, updated_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id) DO UPDATE SET overrides = excluded.overrides, \
             kill_switch = excluded.kill_switch, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(id.as_str())
        .bind(overrides.map(str::to_owned).unwrap_or(o))
        .bind(kill_switch.unwrap_or(k))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx).await?;
    })
}
