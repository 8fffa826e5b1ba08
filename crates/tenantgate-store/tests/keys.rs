//! Envelope encryption on both backends: ciphertexts bound to tenant and row, tamper
//! detection, rotation, crypto-shredding down to the bytes of the database files.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{admin, new_tenant, open_pg, open_sqlite, scope};
use std::sync::Arc;
use tenantgate_core::{Tenant, TenantId};
use tenantgate_crypto::{Key, MasterKey};
use tenantgate_store::{Db, Keyring, KeyringError, KeyringOptions, LocalKms, Store};

fn keyring(store: &Store, master: &Key, cache: bool) -> Keyring {
    let kms = LocalKms::new(
        store.clone(),
        MasterKey::from_key(master.clone()),
        std::time::Duration::from_secs(60),
    );
    Keyring::new(
        store.clone(),
        Arc::new(kms),
        KeyringOptions {
            cache,
            // Retire previous versions as soon as the re-wrap is done; the grace has its own test.
            retire_grace: std::time::Duration::ZERO,
            ..Default::default()
        },
    )
}

async fn tenants(store: &Store) -> (Tenant, Tenant) {
    let a = admin();
    let p = store.platform(&a);
    (
        p.create_tenant(&new_tenant("acme")).await.unwrap(),
        p.create_tenant(&new_tenant("globex")).await.unwrap(),
    )
}

async fn dek_kek_version(store: &Store, tenant: &TenantId, sealed: &[u8]) -> i64 {
    let (dek_id, _) = tenantgate_crypto::envelope::parse(sealed).unwrap();
    let q = "SELECT kek_version FROM tenant_data_keys WHERE tenant_id = $1 AND id = $2";
    match store.db() {
        Db::Sqlite(p) => sqlx::query_scalar(q)
            .bind(tenant.as_str())
            .bind(&dek_id[..])
            .fetch_one(p)
            .await
            .unwrap(),
        Db::Postgres(p) => {
            let mut tx = p.begin().await.unwrap();
            sqlx::query("SELECT set_config('tenantgate.tenant_id', $1, true)")
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query_scalar(q)
                .bind(tenant.as_str())
                .bind(&dek_id[..])
                .fetch_one(&mut *tx)
                .await
                .unwrap()
        }
    }
}

mod cases {
    use super::*;

    pub async fn a_ciphertext_opens_only_for_its_tenant_kind_and_row(store: &Store) {
        let (ta, tb) = tenants(store).await;
        let (sa, sb) = (scope(&ta.id), scope(&tb.id));
        let kr = keyring(store, &Key::generate(), true);
        let sealed = kr
            .seal(&sa, "prompt", "p1", b"acme's system prompt")
            .await
            .unwrap();
        assert_eq!(
            &*kr.open(&sa, "prompt", "p1", &sealed).await.unwrap(),
            b"acme's system prompt"
        );
        // The attacks: the same bytes moved to B's row, to another row, to another kind.
        assert!(matches!(
            kr.open(&sb, "prompt", "p1", &sealed).await,
            Err(KeyringError::Undecryptable)
        ));
        assert!(matches!(
            kr.open(&sa, "prompt", "p2", &sealed).await,
            Err(KeyringError::Undecryptable)
        ));
        assert!(matches!(
            kr.open(&sa, "kb_chunk", "p1", &sealed).await,
            Err(KeyringError::Undecryptable)
        ));
        // B holds its own data key for the kind; A's ciphertext still does not open under it.
        let b_sealed = kr.seal(&sb, "prompt", "p1", b"globex").await.unwrap();
        assert!(matches!(
            kr.open(&sb, "prompt", "p1", &sealed).await,
            Err(KeyringError::Undecryptable)
        ));
        assert!(matches!(
            kr.open(&sa, "prompt", "p1", &b_sealed).await,
            Err(KeyringError::Undecryptable)
        ));
        // No cache: the same answers come from the KMS path.
        let cold = keyring(store, &Key::generate(), false);
        assert!(
            matches!(
                cold.open(&sa, "prompt", "p1", &sealed).await,
                Err(KeyringError::Undecryptable)
            ),
            "another master key must not open it"
        );
    }

