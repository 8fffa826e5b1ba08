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
}

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// The tenant has no key (never created, or destroyed by crypto-shredding).
    #[error("no key material for this tenant")]
    NoKey,
    /// Wrong tenant, wrong associated data, altered blob, or a retired version.
    #[error("cannot decrypt")]
    Undecryptable,
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
