//! Encryption primitives for tenantgate's envelope encryption.
//!
//! - [`aead`]: AES-256-GCM with random 96-bit nonces (RustCrypto `aes-gcm`).
//! - [`Aad`]: canonical associated data that binds a ciphertext to its tenant, record kind and
//!   record id (and, for wrapped keys, to what they wrap), so a ciphertext moved to another
//!   tenant's row, or to another row, fails to decrypt.
//! - [`envelope`]: the versioned record format `TGE1 | data-key id | nonce | ciphertext+tag`.
//! - [`Kms`]: key-encryption keys per tenant, versioned, rotatable, destroyable.
//! - [`KeyWrapper`]: what wraps a KEK version: the master key, or a key in the tenant's own KMS.
//! - [`MasterKey`]: the local KMS's root key (file with mode 0600, or environment).
//!
//! Architecture Invariant: no I/O except reading and creating the master key file.

pub mod aead;
pub mod envelope;
mod kms;
mod master;
mod wrap;

pub use kms::{KekHold, KekState, KekVersion, Kms, KmsError, Wrapped};
pub use master::{load_or_create_key, write_private, KeyFileError, MasterKey};
pub use wrap::{CustomerKey, CustomerKeys, KekContext, KeyWrapper, LOCAL};

use zeroize::Zeroizing;

/// A 256-bit symmetric key, wiped from memory when dropped.
#[derive(Clone)]
pub struct Key(Zeroizing<[u8; 32]>);

impl Key {
    pub fn generate() -> Key {
        use rand::RngCore;
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(k.as_mut());
        Key(k)
    }

    pub fn from_array(b: [u8; 32]) -> Key {
        Key(Zeroizing::new(b))
    }

    pub fn from_slice(b: &[u8]) -> Option<Key> {
        let arr: [u8; 32] = b.try_into().ok()?;
        Some(Key(Zeroizing::new(arr)))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Associated data: a domain label and length-prefixed parts, so no two different
/// (label, parts) tuples encode to the same bytes.
pub struct Aad(Vec<u8>);

impl Aad {
    pub fn new(label: &str, parts: &[&[u8]]) -> Aad {
        let mut v = Vec::with_capacity(64);
        for p in std::iter::once(label.as_bytes()).chain(parts.iter().copied()) {
            v.extend_from_slice(&(p.len() as u32).to_be_bytes());
            v.extend_from_slice(p);
        }
        Aad(v)
    }

    /// A tenant record: tenant, kind, record id, and the data key that sealed it.
    pub fn record(tenant: &str, kind: &str, id: &str, dek_id: &[u8]) -> Aad {
        Aad::new(
            "tenantgate/record/v1",
            &[tenant.as_bytes(), kind.as_bytes(), id.as_bytes(), dek_id],
        )
    }

    /// A data key wrapped by a tenant's KEK: tenant, purpose and data-key id.
    pub fn data_key(tenant: &str, purpose: &str, dek_id: &[u8]) -> Aad {
        Aad::new(
            "tenantgate/data-key/v1",
            &[tenant.as_bytes(), purpose.as_bytes(), dek_id],
        )
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Aad;

    #[test]
    fn aad_parts_cannot_be_shifted_between_fields() {
        let a = Aad::record("t1", "prompt", "ab", b"k");
        let b = Aad::record("t1", "prompta", "b", b"k");
        let c = Aad::record("t1p", "rompt", "ab", b"k");
        assert_ne!(a.bytes(), b.bytes());
        assert_ne!(a.bytes(), c.bytes());
    }
}
