//! Several gateways on one database. On PostgreSQL, a revocation, a plan change or a suspension
//! made through one replica's store reaches the others at commit (LISTEN/NOTIFY), with polling set far too slow to explain
//! it (needs `TENANTGATE_TEST_POSTGRES_URL`; skipped, saying so, without it). On SQLite, a
//! tenant deleted elsewhere loses its index files and resident indexes on every replica.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, TestGateway};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_apply_revocation_plan_changes_and_suspension_at_once() {
    let Some(url) = common::skip::backend_url("TENANTGATE_TEST_POSTGRES_URL") else {
        return;
    };
    let schema = format!("tg_gw_{:016x}", rand::random::<u64>());
    let pg = |c: &mut tenantgate_gateway::Config| {
        c.database.url = url.clone();
        c.database.pg_schema = schema.clone();
        c.database.max_connections = 2;
        c.auth.reload_interval_ms = 600_000; // polling cannot be what propagates changes here
    };
    let a = TestGateway::start_with(pg).await;
    let secret = a.config.server.secret_file.clone();
    let b = TestGateway::start_with(|c| {
        pg(c);
        c.server.secret_file = secret.clone();
    })
    .await;

    let (t, key) = a.tenant("acme", &["demo"], None).await;
    b.wait_for_revision().await;
    assert_eq!(
        b.post("/v1/chat/completions", &key, &chat("demo", "hi"))
            .await
            .status(),
        200
    );

    let admin = TestGateway::admin();
    let started = Instant::now();
    a.state
        .store()
        .platform(&admin)
        .revoke_key(&key[..12])
        .await
        .unwrap();
    loop {
        if b.post("/v1/chat/completions", &key, &chat("demo", "hi"))
            .await
            .status()
            == 401
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "replica b still accepts a revoked key"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "revocation reached the other replica after {took:?}"
    );

    // A plan change (its default limits) reaches the other replica at commit too.
    let admin_key = a.admin_key(&t).await;
    b.wait_for_revision().await;
    a.state
        .store()
        .platform(&admin)
        .set_plan(&t.id, tenantgate_core::PlanTier::Enterprise)
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let l: serde_json::Value = b
            .get("/tenant/v1/limits", &admin_key)
            .await
            .json()
            .await
            .unwrap();
        if l.to_string().contains("\"enterprise\"") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "replica b still applies the old plan: {l}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let other = a.key(&t, None).await;
    b.wait_for_revision().await;
    a.state
        .store()
        .platform(&admin)
        .set_status(&t.id, tenantgate_core::TenantStatus::Suspended)
        .await
        .unwrap();
    let started = Instant::now();
    while b
        .post("/v1/chat/completions", &other, &chat("demo", "hi"))
        .await
        .status()
        != 403
    {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "replica b still serves a suspended tenant"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    a.stop().await;
    b.stop().await;
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut c)
        .await
        .unwrap();
}

/// A second replica on `one`'s database, secret and keys, with its own index directory (each
/// replica's local cache), kept in `index_dir` so it outlives the replica.
async fn replica_of(one: &TestGateway, index_dir: &std::path::Path) -> TestGateway {
    let c = one.config.clone();
    TestGateway::start_with(move |r| {
        r.rag.index_dir = index_dir.to_path_buf();
        r.database.url = c.database.url.clone();
        r.server.secret_file = c.server.secret_file.clone();
        r.encryption.master_key_file = c.encryption.master_key_file.clone();
        r.audit.signing_key_file = c.audit.signing_key_file.clone();
    })
    .await
}

/// A tenant with one knowledge base, created through `gw`; returns it and a member key.
async fn tenant_with_kb(gw: &TestGateway, slug: &str) -> (tenantgate_core::Tenant, String) {
    let (t, key) = gw.tenant(slug, &["*"], None).await;
    let admin = gw.admin_key(&t).await;
    let r = gw
        .post(
            "/tenant/v1/knowledge-bases",
            &admin,
            &serde_json::json!({"name": "kb", "chunk_tokens": 32}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = gw
        .http
        .post(format!(
            "{}/tenant/v1/knowledge-bases/kb/documents?name=d.txt",
            gw.url
        ))
        .bearer_auth(&admin)
        .header("content-type", "text/plain")
        .body("Parcels leave the Lisbon warehouse every Monday.")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    (t, key)
}

/// Searches `kb` through `gw`, which loads (builds and writes) its index on that replica.
async fn search_on(gw: &TestGateway, key: &str) {
    let r = gw
        .post(
            "/tenant/v1/knowledge-bases/kb/search",
            key,
            &serde_json::json!({"query": "when do parcels leave", "top_k": 1}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_removes_a_deleted_tenants_index_files() {
    let a = TestGateway::start().await;
    let b_indexes = tempfile::tempdir().unwrap();
    let b = replica_of(&a, b_indexes.path()).await;
    let (acme, acme_key) = tenant_with_kb(&a, "acme").await;
    let (beta, beta_key) = tenant_with_kb(&a, "beta-corp").await;
    b.wait_for_revision().await;
    for key in [&acme_key, &beta_key] {
        search_on(&b, key).await;
    }
    let b_dir = |t: &tenantgate_core::Tenant| b_indexes.path().join(t.id.as_str());
    for t in [&acme, &beta] {
        assert_eq!(
            std::fs::read_dir(b_dir(t)).unwrap().count(),
            1,
            "one index file"
        );
        assert_eq!(b.state.knowledge().resident(&t.id), 1);
    }

    // Deleted the way `tenantgate tenant delete` does it, on the store: no replica served it.
    let admin = TestGateway::admin();
    tenantgate_gateway::control::delete_tenant(
        tenantgate_gateway::control::AuditSink::Cli(a.state.store()),
        a.state.store(),
        a.state.keyring(),
        &admin,
        &acme.id,
    )
    .await
    .unwrap();
    let started = Instant::now();
    while b_dir(&acme).exists() || b.state.knowledge().resident(&acme.id) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "replica b still holds the deleted tenant's indexes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The other tenant's are untouched.
    assert!(b_dir(&beta).exists());
    assert_eq!(b.state.knowledge().resident(&beta.id), 1);

    // Deleted while replica b is down: gone when it starts again (start-up, before serving:
    // its first snapshot already shows the tenant deleted, so no reload sees it go); so is the
    // directory of a tenant the store does not know. Other entries are not touched.
    b.stop().await;
    tenantgate_gateway::control::delete_tenant(
        tenantgate_gateway::control::AuditSink::Cli(a.state.store()),
        a.state.store(),
        a.state.keyring(),
        &admin,
        &beta.id,
    )
    .await
    .unwrap();
    let stray = b_indexes
        .path()
        .join("0190c7a4-7f6e-7c1e-9d1b-2f0d7e4b1a20");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("kb.idx"), b"sealed").unwrap();
    std::fs::write(b_indexes.path().join("README"), b"not a tenant").unwrap();
    assert!(b_indexes.path().join(beta.id.as_str()).exists());
    let b = replica_of(&a, b_indexes.path()).await;
    assert!(!b_indexes.path().join(beta.id.as_str()).exists());
    assert!(!stray.exists());
    assert!(b_indexes.path().join("README").exists());
    b.stop().await;
    a.stop().await;
}
