//! Customer-managed keys on both backends, against a local AWS KMS (moto, through the official
//! SDK): records sealed through a tenant's own key, revocation by the tenant (DisableKey) making
//! them unreadable within the KEK cache's bound with its own error, EnableKey restoring them,
//! and moving a tenant from the platform's key to its own and back without losing a record.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;
#[path = "../../tenantgate-gateway/tests/common/moto.rs"]
mod moto;

use common::{admin, new_tenant, open_pg, open_sqlite, scope};
use moto::Moto;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantgate_core::Tenant;
use tenantgate_crypto::{Key, Kms, KmsError, MasterKey};
use tenantgate_kms_aws::AwsKms;
use tenantgate_store::{Db, Keyring, KeyringError, KeyringOptions, LocalKms, Store};

/// The KEK cache's bound in these tests: revocation must show within it.
const BOUND: Duration = Duration::from_secs(1);

/// A gateway's keyring: the local KMS with customer-key support and the given master key.
fn keyring(store: &Store, master: &Key) -> (Keyring, Arc<LocalKms>) {
    let kms = Arc::new(
        LocalKms::new(store.clone(), MasterKey::from_key(master.clone()), BOUND)
            .with_customer_keys(Arc::new(AwsKms::new())),
    );
    let kr = Keyring::new(
        store.clone(),
        kms.clone(),
        KeyringOptions {
            retire_grace: Duration::ZERO,
            ..Default::default()
        },
    );
    (kr, kms)
}

async fn tenant(store: &Store, slug: &str) -> Tenant {
    store
        .platform(&admin())
        .create_tenant(&new_tenant(slug))
        .await
        .unwrap()
}

async fn kek_rows(store: &Store, t: &Tenant) -> Vec<(i64, String, Vec<u8>)> {
    let q = "SELECT version, wrapped_by, wrapped FROM tenant_keks WHERE tenant_id = $1 ORDER BY version";
    match store.db() {
        Db::Sqlite(p) => sqlx::query_as(q)
            .bind(t.id.as_str())
            .fetch_all(p)
            .await
            .unwrap(),
        Db::Postgres(p) => {
            let mut tx = p.begin().await.unwrap();
            sqlx::query("SELECT set_config('tenantgate.tenant_id', $1, true)")
                .bind(t.id.as_str())
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query_as(q)
                .bind(t.id.as_str())
                .fetch_all(&mut *tx)
                .await
                .unwrap()
        }
    }
}

/// Polls `f` until it returns `Some`, failing the test past `deadline`.
async fn until<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

mod cases {
    use super::*;

