//! The local KMS: a master key wraps one key-encryption key (KEK) per tenant and version, and
//! the wrapped KEKs live in the store (`tenant_keks`). Unwrapped KEKs are cached in memory for a
//! bounded time. Cloud KMS adapters implement the same [`Kms`] trait without this table.

use crate::{now_ms, with_tx, Access, Store, StoreError};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tenantgate_core::TenantId;
use tenantgate_crypto::{aead, Aad, KekState, KekVersion, Key, Kms, KmsError, MasterKey, Wrapped};
use zeroize::Zeroizing;

/// `with_tx!` inside an async block, so its `?` stops at the block (KmsError knows no sqlx).
macro_rules! tx {
    ($($t:tt)*) => {
        async { with_tx!($($t)*) }.await
    };
}

pub struct LocalKms {
    store: Store,
    master: MasterKey,
    cache_ttl: Duration,
    cache: Mutex<HashMap<(TenantId, u32), (Key, Instant)>>,
}

fn backend(e: StoreError) -> KmsError {
    KmsError::Backend(e.to_string())
}

fn kek_aad(tenant: &TenantId, version: u32) -> Aad {
    Aad::new(
        "tenantgate/kek/v1",
        &[tenant.as_str().as_bytes(), &version.to_be_bytes()],
    )
}

/// What the KMS itself binds on top of the caller's associated data: tenant and KEK version.
fn blob_aad(tenant: &TenantId, version: u32, aad: &Aad) -> Aad {
    Aad::new(
        "tenantgate/kms-blob/v1",
        &[
            tenant.as_str().as_bytes(),
            &version.to_be_bytes(),
            aad.bytes(),
        ],
    )
}

impl LocalKms {
    pub fn new(store: Store, master: MasterKey, cache_ttl: Duration) -> Self {
        Self {
            store,
            master,
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, tenant: &TenantId, version: u32) -> Option<Key> {
        let g = self.cache.lock().ok()?;
        g.get(&(tenant.clone(), version))
            .filter(|(_, at)| at.elapsed() < self.cache_ttl)
            .map(|(k, _)| k.clone())
    }

    fn remember(&self, tenant: &TenantId, version: u32, key: &Key) {
        if let Ok(mut g) = self.cache.lock() {
            g.retain(|_, (_, at)| at.elapsed() < self.cache_ttl);
            g.insert((tenant.clone(), version), (key.clone(), Instant::now()));
        }
    }

    fn forget(&self, tenant: &TenantId) {
        if let Ok(mut g) = self.cache.lock() {
            g.retain(|(t, _), _| t != tenant);
        }
    }

    fn unwrap_kek(&self, tenant: &TenantId, version: u32, wrapped: &[u8]) -> Result<Key, KmsError> {
        let b = aead::open(self.master.key(), &kek_aad(tenant, version), wrapped)
            .map_err(|_| KmsError::Undecryptable)?;
        Key::from_slice(&b).ok_or(KmsError::Undecryptable)
    }

    /// Loads one KEK version (`None`: the current one).
    async fn kek(
        &self,
        tenant: &TenantId,
        version: Option<u32>,
    ) -> Result<Option<(u32, Key)>, KmsError> {
        if let Some(v) = version {
            if let Some(k) = self.cached(tenant, v) {
                return Ok(Some((v, k)));
            }
        }
        let row: Option<(i64, Vec<u8>)> = tx!(self.store.data(tenant).await?, Access::Tenant(tenant), |tx| {
            let r = match version {
                Some(v) => {
                    sqlx::query("SELECT version, wrapped FROM tenant_keks WHERE tenant_id = $1 AND version = $2")
                        .bind(tenant.as_str())
                        .bind(i64::from(v))
                        .fetch_optional(&mut *tx)
                        .await?
                }
                None => {
                    sqlx::query("SELECT version, wrapped FROM tenant_keks WHERE tenant_id = $1 AND is_current = 1")
                        .bind(tenant.as_str())
                        .fetch_optional(&mut *tx)
                        .await?
                }
            };
            match r {
                Some(r) => Some((r.try_get::<i64, _>(0)?, r.try_get::<Vec<u8>, _>(1)?)),
                None => None,
            }
        })
        .map_err(backend)?;
        let Some((v, wrapped)) = row else {
            return Ok(None);
        };
        let v = u32::try_from(v).map_err(|_| KmsError::Undecryptable)?;
        let key = self.unwrap_kek(tenant, v, &wrapped)?;
        self.remember(tenant, v, &key);
        Ok(Some((v, key)))
    }

    /// Inserts a new current version (`version` = max + 1), demoting the others, atomically.
    async fn add_version(&self, tenant: &TenantId, only_if_none: bool) -> Result<u32, KmsError> {
        let key = Key::generate();
        tx!(self.store.data(tenant).await?, Access::Tenant(tenant), |tx| {
            let max: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM tenant_keks WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_one(&mut *tx)
                .await?;
            if only_if_none && max.is_some() {
                // Another caller created the first version meanwhile.
                return Ok(u32::try_from(max.unwrap_or(1)).unwrap_or(1));
            }
            let v = u32::try_from(max.unwrap_or(0) + 1).map_err(|_| StoreError::Corrupt("kek version".into()))?;
            let wrapped = aead::seal(self.master.key(), &kek_aad(tenant, v), key.bytes());
            sqlx::query("UPDATE tenant_keks SET is_current = 0 WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO tenant_keks (tenant_id, version, wrapped, is_current, created_at_ms) VALUES ($1, $2, $3, 1, $4)")
                .bind(tenant.as_str())
                .bind(i64::from(v))
                .bind(wrapped)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(|e| crate::conflict_or(e, "kek version"))?;
            v
        })
        .map_err(|e| match e {
            // Lost a race for the same version number: the caller retries and finds it.
            StoreError::Conflict(_) => KmsError::Backend("concurrent key creation; retry".into()),
            e => backend(e),
        })
    }
}

#[async_trait::async_trait]
impl Kms for LocalKms {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn encrypt(
        &self,
        tenant: &TenantId,
        plaintext: &[u8],
        aad: &Aad,
    ) -> Result<Wrapped, KmsError> {
        // First use creates version 1. Concurrent first uses race: the loser's transaction fails
        // (a unique violation in PostgreSQL, a stale snapshot in SQLite) before or after the
        // winner commits, so retry the read a few times with a short backoff.
        let mut current = None;
        for attempt in 0..6u32 {
            current = self.kek(tenant, None).await?;
            if current.is_some() {
                break;
            }
            if let Err(e) = self.add_version(tenant, true).await {
                tracing::debug!(tenant = %tenant, error = %e, "first key version creation lost a race; retrying");
                tokio::time::sleep(Duration::from_millis(2u64 << attempt)).await;
            }
        }
        let (v, kek) = current.ok_or(KmsError::NoKey)?;
        Ok(Wrapped {
            kek_version: v,
            bytes: aead::seal(&kek, &blob_aad(tenant, v, aad), plaintext),
        })
    }

