//! The local KMS: one key-encryption key (KEK) per tenant and version, kept wrapped in the store
//! (`tenant_keks`). A version is wrapped by the platform's master key, or, for a tenant that
//! brings its own key, by that key in the tenant's KMS (`tenant_kms_keys` names it; the
//! adapter is a [`CustomerKeys`], e.g. `tenantgate-kms-aws`). Each version records its wrapper
//! (`wrapped_by`), so a tenant moves between the two by rotation.
//!
//! Unwrapped KEKs are cached for `cache_ttl`. For a tenant on its own key that is also the bound
//! on revocation: once it has passed, the key is asked again ([`Kms::ensure_live`], one call)
//! and a refusal makes the tenant's data unreadable (`KmsError::KeyUnavailable`).

mod customer;

use crate::{now_ms, with_tx, Access, Store, StoreError};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenantgate_core::TenantId;
use tenantgate_crypto::{
    aead, Aad, CustomerKey, CustomerKeys, KekContext, KekHold, KekState, KekVersion, Key,
    KeyWrapper, Kms, KmsError, MasterKey, Wrapped, LOCAL,
};
use zeroize::Zeroizing;

/// `with_tx!` inside an async block, so its `?` stops at the block (KmsError knows no sqlx).
macro_rules! tx {
    ($($t:tt)*) => {
        async { with_tx!($($t)*) }.await
    };
}

/// How long a refusal by a tenant's own key is remembered before the key is asked again (at
/// most the cache's bound): a disabled key's tenant does not cost its KMS a call per request.
const REFUSAL_MEMORY: Duration = Duration::from_secs(1);

pub struct LocalKms {
    store: Store,
    master: Arc<MasterKey>,
    customer: Option<Arc<dyn CustomerKeys>>,
    cache_ttl: Duration,
    cache: Mutex<HashMap<(TenantId, u32), Cached>>,
    /// Each tenant's current KEK version as last read (wrapped: not secret), so re-verifying a
    /// customer key costs one KMS call and no query.
    current: Mutex<HashMap<TenantId, Current>>,
    /// One re-verification per tenant at a time; the others wait for its answer.
    verifying: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
}

struct Cached {
    key: Key,
    at: Instant,
    /// Unwrapped by the tenant's own key: what it unwraps is held only within the bound.
    customer: bool,
}

#[derive(Clone)]
struct Current {
    version: u32,
    wrapper: Wrapper,
    wrapped: Vec<u8>,
    /// The tenant's key refused at this instant, with its answer.
    refused: Option<(Instant, String)>,
}

/// What wrapped one KEK version, as its row records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Wrapper {
    Local,
    Customer(CustomerKey),
}

impl Wrapper {
    fn of(key: Option<&CustomerKey>) -> Wrapper {
        key.cloned().map_or(Wrapper::Local, Wrapper::Customer)
    }

    /// The row's columns: wrapped_by, region, endpoint.
    fn columns(&self) -> (String, Option<String>, Option<String>) {
        match self {
            Wrapper::Local => (LOCAL.to_owned(), None, None),
            Wrapper::Customer(k) => (
                k.wrapped_by(),
                Some(k.region().to_owned()),
                k.endpoint().map(str::to_owned),
            ),
        }
    }

    fn from_columns(
        by: &str,
        region: Option<String>,
        endpoint: Option<String>,
    ) -> Result<Wrapper, KmsError> {
        if by == LOCAL {
            return Ok(Wrapper::Local);
        }
        let (provider, key_id) = by
            .split_once(':')
            .ok_or_else(|| KmsError::Backend(format!("unknown KEK wrapper {by:?}")))?;
        let region = region.ok_or_else(|| KmsError::Backend(format!("{by}: no region")))?;
        CustomerKey::from_parts(provider, key_id.to_owned(), region, endpoint)
            .map(Wrapper::Customer)
            .ok_or_else(|| KmsError::Backend(format!("unknown KEK wrapper {by:?}")))
    }
}

