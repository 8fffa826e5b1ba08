//! Several gateways on one PostgreSQL database: a revocation made through one replica's store
//! reaches the others at commit (LISTEN/NOTIFY), with polling set far too slow to explain it.
//! Needs `TENANTGATE_TEST_POSTGRES_URL`; skipped (saying so) without it.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, TestGateway};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_apply_revocation_and_suspension_at_once() {
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
