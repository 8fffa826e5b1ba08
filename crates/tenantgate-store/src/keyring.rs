//! Envelope encryption for tenant records: `seal(scope, kind, id, plaintext)` and `open(...)`.
//!
//! Each tenant has data keys per purpose (record kind), wrapped by the tenant's KEK in the
//! [`Kms`] and stored in `tenant_data_keys`. A record is sealed with AES-256-GCM under a data
//! key, with associated data binding tenant, kind, record id and data-key id: a ciphertext
//! copied to another tenant's row or another row fails to open. Data keys are cached in memory
//! for a bounded time and number of uses (then a fresh one is made), so the KMS is not on every
//! call and no key sees more than `dek_max_uses` random nonces.
//!
//! For a tenant whose KEK is wrapped by a key in its own KMS, a cached data key is used only
//! while the KEK it was unwrapped under is held ([`Kms::holds`]): past the KEK cache's bound the
//! tenant's key is asked again ([`Kms::ensure_live`]), so disabling it makes the tenant's
//! records unreadable within that bound, cached data keys included.

use crate::{now_ms, with_tx, Access, Db, Store, StoreError};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenantgate_core::{PlatformAdmin, TenantId, TenantScope};
use tenantgate_crypto::{
    aead, envelope, Aad, CustomerKey, KekHold, KekState, KekVersion, Key, Kms, KmsError, Wrapped,
};
use zeroize::Zeroizing;

#[derive(Debug, Clone)]
pub struct KeyringOptions {
    /// Cache unwrapped data keys (off: every seal makes a data key, every open asks the KMS).
    pub cache: bool,
    /// How long a data key seals new records, and how long an unwrapped key stays cached.
    pub dek_max_age: Duration,
    /// Records one data key may seal before a fresh one is made (random nonces: keep far
    /// below 2^32).
    pub dek_max_uses: u64,
    /// A previous KEK version is destroyed only this long after it was superseded (and when no
    /// data key is wrapped by it any more). A seal that read the old current version just
    /// before a rotation may insert its data key after the re-wrap pass looked; the grace lets
    /// the next pass re-wrap it instead of orphaning it.
    pub retire_grace: Duration,
}

impl Default for KeyringOptions {
    fn default() -> Self {
        Self {
            cache: true,
            dek_max_age: Duration::from_secs(300),
            dek_max_uses: 1 << 20,
            retire_grace: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// Wrong tenant, wrong row, altered bytes, unknown format, or shredded keys: one answer,
    /// so failures are no oracle.
    #[error("record cannot be decrypted")]
    Undecryptable,
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tenant's own key refuses (disabled, pending deletion, access revoked): its records
    /// stay unreadable until the tenant restores the key.
    #[error("the tenant's own key is unavailable: {0}")]
    KeyUnavailable(String),
    #[error("kms: {0}")]
    Kms(String),
}

impl From<sqlx::Error> for KeyringError {
    fn from(e: sqlx::Error) -> Self {
        KeyringError::Store(StoreError::Backend(e))
    }
}

fn kms_err(e: KmsError) -> KeyringError {
    match e {
        KmsError::NoKey | KmsError::Undecryptable => KeyringError::Undecryptable,
        KmsError::KeyUnavailable(m) => KeyringError::KeyUnavailable(m),
        KmsError::Backend(m) => KeyringError::Kms(m),
    }
}

type DekId = [u8; envelope::DEK_ID_LEN];

struct SealKey {
    id: [u8; envelope::DEK_ID_LEN],
    key: Key,
    created: Instant,
    uses: u64,
    bound: Bound,
}

/// A cached data key's tie to its KEK: `Some(version)` when that KEK is wrapped by the tenant's
/// own key, whose liveness the key is then used under.
type Bound = Option<u32>;

/// An unwrapped data key in the opening cache.
struct OpenKey {
    key: Key,
    at: Instant,
    bound: Bound,
}

/// Key state of one tenant, for `tenantgate keys status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyStatus {
    pub tenant_id: String,
    pub kms: &'static str,
    pub current_version: Option<u32>,
    pub versions: Vec<u32>,
    pub data_keys: i64,
    /// Data keys still wrapped by a previous KEK version (re-wrap in progress).
    pub pending_rewrap: i64,
    /// What wraps the current KEK version: `local` (the platform's key) or `aws:<key id>`.
    pub wrapped_by: Option<String>,
    /// The tenant's configured key (new versions are wrapped by it), if it has its own.
    pub customer_key: Option<String>,
}

pub struct Keyring {
    store: Store,
    kms: Arc<dyn Kms>,
    opts: KeyringOptions,
    sealing: Mutex<HashMap<(TenantId, String), SealKey>>,
    opening: Mutex<HashMap<(TenantId, DekId), OpenKey>>,
}

impl Keyring {
    pub fn new(store: Store, kms: Arc<dyn Kms>, opts: KeyringOptions) -> Self {
        Self {
            store,
            kms,
            opts,
            sealing: Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
        }
    }