    pub async fn a_customer_key_wraps_the_kek_bound_to_tenant_and_version(
        store: &Store,
        kms: &Moto,
    ) {
        let master = Key::generate();
        let (kr, _) = keyring(store, &master);
        let (acme, globex) = (tenant(store, "acme").await, tenant(store, "globex").await);
        let arn = kms.create_key().await;
        let status = kr
            .use_customer_key(&admin(), &acme.id, Some(&kms.customer_key(&arn)))
            .await
            .unwrap();
        assert_eq!(status.wrapped_by.as_deref(), Some(&*format!("aws:{arn}")));
        assert_eq!(status.customer_key.as_deref(), Some(&*format!("aws:{arn}")));
        let sa = scope(&acme.id);
        let sealed = kr.seal(&sa, "prompt", "p1", b"acme secret").await.unwrap();
        assert_eq!(
            &*kr.open(&sa, "prompt", "p1", &sealed).await.unwrap(),
            b"acme secret"
        );
        // A fresh process (no caches) opens it through the customer's key too.
        let (fresh, _) = keyring(store, &master);
        assert_eq!(
            &*fresh.open(&sa, "prompt", "p1", &sealed).await.unwrap(),
            b"acme secret"
        );

        // The stored KEK is a KMS ciphertext that opens only with its encryption context:
        // presented as another tenant's, or another version's, KMS refuses it.
        let rows = kek_rows(store, &acme).await;
        let (version, by, wrapped) = rows.last().unwrap().clone();
        assert_eq!(by, format!("aws:{arn}"));
        let decrypt = |tenant: &str, version: String| {
            kms.client
                .decrypt()
                .key_id(&arn)
                .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped.clone()))
                .encryption_context(tenantgate_kms_aws::CONTEXT_TENANT, tenant)
                .encryption_context(tenantgate_kms_aws::CONTEXT_KEK_VERSION, version)
                .send()
        };
        assert!(decrypt(acme.id.as_str(), version.to_string()).await.is_ok());
        assert!(decrypt(globex.id.as_str(), version.to_string())
            .await
            .is_err());
        assert!(decrypt(acme.id.as_str(), (version + 1).to_string())
            .await
            .is_err());
        // The other tenant stays on the platform's key.
        let sg = scope(&globex.id);
        kr.seal(&sg, "prompt", "p1", b"globex").await.unwrap();
        assert!(kek_rows(store, &globex)
            .await
            .iter()
            .all(|r| r.1 == "local"));
    }

    pub async fn disabling_the_key_makes_records_unreadable_within_the_bound_and_enabling_restores_them(
        store: &Store,
        kms: &Moto,
    ) {
        let master = Key::generate();
        let (kr, local) = keyring(store, &master);
        let (acme, globex) = (tenant(store, "acme").await, tenant(store, "globex").await);
        let arn = kms.create_key().await;
        kr.use_customer_key(&admin(), &acme.id, Some(&kms.customer_key(&arn)))
            .await
            .unwrap();
        let (sa, sg) = (scope(&acme.id), scope(&globex.id));
        let sealed = kr.seal(&sa, "prompt", "p1", b"acme secret").await.unwrap();
        let other = kr.seal(&sg, "prompt", "p1", b"globex").await.unwrap();
        // Warm: the data key and the KEK are cached.
        kr.open(&sa, "prompt", "p1", &sealed).await.unwrap();

        kms.disable(&arn).await;
        let disabled_at = Instant::now();
        // The same keyring, caches and all: within the bound the record stops opening, with
        // the error that names the tenant's key (not "undecryptable").
        let (err, _) = until(BOUND * 5, "the record stops opening", || async {
            kr.open(&sa, "prompt", "p1", &sealed).await.err()
        })
        .await;
        let took = disabled_at.elapsed();
        assert!(
            matches!(err, KeyringError::KeyUnavailable(ref m) if m.contains("DisabledException")),
            "{err:?}"
        );
        assert!(took <= BOUND + Duration::from_millis(500), "took {took:?}");
        assert!(matches!(
            local.ensure_live(&acme.id).await,
            Err(KmsError::KeyUnavailable(_))
        ));
        // Sealing fails closed too; the other tenant is untouched.
        assert!(matches!(
            kr.seal(&sa, "prompt", "p2", b"x").await,
            Err(KeyringError::KeyUnavailable(_))
        ));
        assert_eq!(
            &*kr.open(&sg, "prompt", "p1", &other).await.unwrap(),
            b"globex"
        );

        kms.enable(&arn).await;
        let (opened, _) = until(BOUND * 5, "the record opens again", || async {
            kr.open(&sa, "prompt", "p1", &sealed).await.ok()
        })
        .await;
        assert_eq!(&*opened, b"acme secret");
        local.ensure_live(&acme.id).await.unwrap();
        kr.seal(&sa, "prompt", "p2", b"x").await.unwrap();
    }

    pub async fn moving_to_the_customer_key_and_back_keeps_every_record_readable(
        store: &Store,
        kms: &Moto,
    ) {
        let master = Key::generate();
        let (kr, _) = keyring(store, &master);
        let acme = tenant(store, "acme").await;
        let sa = scope(&acme.id);
        let before = kr.seal(&sa, "prompt", "before", b"one").await.unwrap();
        let arn = kms.create_key().await;

        let status = kr
            .use_customer_key(&admin(), &acme.id, Some(&kms.customer_key(&arn)))
            .await
            .unwrap();
        // Every data key re-wrapped, the platform-wrapped version retired.
        assert_eq!(status.pending_rewrap, 0);
        let rows = kek_rows(store, &acme).await;
        assert_eq!(
            rows.len(),
            1,
            "{:?}",
            rows.iter().map(|r| &r.1).collect::<Vec<_>>()
        );
        assert_eq!(rows[0].1, format!("aws:{arn}"));
        let during = kr.seal(&sa, "prompt", "during", b"two").await.unwrap();
        let (fresh, _) = keyring(store, &master);
        assert_eq!(
            &*fresh.open(&sa, "prompt", "before", &before).await.unwrap(),
            b"one"
        );

        let status = kr.use_customer_key(&admin(), &acme.id, None).await.unwrap();
        assert_eq!(status.wrapped_by.as_deref(), Some("local"));
        assert_eq!(status.customer_key, None);
        assert!(kek_rows(store, &acme).await.iter().all(|r| r.1 == "local"));
        // Back on the platform's key, nothing depends on the customer's any more: with it
        // disabled, a fresh process opens both records.
        kms.disable(&arn).await;
        let (fresh, _) = keyring(store, &master);
        assert_eq!(
            &*fresh.open(&sa, "prompt", "before", &before).await.unwrap(),
            b"one"
        );
        assert_eq!(
            &*fresh.open(&sa, "prompt", "during", &during).await.unwrap(),
            b"two"
        );
    }

    pub async fn a_key_the_gateway_cannot_use_is_refused_before_the_switch(
        store: &Store,
        kms: &Moto,
    ) {
        let master = Key::generate();
        let (kr, _) = keyring(store, &master);
        let acme = tenant(store, "acme").await;
        let sa = scope(&acme.id);
        let sealed = kr.seal(&sa, "prompt", "p", b"kept").await.unwrap();
        let arn = kms.create_key().await;
        kms.disable(&arn).await;
        let err = kr
            .use_customer_key(&admin(), &acme.id, Some(&kms.customer_key(&arn)))
            .await
            .unwrap_err();
        assert!(matches!(err, KeyringError::KeyUnavailable(_)), "{err:?}");
        let status = kr.status(&admin(), &acme.id).await.unwrap();
        assert_eq!(status.wrapped_by.as_deref(), Some("local"));
        assert_eq!(status.customer_key, None);
        let (fresh, _) = keyring(store, &master);
        assert_eq!(
            &*fresh.open(&sa, "prompt", "p", &sealed).await.unwrap(),
            b"kept"
        );
    }
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(kms) = super::moto::moto().await else { return };
                    let h = super::open_sqlite().await;
                    super::cases::$case(&h.store, &kms).await;
                    h.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(kms) = super::moto::moto().await else { return };
                    let Some(h) = super::open_pg().await else { return };
                    super::cases::$case(&h.store, &kms).await;
                    h.cleanup().await;
                }
            )*
        }
    };
}

suite!(
    a_customer_key_wraps_the_kek_bound_to_tenant_and_version,
    disabling_the_key_makes_records_unreadable_within_the_bound_and_enabling_restores_them,
    moving_to_the_customer_key_and_back_keeps_every_record_readable,
    a_key_the_gateway_cannot_use_is_refused_before_the_switch,
);
