//! Knowledge bases change incrementally: an uploaded document is searchable at once and a
//! deleted one is never returned, with no index rebuilt inside a request (the index cache's
//! counters tell builds from incremental inserts and deletes); a merge rebuilds the graph in
//! the background and swaps it in while searches go on; another replica catches up from the
//! documents changed since its revision; and none of it reaches another tenant.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::TestGateway;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

const FILLER: &str = "Office plants are watered on Fridays by the facilities team. \
The canteen serves soup on Tuesdays and pasta on Wednesdays. \
Parking permits are renewed every January at the front desk. \
The library lends laptops for up to three days at a time. \
Fire drills happen twice a year and take twenty minutes. \
Visitors sign in at reception and wear a badge all day.";

const SECRET: &str = "The refund code is ZEPHYR-RIVER-42 and refunds take fourteen days.";

async fn create_kb(gw: &TestGateway, admin: &str, name: &str) -> String {
    let r = gw
        .post(
            "/tenant/v1/knowledge-bases",
            admin,
            &json!({"name": name, "chunk_tokens": 16}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn upload(gw: &TestGateway, admin: &str, kb: &str, name: &str, text: &str) -> String {
    let r = gw
        .http
        .post(format!(
            "{}/tenant/v1/knowledge-bases/{kb}/documents?name={name}",
            gw.url
        ))
        .bearer_auth(admin)
        .header("content-type", "text/plain")
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn delete_doc(gw: &TestGateway, admin: &str, kb: &str, doc: &str) {
    let r = gw
        .http
        .delete(format!(
            "{}/tenant/v1/knowledge-bases/{kb}/documents/{doc}",
            gw.url
        ))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The texts of the top `k` hits; panics on anything but 200.
async fn search(gw: &TestGateway, key: &str, kb: &str, query: &str, k: usize) -> Vec<String> {
    let (status, texts) = try_search(gw, key, kb, query, k).await;
    assert_eq!(status, 200);
    texts
}

async fn try_search(
    gw: &TestGateway,
    key: &str,
    kb: &str,
    query: &str,
    k: usize,
) -> (u16, Vec<String>) {
    let r = gw
        .post(
            &format!("/tenant/v1/knowledge-bases/{kb}/search"),
            key,
            &json!({"query": query, "top_k": k}),
        )
        .await;
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    let texts = v["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| h["text"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (status, texts)
}

/// (builds, inserts, deletes, merges) of a gateway's index cache.
fn counters(gw: &TestGateway) -> (u64, u64, u64, u64) {
    let s = &gw.state.knowledge().stats;
    (
        s.builds.load(Relaxed),
        s.inserts.load(Relaxed),
        s.deletes.load(Relaxed),
        s.merges.load(Relaxed),
    )
}

fn has_secret(texts: &[String]) -> bool {
    texts.iter().any(|t| t.contains("ZEPHYR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_searchable_at_once_and_a_delete_never_returned_without_a_rebuild() {
    // No merge in this test: what is checked is the incremental path alone.
    let gw = TestGateway::start_with(|c| c.rag.merge_after_chunks = 1_000_000).await;
    let (acme, key) = gw.tenant("acme", &["*"], None).await;
    let admin = gw.admin_key(&acme).await;
    create_kb(&gw, &admin, "handbook").await;
    for i in 0..4 {
        upload(&gw, &admin, "handbook", &format!("filler{i}.txt"), FILLER).await;
    }
    assert!(!has_secret(
        &search(&gw, &key, "handbook", "refund code", 5).await
    ));
    assert_eq!(counters(&gw), (1, 0, 0, 0), "one build, on first use");

    let doc = upload(&gw, &admin, "handbook", "refunds.txt", SECRET).await;
    let (builds, inserts, _, _) = counters(&gw);
    assert_eq!(builds, 1, "the upload did not rebuild the index");
    assert!(inserts >= 1, "the upload's chunks were inserted: {inserts}");
    // at once: the very next search, which runs no build either
    assert!(has_secret(
        &search(&gw, &key, "handbook", "refund code", 3).await
    ));
    assert_eq!(counters(&gw).0, 1);

    delete_doc(&gw, &admin, "handbook", &doc).await;
    for _ in 0..20 {
        assert!(!has_secret(
            &search(&gw, &key, "handbook", "refund code ZEPHYR", 20).await
        ));
    }
    let (builds, _, deletes, merges) = counters(&gw);
    assert_eq!((builds, deletes, merges), (1, 1, 0));

    // A deleted document of the graph itself (built in, not added since) is skipped too.
    let gw = gw.restart().await;
    let doc = upload(&gw, &admin, "handbook", "refunds.txt", SECRET).await;
    assert!(has_secret(
        &search(&gw, &key, "handbook", "refund code", 3).await
    ));
    let after_restart = counters(&gw);
    assert_eq!(
        after_restart.0, 0,
        "the file was loaded and caught up: {after_restart:?}"
    );
    delete_doc(&gw, &admin, "handbook", &doc).await;
    assert!(!has_secret(
        &search(&gw, &key, "handbook", "refund code ZEPHYR", 20).await
    ));
    assert_eq!(counters(&gw).0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_merge_swaps_in_while_searches_go_on() {
    let gw = TestGateway::start_with(|c| c.rag.merge_after_chunks = 3).await;
    let (acme, key) = gw.tenant("acme", &["*"], None).await;
    let admin = gw.admin_key(&acme).await;
    let kb = create_kb(&gw, &admin, "handbook").await;
    upload(&gw, &admin, "handbook", "filler.txt", FILLER).await;
    search(&gw, &key, "handbook", "plants", 1).await;
    assert_eq!(counters(&gw).0, 1);

    // More chunks than the threshold: a merge starts in the background.
    let long = format!("{SECRET} {FILLER} {FILLER}");
    upload(&gw, &admin, "handbook", "refunds.txt", &long).await;
    let started = Instant::now();
    let mut searched = 0;
    loop {
        // every search meanwhile, before, during or after the swap, sees the new document
        assert!(has_secret(
            &search(&gw, &key, "handbook", "refund code", 3).await
        ));
        searched += 1;
        if counters(&gw).3 >= 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no merge swapped in"
        );
    }
    assert!(searched >= 1);
    let ix = gw.state.knowledge().resident_index(&acme.id, &kb).unwrap();
    assert_eq!(
        (ix.delta_chunks(), ix.deleted_chunks()),
        (0, 0),
        "the merged graph holds every chunk"
    );
    assert_eq!(
        counters(&gw).0,
        1,
        "a merge is not a build inside a request"
    );
    assert!(has_secret(
        &search(&gw, &key, "handbook", "refund code", 3).await
    ));

    // The merged index is what the file holds: a restart loads it, builds nothing.
    let file = gw
        .config
        .rag
        .index_dir
        .join(acme.id.as_str())
        .join(format!("{kb}.idx"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let gw = loop {
        // the merge writes its file after the swap
        if std::fs::metadata(&file).is_ok() {
            break gw.restart().await;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(has_secret(
        &search(&gw, &key, "handbook", "refund code", 3).await
    ));
    let s = &gw.state.knowledge().stats;
    assert_eq!((s.builds.load(Relaxed), s.loads.load(Relaxed)), (0, 1));
}

/// A second replica on `one`'s database and keys, with its own index directory.
async fn replica_of(one: &TestGateway, index_dir: &std::path::Path) -> TestGateway {
    let c = one.config.clone();
    TestGateway::start_with(move |r| {
        r.rag.index_dir = index_dir.to_path_buf();
        r.rag.merge_after_chunks = 1_000_000;
        r.database.url = c.database.url.clone();
        r.server.secret_file = c.server.secret_file.clone();
        r.encryption.master_key_file = c.encryption.master_key_file.clone();
        r.audit.signing_key_file = c.audit.signing_key_file.clone();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_catches_up_incrementally_and_other_tenants_stay_out() {
    let a = TestGateway::start_with(|c| c.rag.merge_after_chunks = 1_000_000).await;
    let b_indexes = tempfile::tempdir().unwrap();
    let b = replica_of(&a, b_indexes.path()).await;
    let (acme, key) = a.tenant("acme", &["*"], None).await;
    let admin = a.admin_key(&acme).await;
    let (globex, globex_key) = a.tenant("globex", &["*"], None).await;
    let globex_admin = a.admin_key(&globex).await;
    let acme_kb = create_kb(&a, &admin, "handbook").await;
    create_kb(&a, &globex_admin, "handbook").await;
    upload(&a, &admin, "handbook", "filler.txt", FILLER).await;
    upload(&a, &globex_admin, "handbook", "filler.txt", FILLER).await;
    b.wait_for_revision().await;
    search(&b, &key, "handbook", "plants", 1).await;
    search(&b, &globex_key, "handbook", "plants", 1).await;
    assert_eq!(counters(&b).0, 2, "one build per knowledge base on b");

    // Uploaded through a: b's resident index is older than b's snapshot once it reloads, and
    // catches up from the new document's rows, without a build.
    let doc = upload(&a, &admin, "handbook", "refunds.txt", SECRET).await;
    b.wait_for_revision().await;
    assert!(has_secret(
        &search(&b, &key, "handbook", "refund code", 3).await
    ));
    let (builds, inserts, _, _) = counters(&b);
    assert_eq!(builds, 2);
    assert!(inserts >= 1);

    // Another tenant: its own knowledge base of the same name never holds acme's chunk, and
    // acme's by id is not found, on either replica.
    for gw in [&a, &b] {
        for q in ["refund code", SECRET] {
            assert!(!has_secret(
                &search(gw, &globex_key, "handbook", q, 20).await
            ));
        }
        let (status, texts) = try_search(gw, &globex_key, &acme_kb, "refund code", 20).await;
        assert_eq!(status, 404);
        assert!(!has_secret(&texts));
    }

    // Deleted through a: b never returns it once its snapshot shows the deletion.
    delete_doc(&a, &admin, "handbook", &doc).await;
    b.wait_for_revision().await;
    assert!(!has_secret(
        &search(&b, &key, "handbook", "refund code ZEPHYR", 20).await
    ));
    let (builds, _, deletes, _) = counters(&b);
    assert_eq!((builds, deletes), (2, 1));
}

fn index_file(
    gw: &TestGateway,
    tenant: &tenantgate_core::TenantId,
    kb: &str,
) -> std::path::PathBuf {
    gw.config
        .rag
        .index_dir
        .join(tenant.as_str())
        .join(format!("{kb}.idx"))
}

/// Runs `f` up to its first wait (a file or store read in flight): whatever it does before that
/// is done, nothing after.
async fn poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> bool {
    let mut f = f;
    std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx).is_pending())).await
}

/// The race of a deletion with a request that read the index before it (a build from the rows,
/// or another replica's catch-up): the `forget` lands while the read is in flight, and what
/// the read made is put neither into memory nor onto disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_read_before_a_forget_is_not_put_back_in_memory_or_on_disk() {
    let a = TestGateway::start_with(|c| c.rag.merge_after_chunks = 1_000_000).await;
    let b_indexes = tempfile::tempdir().unwrap();
    let b = replica_of(&a, b_indexes.path()).await;
    let (acme, key) = a.tenant("acme", &["*"], None).await;
    let admin = a.admin_key(&acme).await;
    let kb_id = create_kb(&a, &admin, "handbook").await;
    upload(&a, &admin, "handbook", "filler.txt", FILLER).await;
    let doc = upload(&a, &admin, "handbook", "refunds.txt", SECRET).await;
    #[expect(
        clippy::disallowed_methods,
        reason = "test: the scope of a tenant the test created, to drive the index directly"
    )]
    let scope = tenantgate_core::TenantScope::from_verified_credential(acme.id.clone());
    let kb = a
        .state
        .store()
        .tenant(&scope)
        .knowledge_base(&kb_id)
        .await
        .unwrap();

    // A build (nothing resident, no file): forgotten while it reads.
    let k = a.state.knowledge();
    let mut build = std::pin::pin!(k.index(a.state.store(), a.state.keyring(), &scope, &kb));
    assert!(poll_once(build.as_mut()).await, "the build waits on a read");
    k.forget(&acme.id, Some(&kb_id));
    build.await.unwrap();
    assert!(k.resident_index(&acme.id, &kb_id).is_none());
    assert!(!index_file(&a, &acme.id, &kb_id).exists());

    // A catch-up on another replica (resident there, a deletion made through `a`): forgotten
    // while it reads the documents changed.
    b.wait_for_revision().await;
    search(&b, &key, "handbook", "plants", 1).await;
    assert!(index_file(&b, &acme.id, &kb_id).exists());
    delete_doc(&a, &admin, "handbook", &doc).await;
    let k = b.state.knowledge();
    let mut refresh = std::pin::pin!(k.refresh(b.state.store(), b.state.keyring(), &scope, &kb));
    assert!(
        poll_once(refresh.as_mut()).await,
        "the catch-up waits on a read"
    );
    k.forget(&acme.id, None);
    refresh.await;
    assert_eq!(k.resident(&acme.id), 0);
    assert!(!index_file(&b, &acme.id, &kb_id).exists());
    assert!(!b_indexes.path().join(acme.id.as_str()).exists());
}

/// A deletion is written to the index file at once (the file leaves the document's chunks out),
/// not at the next merge: a restart loads a file already without it, with nothing to catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_is_written_to_the_index_file_before_any_merge() {
    let gw = TestGateway::start_with(|c| c.rag.merge_after_chunks = 1_000_000).await;
    let (acme, key) = gw.tenant("acme", &["*"], None).await;
    let admin = gw.admin_key(&acme).await;
    let kb = create_kb(&gw, &admin, "handbook").await;
    // the secret a small share of the graph: its deletion is no reason for a merge
    for i in 0..4 {
        upload(&gw, &admin, "handbook", &format!("filler{i}.txt"), FILLER).await;
    }
    let doc = upload(&gw, &admin, "handbook", "refunds.txt", SECRET).await;
    // built with the secret in the graph, file written
    assert!(has_secret(
        &search(&gw, &key, "handbook", "refund code", 3).await
    ));
    let written = std::fs::read(index_file(&gw, &acme.id, &kb)).unwrap();
    delete_doc(&gw, &admin, "handbook", &doc).await;
    assert_eq!(
        counters(&gw),
        (1, 0, 1, 0),
        "deleted incrementally, no merge"
    );
    assert!(
        std::fs::read(index_file(&gw, &acme.id, &kb)).unwrap() != written,
        "the file was rewritten by the deletion"
    );

    let gw = gw.restart().await;
    assert!(!has_secret(
        &search(&gw, &key, "handbook", "refund code ZEPHYR", 20).await
    ));
    let s = &gw.state.knowledge().stats;
    assert_eq!(
        (
            s.loads.load(Relaxed),
            s.builds.load(Relaxed),
            s.deletes.load(Relaxed)
        ),
        (1, 0, 0),
        "the file was at the deletion's revision"
    );
    let ix = gw.state.knowledge().resident_index(&acme.id, &kb).unwrap();
    assert!(
        ix.deleted_chunks() >= 1,
        "still skipped in the graph until a merge"
    );
}
