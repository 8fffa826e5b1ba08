//! TLS on the listener (`[server.tls]`): rustls on ring, the stack the provider clients already
//! build (no second TLS library, no C). The certificate and key are read once, by
//! `Server::bind` before anything else starts, so a missing or unusable file stops start-up
//! with the setting, the file and the reason named. The handshake itself runs in the accept
//! loop's connection task (`serve.rs`), within the header-read deadline, so a client that
//! opens a connection and never finishes its handshake holds nothing for long.

use crate::config::TlsConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// One of the two files: which setting, which path, what is wrong with it.
    #[error("server.tls.{setting} {}: {message}", path.display())]
    File {
        setting: &'static str,
        path: PathBuf,
        message: String,
    },
    /// Both files read, but rustls refuses the pair (a key of another certificate, say).
    #[error("server.tls: {0}")]
    Pair(String),
}

fn file_error(setting: &'static str, path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        setting,
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_error(setting, path, format!("cannot read it: {e}")))
}

/// The acceptor for `cfg`'s certificate chain and key. HTTP/1.1 only (the server speaks no
/// HTTP/2), announced by ALPN so a client offering `h2` falls back at the handshake.
pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let cert_pem = read("cert_file", &cfg.cert_file)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("cert_file", &cfg.cert_file, format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            "cert_file",
            &cfg.cert_file,
            "no certificate in it (expected a -----BEGIN CERTIFICATE----- block)",
        ));
    }
    let key_pem = read("key_file", &cfg.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let message = if matches!(e, pem::Error::NoItemsFound) {
            "no private key in it (expected a PKCS#8, RSA or EC PRIVATE KEY block)".to_owned()
        } else {
            format!("not a PEM private key: {e}")
        };
        file_error("key_file", &cfg.key_file, message)
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            TlsError::Pair(format!(
                "the key in {} does not fit the certificate in {}: {e}",
                cfg.key_file.display(),
                cfg.cert_file.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
