//! `[server]` (the listener, request bounds, the server secret, shutdown) and `[demo]` (the
//! built-in offline model and first-start bootstrap).

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest accepted request body; larger ones get 413 (a larger declared
    /// `content-length` at once, before any of the body is read).
    pub max_body_bytes: usize,
    /// The whole request body must arrive within this many milliseconds of the request head;
    /// a slower one gets 408 and its connection is closed (stalled uploads hold nothing).
    pub body_read_timeout_ms: u64,
    /// The request head (line and headers) must arrive within this many milliseconds, or the
    /// connection is closed: a client trickling headers (slowloris) holds nothing for long.
    pub header_read_timeout_ms: u64,
    /// File holding the 32-byte server secret that keys API-key hashes (HMAC-SHA-256). Created
    /// with mode 0600 on first start. `TENANTGATE_SERVER_SECRET` (64 hex chars) overrides it.
    pub secret_file: PathBuf,
    /// Seconds to let in-flight requests finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// `[server.tls]`: serve HTTPS on `listen` instead of plain HTTP (absent: plain HTTP, for
    /// a deployment that ends TLS at a proxy or ingress in front).
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: the listener's certificate and key, PEM files read once at start (a renewed
/// certificate takes a restart; a rolling restart of the replicas keeps serving meanwhile).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, the server's own certificate first.
    pub cert_file: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            body_read_timeout_ms: 30_000,
            header_read_timeout_ms: 30_000,
            secret_file: PathBuf::from("data/server.secret"),
            shutdown_grace_secs: 30,
            tls: None,
        }
    }
}

impl ServerConfig {
    /// Bounds a request needs to be served at all.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        if self.body_read_timeout_ms == 0 {
            return Err(invalid("server.body_read_timeout_ms", "must be at least 1"));
        }
        if self.header_read_timeout_ms == 0 {
            return Err(invalid(
                "server.header_read_timeout_ms",
                "must be at least 1",
            ));
        }
        if let Some(tls) = &self.tls {
            if tls.cert_file.as_os_str().is_empty() {
                return Err(invalid("server.tls.cert_file", "must not be empty"));
            }
            if tls.key_file.as_os_str().is_empty() {
                return Err(invalid("server.tls.key_file", "must not be empty"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Serve the built-in offline `demo` model.
    pub enabled: bool,
    /// On first start with no tenants, create tenant `demo` with an admin key written to
    /// `key_file` (mode 0600).
    pub bootstrap_tenant: bool,
    pub key_file: PathBuf,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bootstrap_tenant: true,
            key_file: PathBuf::from("data/demo-key.txt"),
        }
    }
}
