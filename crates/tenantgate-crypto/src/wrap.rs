//! Who wraps a tenant's key-encryption key (KEK) versions: the platform's master key, or a key
//! in the tenant's own KMS (customer-managed keys). The store keeps each wrapped KEK version
//! with the name of its wrapper ([`KeyWrapper::wrapped_by`]), so a tenant moves between the two
//! by rotation: a new version under the new wrapper, data keys re-wrapped, old versions retired.
//!
//! The traits are declared here, without I/O; a cloud adapter (`tenantgate-kms-aws`) implements
//! them with its SDK, so the request path never learns which cloud a tenant's key lives in.

use crate::{aead, Aad, Key, KmsError, MasterKey};
use std::sync::Arc;
use tenantgate_core::TenantId;

/// What one wrapping is bound to: a KEK blob opens only for the tenant and version it was made
/// for (associated data locally, the encryption context in a cloud KMS).
#[derive(Debug, Clone, Copy)]
pub struct KekContext<'a> {
    pub tenant: &'a TenantId,
    pub version: u32,
}

impl KekContext<'_> {
    /// The local wrapping's associated data (unchanged since KEKs were first wrapped, so
    /// versions wrapped before customer keys existed stay readable).
    pub fn aad(&self) -> Aad {
        Aad::new(
            "tenantgate/kek/v1",
            &[self.tenant.as_str().as_bytes(), &self.version.to_be_bytes()],
        )
    }
}

/// Wraps and unwraps KEK versions (32-byte keys). `wrap` and `unwrap` may be network calls.
#[async_trait::async_trait]
pub trait KeyWrapper: Send + Sync + 'static {
    /// How a KEK version records its wrapper: `local`, or `aws:<key id or ARN>`.
    fn wrapped_by(&self) -> String;

    async fn wrap(&self, kek: KekContext<'_>, key: &Key) -> Result<Vec<u8>, KmsError>;

    /// [`KmsError::KeyUnavailable`] when the key refuses (disabled, pending deletion, access
    /// revoked): the tenant's data is unreadable until its owner restores the key.
    async fn unwrap(&self, kek: KekContext<'_>, wrapped: &[u8]) -> Result<Key, KmsError>;
}

pub const LOCAL: &str = "local";

/// The platform's master key as a wrapper (AES-256-GCM, in process).
#[async_trait::async_trait]
impl KeyWrapper for MasterKey {
    fn wrapped_by(&self) -> String {
        LOCAL.to_owned()
    }

    async fn wrap(&self, kek: KekContext<'_>, key: &Key) -> Result<Vec<u8>, KmsError> {
        Ok(aead::seal(self.key(), &kek.aad(), key.bytes()))
    }

    async fn unwrap(&self, kek: KekContext<'_>, wrapped: &[u8]) -> Result<Key, KmsError> {
        let b = aead::open(self.key(), &kek.aad(), wrapped).map_err(|_| KmsError::Undecryptable)?;
        Key::from_slice(&b).ok_or(KmsError::Undecryptable)
    }
}

/// A key in a tenant's own KMS: control-plane configuration, not a secret (the gateway reaches
/// it with the credentials of its own environment, which the key's policy must allow).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CustomerKey {
    Aws {
        /// Key id, key ARN, alias name or alias ARN, as AWS KMS accepts them.
        key_id: String,
        region: String,
        /// Another endpoint than the region's (a VPC endpoint, or a local test server).
        endpoint: Option<String>,
    },
}

impl CustomerKey {
    /// The provider's name as the control plane stores it.
    pub fn provider(&self) -> &'static str {
        match self {
            CustomerKey::Aws { .. } => "aws",
        }
    }

    /// What KEK versions wrapped by this key record (see [`KeyWrapper::wrapped_by`]).
    pub fn wrapped_by(&self) -> String {
        match self {
            CustomerKey::Aws { key_id, .. } => format!("aws:{key_id}"),
        }
    }

    /// Rebuilds a stored configuration; `None` for a provider this version does not know.
    pub fn from_parts(
        provider: &str,
        key_id: String,
        region: String,
        endpoint: Option<String>,
    ) -> Option<CustomerKey> {
        match provider {
            "aws" => Some(CustomerKey::Aws {
                key_id,
                region,
                endpoint,
            }),
            _ => None,
        }
    }

    pub fn key_id(&self) -> &str {
        match self {
            CustomerKey::Aws { key_id, .. } => key_id,
        }
    }

    pub fn region(&self) -> &str {
        match self {
            CustomerKey::Aws { region, .. } => region,
        }
    }

    pub fn endpoint(&self) -> Option<&str> {
        match self {
            CustomerKey::Aws { endpoint, .. } => endpoint.as_deref(),
        }
    }
}

/// Opens a wrapper for a customer key (a cloud adapter; clients are reused per region and
/// endpoint).
#[async_trait::async_trait]
pub trait CustomerKeys: Send + Sync + 'static {
    async fn wrapper(&self, key: &CustomerKey) -> Result<Arc<dyn KeyWrapper>, KmsError>;
}
