//! The hash chain and Ed25519-signed checkpoints of its head.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The hash before the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// `SHA-256(prev || canonical)`.
pub fn link(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

/// A key's id: the first 16 hex characters of SHA-256 of the public key bytes.
pub fn key_id(public: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

/// The checkpoint signing key (Ed25519), from a 32-byte seed.
pub struct Signer {
    key: SigningKey,
    id: String,
}

impl Signer {
    pub fn from_seed(seed: &[u8; 32]) -> Signer {
        let key = SigningKey::from_bytes(seed);
        let id = key_id(key.verifying_key().as_bytes());
        Signer { key, id }
    }

    pub fn key_id(&self) -> &str {
        &self.id
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key_id: self.id.clone(),
            public_key: hex::encode(self.key.verifying_key().as_bytes()),
        }
    }

    /// Signs `message` (canonical bytes), returning the signature in hex.
    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.key.sign(message).to_bytes())
    }

    pub fn checkpoint(&self, tenant: &str, seq: u64, hash: &[u8; 32], ts_ms: i64) -> Checkpoint {
        let mut cp = Checkpoint {
            tenant: tenant.to_owned(),
            seq,
            hash: hex::encode(hash),
            ts_ms,
            key_id: self.id.clone(),
            sig: String::new(),
        };
        cp.sig = self.sign(&cp.message());
        cp
    }
}

/// A public verification key as exported: `{"key_id": .., "public_key": hex}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub key_id: String,
    pub public_key: String,
}

impl PublicKey {
    /// Checks `sig` (hex) over `message`. The key id must match the key bytes.
    pub fn verify(&self, message: &[u8], sig: &str) -> Result<(), String> {
        let bytes: [u8; 32] = hex::decode(&self.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("public key is not 32 bytes of hex")?;
        if key_id(&bytes) != self.key_id {
            return Err("key id does not match the public key".into());
        }
        let vk = VerifyingKey::from_bytes(&bytes).map_err(|_| "invalid public key")?;
        let sig: [u8; 64] = hex::decode(sig)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("signature is not 64 bytes of hex")?;
        vk.verify(message, &Signature::from_bytes(&sig))
            .map_err(|_| "signature does not verify".to_string())
    }
}

/// A signed statement "tenant T's chain had hash H at seq N at time t".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub tenant: String,
    pub seq: u64,
    pub hash: String,
    pub ts_ms: i64,
    pub key_id: String,
    pub sig: String,
}

impl Checkpoint {
    /// The signed bytes: the canonical form of every field but the signature, with a type tag
    /// so a checkpoint signature cannot be replayed as another kind of statement.
    pub fn message(&self) -> Vec<u8> {
        let v = json!({
            "type": "tenantgate.checkpoint.v1",
            "tenant": self.tenant,
            "seq": self.seq,
            "hash": self.hash,
            "ts_ms": self.ts_ms,
            "key_id": self.key_id,
        });
        // Strings and integers only: cannot fail.
        crate::canonical(&v).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn checkpoint_signature_verifies_and_binds_every_field() {
        let s = Signer::from_seed(&[7; 32]);
        let cp = s.checkpoint("t1", 5, &[9; 32], 1000);
        let pk = s.public_key();
        pk.verify(&cp.message(), &cp.sig).unwrap();
        for m in [
            Checkpoint {
                tenant: "t2".into(),
                ..cp.clone()
            },
            Checkpoint {
                seq: 6,
                ..cp.clone()
            },
            Checkpoint {
                hash: hex::encode([8; 32]),
                ..cp.clone()
            },
            Checkpoint {
                ts_ms: 1001,
                ..cp.clone()
            },
        ] {
            assert!(pk.verify(&m.message(), &m.sig).is_err());
        }
        let other = Signer::from_seed(&[8; 32]).public_key();
        assert!(other.verify(&cp.message(), &cp.sig).is_err());
        // A key id that claims another key is refused.
        let lying = PublicKey {
            key_id: other.key_id.clone(),
            ..pk
        };
        assert!(lying.verify(&cp.message(), &cp.sig).is_err());
    }

    #[test]
    fn link_depends_on_prev_and_content() {
        let a = link(&GENESIS, b"x");
        assert_ne!(a, link(&GENESIS, b"y"));
        assert_ne!(link(&a, b"x"), a);
    }
}
