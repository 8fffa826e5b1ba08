//! Customer-managed keys in AWS KMS, through the official AWS SDK for Rust.
//!
//! A tenant that brings its own key has its key-encryption key (KEK) versions wrapped by that
//! key with KMS `Encrypt` and unwrapped with `Decrypt`, each bound by an encryption context to
//! the tenant and the KEK version (a blob moved to another tenant or version does not open).
//! The key never leaves the tenant's KMS, so the tenant revokes the gateway's access (disable
//! the key, change its policy, revoke a grant) and its data becomes unreadable: crypto-shredding
//! under the customer's control.
//!
//! Credentials come from the standard AWS chain (environment, profile, web identity, role,
//! instance metadata), resolved once per process. HTTPS is the SDK's own smithy client with
//! rustls on ring (the TLS stack the rest of tenantgate builds), not its default aws-lc build.

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantgate_crypto::{CustomerKey, CustomerKeys, KekContext, Key, KeyWrapper, KmsError};
use tokio::sync::OnceCell;

/// Encryption-context keys: AWS KMS binds both into the ciphertext and logs them in CloudTrail,
/// so the tenant sees which of its tenants' KEK versions each call touched.
pub const CONTEXT_TENANT: &str = "tenantgate:tenant";
pub const CONTEXT_KEK_VERSION: &str = "tenantgate:kek_version";

/// Bounds on one KMS call: a KMS that does not answer fails the call (closed), it does not
/// hold it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens AWS KMS wrappers, one SDK client per (region, endpoint), all sharing the credential
/// chain and the HTTPS connection pool.
#[derive(Default)]
pub struct AwsKms {
    sdk: OnceCell<aws_config::SdkConfig>,
    clients: Mutex<HashMap<(String, Option<String>), aws_sdk_kms::Client>>,
}

impl AwsKms {
    pub fn new() -> Self {
        Self::default()
    }

    async fn sdk(&self) -> &aws_config::SdkConfig {
        self.sdk
            .get_or_init(|| async {
                aws_config::defaults(BehaviorVersion::latest())
                    .http_client(https_client())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(CONNECT_TIMEOUT)
                            .operation_timeout(OPERATION_TIMEOUT)
                            .build(),
                    )
                    .load()
                    .await
            })
            .await
    }

    /// The KMS client for a region and endpoint (made once).
    pub async fn client(&self, region: &str, endpoint: Option<&str>) -> aws_sdk_kms::Client {
        let k = (region.to_owned(), endpoint.map(str::to_owned));
        if let Some(c) = self.clients.lock().ok().and_then(|g| g.get(&k).cloned()) {
            return c;
        }
        let mut b = aws_sdk_kms::config::Builder::from(self.sdk().await)
            .region(aws_sdk_kms::config::Region::new(region.to_owned()));
        if let Some(e) = endpoint {
            b = b.endpoint_url(e);
        }
        let c = aws_sdk_kms::Client::from_conf(b.build());
        if let Ok(mut g) = self.clients.lock() {
            g.entry(k).or_insert_with(|| c.clone());
        }
        c
    }
}

/// The SDK's HTTPS client with rustls on ring.
fn https_client() -> aws_sdk_kms::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

#[async_trait::async_trait]
impl CustomerKeys for AwsKms {
    async fn wrapper(&self, key: &CustomerKey) -> Result<Arc<dyn KeyWrapper>, KmsError> {
        match key {
            CustomerKey::Aws {
                key_id,
                region,
                endpoint,
            } => Ok(Arc::new(AwsKeyWrapper {
                client: self.client(region, endpoint.as_deref()).await,
                key_id: key_id.clone(),
            })),
        }
    }
}

/// One customer key in AWS KMS.
pub struct AwsKeyWrapper {
    client: aws_sdk_kms::Client,
    key_id: String,
}

fn context(kek: KekContext<'_>) -> HashMap<String, String> {
    HashMap::from([
        (CONTEXT_TENANT.to_owned(), kek.tenant.as_str().to_owned()),
        (CONTEXT_KEK_VERSION.to_owned(), kek.version.to_string()),
    ])
}

/// A failed KMS call, sorted by what the caller can do about it. Only the error code is kept
/// (and the service's message, which names no key material).
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> KmsError {
    let service = match &e {
        SdkError::ServiceError(s) => Some(s.err()),
        _ => None,
    };
    let Some(err) = service else {
        // Could not send, timed out, or an unreadable response: transient from here.
        return KmsError::Backend(format!(
            "aws kms: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        ));
    };
    let code = err.code().unwrap_or("Unknown").to_owned();
    let message = err.message().unwrap_or("").to_owned();
    match code.as_str() {
        // The key's owner turned it off, scheduled its deletion, deleted it, or took the
        // gateway's access away: the customer's decision, which the gateway must honour.
        "DisabledException"
        | "KMSInvalidStateException"
        | "NotFoundException"
        | "AccessDeniedException"
        | "KeyUnavailableException"
        | "InvalidGrantTokenException" => KmsError::KeyUnavailable(format!("{code}: {message}")),
        // Not this key's blob, or altered.
        "InvalidCiphertextException" | "IncorrectKeyException" => KmsError::Undecryptable,
        // Throttling, KMS internal errors, the gateway's own credentials: not the customer's
        // decision, retrying (or fixing the gateway's environment) may help.
        _ => KmsError::Backend(format!("aws kms {code}: {message}")),
    }
}

#[async_trait::async_trait]
impl KeyWrapper for AwsKeyWrapper {
    fn wrapped_by(&self) -> String {
        format!("aws:{}", self.key_id)
    }

    async fn wrap(&self, kek: KekContext<'_>, key: &Key) -> Result<Vec<u8>, KmsError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(key.bytes().to_vec()))
            .set_encryption_context(Some(context(kek)))
            .send()
            .await
            .map_err(classify)?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| KmsError::Backend("aws kms Encrypt returned no ciphertext".into()))
    }

    async fn unwrap(&self, kek: KekContext<'_>, wrapped: &[u8]) -> Result<Key, KmsError> {
        let out = self
            .client
            .decrypt()
            // Naming the key makes KMS refuse a blob of any other key (IncorrectKeyException).
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped.to_vec()))
            .set_encryption_context(Some(context(kek)))
            .send()
            .await
            .map_err(classify)?;
        let plain = zeroize::Zeroizing::new(
            out.plaintext
                .map(Blob::into_inner)
                .ok_or(KmsError::Undecryptable)?,
        );
        Key::from_slice(&plain).ok_or(KmsError::Undecryptable)
    }
}
