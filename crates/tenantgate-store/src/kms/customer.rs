//! The tenant's configured key (`tenant_kms_keys`): read and written inside the KEK rotation's
//! own transaction, and listed for the gateways' snapshot.

use crate::tenant::bump_revision;
use crate::{now_ms, with_tx, Access, Platform, Result};
use tenantgate_core::TenantId;
use tenantgate_crypto::CustomerKey;

type Raw = (String, String, String, Option<String>);

fn parse(tenant: &str, (provider, key_id, region, endpoint): Raw) -> Option<CustomerKey> {
    let key = CustomerKey::from_parts(&provider, key_id, region, endpoint);
    if key.is_none() {
        // Written by a newer version: the snapshot leaves the tenant out, and its KEK rows
        // (which name their wrapper) still say what to ask.
        tracing::warn!(tenant, provider, "unknown customer-key provider");
    }
    key
}

/// The tenant's configured key, in the caller's transaction (`None`: the platform's key).
pub(crate) async fn configured<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    tenant: &TenantId,
) -> Result<Option<CustomerKey>>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> Raw: sqlx::FromRow<'r, DB::Row>,
{
    let row: Option<Raw> = sqlx::query_as(
        "SELECT provider, key_id, region, endpoint_url FROM tenant_kms_keys WHERE tenant_id = $1",
    )
    .bind(tenant.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.and_then(|r| parse(tenant.as_str(), r)))
}

/// Sets (or with `None` removes) the tenant's configured key in the caller's transaction, and
/// moves the control revision: every gateway re-checks the tenant's key at its next reload.
pub(crate) async fn set_configured<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    tenant: &TenantId,
    key: Option<&CustomerKey>,
) -> Result<()>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query("DELETE FROM tenant_kms_keys WHERE tenant_id = $1")
        .bind(tenant.as_str())
        .execute(&mut **tx)
        .await?;
    if let Some(k) = key {
        sqlx::query(
            "INSERT INTO tenant_kms_keys (tenant_id, provider, key_id, region, endpoint_url, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant.as_str())
        .bind(k.provider())
        .bind(k.key_id())
        .bind(k.region())
        .bind(k.endpoint())
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    }
    bump_revision(tx).await
}

impl Platform<'_> {
    /// Every tenant on a key of its own, for the gateways' snapshot: their calls check the
    /// key's liveness; every other tenant's pass without a look.
    pub async fn customer_keys(&self) -> Result<Vec<(TenantId, CustomerKey)>> {
        let rows: Vec<(String, String, String, String, Option<String>)> =
            with_tx!(self.store, Access::Platform, |tx| {
                sqlx::query_as(
                    "SELECT tenant_id, provider, key_id, region, endpoint_url FROM tenant_kms_keys",
                )
                .fetch_all(&mut *tx)
                .await?
            })?;
        Ok(rows
            .into_iter()
            .filter_map(|(t, p, k, r, e)| {
                let key = parse(&t, (p, k, r, e))?;
                Some((TenantId::parse(&t).ok()?, key))
            })
            .collect())
    }

    /// The tenant's configured key (`None`: the platform's).
    pub async fn customer_key(&self, tenant: &TenantId) -> Result<Option<CustomerKey>> {
        with_tx!(self.store, Access::Tenant(tenant), |tx| {
            configured(&mut tx, tenant).await?
        })
    }
}