    pub fn kms(&self) -> &Arc<dyn Kms> {
        &self.kms
    }

    fn take_sealing_key(&self, tenant: &TenantId, kind: &str) -> Option<([u8; 16], Key, Bound)> {
        if !self.opts.cache {
            return None;
        }
        let mut g = self.sealing.lock().ok()?;
        let k = g.get_mut(&(tenant.clone(), kind.to_owned()))?;
        if k.created.elapsed() >= self.opts.dek_max_age || k.uses >= self.opts.dek_max_uses {
            return None;
        }
        k.uses += 1;
        Some((k.id, k.key.clone(), k.bound))
    }

    /// What a data key unwrapped under `kek_version` is tied to.
    fn bound(&self, tenant: &TenantId, kek_version: u32) -> Bound {
        match self.kms.holds(tenant, kek_version) {
            KekHold::Unbounded => None,
            KekHold::Until(_) | KekHold::Expired => Some(kek_version),
        }
    }

    /// Whether a cached data key may still be used: always for the platform's key; for the
    /// tenant's own key, while its KEK is held, else after the key answered again (one KMS
    /// call; a refusal is the caller's error). `false`: fetch the data key afresh.
    async fn usable(&self, tenant: &TenantId, bound: Bound) -> Result<bool, KeyringError> {
        let Some(v) = bound else {
            return Ok(true);
        };
        let held = |h| matches!(h, KekHold::Until(t) if t > Instant::now());
        if held(self.kms.holds(tenant, v)) {
            return Ok(true);
        }
        self.kms.ensure_live(tenant).await.map_err(kms_err)?;
        // Verified the current version; a key under an older one is fetched again.
        Ok(held(self.kms.holds(tenant, v)))
    }

