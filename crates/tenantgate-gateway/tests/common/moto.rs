//! The local AWS KMS of the customer-key tests: moto's server mode (`scripts/moto_kms.py`,
//! started by `.ci/run`), reached through the official AWS SDK with the standard credential
//! chain. Shared by the store and gateway suites (`#[path]`). Without
//! `TENANTGATE_TEST_KMS_URL` the tests skip and say so.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use tenantgate_crypto::CustomerKey;

pub const REGION: &str = "us-east-1";

pub struct Moto {
    pub url: String,
    /// The tenant's side: creates, disables and enables its keys.
    pub client: aws_sdk_kms::Client,
}

/// The local KMS, or `None` after recording the skip.
pub async fn moto() -> Option<Moto> {
    let url = crate::common::skip::backend_url("TENANTGATE_TEST_KMS_URL")?;
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        // moto takes any credentials; without them the SDK's chain would look further
        // (instance metadata included), which a test must not.
        crate::common::skip::skip("AWS_ACCESS_KEY_ID is not set (any value does for moto)");
        return None;
    }
    let client = tenantgate_kms_aws::AwsKms::new()
        .client(REGION, Some(&url))
        .await;
    Some(Moto { url, client })
}

/// The key id of a key ARN (moto's DisableKey and EnableKey take only the id).
fn key_id(arn: &str) -> &str {
    arn.rsplit_once('/').map_or(arn, |(_, id)| id)
}

impl Moto {
    /// A new symmetric key; its ARN.
    pub async fn create_key(&self) -> String {
        let out = self.client.create_key().send().await.unwrap();
        out.key_metadata.unwrap().arn.unwrap()
    }

    pub async fn disable(&self, arn: &str) {
        let id = key_id(arn);
        self.client.disable_key().key_id(id).send().await.unwrap();
    }

    pub async fn enable(&self, arn: &str) {
        let id = key_id(arn);
        self.client.enable_key().key_id(id).send().await.unwrap();
    }

    pub fn customer_key(&self, arn: &str) -> CustomerKey {
        CustomerKey::Aws {
            key_id: arn.to_owned(),
            region: REGION.to_owned(),
            endpoint: Some(self.url.clone()),
        }
    }
}
