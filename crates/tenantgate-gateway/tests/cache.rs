//! Caches never cross tenants: the gateway's response cache and providers' prompt caches.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, TestGateway};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

#[tokio::test]
async fn identical_requests_from_two_tenants_never_share_a_cache_entry() {
    let gw = TestGateway::start_with(|c| c.cache.enabled = true).await;
    let (_, a) = gw.tenant("acme", &["gpt-test"], None).await;
    let (_, b) = gw.tenant("globex", &["gpt-test"], None).await;
    let upstream = || gw.mock.stats.requests.load(Ordering::Relaxed);
    let req = chat("gpt-test", "what is our roadmap?");

    let n0 = upstream();
    let r = gw.post("/v1/chat/completions", &a, &req).await;
    assert_eq!(r.headers()["x-tenantgate-cache"], "miss");
    let first: Value = r.json().await.unwrap();
    assert_eq!(upstream(), n0 + 1);

    // The attack: tenant B sends the byte-identical request and hopes for A's answer.
    let r = gw.post("/v1/chat/completions", &b, &req).await;
    assert_eq!(r.headers()["x-tenantgate-cache"], "miss");
    assert_eq!(
        upstream(),
        n0 + 2,
        "B must be served by the provider, not from A's entry"
    );

    // A's repeat is a hit: same body, no provider call.
    let r = gw.post("/v1/chat/completions", &a, &req).await;
    assert_eq!(r.headers()["x-tenantgate-cache"], "hit");
    assert_eq!(r.json::<Value>().await.unwrap(), first);
    assert_eq!(upstream(), n0 + 2);

    // A different request, or a stream, is not a hit.
    gw.post(
        "/v1/chat/completions",
        &a,
        &chat("gpt-test", "something else"),
    )
    .await;
    assert_eq!(upstream(), n0 + 3);
    let mut s = req.clone();
    s["stream"] = json!(true);
    gw.post("/v1/chat/completions", &a, &s)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(upstream(), n0 + 4);
    gw.stop().await;
}

#[tokio::test]
async fn the_cache_is_off_unless_configured() {
    let gw = TestGateway::start().await;
    let (_, a) = gw.tenant("acme", &["gpt-test"], None).await;
    let n0 = gw.mock.stats.requests.load(Ordering::Relaxed);
    for _ in 0..2 {
        let r = gw
            .post("/v1/chat/completions", &a, &chat("gpt-test", "hi"))
            .await;
        assert!(!r.headers().contains_key("x-tenantgate-cache"));
    }
    assert_eq!(gw.mock.stats.requests.load(Ordering::Relaxed), n0 + 2);
    gw.stop().await;
}

#[tokio::test]
async fn provider_prompt_cache_keys_are_tenant_scoped_and_not_client_chosen() {
    let gw = TestGateway::start().await;
    let (_, a) = gw.tenant("acme", &["gpt-official", "gpt-test"], None).await;
    let (_, b) = gw
        .tenant("globex", &["gpt-official", "gpt-test"], None)
        .await;
    let sent =
        |gw: &TestGateway| gw.mock.stats.last_request().unwrap().body["prompt_cache_key"].clone();
    gw.post("/v1/chat/completions", &a, &chat("gpt-official", "hi"))
        .await;
    let ka = sent(&gw);
    gw.post("/v1/chat/completions", &b, &chat("gpt-official", "hi"))
        .await;
    let kb = sent(&gw);
    assert!(ka.as_str().unwrap().starts_with("tg-"));
    assert_ne!(ka, kb);
    // Both clients pick the same key hoping to share a provider cache: they do not.
    let mut req = chat("gpt-test", "hi");
    req["prompt_cache_key"] = json!("shared");
    gw.post("/v1/chat/completions", &a, &req).await;
    let sa = sent(&gw);
    gw.post("/v1/chat/completions", &b, &req).await;
    let sb = sent(&gw);
    assert_ne!(sa, json!("shared"));
    assert_ne!(sa, sb);
    gw.stop().await;
}

/// Redis mode: replicas share entries, tenants still never do. Needs
/// `TENANTGATE_TEST_REDIS_URL`; skipped (saying so) without it.
#[tokio::test]
async fn replicas_share_the_redis_cache_but_tenants_never_do() {
    let Some(url) = common::skip::backend_url("TENANTGATE_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("tg-test-{:016x}:", rand::random::<u64>());
    let redis = |c: &mut tenantgate_gateway::Config| {
        c.cache.enabled = true;
        c.cache.redis_url = Some(url.clone());
        c.cache.redis_prefix = prefix.clone();
    };
    let one = TestGateway::start_with(redis).await;
    // A second replica on the same database and secret, with its own upstream.
    let (db, secret) = (
        one.config.database.url.clone(),
        one.config.server.secret_file.clone(),
    );
    let two = TestGateway::start_with(|c| {
        redis(c);
        c.database.url = db.clone();
        c.server.secret_file = secret.clone();
    })
    .await;
    let (_, a) = one.tenant("acme", &["gpt-test"], None).await;
    let (_, b) = one.tenant("globex", &["gpt-test"], None).await;
    two.wait_for_revision().await;
    let req = chat("gpt-test", "shared question");

    let r = one.post("/v1/chat/completions", &a, &req).await;
    assert_eq!(r.headers()["x-tenantgate-cache"], "miss");
    let before = two.mock.stats.requests.load(Ordering::Relaxed);
    let r = two.post("/v1/chat/completions", &a, &req).await;
    assert_eq!(
        r.headers()["x-tenantgate-cache"],
        "hit",
        "the other replica serves A's entry"
    );
    assert_eq!(two.mock.stats.requests.load(Ordering::Relaxed), before);
    let r = two.post("/v1/chat/completions", &b, &req).await;
    assert_eq!(
        r.headers()["x-tenantgate-cache"],
        "miss",
        "B never gets A's entry"
    );
    assert_eq!(two.mock.stats.requests.load(Ordering::Relaxed), before + 1);
    one.stop().await;
    two.stop().await;
}