    async fn new_data_key(
        &self,
        tenant: &TenantId,
        kind: &str,
    ) -> Result<([u8; 16], Key), KeyringError> {
        let id = *uuid::Uuid::new_v4().as_bytes();
        let (key, wrapped) = self
            .kms
            .generate_data_key(tenant, &Aad::data_key(tenant.as_str(), kind, &id))
            .await
            .map_err(kms_err)?;
        with_tx!(
            self.store.data(tenant).await?,
            Access::Tenant(tenant),
            |tx| {
                sqlx::query("INSERT INTO tenant_data_keys (tenant_id, id, purpose, kek_version, wrapped, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(tenant.as_str())
                .bind(&id[..])
                .bind(kind)
                .bind(i64::from(wrapped.kek_version))
                .bind(&wrapped.bytes)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            }
        )?;
        if self.opts.cache {
            let bound = self.bound(tenant, wrapped.kek_version);
            if let Ok(mut g) = self.sealing.lock() {
                g.insert(
                    (tenant.clone(), kind.to_owned()),
                    SealKey {
                        id,
                        key: key.clone(),
                        created: Instant::now(),
                        uses: 1,
                        bound,
                    },
                );
            }
        }
        Ok((id, key))
    }

    /// Seals `plaintext` as record `kind`/`id` of the scope's tenant.
    pub async fn seal(
        &self,
        scope: &TenantScope,
        kind: &str,
        id: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyringError> {
        self.seal_for(scope.tenant_id(), kind, id, plaintext).await
    }

    /// [`Keyring::seal`] for a tenant named by id: for the store's platform operations that
    /// write a tenant's secret without acting as the tenant (`endpoints.rs`: an operator sets
    /// a tenant's provider credential, which only the tenant's calls ever open).
    pub(crate) async fn seal_for(
        &self,
        tenant: &TenantId,
        kind: &str,
        id: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyringError> {
        let cached = match self.take_sealing_key(tenant, kind) {
            Some((id, key, bound)) if self.usable(tenant, bound).await? => Some((id, key)),
            _ => None,
        };
        let (dek_id, key) = match cached {
            Some(k) => k,
            None => self.new_data_key(tenant, kind).await?,
        };
        let mut out = envelope::header(&dek_id);
        out.extend_from_slice(&aead::seal(
            &key,
            &Aad::record(tenant.as_str(), kind, id, &dek_id),
            plaintext,
        ));
        Ok(out)
    }

    async fn data_key(
        &self,
        tenant: &TenantId,
        kind: &str,
        dek_id: [u8; 16],
    ) -> Result<Key, KeyringError> {
        if self.opts.cache {
            let hit = self.opening.lock().ok().and_then(|g| {
                g.get(&(tenant.clone(), dek_id))
                    .filter(|k| k.at.elapsed() < self.opts.dek_max_age)
                    .map(|k| (k.key.clone(), k.bound))
            });
            if let Some((key, bound)) = hit {
                if self.usable(tenant, bound).await? {
                    return Ok(key);
                }
            }
        }
        let row: Option<(String, i64, Vec<u8>)> = with_tx!(
            self.store.data(tenant).await?,
            Access::Tenant(tenant),
            |tx| {
                let r = sqlx::query("SELECT purpose, kek_version, wrapped FROM tenant_data_keys WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(&dek_id[..])
                .fetch_optional(&mut *tx)
                .await?;
                match r {
                    Some(r) => Some((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
                    None => None,
                }
            }
        )?;
        // Another tenant's data key is invisible here (predicate and RLS): same as missing.
        let (purpose, kek_version, wrapped) = row.ok_or(KeyringError::Undecryptable)?;
        if purpose != kind {
            return Err(KeyringError::Undecryptable);
        }
        let wrapped = Wrapped {
            kek_version: u32::try_from(kek_version).map_err(|_| KeyringError::Undecryptable)?,
            bytes: wrapped,
        };
        let key = self
            .kms
            .decrypt_data_key(
                tenant,
                &wrapped,
                &Aad::data_key(tenant.as_str(), kind, &dek_id),
            )
            .await
            .map_err(kms_err)?;
        if self.opts.cache {
            let bound = self.bound(tenant, wrapped.kek_version);
            if let Ok(mut g) = self.opening.lock() {
                let ttl = self.opts.dek_max_age;
                g.retain(|_, k| k.at.elapsed() < ttl);
                g.insert(
                    (tenant.clone(), dek_id),
                    OpenKey {
                        key: key.clone(),
                        at: Instant::now(),
                        bound,
                    },
                );
            }
        }
        Ok(key)
    }

    /// Opens a record sealed by [`Keyring::seal`] for the same tenant, kind and id.
    pub async fn open(
        &self,
        scope: &TenantScope,
        kind: &str,
        id: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
        let tenant = scope.tenant_id();
        let (dek_id, body) = envelope::parse(sealed).ok_or(KeyringError::Undecryptable)?;
        let key = self.data_key(tenant, kind, dek_id).await?;
        aead::open(&key, &Aad::record(tenant.as_str(), kind, id, &dek_id), body)
            .map_err(|_| KeyringError::Undecryptable)
    }

    /// Stores a tenant secret, sealed.
    pub async fn put_secret(
        &self,
        scope: &TenantScope,
        name: &str,
        value: &[u8],
    ) -> Result<(), KeyringError> {
        let sealed = self.seal(scope, "tenant_secret", name, value).await?;
        let tenant = scope.tenant_id();
        with_tx!(
            self.store.data(tenant).await?,
            Access::Tenant(tenant),
            |tx| {
                sqlx::query(
                "INSERT INTO tenant_secrets (tenant_id, name, sealed, updated_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, name) DO UPDATE SET sealed = excluded.sealed, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(tenant.as_str())
            .bind(name)
            .bind(&sealed)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            }
        )?;
        Ok(())
    }

    pub async fn get_secret(
        &self,
        scope: &TenantScope,
        name: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
        let tenant = scope.tenant_id();
        let sealed: Option<Vec<u8>> = with_tx!(
            self.store.data(tenant).await?,
            Access::Tenant(tenant),
            |tx| {
                sqlx::query_scalar(
                    "SELECT sealed FROM tenant_secrets WHERE tenant_id = $1 AND name = $2",
                )
                .bind(tenant.as_str())
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
            }
        )?;
        self.open(
            scope,
            "tenant_secret",
            name,
            &sealed.ok_or(KeyringError::NotFound)?,
        )
        .await
    }

    /// Another process moved the tenant to (or off) a key of its own: the data keys cached here
    /// were unwrapped under the old arrangement (and maybe without the new key's liveness
    /// bound), and the KMS's note of the tenant's current KEK is stale. Both are fetched again.
    pub fn key_changed(&self, tenant: &TenantId) {
        self.forget(tenant);
        self.kms.current_changed(tenant);
    }

    fn forget(&self, tenant: &TenantId) {
        if let Ok(mut g) = self.sealing.lock() {
            g.retain(|(t, _), _| t != tenant);
        }
        if let Ok(mut g) = self.opening.lock() {
            g.retain(|(t, _), _| t != tenant);
        }
    }

    /// Makes a new KEK version current, then re-wraps every data key under it and retires the
    /// old versions. New records use new data keys under the new version at once; old records
    /// stay readable throughout.
    pub async fn rotate(
        &self,
        admin: &PlatformAdmin,
        tenant: &TenantId,
    ) -> Result<KeyStatus, KeyringError> {
        let v = self.kms.rotate(tenant).await.map_err(kms_err)?;
        tracing::info!(tenant = %tenant, version = v, "rotated tenant key-encryption key");
        if let Ok(mut g) = self.sealing.lock() {
            g.retain(|(t, _), _| t != tenant);
        }
        self.rewrap(admin, tenant, usize::MAX).await?;
        self.status(admin, tenant).await
    }

    /// Moves the tenant's KEK to a key in its own KMS (`None`: back to the platform's key):
    /// a new version wrapped by it becomes current and the tenant's configured key in one
    /// transaction (once the key has wrapped and unwrapped it), then every data key is
    /// re-wrapped under it; the old versions are destroyed after `retire_grace`. Records sealed
    /// before stay readable throughout.
    pub async fn use_customer_key(
        &self,
        admin: &PlatformAdmin,
        tenant: &TenantId,
        key: Option<&CustomerKey>,
    ) -> Result<KeyStatus, KeyringError> {
        let v = self.kms.rotate_to(tenant, key).await.map_err(kms_err)?;
        tracing::info!(tenant = %tenant, version = v, wrapped_by = key.map_or_else(|| tenantgate_crypto::LOCAL.to_owned(), CustomerKey::wrapped_by), "tenant key-encryption key moved");
        if let Ok(mut g) = self.sealing.lock() {
            g.retain(|(t, _), _| t != tenant);
        }
        self.rewrap(admin, tenant, usize::MAX).await?;
        self.status(admin, tenant).await
    }

    /// Re-wraps up to `limit` data keys still under a previous KEK version; when none is left,
    /// destroys the previous versions. Returns how many were re-wrapped.
    pub async fn rewrap(
        &self,
        _admin: &PlatformAdmin,
        tenant: &TenantId,
        limit: usize,
    ) -> Result<usize, KeyringError> {
        let versions = self.kms.versions(tenant).await.map_err(kms_err)?;
        let Some(current) = versions
            .iter()
            .find(|v| v.state == KekState::Current)
            .map(|v| v.version)
        else {
            return Ok(0);
        };
        let pending: Vec<(Vec<u8>, String, i64, Vec<u8>)> = with_tx!(
            self.store.data(tenant).await?,
            Access::Tenant(tenant),
            |tx| {
                let rows = sqlx::query("SELECT id, purpose, kek_version, wrapped FROM tenant_data_keys WHERE tenant_id = $1 AND kek_version <> $2")
                .bind(tenant.as_str())
                .bind(i64::from(current))
                .fetch_all(&mut *tx)
                .await?;
                let mut out = Vec::new();
                for r in rows {
                    out.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
                }
                out
            }
        )?;
        let mut done = 0;
        for (id, purpose, kek_version, wrapped) in pending.iter().take(limit) {
            let old = Wrapped {
                kek_version: u32::try_from(*kek_version).unwrap_or(0),
                bytes: wrapped.clone(),
            };
            let new = self
                .kms
                .rewrap(tenant, &old, &Aad::data_key(tenant.as_str(), purpose, id))
                .await
                .map_err(kms_err)?;
            with_tx!(
                self.store.data(tenant).await?,
                Access::Tenant(tenant),
                |tx| {
                    sqlx::query("UPDATE tenant_data_keys SET kek_version = $1, wrapped = $2 WHERE tenant_id = $3 AND id = $4 AND kek_version = $5")
                    .bind(i64::from(new.kek_version))
                    .bind(&new.bytes)
                    .bind(tenant.as_str())
                    .bind(&id[..])
                    .bind(kek_version)
                    .execute(&mut *tx)
                    .await?;
                }
            )?;
            done += 1;
        }
        if done == pending.len() {
            self.retire_superseded(tenant, &versions).await?;
        }
        Ok(done)
    }

    /// Destroys previous KEK versions superseded longer than `retire_grace` ago that no data
    /// key references (checked afresh, after the re-wrap).
    async fn retire_superseded(
        &self,
        tenant: &TenantId,
        versions: &[KekVersion],
    ) -> Result<(), KeyringError> {
        let now = now_ms();
        let grace = self.opts.retire_grace.as_millis() as i64;
        let mut due = Vec::new();
        for v in versions.iter().filter(|v| v.state == KekState::Previous) {
            // When it stopped being current: the creation of the next version.
            let superseded_at = versions
                .iter()
                .filter(|n| n.version > v.version)
                .map(|n| n.created_at_ms)
                .min();
            if superseded_at.is_some_and(|at| now - at >= grace) {
                due.push(v.version);
            }
        }
        let mut retire = Vec::new();
        for v in due {
            let users: i64 = with_tx!(
                self.store.data(tenant).await?,
                Access::Tenant(tenant),
                |tx| {
                    sqlx::query_scalar(
                    "SELECT COUNT(*) FROM tenant_data_keys WHERE tenant_id = $1 AND kek_version = $2",
                )
                .bind(tenant.as_str())
                .bind(i64::from(v))
                .fetch_one(&mut *tx)
                .await?
                }
            )?;
            if users == 0 {
                retire.push(v);
            }
        }
        if !retire.is_empty() {
            self.kms.retire(tenant, &retire).await.map_err(kms_err)?;
            tracing::info!(tenant = %tenant, retired = ?retire, "re-wrap complete; previous key versions destroyed");
        }
        Ok(())
    }

    pub async fn status(
        &self,
        _admin: &PlatformAdmin,
        tenant: &TenantId,
    ) -> Result<KeyStatus, KeyringError> {
        let versions: Vec<KekVersion> = self.kms.versions(tenant).await.map_err(kms_err)?;
        let current = versions
            .iter()
            .find(|v| v.state == KekState::Current)
            .map(|v| v.version);
        let (total, pending): (i64, i64) = with_tx!(
            self.store.data(tenant).await?,
            Access::Tenant(tenant),
            |tx| {
                let total: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM tenant_data_keys WHERE tenant_id = $1",
                )
                .bind(tenant.as_str())
                .fetch_one(&mut *tx)
                .await?;
                let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM tenant_data_keys WHERE tenant_id = $1 AND kek_version <> $2",
            )
            .bind(tenant.as_str())
            .bind(i64::from(current.unwrap_or(0)))
            .fetch_one(&mut *tx)
            .await?;
                (total, pending)
            }
        )?;
        let customer_key = self
            .store
            .platform(_admin)
            .customer_key(tenant)
            .await?
            .map(|k| k.wrapped_by());
        Ok(KeyStatus {
            customer_key,
            wrapped_by: versions
                .iter()
                .find(|v| v.state == KekState::Current)
                .map(|v| v.wrapped_by.clone()),
            tenant_id: tenant.to_string(),
            kms: self.kms.name(),
            current_version: current,
            versions: versions.iter().map(|v| v.version).collect(),
            data_keys: total,
            pending_rewrap: if current.is_some() { pending } else { 0 },
        })
    }

    /// Crypto-shredding: destroys every KEK version and data key of the tenant. Its sealed
    /// records stay where they are, undecryptable by any path.
    pub async fn shred(
        &self,
        _admin: &PlatformAdmin,
        tenant: &TenantId,
    ) -> Result<(), KeyringError> {
        self.forget(tenant);
        self.kms.destroy(tenant).await.map_err(kms_err)?;
        let data = self.store.data(tenant).await?;
        with_tx!(&data, Access::Tenant(tenant), |tx| {
            sqlx::query("DELETE FROM tenant_data_keys WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?;
        })?;
        self.forget(tenant);
        // SQLite keeps old page images in the WAL until a checkpoint; fold them in now.
        if let Db::Sqlite(pool) = data.db() {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await
                .map_err(StoreError::from)?;
        }
        tracing::info!(tenant = %tenant, "tenant key material destroyed (crypto-shredded)");
        Ok(())
    }

    /// Tenants that still hold a previous KEK version, in one query: those with data keys left
    /// to re-wrap, and those whose re-wrap is done (by whoever rotated: the CLI, another
    /// replica) but whose old versions still wait out `retire_grace` before destruction. Both
    /// need the maintenance pass; selecting only the first kind left fully re-wrapped old
    /// versions alive until the next rotation.
    pub async fn tenants_with_previous_versions(
        &self,
        _admin: &PlatformAdmin,
    ) -> Result<Vec<TenantId>, KeyringError> {
        // Every place holding tenants' keys (the shared tables, each schema, file or database).
        let mut rows: Vec<String> = Vec::new();
        for (_, data) in self.store.data_places().await? {
            rows.extend(with_tx!(&data, Access::Platform, |tx| {
                sqlx::query_scalar::<_, String>(
                    "SELECT DISTINCT tenant_id FROM tenant_keks WHERE is_current = 0",
                )
                .fetch_all(&mut *tx)
                .await?
            })?);
        }
        Ok(rows
            .iter()
            .filter_map(|t| TenantId::parse(t).ok())
            .collect())
    }

    /// Tenants that have key material, with their current KEK's creation time.
    pub async fn tenants_with_keys(
        &self,
        _admin: &PlatformAdmin,
    ) -> Result<Vec<(TenantId, i64)>, KeyringError> {
        let mut rows: Vec<(String, i64)> = Vec::new();
        for (_, data) in self.store.data_places().await? {
            rows.extend(with_tx!(&data, Access::Platform, |tx| {
                sqlx::query_as::<_, (String, i64)>(
                    "SELECT tenant_id, created_at_ms FROM tenant_keks WHERE is_current = 1",
                )
                .fetch_all(&mut *tx)
                .await?
            })?);
        }
        Ok(rows
            .into_iter()
            .filter_map(|(t, at)| TenantId::parse(&t).ok().map(|t| (t, at)))
            .collect())
    }
}