pub(crate) fn backend(e: StoreError) -> KmsError {
    KmsError::Backend(e.to_string())
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

/// A KEK row: version, wrapped bytes, wrapper.
type KekRow = (u32, Vec<u8>, Wrapper);

/// What a new version is wrapped by: the tenant's configured key, or a new choice stored with
/// it in the same transaction.
enum Target<'a> {
    Configured,
    Set(Option<&'a CustomerKey>),
}

impl LocalKms {
    pub fn new(store: Store, master: MasterKey, cache_ttl: Duration) -> Self {
        Self {
            store,
            master: Arc::new(master),
            customer: None,
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
            current: Mutex::new(HashMap::new()),
            verifying: Mutex::new(HashMap::new()),
        }
    }

    /// Lets tenants bring their own keys, reached through `keys` (without it, a tenant whose
    /// KEK is wrapped by its own key cannot be read by this process).
    pub fn with_customer_keys(mut self, keys: Arc<dyn CustomerKeys>) -> Self {
        self.customer = Some(keys);
        self
    }

    fn cached(&self, tenant: &TenantId, version: u32) -> Option<Key> {
        let g = self.cache.lock().ok()?;
        g.get(&(tenant.clone(), version))
            .filter(|c| c.at.elapsed() < self.cache_ttl)
            .map(|c| c.key.clone())
    }

    fn remember(&self, tenant: &TenantId, version: u32, key: &Key, wrapper: &Wrapper) {
        if let Ok(mut g) = self.cache.lock() {
            g.retain(|_, c| c.at.elapsed() < self.cache_ttl);
            g.insert(
                (tenant.clone(), version),
                Cached {
                    key: key.clone(),
                    at: Instant::now(),
                    customer: *wrapper != Wrapper::Local,
                },
            );
        }
    }

    fn note_current(&self, tenant: &TenantId, row: &KekRow) {
        if let Ok(mut g) = self.current.lock() {
            g.insert(
                tenant.clone(),
                Current {
                    version: row.0,
                    wrapped: row.1.clone(),
                    wrapper: row.2.clone(),
                    refused: None,
                },
            );
        }
    }

    fn forget(&self, tenant: &TenantId) {
        if let Ok(mut g) = self.cache.lock() {
            g.retain(|(t, _), _| t != tenant);
        }
        if let Ok(mut g) = self.current.lock() {
            g.remove(tenant);
        }
    }

    async fn wrapper(&self, w: &Wrapper) -> Result<Arc<dyn KeyWrapper>, KmsError> {
        match w {
            Wrapper::Local => Ok(self.master.clone()),
            Wrapper::Customer(k) => match &self.customer {
                Some(c) => c.wrapper(k).await,
                None => Err(KmsError::Backend(format!(
                    "{}: this process was not given customer-key support",
                    k.wrapped_by()
                ))),
            },
        }
    }

    async fn unwrap_kek(&self, tenant: &TenantId, row: &KekRow) -> Result<Key, KmsError> {
        let (version, wrapped, wrapper) = row;
        let w = self.wrapper(wrapper).await?;
        w.unwrap(
            KekContext {
                tenant,
                version: *version,
            },
            wrapped,
        )
        .await
    }

    /// The tenant's configured customer key (control plane).
    async fn configured(&self, tenant: &TenantId) -> Result<Option<CustomerKey>, KmsError> {
        tx!(&self.store, Access::Tenant(tenant), |tx| {
            customer::configured(&mut tx, tenant).await?
        })
        .map_err(backend)
    }

    /// One KEK row (`None`: the current version), not unwrapped.
    async fn kek_row(
        &self,
        tenant: &TenantId,
        version: Option<u32>,
    ) -> Result<Option<KekRow>, KmsError> {
        const COLS: &str = "version, wrapped, wrapped_by, wrapper_region, wrapper_endpoint";
        let by_version =
            format!("SELECT {COLS} FROM tenant_keks WHERE tenant_id = $1 AND version = $2");
        let current =
            format!("SELECT {COLS} FROM tenant_keks WHERE tenant_id = $1 AND is_current = 1");
        type Raw = (i64, Vec<u8>, String, Option<String>, Option<String>);
        let row: Option<Raw> = tx!(
            self.store.data(tenant).await?,
            Access::Tenant(tenant),
            |tx| {
                let r = match version {
                    Some(v) => {
                        sqlx::query(&by_version)
                            .bind(tenant.as_str())
                            .bind(i64::from(v))
                            .fetch_optional(&mut *tx)
                            .await?
                    }
                    None => {
                        sqlx::query(&current)
                            .bind(tenant.as_str())
                            .fetch_optional(&mut *tx)
                            .await?
                    }
                };
                match r {
                    Some(r) => Some((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                    )),
                    None => None,
                }
            }
        )
        .map_err(backend)?;
        let Some((v, wrapped, by, region, endpoint)) = row else {
            return Ok(None);
        };
        let v = u32::try_from(v).map_err(|_| KmsError::Undecryptable)?;
        Ok(Some((
            v,
            wrapped,
            Wrapper::from_columns(&by, region, endpoint)?,
        )))
    }

    /// Loads one KEK version (`None`: the current one), unwrapped.
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
        let Some(row) = self.kek_row(tenant, version).await? else {
            return Ok(None);
        };
        if version.is_none() {
            self.note_current(tenant, &row);
            if let Some(k) = self.cached(tenant, row.0) {
                return Ok(Some((row.0, k)));
            }
        }
        let key = self.unwrap_kek(tenant, &row).await?;
        self.remember(tenant, row.0, &key, &row.2);
        Ok(Some((row.0, key)))
    }

    /// Inserts a new current version (`version` = max + 1), demoting the others, atomically;
    /// with `Target::Set`, the tenant's configured key changes in the same transaction. The
    /// new KEK is wrapped before the transaction (a customer key is a network call, not to be
    /// made holding the write lock), for the version number read just before; if another
    /// writer took that number meanwhile, it is wrapped again for the next.
    async fn add_version(
        &self,
        tenant: &TenantId,
        only_if_none: bool,
        target: Target<'_>,
    ) -> Result<u32, KmsError> {
        let key = Key::generate();
        for _ in 0..4 {
            // KEK versions are the tenant's data (its place); its configured key is control
            // plane (the shared database), read and written apart where the two differ.
            let configured = self.configured(tenant).await?;
            let max = tx!(
                self.store.data(tenant).await?,
                Access::Tenant(tenant),
                |tx| {
                    sqlx::query_scalar::<_, Option<i64>>(
                        "SELECT MAX(version) FROM tenant_keks WHERE tenant_id = $1",
                    )
                    .bind(tenant.as_str())
                    .fetch_one(&mut *tx)
                    .await?
                }
            )
            .map_err(backend)?;
            if let (true, Some(m)) = (only_if_none, max) {
                // Another caller created the first version meanwhile.
                return u32::try_from(m).map_err(|_| KmsError::Undecryptable);
            }
            let wrapper = match &target {
                Target::Configured => Wrapper::of(configured.as_ref()),
                Target::Set(k) => Wrapper::of(*k),
            };
            let v = u32::try_from(max.unwrap_or(0) + 1).map_err(|_| KmsError::Undecryptable)?;
            let w = self.wrapper(&wrapper).await?;
            let ctx = KekContext { tenant, version: v };
            let wrapped = w.wrap(ctx, &key).await?;
            if let Target::Set(Some(k)) = &target {
                // A key the gateway may encrypt with but not decrypt with (a policy granting
                // Encrypt only) would lock the tenant out at the next cache expiry: the round
                // trip is proven before the switch is committed.
                let back = w.unwrap(ctx, &wrapped).await.map_err(|e| {
                    KmsError::KeyUnavailable(format!("{}: unwrapping failed: {e}", k.wrapped_by()))
                })?;
                if back.bytes() != key.bytes() {
                    return Err(KmsError::Undecryptable);
                }
            }
            let (by, region, endpoint) = wrapper.columns();
            let set = match &target {
                Target::Configured => None,
                Target::Set(k) => Some(*k),
            };
            let now_configured = self.configured(tenant).await?;
            let inserted = tx!(
                self.store.data(tenant).await?,
                Access::Tenant(tenant),
                |tx| {
                    let now_max: Option<i64> = sqlx::query_scalar(
                        "SELECT MAX(version) FROM tenant_keks WHERE tenant_id = $1",
                    )
                    .bind(tenant.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                    // Someone rotated, or changed the tenant's key, since the read: wrap again.
                    if now_max != max || (set.is_none() && now_configured != configured) {
                        return Ok(false);
                    }
                    sqlx::query("UPDATE tenant_keks SET is_current = 0 WHERE tenant_id = $1")
                        .bind(tenant.as_str())
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(
                    "INSERT INTO tenant_keks (tenant_id, version, wrapped, is_current, created_at_ms, \
                     wrapped_by, wrapper_region, wrapper_endpoint) VALUES ($1, $2, $3, 1, $4, $5, $6, $7)",
                )
                .bind(tenant.as_str())
                .bind(i64::from(v))
                .bind(&wrapped)
                .bind(now_ms())
                .bind(&by)
                .bind(&region)
                .bind(&endpoint)
                .execute(&mut *tx)
                .await
                .map_err(|e| crate::conflict_or(e, "kek version"))?;
                    true
                }
            );
            // The new version first (data), then the configured key (control plane): a crash
            // between leaves the current version wrapped by the new key, which still opens
            // (each version names its wrapper), and the next rotation repeats the switch.
            let inserted = match (inserted, set) {
                (Ok(true), Some(k)) => tx!(&self.store, Access::Tenant(tenant), |tx| {
                    customer::set_configured(&mut tx, tenant, k).await?;
                    true
                }),
                (other, _) => other,
            };
            match inserted {
                Ok(true) => {
                    let row = (v, wrapped, wrapper);
                    self.note_current(tenant, &row);
                    self.remember(tenant, v, &key, &row.2);
                    return Ok(v);
                }
                Ok(false) => continue,
                // Lost a race for the same version number: the next round finds it.
                Err(StoreError::Conflict(_)) if !only_if_none => continue,
                Err(StoreError::Conflict(_)) => {
                    return Err(KmsError::Backend("concurrent key creation; retry".into()))
                }
                Err(e) => return Err(backend(e)),
            }
        }
        Err(KmsError::Backend(
            "the tenant's key changed during the rotation four times; retry".into(),
        ))
    }

    /// Re-verifies the tenant's current KEK against its own key (one KMS call), or answers
    /// from a recent refusal. Callers hold the tenant's verification lock.
    async fn verify(&self, tenant: &TenantId, cur: &Current) -> Result<(), KmsError> {
        if self.cached(tenant, cur.version).is_some() {
            return Ok(()); // another caller verified it while this one waited
        }
        if let Some((at, why)) = &cur.refused {
            if at.elapsed() < REFUSAL_MEMORY.min(self.cache_ttl) {
                return Err(KmsError::KeyUnavailable(why.clone()));
            }
        }
        let row = (cur.version, cur.wrapped.clone(), cur.wrapper.clone());
        match self.unwrap_kek(tenant, &row).await {
            Ok(key) => {
                self.remember(tenant, cur.version, &key, &cur.wrapper);
                if let Ok(mut g) = self.current.lock() {
                    if let Some(c) = g.get_mut(tenant) {
                        c.refused = None;
                    }
                }
                Ok(())
            }
            Err(e) => {
                let refused = match &e {
                    KmsError::KeyUnavailable(why) => Some(why.clone()),
                    KmsError::Undecryptable | KmsError::NoKey => {
                        Some("the key no longer decrypts this tenant's key version".to_owned())
                    }
                    KmsError::Backend(_) => None,
                };
                if let (Some(why), Ok(mut g)) = (&refused, self.current.lock()) {
                    if let Some(c) = g.get_mut(tenant).filter(|c| c.version == cur.version) {
                        c.refused = Some((Instant::now(), why.clone()));
                    }
                }
                tracing::warn!(tenant = %tenant, error = %e, "the tenant's own key did not unwrap its current key version");
                Err(match refused {
                    Some(why) => KmsError::KeyUnavailable(why),
                    None => e,
                })
            }
        }
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
            if let Err(e) = self.add_version(tenant, true, Target::Configured).await {
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
        self.add_version(tenant, false, Target::Configured).await
    }

    async fn rotate_to(
        &self,
        tenant: &TenantId,
        key: Option<&CustomerKey>,
    ) -> Result<u32, KmsError> {
        self.add_version(tenant, false, Target::Set(key)).await
    }

    fn current_changed(&self, tenant: &TenantId) {
        if let Ok(mut g) = self.current.lock() {
            g.remove(tenant);
        }
    }

    async fn ensure_live(&self, tenant: &TenantId) -> Result<(), KmsError> {
        let known = self
            .current
            .lock()
            .ok()
            .and_then(|g| g.get(tenant).cloned());
        let cur = match known {
            Some(c) => c,
            None => match self.kek_row(tenant, None).await? {
                Some(row) => {
                    self.note_current(tenant, &row);
                    Current {
                        version: row.0,
                        wrapped: row.1,
                        wrapper: row.2,
                        refused: None,
                    }
                }
                // No key yet: nothing sealed, nothing to protect.
                None => return Ok(()),
            },
        };
        if cur.wrapper == Wrapper::Local || self.cached(tenant, cur.version).is_some() {
            return Ok(());
        }
        let lock = match self.verifying.lock() {
            Ok(mut g) => g.entry(tenant.clone()).or_default().clone(),
            Err(_) => return Err(KmsError::Backend("poisoned lock".into())),
        };
        let _one = lock.lock().await;
        // What the call that held the lock learned (a refusal) is in the memo now.
        let cur = self
            .current
            .lock()
            .ok()
            .and_then(|g| g.get(tenant).cloned())
            .unwrap_or(cur);
        self.verify(tenant, &cur).await
    }

    fn holds(&self, tenant: &TenantId, kek_version: u32) -> KekHold {
        let Ok(g) = self.cache.lock() else {
            return KekHold::Expired;
        };
        match g.get(&(tenant.clone(), kek_version)) {
            Some(c) if !c.customer => KekHold::Unbounded,
            Some(c) if c.at.elapsed() < self.cache_ttl => KekHold::Until(c.at + self.cache_ttl),
            _ => KekHold::Expired,
        }
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
            let rows = sqlx::query("SELECT version, is_current, created_at_ms, wrapped_by FROM tenant_keks WHERE tenant_id = $1 ORDER BY version")
                .bind(tenant.as_str())
                .fetch_all(&mut *tx)
                .await?;
            let mut out = Vec::new();
            for r in rows {
                out.push(KekVersion {
                    version: u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0),
                    state: if r.try_get::<i64, _>(1)? == 1 { KekState::Current } else { KekState::Previous },
                    created_at_ms: r.try_get(2)?,
                    wrapped_by: r.try_get(3)?,
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
        tx!(&self.store, Access::Tenant(tenant), |tx| {
            customer::set_configured(&mut tx, tenant, None).await?;
        })
        .map_err(backend)?;
        self.forget(tenant);
        Ok(())
    }
}