    async fn decrypt(
        &self,
        tenant: &TenantId,
        wrapped: &Wrapped,
        aad: &Aad,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let (v, kek) = self
            .kek(tenant, Some(wrapped.kek_version))
            .await?
            .ok_or(KmsError::NoKey)?;
        aead::open(&kek, &blob_aad(tenant, v, aad), &wrapped.bytes)
            .map_err(|_| KmsError::Undecryptable)
    }

    async fn rotate(&self, tenant: &TenantId) -> Result<u32, KmsError> {
        self.add_version(tenant, false).await
    }

    async fn retire(&self, tenant: &TenantId, versions: &[u32]) -> Result<(), KmsError> {
        for v in versions {
            tx!(self.store.data(tenant).await?, Access::Tenant(tenant), |tx| {
                sqlx::query("DELETE FROM tenant_keks WHERE tenant_id = $1 AND version = $2 AND is_current = 0")
                    .bind(tenant.as_str())
                    .bind(i64::from(*v))
                    .execute(&mut *tx)
                    .await?;
            })
            .map_err(backend)?;
        }
        if let Ok(mut g) = self.cache.lock() {
            g.retain(|(t, v), _| !(t == tenant && versions.contains(v)));
        }
        Ok(())
    }

    async fn versions(&self, tenant: &TenantId) -> Result<Vec<KekVersion>, KmsError> {
        tx!(self.store.data(tenant).await?, Access::Tenant(tenant), |tx| {
            let rows = sqlx::query("SELECT version, is_current, created_at_ms FROM tenant_keks WHERE tenant_id = $1 ORDER BY version")
                .bind(tenant.as_str())
                .fetch_all(&mut *tx)
                .await?;
            let mut out = Vec::new();
            for r in rows {
                out.push(KekVersion {
                    version: u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0),
                    state: if r.try_get::<i64, _>(1)? == 1 { KekState::Current } else { KekState::Previous },
                    created_at_ms: r.try_get(2)?,
                });
            }
            out
        })
        .map_err(backend)
    }

    async fn destroy(&self, tenant: &TenantId) -> Result<(), KmsError> {
        self.forget(tenant);
        tx!(
            self.store.data(tenant).await?,
            Access::Tenant(tenant),
            |tx| {
                sqlx::query("DELETE FROM tenant_keks WHERE tenant_id = $1")
                    .bind(tenant.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        )
        .map_err(backend)?;
        self.forget(tenant);
        Ok(())
    }
}
