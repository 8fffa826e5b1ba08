//! API keys and the server secret that keys their hashes.
//!
//! A key is `tgk_` + 43 base64url characters (256 random bits). Only
//! HMAC-SHA-256(server secret, key) is stored, with the first 12 characters as a visible prefix.
//! A database copy without the server secret cannot be used to test guessed keys offline.

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::path::Path;
use tenantgate_crypto::Key;

pub const KEY_PREFIX: &str = "tgk_";
pub const VISIBLE_PREFIX_LEN: usize = 12;

/// The HMAC key for API-key hashes.
#[derive(Clone)]
pub struct ServerSecret(Key);

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(..)")
    }
}

pub use tenantgate_crypto::{write_private, KeyFileError as SecretError};

impl ServerSecret {
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(Key::from_array(b))
    }

    /// `TENANTGATE_SERVER_SECRET` if set, else the file, created (0600) if missing.
    pub fn load_or_create(file: &Path) -> Result<Self, SecretError> {
        tenantgate_crypto::load_or_create_key(
            file,
            "TENANTGATE_SERVER_SECRET",
            "server.secret_file",
        )
        .map(Self)
    }

    /// HMAC-SHA-256 under the secret of length-prefixed `parts`, for values that must not be
    /// computable from public inputs (a tenant id) without the secret.
    pub fn derive(&self, parts: &[&[u8]]) -> [u8; 32] {
        #[expect(clippy::expect_used, reason = "HMAC accepts keys of any length")]
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.bytes()).expect("any key length");
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// The request role's PostgreSQL password: HMAC of a fixed label, so every replica holding
    /// this secret derives the same one and nobody has to configure it.
    pub fn pg_runtime_password(&self) -> String {
        // Length-prefixed (`derive`), so it can never equal an API key's hash (`hash_key`).
        hex::encode(self.derive(&[b"tenantgate/postgres-runtime-role-password/v1"]))
    }

    pub fn hash_key(&self, key: &str) -> [u8; 32] {
        #[expect(clippy::expect_used, reason = "HMAC accepts keys of any length")]
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.bytes()).expect("any key length");
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// A freshly generated key: the plaintext (shown once) and what the store keeps.
pub struct GeneratedKey {
    pub plaintext: String,
    pub prefix: String,
    pub hash_hex: String,
}

pub fn generate(secret: &ServerSecret) -> GeneratedKey {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let plaintext = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    GeneratedKey {
        prefix: plaintext[..VISIBLE_PREFIX_LEN].to_owned(),
        hash_hex: hex::encode(secret.hash_key(&plaintext)),
        plaintext,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hashed_with_the_secret() {
        let s1 = ServerSecret::from_bytes([1; 32]);
        let s2 = ServerSecret::from_bytes([2; 32]);
        let a = generate(&s1);
        let b = generate(&s1);
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(a.plaintext.len(), 4 + 43);
        assert!(a.plaintext.starts_with(&a.prefix) && a.prefix.starts_with("tgk_"));
        assert_eq!(a.hash_hex, hex::encode(s1.hash_key(&a.plaintext)));
        assert_ne!(s1.hash_key(&a.plaintext), s2.hash_key(&a.plaintext));
    }

    #[cfg(unix)]
    #[test]
    fn secret_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/secret");
        let a = ServerSecret::load_or_create(&p).unwrap();
        let b = ServerSecret::load_or_create(&p).unwrap();
        assert_eq!(a.hash_key("k"), b.hash_key("k"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
