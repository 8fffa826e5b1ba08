//! The local KMS's master key: `TENANTGATE_MASTER_KEY` (64 hex characters) or a file created
//! with mode 0600 on first start. It only ever wraps per-tenant KEKs.

use crate::Key;
use std::path::Path;

pub struct MasterKey(Key);

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("TENANTGATE_MASTER_KEY must be 64 hex characters (32 bytes)")]
    BadEnv,
    #[error("encryption.master_key_file {path}: {message}")]
    File { path: String, message: String },
}

impl MasterKey {
    pub fn from_key(k: Key) -> Self {
        MasterKey(k)
    }

    pub fn key(&self) -> &Key {
        &self.0
    }

    pub fn load_or_create(file: &Path) -> Result<MasterKey, MasterKeyError> {
        if let Ok(h) = std::env::var("TENANTGATE_MASTER_KEY") {
            let b =
                zeroize::Zeroizing::new(hex::decode(h.trim()).map_err(|_| MasterKeyError::BadEnv)?);
            return Key::from_slice(&b)
                .map(MasterKey)
                .ok_or(MasterKeyError::BadEnv);
        }
        let err = |message: String| MasterKeyError::File {
            path: file.display().to_string(),
            message,
        };
        match std::fs::read_to_string(file) {
            Ok(s) => {
                let b = zeroize::Zeroizing::new(
                    hex::decode(s.trim()).map_err(|_| err("not hex".into()))?,
                );
                Key::from_slice(&b)
                    .map(MasterKey)
                    .ok_or_else(|| err("must hold 32 bytes (64 hex characters)".into()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let k = Key::generate();
                write_private(file, hex::encode(k.bytes()).as_bytes())
                    .map_err(|e| err(e.to_string()))?;
                Ok(MasterKey(k))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
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
    fn master_key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k/master.key");
        let a = MasterKey::load_or_create(&p).unwrap();
        let b = MasterKey::load_or_create(&p).unwrap();
        assert_eq!(a.key().bytes(), b.key().bytes());
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
