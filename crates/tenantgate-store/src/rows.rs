//! Row <-> domain mapping, shared by both backends.

use crate::{Result, StoreError};
use sqlx::Row;
use tenantgate_core::{ApiKeyRecord, KeyId, Tenant, TenantId};

pub(crate) const TENANT_COLS: &str = "id, slug, display_name, plan, isolation, status, \
     allowed_models, enabled_models, max_tokens_per_request, created_at_ms";
pub(crate) const KEY_COLS: &str = "id, tenant_id, prefix, hash, name, role, end_user, \
     created_at_ms, expires_at_ms, revoked_at_ms";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(crate) fn tenant_from_row<'r, R>(row: &'r R) -> Result<Tenant>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database>,
{
    let models: String = row.try_get("allowed_models")?;
    Ok(Tenant {
        id: TenantId::parse(&row.try_get::<String, _>("id")?).map_err(corrupt)?,
        slug: row.try_get("slug")?,
        display_name: row.try_get("display_name")?,
        plan: row.try_get::<String, _>("plan")?.parse().map_err(corrupt)?,
        isolation: row
            .try_get::<String, _>("isolation")?
            .parse()
            .map_err(corrupt)?,
        status: row
            .try_get::<String, _>("status")?
            .parse()
            .map_err(corrupt)?,
        allowed_models: serde_json::from_str(&models).map_err(corrupt)?,
        enabled_models: row
            .try_get::<Option<String>, _>("enabled_models")?
            .map(|m| serde_json::from_str(&m).map_err(corrupt))
            .transpose()?,
        max_tokens_per_request: row
            .try_get::<Option<i64>, _>("max_tokens_per_request")?
            .map(|v| u32::try_from(v).map_err(corrupt))
            .transpose()?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

pub(crate) fn key_from_row<'r, R>(row: &'r R) -> Result<ApiKeyRecord>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database>,
{
    Ok(ApiKeyRecord {
        id: KeyId::parse(&row.try_get::<String, _>("id")?).map_err(corrupt)?,
        tenant_id: TenantId::parse(&row.try_get::<String, _>("tenant_id")?).map_err(corrupt)?,
        prefix: row.try_get("prefix")?,
        hash: row.try_get("hash")?,
        name: row.try_get("name")?,
        role: row.try_get::<String, _>("role")?.parse().map_err(corrupt)?,
        end_user: row.try_get("end_user")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}
