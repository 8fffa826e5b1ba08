//! A tenant's own provider endpoints (issue 17: the dedicated tier's own model endpoints): for a
//! configured provider, the tenant's own base URL, API key and (Azure) api_version.
//!
//! The endpoint is a tenant secret: all three values are sealed together with the tenant's
//! keys in `tenant_secrets` under `provider_endpoint/<provider>`, and the request path reads
//! only that sealed copy ([`Keyring::open_endpoint`], under the tenant's own scope). The base
//! URL is sealed with the key, not beside it, so whoever can edit rows cannot point the
//! tenant's credential at a server of their own: a changed URL does not open.
//!
//! `tenant_endpoints` holds what an operator may see (provider, base URL, api_version, never
//! the key) and the revision gateways key their opened endpoints by: the control-plane
//! revision of the endpoint's last change, written in the same transaction as the sealed
//! copy, so the two never disagree.

use crate::keyring::{Keyring, KeyringError};
use crate::tenant::bump_revision;
use crate::{now_ms, with_tx, Access, Store, StoreError};
use serde::{Deserialize, Serialize};
use tenantgate_core::{PlatformAdmin, TenantId, TenantScope};
use zeroize::Zeroizing;

/// The record kind [`Keyring::get_secret`] opens: endpoints are ordinary tenant secrets.
const KIND: &str = "tenant_secret";

/// Where an endpoint's sealed copy is kept: `tenant_secrets` under this prefix and the
/// provider's name.
const PREFIX: &str = "provider_endpoint/";

fn secret_name(provider: &str) -> String {
    format!("{PREFIX}{provider}")
}

/// What an operator sees of an endpoint: never its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointInfo {
    pub provider: String,
    pub base_url: String,
    pub api_version: Option<String>,
    /// The control-plane revision of its last change.
    pub revision: i64,
    pub updated_at_ms: i64,
}

/// An endpoint as it is set, and as the request path opens it. No `Debug`: it holds the key.
#[derive(Serialize, Deserialize)]
pub struct EndpointSecret {
    pub base_url: String,
    pub api_key: String,
    pub api_version: Option<String>,
}

impl Drop for EndpointSecret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.api_key);
    }
}

/// The platform operator's side: set, list and remove any tenant's endpoints.
pub struct PlatformEndpoints<'a> {
    rows: Rows<'a>,
    _admin: &'a PlatformAdmin,
}

/// A tenant admin's side (bring your own key): the scope's tenant's endpoints only.
pub struct TenantEndpoints<'a> {
    rows: Rows<'a>,
    scope: &'a TenantScope,
}

/// The rows both sides change, for the tenant each side names.
struct Rows<'a> {
    keyring: &'a Keyring,
    store: &'a Store,
}

impl PlatformEndpoints<'_> {
    /// Sets (or replaces) the tenant's endpoint for `provider`. The caller validated the
    /// values against its configuration; the store only keeps them.
    pub async fn set(
        &self,
        tenant: &TenantId,
        provider: &str,
        endpoint: &EndpointSecret,
    ) -> Result<EndpointInfo, KeyringError> {
        self.rows.set(tenant, provider, endpoint).await
    }

    /// The tenant's endpoints by provider name, without their keys.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<EndpointInfo>, StoreError> {
        self.rows.list(tenant).await
    }

    /// Removes the tenant's endpoint for `provider`; `NotFound` if it has none.
    pub async fn remove(&self, tenant: &TenantId, provider: &str) -> Result<(), StoreError> {
        self.rows.remove(tenant, provider).await
    }

    /// Removes every endpoint of the tenant (offboarding).
    pub async fn remove_all(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        self.rows.remove_all(tenant).await
    }
}

impl TenantEndpoints<'_> {
    /// Sets (or replaces) the scope's tenant's endpoint for `provider`.
    pub async fn set(
        &self,
        provider: &str,
        endpoint: &EndpointSecret,
    ) -> Result<EndpointInfo, KeyringError> {
        self.rows
            .set(self.scope.tenant_id(), provider, endpoint)
            .await
    }

    /// The scope's tenant's endpoints, without their keys.
    pub async fn list(&self) -> Result<Vec<EndpointInfo>, StoreError> {
        self.rows.list(self.scope.tenant_id()).await
    }

    /// Removes the scope's tenant's endpoint for `provider`; `NotFound` if it has none.
    pub async fn remove(&self, provider: &str) -> Result<(), StoreError> {
        self.rows.remove(self.scope.tenant_id(), provider).await
    }
}

impl Keyring {
    /// A tenant's endpoints, as the platform operator manages them (never their keys).
    pub fn endpoints<'a>(
        &'a self,
        store: &'a Store,
        admin: &'a PlatformAdmin,
    ) -> PlatformEndpoints<'a> {
        PlatformEndpoints {
            rows: Rows {
                keyring: self,
                store,
            },
            _admin: admin,
        }
    }

    /// The scope's tenant's own endpoints, as its tenant admin manages them (bring your own
    /// key). The scope is the proof the caller is of that tenant.
    pub fn tenant_endpoints<'a>(
        &'a self,
        store: &'a Store,
        scope: &'a TenantScope,
    ) -> TenantEndpoints<'a> {
        TenantEndpoints {
            rows: Rows {
                keyring: self,
                store,
            },
            scope,
        }
    }

    /// Opens the scope's tenant's endpoint for `provider`: `NotFound` if it has none, and
    /// `Undecryptable` if its keys are gone or the sealed copy was altered or moved.
    pub async fn open_endpoint(
        &self,
        scope: &TenantScope,
        provider: &str,
    ) -> Result<EndpointSecret, KeyringError> {
        let plain = self.get_secret(scope, &secret_name(provider)).await?;
        serde_json::from_slice(&plain).map_err(|_| KeyringError::Undecryptable)
    }
}

