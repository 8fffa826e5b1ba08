//! Key files: a 32-byte key from an environment variable (64 hex characters) if set, else from
//! a file created with mode 0600 on first start. Used for the local KMS's master key and the
//! gateway's server secret.

use crate::Key;
use std::path::Path;

/// The local KMS's master key. It only ever wraps per-tenant KEKs.
pub struct MasterKey(Key);

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{var} must be 64 hex characters (32 bytes)")]
    BadEnv { var: &'static str },
    #[error("{setting} {path}: {message}")]
    File {
        setting: &'static str,
        path: String,
        message: String,
    },
}

impl MasterKey {
    pub fn from_key(k: Key) -> Self {
        MasterKey(k)
    }

    pub fn key(&self) -> &Key {
        &self.0
    }

    /// `TENANTGATE_MASTER_KEY`, else `file` (created if missing).
    pub fn load_or_create(file: &Path) -> Result<MasterKey, KeyFileError> {
        load_or_create_key(file, "TENANTGATE_MASTER_KEY", "encryption.master_key_file")
            .map(MasterKey)
    }
}

/// Reads a key from `env_var` or `file`, creating the file (0600) with a fresh key if missing.
/// `setting` names the configuration key in error messages.
pub fn load_or_create_key(
    file: &Path,
    env_var: &'static str,
    setting: &'static str,
) -> Result<Key, KeyFileError> {
    if let Ok(h) = std::env::var(env_var) {
        let b = zeroize::Zeroizing::new(
            hex::decode(h.trim()).map_err(|_| KeyFileError::BadEnv { var: env_var })?,
        );
        return Key::from_slice(&b).ok_or(KeyFileError::BadEnv { var: env_var });
    }
    let err = |message: String| KeyFileError::File {
        setting,
        path: file.display().to_string(),
        message,
    };
    match std::fs::read_to_string(file) {
        Ok(s) => {
            let s = zeroize::Zeroizing::new(s);
            let b =
                zeroize::Zeroizing::new(hex::decode(s.trim()).map_err(|_| err("not hex".into()))?);
            Key::from_slice(&b).ok_or_else(|| err("must hold 32 bytes (64 hex characters)".into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k = Key::generate();
            write_private(file, hex::encode(k.bytes()).as_bytes())
                .map_err(|e| err(e.to_string()))?;
            Ok(k)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Writes `data` to a new file readable only by its owner, creating parent directories.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k/master.key");
        let a = load_or_create_key(&p, "TENANTGATE_TEST_UNSET_KEY_VAR", "x").unwrap();
        let b = load_or_create_key(&p, "TENANTGATE_TEST_UNSET_KEY_VAR", "x").unwrap();
        assert_eq!(a.bytes(), b.bytes());
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(d.path().join("short"), "abcd").unwrap();
        let e = load_or_create_key(
            &d.path().join("short"),
            "TENANTGATE_TEST_UNSET_KEY_VAR",
            "server.secret_file",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("server.secret_file"), "{e}");
    }
}
