//! API keys and the server secret that keys their hashes.
//!
//! A key is `tgk_` + 43 base64url characters (256 random bits). Only
//! HMAC-SHA-256(server secret, key) is stored, with the first 12 characters as a visible prefix.
//! A database copy without the server secret cannot be used to test guessed keys offline.

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use std::path::Path;

pub const KEY_PREFIX: &str = "tgk_";
pub const VISIBLE_PREFIX_LEN: usize = 12;

/// The HMAC key for API-key hashes.
#[derive(Clone)]
pub struct ServerSecret(SecretSlice<u8>);

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("TENANTGATE_SERVER_SECRET must be 64 hex characters (32 bytes)")]
    BadEnv,
    #[error("server.secret_file {path}: {message}")]
    File { path: String, message: String },
}

impl ServerSecret {
    pub fn from_bytes(b: Vec<u8>) -> Self {
        Self(SecretSlice::from(b))
    }

    /// `TENANTGATE_SERVER_SECRET` if set, else the file, created (0600) if missing.
    pub fn load_or_create(file: &Path) -> Result<Self, SecretError> {
        if let Ok(hexed) = std::env::var("TENANTGATE_SERVER_SECRET") {
            let b = hex::decode(hexed.trim()).map_err(|_| SecretError::BadEnv)?;
            if b.len() != 32 {
                return Err(SecretError::BadEnv);
            }
            return Ok(Self::from_bytes(b));
        }
        let ferr = |message: String| SecretError::File {
            path: file.display().to_string(),
            message,
        };
        match std::fs::read(file) {
            Ok(b) => {
                let b = hex::decode(String::from_utf8_lossy(&b).trim())
                    .map_err(|_| ferr("not hex".into()))?;
                if b.len() != 32 {
                    return Err(ferr("must hold 32 bytes (64 hex characters)".into()));
                }
                Ok(Self::from_bytes(b))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut b = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut b);
                write_private(file, hex::encode(&b).as_bytes()).map_err(|e| ferr(e.to_string()))?;
                Ok(Self::from_bytes(b))
            }
            Err(e) => Err(ferr(e.to_string())),
        }
    }

    pub fn hash_key(&self, key: &str) -> [u8; 32] {
        #[expect(clippy::expect_used, reason = "HMAC accepts keys of any length")]
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.0.expose_secret()).expect("any key length");
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// Writes `data` to a new file readable only by its owner, creating parent directories.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
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
        let s1 = ServerSecret::from_bytes(vec![1; 32]);
        let s2 = ServerSecret::from_bytes(vec![2; 32]);
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