    pub async fn any_altered_byte_is_detected(store: &Store) {
        let (ta, _) = tenants(store).await;
        let sa = scope(&ta.id);
        let kr = keyring(store, &Key::generate(), true);
        let sealed = kr.seal(&sa, "prompt", "p1", b"tamper me").await.unwrap();
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(
                kr.open(&sa, "prompt", "p1", &t).await.is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        assert!(kr
            .open(&sa, "prompt", "p1", &sealed[..sealed.len() - 1])
            .await
            .is_err());
        assert!(kr.open(&sa, "prompt", "p1", b"").await.is_err());
    }

    pub async fn rotation_keeps_old_records_readable_and_seals_new_ones_under_the_new_version(
        store: &Store,
    ) {
        let (ta, _) = tenants(store).await;
        let sa = scope(&ta.id);
        let master = Key::generate();
        let kr = keyring(store, &master, true);
        let a = admin();
        let old = kr
            .seal(&sa, "prompt", "old", b"before rotation")
            .await
            .unwrap();
        assert_eq!(dek_kek_version(store, &ta.id, &old).await, 1);
        // Rotate in the KMS only: the re-wrap has not run yet, the old version must still read.
        assert_eq!(kr.kms().rotate(&ta.id).await.unwrap(), 2);
        let st = kr.status(&a, &ta.id).await.unwrap();
        assert_eq!(
            (st.current_version, st.versions.clone(), st.pending_rewrap),
            (Some(2), vec![1, 2], 1)
        );
        let fresh = keyring(store, &master, false);
        assert_eq!(
            &*fresh.open(&sa, "prompt", "old", &old).await.unwrap(),
            b"before rotation"
        );
        let new = fresh
            .seal(&sa, "prompt", "new", b"after rotation")
            .await
            .unwrap();
        assert_eq!(dek_kek_version(store, &ta.id, &new).await, 2);
        // Background re-wrap completes: previous version destroyed, everything still readable.
        assert_eq!(fresh.rewrap(&a, &ta.id, usize::MAX).await.unwrap(), 1);
        let st = fresh.status(&a, &ta.id).await.unwrap();
        assert_eq!((st.versions.clone(), st.pending_rewrap), (vec![2], 0));
        assert_eq!(dek_kek_version(store, &ta.id, &old).await, 2);
        let cold = keyring(store, &master, false);
        assert_eq!(
            &*cold.open(&sa, "prompt", "old", &old).await.unwrap(),
            b"before rotation"
        );
        assert_eq!(
            &*cold.open(&sa, "prompt", "new", &new).await.unwrap(),
            b"after rotation"
        );
        // The one-call path: rotate + re-wrap + retire.
        let st = cold.rotate(&a, &ta.id).await.unwrap();
        assert_eq!(
            (st.current_version, st.versions, st.pending_rewrap),
            (Some(3), vec![3], 0)
        );
        assert_eq!(
            &*keyring(store, &master, false)
                .open(&sa, "prompt", "old", &old)
                .await
                .unwrap(),
            b"before rotation"
        );
    }

    pub async fn shredding_makes_every_record_undecryptable(store: &Store) {
        let (ta, tb) = tenants(store).await;
        let (sa, sb) = (scope(&ta.id), scope(&tb.id));
        let master = Key::generate();
        let kr = keyring(store, &master, true);
        kr.put_secret(&sa, "provider_key", b"sk-acme-PLAINTEXT-MARKER-4411")
            .await
            .unwrap();
        kr.put_secret(&sb, "provider_key", b"sk-globex")
            .await
            .unwrap();
        assert_eq!(
            &*kr.get_secret(&sa, "provider_key").await.unwrap(),
            b"sk-acme-PLAINTEXT-MARKER-4411"
        );
        kr.shred(&admin(), &ta.id).await.unwrap();
        assert!(matches!(
            kr.get_secret(&sa, "provider_key").await,
            Err(KeyringError::Undecryptable)
        ));
        let cold = keyring(store, &master, false);
        assert!(matches!(
            cold.get_secret(&sa, "provider_key").await,
            Err(KeyringError::Undecryptable)
        ));
        assert!(cold.kms().versions(&ta.id).await.unwrap().is_empty());
        // The other tenant is untouched.
        assert_eq!(
            &*cold.get_secret(&sb, "provider_key").await.unwrap(),
            b"sk-globex"
        );
    }

    pub async fn data_keys_are_bounded_by_use_count_and_cache_setting(store: &Store) {
        let (ta, _) = tenants(store).await;
        let sa = scope(&ta.id);
        let kms = LocalKms::new(
            store.clone(),
            MasterKey::from_key(Key::generate()),
            std::time::Duration::from_secs(60),
        );
        let kr = Keyring::new(
            store.clone(),
            Arc::new(kms),
            KeyringOptions {
                cache: true,
                dek_max_uses: 2,
                ..Default::default()
            },
        );
        let mut ids = std::collections::HashSet::new();
        for i in 0..6 {
            let s = kr.seal(&sa, "prompt", &i.to_string(), b"x").await.unwrap();
            ids.insert(tenantgate_crypto::envelope::parse(&s).unwrap().0);
        }
        assert_eq!(ids.len(), 3, "two records per data key");
        assert_eq!(kr.status(&admin(), &ta.id).await.unwrap().data_keys, 3);
    }

    pub async fn a_superseded_version_outlives_the_rewrap_by_the_grace_period(store: &Store) {
        let (ta, _) = tenants(store).await;
        let sa = scope(&ta.id);
        let master = Key::generate();
        let kms = LocalKms::new(
            store.clone(),
            MasterKey::from_key(master.clone()),
            std::time::Duration::from_secs(60),
        );
        let graceful = Keyring::new(
            store.clone(),
            Arc::new(kms),
            KeyringOptions {
                cache: false,
                ..Default::default()
            },
        );
        let old = graceful.seal(&sa, "prompt", "old", b"v1").await.unwrap();
        let st = graceful.rotate(&admin(), &ta.id).await.unwrap();
        // Re-wrapped, but version 1 stays (default grace) for seals that raced the rotation.
        assert_eq!(
            (st.current_version, st.versions, st.pending_rewrap),
            (Some(2), vec![1, 2], 0)
        );
        assert_eq!(
            &*graceful.open(&sa, "prompt", "old", &old).await.unwrap(),
            b"v1"
        );
        // Once the grace is over the next pass destroys it.
        let impatient = keyring(store, &master, false);
        impatient
            .rewrap(&admin(), &ta.id, usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            impatient.status(&admin(), &ta.id).await.unwrap().versions,
            vec![2]
        );
        assert_eq!(
            &*impatient.open(&sa, "prompt", "old", &old).await.unwrap(),
            b"v1"
        );
    }

    pub async fn prompts_are_versioned_sealed_and_tenant_bound(store: &Store) {
        use tenantgate_store::prompts::{ImportSet, NewVersion};
        let (ta, tb) = tenants(store).await;
        let (sa, sb) = (scope(&ta.id), scope(&tb.id));
        let kr = keyring(store, &Key::generate(), true);
        let pa = kr.prompts(store, &sa);
        assert_eq!(
            pa.push("support", "one", "alice", false)
                .await
                .unwrap()
                .version,
            1
        );
        assert_eq!(
            pa.push("support", "two", "bob", false)
                .await
                .unwrap()
                .version,
            2
        );
        assert_eq!(
            pa.get("support", None).await.unwrap().template,
            "one",
            "the first version stays active until activated"
        );
        pa.activate("support", 2).await.unwrap();
        assert_eq!(pa.get("support", None).await.unwrap().template, "two");
        assert!(matches!(
            pa.activate("support", 3).await,
            Err(KeyringError::NotFound)
        ));
        // Tenant B sees none of it, by any name or version.
        let pb = kr.prompts(store, &sb);
        assert!(pb.list().await.unwrap().is_empty());
        assert!(matches!(
            pb.get("support", Some(1)).await,
            Err(KeyringError::NotFound)
        ));
        assert!(matches!(
            pb.activate("support", 1).await,
            Err(KeyringError::NotFound)
        ));
        // An import naming an existing prompt writes nothing at all.
        let set = ImportSet {
            versions: vec![
                NewVersion {
                    name: "fresh".into(),
                    template: "f".into(),
                    author: "x".into(),
                    created_at_ms: Some(1),
                },
                NewVersion {
                    name: "support".into(),
                    template: "dup".into(),
                    author: "x".into(),
                    created_at_ms: Some(1),
                },
            ],
            active: vec![],
            settings: None,
        };
        let got = pa.import(&set).await;
        assert!(
            matches!(
                got,
                Err(KeyringError::Store(tenantgate_store::StoreError::Conflict(
                    _
                )))
            ),
            "{got:?}"
        );
        assert_eq!(
            pa.list().await.unwrap().len(),
            1,
            "the failed import left no half-written prompt"
        );
        assert!(
            pa.settings().await.unwrap().is_some(),
            "pushing created the settings (and canary)"
        );
        assert!(pb.settings().await.unwrap().is_none());
    }

    pub async fn concurrent_first_use_creates_one_key_version(store: &Store) {
        let (ta, _) = tenants(store).await;
        let kr = Arc::new(keyring(store, &Key::generate(), false));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (kr, id) = (kr.clone(), ta.id.clone());
            #[expect(
                clippy::disallowed_methods,
                reason = "the test drives the server from outside; its tasks are not server background work"
            )]
            tasks.push(tokio::spawn(async move {
                let s = scope(&id);
                let sealed = kr
                    .seal(&s, "prompt", &i.to_string(), b"race")
                    .await
                    .unwrap();
                assert_eq!(
                    &*kr.open(&s, "prompt", &i.to_string(), &sealed)
                        .await
                        .unwrap(),
                    b"race"
                );
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(kr.kms().versions(&ta.id).await.unwrap().len(), 1);
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
    a_ciphertext_opens_only_for_its_tenant_kind_and_row,
    any_altered_byte_is_detected,
    rotation_keeps_old_records_readable_and_seals_new_ones_under_the_new_version,
    shredding_makes_every_record_undecryptable,
    data_keys_are_bounded_by_use_count_and_cache_setting,
    a_superseded_version_outlives_the_rewrap_by_the_grace_period,
    prompts_are_versioned_sealed_and_tenant_bound,
    concurrent_first_use_creates_one_key_version,
);

/// SQLite: after shredding, the database files hold neither the plaintext nor the destroyed
/// key material, byte for byte.
#[tokio::test]
async fn after_shredding_the_sqlite_files_hold_no_plaintext_and_no_key_material() {
    let h = open_sqlite().await;
    let store = &h.store;
    let (ta, _) = tenants(store).await;
    let sa = scope(&ta.id);
    let kr = keyring(store, &Key::generate(), true);
    const MARKER: &[u8] = b"PLAINTEXT-MARKER-sk-live-9f8e7d";
    kr.put_secret(&sa, "provider_key", MARKER).await.unwrap();
    let Db::Sqlite(pool) = store.db() else {
        unreachable!()
    };
    let keks: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT wrapped FROM tenant_keks WHERE tenant_id = ?")
            .bind(ta.id.as_str())
            .fetch_all(pool)
            .await
            .unwrap();
    let deks: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT wrapped FROM tenant_data_keys WHERE tenant_id = ?")
            .bind(ta.id.as_str())
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(!keks.is_empty() && !deks.is_empty());
    let dir = h._dir.as_ref().unwrap().path().to_owned();
    let files = || -> Vec<u8> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            all.extend(std::fs::read(e.path()).unwrap());
        }
        all
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(
        !contains(&files(), MARKER),
        "plaintext reached the database files"
    );

    kr.shred(&admin(), &ta.id).await.unwrap();
    let bytes = files();
    assert!(!contains(&bytes, MARKER));
    for k in keks.iter().chain(deks.iter()) {
        assert!(
            !contains(&bytes, k),
            "destroyed key material is still in the database files"
        );
    }
    // The sealed record itself is still there, and opens by no path.
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT sealed FROM tenant_secrets WHERE tenant_id = ?")
            .bind(ta.id.as_str())
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(contains(&bytes, &sealed[..24]));
    assert!(keyring(store, &Key::generate(), false)
        .open(&sa, "tenant_secret", "provider_key", &sealed)
        .await
        .is_err());
    h.cleanup().await;
}