impl Rows<'_> {
    async fn set(
        &self,
        tenant: &TenantId,
        provider: &str,
        endpoint: &EndpointSecret,
    ) -> Result<EndpointInfo, KeyringError> {
        let name = secret_name(provider);
        let plain = Zeroizing::new(
            serde_json::to_vec(endpoint).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        );
        let sealed = self.keyring.seal_for(tenant, KIND, &name, &plain).await?;
        let now = now_ms();
        // The tenant must exist; its sealed copy goes to its place (a data table), then the
        // listing and the revision (control plane), so gateways never key an endpoint by a
        // revision whose sealed copy is not there yet.
        with_tx!(self.store, Access::Platform, |tx| {
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
                .bind(tenant.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound.into());
            }
        })?;
        with_tx!(self.store.data(tenant).await?, Access::Platform, |tx| {
            sqlx::query(
                "INSERT INTO tenant_secrets (tenant_id, name, sealed, updated_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, name) DO UPDATE SET sealed = excluded.sealed, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(tenant.as_str())
            .bind(&name)
            .bind(&sealed)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        })?;
        let revision = with_tx!(self.store, Access::Platform, |tx| {
            bump_revision(&mut tx).await?;
            let revision: i64 =
                sqlx::query_scalar("SELECT revision FROM control_revision WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await?;
            sqlx::query(
                "INSERT INTO tenant_endpoints (tenant_id, provider, base_url, api_version, revision, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (tenant_id, provider) DO UPDATE SET base_url = excluded.base_url, \
                 api_version = excluded.api_version, revision = excluded.revision, \
                 updated_at_ms = excluded.updated_at_ms",
            )
            .bind(tenant.as_str())
            .bind(provider)
            .bind(&endpoint.base_url)
            .bind(&endpoint.api_version)
            .bind(revision)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            revision
        })?;
        Ok(EndpointInfo {
            provider: provider.to_owned(),
            base_url: endpoint.base_url.clone(),
            api_version: endpoint.api_version.clone(),
            revision,
            updated_at_ms: now,
        })
    }

    /// The tenant's endpoints by provider name, without their keys.
    async fn list(&self, tenant: &TenantId) -> Result<Vec<EndpointInfo>, StoreError> {
        let rows: Vec<(String, String, Option<String>, i64, i64)> =
            with_tx!(self.store, Access::Platform, |tx| {
                sqlx::query_as(
                    "SELECT provider, base_url, api_version, revision, updated_at_ms \
                     FROM tenant_endpoints WHERE tenant_id = $1 ORDER BY provider",
                )
                .bind(tenant.as_str())
                .fetch_all(&mut *tx)
                .await?
            })?;
        Ok(rows
            .into_iter()
            .map(
                |(provider, base_url, api_version, revision, updated_at_ms)| EndpointInfo {
                    provider,
                    base_url,
                    api_version,
                    revision,
                    updated_at_ms,
                },
            )
            .collect())
    }

    /// Removes the tenant's endpoint for `provider` (its sealed copy with it); `NotFound` if
    /// it has none.
    async fn remove(&self, tenant: &TenantId, provider: &str) -> Result<(), StoreError> {
        let listed: Option<String> = with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query_scalar(
                "SELECT provider FROM tenant_endpoints WHERE tenant_id = $1 AND provider = $2",
            )
            .bind(tenant.as_str())
            .bind(provider)
            .fetch_optional(&mut *tx)
            .await?
        })?;
        if listed.is_none() {
            return Err(StoreError::NotFound);
        }
        // The sealed copy (the tenant's place) first, then the listing and the revision.
        with_tx!(self.store.data(tenant).await?, Access::Platform, |tx| {
            sqlx::query("DELETE FROM tenant_secrets WHERE tenant_id = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(secret_name(provider))
                .execute(&mut *tx)
                .await?;
        })?;
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query("DELETE FROM tenant_endpoints WHERE tenant_id = $1 AND provider = $2")
                .bind(tenant.as_str())
                .bind(provider)
                .execute(&mut *tx)
                .await?;
            bump_revision(&mut tx).await?;
        })
    }

    /// Removes every endpoint of the tenant (offboarding: after its keys were shredded the
    /// sealed copies cannot be opened anyway; this removes the base URLs too).
    async fn remove_all(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        with_tx!(self.store.data(tenant).await?, Access::Platform, |tx| {
            sqlx::query(
                "DELETE FROM tenant_secrets WHERE tenant_id = $1 AND substr(name, 1, $2) = $3",
            )
            .bind(tenant.as_str())
            .bind(PREFIX.len() as i32)
            .bind(PREFIX)
            .execute(&mut *tx)
            .await?;
        })?;
        with_tx!(self.store, Access::Platform, |tx| {
            let n = sqlx::query("DELETE FROM tenant_endpoints WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n > 0 {
                bump_revision(&mut tx).await?;
            }
            n
        })
    }
}
