//! Unit tests of the index cache: chunk payloads, and merges as they are queued.

use super::*;

#[test]
fn chunk_payload_round_trips() {
    let (t, v) = decode_chunk(&encode_chunk("héllo", &[0.5, -1.0])).unwrap();
    assert_eq!((t.as_str(), v), ("héllo", vec![0.5, -1.0]));
    assert!(decode_chunk(&[9, 0, 0, 0, b'a']).is_none());
}

/// A merge queued behind another holds its knowledge base's key, not its index (outside
/// `rag.max_resident_bytes`); when its turn comes an index evicted or forgotten meanwhile
/// is not merged; and shutdown ends it while it waits.
#[tokio::test]
async fn a_queued_merge_holds_no_index_and_ends_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::config::Config::default();
    cfg.database.url = format!("sqlite:{}", dir.path().join("tg.db").display());
    cfg.encryption.master_key_file = dir.path().join("master.key");
    cfg.rag.index_dir = dir.path().join("indexes");
    cfg.rag.merge_after_chunks = 1;
    let store = tenantgate_store::Store::open(&tenantgate_store::StoreOptions::new(
        cfg.database.url.clone(),
    ))
    .await
    .unwrap();
    let keyring = Arc::new(crate::control::keyring(&store, &cfg.encryption).unwrap());
    let tasks = TaskTracker::new();
    let k = Knowledge::new(&cfg.rag, tasks.clone(), keyring);
    // The scope comes from the authentication stage, as every scope does: a tenant and a key
    // made as the CLI makes them, the key verified against the snapshot.
    #[expect(clippy::disallowed_methods, reason = "test: plays the CLI operator")]
    let admin = tenantgate_core::PlatformAdmin::local_operator("test");
    let tenant = store
        .platform(&admin)
        .create_tenant(&tenantgate_core::NewTenant {
            slug: "acme".into(),
            display_name: "Acme".into(),
            plan: tenantgate_core::PlanTier::Pro,
            isolation: tenantgate_core::IsolationTier::Namespace,
            allowed_models: vec![],
            max_tokens_per_request: None,
        })
        .await
        .unwrap()
        .id;
    let secret =
        crate::identity::keys::ServerSecret::load_or_create(&dir.path().join("secret")).unwrap();
    let spec = crate::control::KeySpec {
        role: tenantgate_core::Role::Member,
        name: None,
        end_user: None,
        expires_at_ms: None,
    };
    let (_, key) = crate::control::create_key(&store, &admin, &secret, &tenant, spec)
        .await
        .unwrap();
    let snap = store.platform(&admin).auth_snapshot().await.unwrap();
    let index = crate::identity::auth::AuthIndex::build(snap);
    let scope =
        crate::identity::auth::authenticate_key(&index, &secret, &key, crate::clock::now_ms())
            .unwrap()
            .principal
            .scope;
    let added = resident::tests::chunk(11, "doc_2", 0);
    let seg = Segment::new(2, "doc_2".into(), vec![(added, vec![1.0, 1.0])]).unwrap();
    let ix = Arc::new(resident::tests::base().updated(4, vec![seg], &HashSet::new()));
    assert!(ix.needs_merge(1));

    // Another merge holds the turn.
    let turn = k.shared.merges.acquire().await.unwrap();
    assert!(k.shared.insert(&tenant, "kb_a", ix.clone(), 0));
    k.merge_if_due(&scope, "kb_a", &ix);
    assert_eq!(
        Arc::strong_count(&ix),
        2,
        "the cache's and this test's only"
    );
    k.forget(&tenant, Some("kb_a"));
    drop(turn);
    tasks.close();
    tokio::time::timeout(std::time::Duration::from_secs(10), tasks.wait())
        .await
        .expect("the merge ended");
    assert_eq!(k.stats.merges.load(Ordering::Relaxed), 0);
    assert_eq!(Arc::strong_count(&ix), 1);

    // Queued again, then shutdown: it ends while the turn is still held.
    let turn = k.shared.merges.acquire().await.unwrap();
    let generation = k.shared.generation(&tenant);
    assert!(k.shared.insert(&tenant, "kb_a", ix.clone(), generation));
    k.merge_if_due(&scope, "kb_a", &ix);
    k.stop();
    tokio::time::timeout(std::time::Duration::from_secs(10), tasks.wait())
        .await
        .expect("shutdown ended the queued merge");
    drop(turn);
    assert_eq!(k.stats.merges.load(Ordering::Relaxed), 0);
}
