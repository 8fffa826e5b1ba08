//! Tenants' own provider endpoints on both backends: set, listed without the key, opened only
//! under the tenant's own scope, revisions that move with every change and reach the auth
//! snapshot, removal and offboarding.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{admin, new_tenant, open_pg, open_sqlite, scope};
use std::sync::Arc;
use tenantgate_crypto::{Key, MasterKey};
use tenantgate_store::endpoints::EndpointSecret;
use tenantgate_store::{Keyring, KeyringError, KeyringOptions, LocalKms, Store, StoreError};

fn keyring(store: &Store) -> Keyring {
    let kms = LocalKms::new(
        store.clone(),
        MasterKey::from_key(Key::generate()),
        std::time::Duration::from_secs(60),
    );
    Keyring::new(store.clone(), Arc::new(kms), KeyringOptions::default())
}

fn endpoint(base_url: &str, key: &str) -> EndpointSecret {
    EndpointSecret {
        base_url: base_url.into(),
        api_key: key.into(),
        api_version: None,
    }
}

mod cases {
    use super::*;

    pub async fn an_endpoint_opens_only_for_its_tenant_and_is_listed_without_its_key(
        store: &Store,
    ) {
        let a = admin();
        let p = store.platform(&a);
        let acme = p.create_tenant(&new_tenant("acme")).await.unwrap();
        let globex = p.create_tenant(&new_tenant("globex")).await.unwrap();
        let kr = keyring(store);
        let eps = kr.endpoints(store, &a);
        let mut azure = endpoint("https://acme.openai.azure.com", "sk-acme-azure");
        azure.api_version = Some("2024-10-21".into());
        let set = eps.set(&acme.id, "azure", &azure).await.unwrap();
        assert_eq!(set.revision, store.revision().await.unwrap());
        eps.set(
            &acme.id,
            "openai",
            &endpoint("https://acme.example/v1", "sk-acme-openai"),
        )
        .await
        .unwrap();

        let listed = eps.list(&acme.id).await.unwrap();
        let names: Vec<&str> = listed.iter().map(|e| e.provider.as_str()).collect();
        assert_eq!(names, ["azure", "openai"]);
        assert_eq!(listed[0].base_url, "https://acme.openai.azure.com");
        assert_eq!(listed[0].api_version.as_deref(), Some("2024-10-21"));
        let shown = serde_json::to_string(&listed).unwrap();
        assert!(!shown.contains("sk-acme"), "{shown}");
        assert!(eps.list(&globex.id).await.unwrap().is_empty());

        let opened = kr.open_endpoint(&scope(&acme.id), "azure").await.unwrap();
        assert_eq!(opened.base_url, "https://acme.openai.azure.com");
        assert_eq!(opened.api_key, "sk-acme-azure");
        assert_eq!(opened.api_version.as_deref(), Some("2024-10-21"));
        // Another tenant's endpoint is the same as none.
        assert!(matches!(
            kr.open_endpoint(&scope(&globex.id), "azure").await,
            Err(KeyringError::NotFound)
        ));
        // The snapshot lists names and revisions, by tenant then provider.
        let snap = p.auth_snapshot().await.unwrap();
        let revs: Vec<(String, i64)> = snap
            .endpoints
            .iter()
            .filter(|(t, ..)| *t == acme.id)
            .map(|(_, p, r)| (p.clone(), *r))
            .collect();
        assert_eq!(
            revs,
            [
                ("azure".to_owned(), listed[0].revision),
                ("openai".to_owned(), listed[1].revision)
            ]
        );
        assert!(listed[0].revision < listed[1].revision);
        // A tenant that does not exist has nothing set.
        let ghost =
            tenantgate_core::TenantId::parse("00000000-0000-7000-8000-000000000000").unwrap();
        assert!(matches!(
            eps.set(&ghost, "openai", &endpoint("https://x.example", "k"))
                .await,
            Err(KeyringError::Store(StoreError::NotFound))
        ));
    }

    pub async fn every_change_moves_the_revision_and_removal_leaves_nothing_to_open(store: &Store) {
        let a = admin();
        let p = store.platform(&a);
        let acme = p.create_tenant(&new_tenant("acme")).await.unwrap();
        let globex = p.create_tenant(&new_tenant("globex")).await.unwrap();
        let kr = keyring(store);
        let eps = kr.endpoints(store, &a);
        let first = eps
            .set(
                &acme.id,
                "openai",
                &endpoint("https://one.example/v1", "sk-one"),
            )
            .await
            .unwrap();
        let second = eps
            .set(
                &acme.id,
                "openai",
                &endpoint("https://two.example/v1", "sk-two"),
            )
            .await
            .unwrap();
        assert!(second.revision > first.revision);
        let opened = kr.open_endpoint(&scope(&acme.id), "openai").await.unwrap();
        assert_eq!(
            (opened.base_url.as_str(), opened.api_key.as_str()),
            ("https://two.example/v1", "sk-two")
        );
        eps.set(
            &globex.id,
            "openai",
            &endpoint("https://g.example/v1", "sk-g"),
        )
        .await
        .unwrap();

        let before = store.revision().await.unwrap();
        eps.remove(&acme.id, "openai").await.unwrap();
        assert!(store.revision().await.unwrap() > before);
        assert!(eps.list(&acme.id).await.unwrap().is_empty());
        assert!(matches!(
            kr.open_endpoint(&scope(&acme.id), "openai").await,
            Err(KeyringError::NotFound)
        ));
        assert!(matches!(
            eps.remove(&acme.id, "openai").await,
            Err(StoreError::NotFound)
        ));
        let snap = p.auth_snapshot().await.unwrap();
        assert!(snap.endpoints.iter().all(|(t, ..)| *t != acme.id));

        // Offboarding removes the tenant's endpoints and nobody else's.
        eps.set(
            &acme.id,
            "openai",
            &endpoint("https://three.example/v1", "sk-3"),
        )
        .await
        .unwrap();
        eps.set(
            &acme.id,
            "anthropic",
            &endpoint("https://three.example", "sk-3a"),
        )
        .await
        .unwrap();
        assert_eq!(eps.remove_all(&acme.id).await.unwrap(), 2);
        assert!(eps.list(&acme.id).await.unwrap().is_empty());
        for provider in ["openai", "anthropic"] {
            assert!(matches!(
                kr.open_endpoint(&scope(&acme.id), provider).await,
                Err(KeyringError::NotFound)
            ));
        }
        assert_eq!(eps.list(&globex.id).await.unwrap().len(), 1);
        assert_eq!(
            kr.open_endpoint(&scope(&globex.id), "openai")
                .await
                .unwrap()
                .api_key,
            "sk-g"
        );
    }
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let h = super::open_sqlite().await;
                    super::cases::$case(&h.store).await;
                    h.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(h) = super::open_pg().await else { return };
                    super::cases::$case(&h.store).await;
                    h.cleanup().await;
                }
            )*
        }
    };
}

suite!(
    an_endpoint_opens_only_for_its_tenant_and_is_listed_without_its_key,
    every_change_moves_the_revision_and_removal_leaves_nothing_to_open,
);
