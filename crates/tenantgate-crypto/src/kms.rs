//! The key-management interface. A KMS holds each tenant's key-encryption keys (KEKs); callers
//! only ever see data keys and wrapped blobs. This is the one open set in tenantgate (local,
//! AWS KMS, Vault Transit...), hence a trait.

use crate::{Aad, Key};
use tenantgate_core::TenantId;
use zeroize::Zeroizing;

/// A blob encrypted under one version of a tenant's KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    pub kek_version: u32,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KekState {
    /// Wraps new data keys.
    Current,
    /// Still decrypts data keys wrapped before a rotation, until their re-wrap completes.
    Previous,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekVersion {
    pub version: u32,
    pub state: KekState,
    pub created_at_ms: i64,
    /// What wrapped it: `local` (the platform's master key) or `aws:<key id>`.
    pub wrapped_by: String,
}

/// How long what was unwrapped under one KEK version may be kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KekHold {
    /// No bound from the KMS: the platform's key, which the platform controls.
    Unbounded,
    /// A key in the tenant's own KMS, verified recently: usable until then.
    Until(std::time::Instant),
    /// A key in the tenant's own KMS, not verified within the cache's bound: ask it again.
    Expired,
}

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// The tenant has no key (never created, or destroyed by crypto-shredding).
    #[error("no key material for this tenant")]
    NoKey,
    /// Wrong tenant, wrong associated data, altered blob, or a retired version.
    #[error("cannot decrypt")]
    Undecryptable,
    /// The key in the tenant's own KMS refuses: disabled, pending deletion, or the gateway's
    /// access revoked. The tenant's data is unreadable (its calls fail closed) until the
    /// tenant restores the key; retrying sooner does not help.
    #[error("the tenant's own key is unavailable: {0}")]
    KeyUnavailable(String),
    /// Transient: a database or network failure; retrying may help.
    #[error("kms backend: {0}")]
    Backend(String),
}

#[async_trait::async_trait]
pub trait Kms: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Encrypts a small secret (at most a few KiB) under the tenant's current KEK, creating
    /// version 1 if the tenant has none yet.
    async fn encrypt(
        &self,
        tenant: &TenantId,
        plaintext: &[u8],
        aad: &Aad,
    ) -> Result<Wrapped, KmsError>;

    async fn decrypt(
        &self,
        tenant: &TenantId,
        wrapped: &Wrapped,
        aad: &Aad,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError>;

    /// Makes a new KEK version current; older versions stay readable until retired.
    async fn rotate(&self, tenant: &TenantId) -> Result<u32, KmsError>;

    /// Destroys the given previous versions (after every blob they wrapped was re-wrapped).
    async fn retire(&self, tenant: &TenantId, versions: &[u32]) -> Result<(), KmsError>;

    async fn versions(&self, tenant: &TenantId) -> Result<Vec<KekVersion>, KmsError>;

    /// Destroys every version of the tenant's KEK: crypto-shredding.
    async fn destroy(&self, tenant: &TenantId) -> Result<(), KmsError>;

    /// A fresh data key and its wrapping under the current KEK.
    async fn generate_data_key(
        &self,
        tenant: &TenantId,
        aad: &Aad,
    ) -> Result<(Key, Wrapped), KmsError> {
        let key = Key::generate();
        let wrapped = self.encrypt(tenant, key.bytes(), aad).await?;
        Ok((key, wrapped))
    }

    async fn decrypt_data_key(
        &self,
        tenant: &TenantId,
        wrapped: &Wrapped,
        aad: &Aad,
    ) -> Result<Key, KmsError> {
        let b = self.decrypt(tenant, wrapped, aad).await?;
        Key::from_slice(&b).ok_or(KmsError::Undecryptable)
    }

    /// Makes a new KEK version current wrapped by `key` (`None`: the platform's key) and makes
    /// `key` the tenant's configured key, in one step; older versions stay readable until
    /// retired. Only KMSs that keep per-tenant configuration support it.
    async fn rotate_to(
        &self,
        _tenant: &TenantId,
        _key: Option<&crate::CustomerKey>,
    ) -> Result<u32, KmsError> {
        Err(KmsError::Backend(format!(
            "the {} KMS does not take customer keys",
            self.name()
        )))
    }

    /// Another process changed the tenant's key configuration: whatever this one remembers
    /// about its current KEK is re-read at next use.
    fn current_changed(&self, _tenant: &TenantId) {}

    /// Verifies, for a tenant whose current KEK is wrapped by a key in its own KMS, that the
    /// key still answers: free while the unwrapped KEK is cached, one KMS call after that.
    /// Tenants on the platform key pass without any work.
    async fn ensure_live(&self, _tenant: &TenantId) -> Result<(), KmsError> {
        Ok(())
    }

    /// How long what was unwrapped under this KEK version may be kept in memory. Data-key
    /// caches of a tenant on its own key end with it, so revoking the key takes effect within
    /// the KEK cache's bound. Cheap: no I/O.
    fn holds(&self, _tenant: &TenantId, _kek_version: u32) -> KekHold {
        KekHold::Unbounded
    }

    /// Re-encrypts a blob under the current KEK version.
    async fn rewrap(
        &self,
        tenant: &TenantId,
        wrapped: &Wrapped,
        aad: &Aad,
    ) -> Result<Wrapped, KmsError> {
        let plain = self.decrypt(tenant, wrapped, aad).await?;
        self.encrypt(tenant, &plain, aad).await
    }
}
