//! Tenant isolation at the edge: credentials decide the tenant, allow-lists decide the models,
//! and control-plane changes (suspend, revoke) reach a running gateway without a restart.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, TestGateway};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tenantgate_core::TenantStatus;

#[tokio::test]
async fn tenant_a_never_sees_or_calls_tenant_b_models() {
    let gw = TestGateway::start().await;
    let (_, key_a) = gw.tenant("acme", &["gpt-test"], None).await;
    let (_, key_b) = gw.tenant("globex", &["claude-test", "demo"], None).await;

    let models: Value = gw.get("/v1/models", &key_a).await.json().await.unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-test"]);
    let models_b: Value = gw.get("/v1/models", &key_b).await.json().await.unwrap();
    let ids_b: Vec<&str> = models_b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids_b, ["claude-test", "demo"]);

    // The attack: A calls B's model, and asks for it by id. It does not exist for A (an
    // answer of its own would confirm it is in the catalogue).
    let r = gw
        .post("/v1/chat/completions", &key_a, &chat("claude-test", "hi"))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(gw.get("/v1/models/claude-test", &key_a).await.status(), 404);
    assert_eq!(gw.get("/v1/models/gpt-test", &key_a).await.status(), 200);
    // What /v1/models lists is exactly what is enforced.
    assert_eq!(
        gw.post("/v1/chat/completions", &key_a, &chat("gpt-test", "hi"))
            .await
            .status(),
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn client_supplied_tenant_hints_are_ignored() {
    let gw = TestGateway::start().await;
    let (_, key_a) = gw.tenant("acme", &["gpt-test"], None).await;
    let (tb, _) = gw.tenant("globex", &["claude-test"], None).await;
    // Headers, query and body naming tenant B change nothing: the key decides.
    let r = gw
        .http
        .post(format!("{}/v1/chat/completions?tenant={}", gw.url, tb.id))
        .bearer_auth(&key_a)
        .header("x-tenant-id", tb.id.as_str())
        .header("x-tenantgate-tenant", "globex")
        .json(&json!({"model":"claude-test","tenant":"globex","user":"globex","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    gw.stop().await;
}

async fn wait_for_status(gw: &TestGateway, key: &str, want: u16) -> Duration {
    let started = Instant::now();
    loop {
        let s = gw
            .post("/v1/chat/completions", key, &chat("demo", "ping"))
            .await
            .status()
            .as_u16();
        if s == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "status stayed {s}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn suspension_and_resumption_reach_the_running_gateway() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &["demo"], None).await;
    assert_eq!(
        gw.post("/v1/chat/completions", &key, &chat("demo", "hi"))
            .await
            .status(),
        200
    );
    let admin = TestGateway::admin();
    // Out-of-process change, as the CLI makes it: straight to the store.
    gw.state
        .store()
        .platform(&admin)
        .set_status(&t.id, TenantStatus::Suspended)
        .await
        .unwrap();
    let took = wait_for_status(&gw, &key, 403).await;
    assert!(
        took < Duration::from_millis(1000),
        "suspension took {took:?}"
    );
    let r = gw
        .post("/v1/chat/completions", &key, &chat("demo", "hi"))
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "tenant_suspended");
    assert_eq!(gw.get("/v1/models", &key).await.status(), 403);
    gw.state
        .store()
        .platform(&admin)
        .set_status(&t.id, TenantStatus::Active)
        .await
        .unwrap();
    wait_for_status(&gw, &key, 200).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_while_the_tenants_other_keys_work() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &["demo"], None).await;
    let other = gw.key(&t, None).await;
    let admin = TestGateway::admin();
    let prefix = &key[..12];
    gw.state
        .store()
        .platform(&admin)
        .revoke_key(prefix)
        .await
        .unwrap();
    let took = wait_for_status(&gw, &key, 401).await;
    assert!(
        took < Duration::from_millis(1000),
        "revocation took {took:?}"
    );
    let r = gw
        .post("/v1/chat/completions", &key, &chat("demo", "hi"))
        .await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(
        gw.post("/v1/chat/completions", &other, &chat("demo", "hi"))
            .await
            .status(),
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_expired_key_is_refused_without_any_reload() {
    let gw = TestGateway::start().await;
    let (t, _) = gw.tenant("acme", &["demo"], None).await;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    // Long enough that a loaded machine still makes the first call in time; the key is
    // polled across its expiry rather than slept past it.
    let expires = now_ms() + 2_000;
    let key = gw.key(&t, Some(expires)).await;
    let mut served = 0;
    loop {
        let status = gw
            .post("/v1/chat/completions", &key, &chat("demo", "hi"))
            .await
            .status();
        let answered = now_ms();
        if status == 401 {
            assert!(
                answered >= expires,
                "refused {} ms before it expired",
                expires - answered
            );
            break;
        }
        assert_eq!(status, 200);
        served += 1;
        assert!(
            now_ms() < expires + 2_000,
            "still served 2 s after it expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served > 0, "the key was never served before it expired");
    gw.stop().await;
}

#[tokio::test]
async fn per_request_token_cap_is_enforced_and_applied() {
    let gw = TestGateway::start().await;
    let (_, key) = gw
        .tenant("acme", &["gpt-test", "gpt-official", "demo"], Some(100))
        .await;
    let mut body = chat("gpt-test", "hi");
    body["max_tokens"] = json!(101);
    let r = gw.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "max_tokens");
    assert_eq!(v["error"]["code"], "max_tokens_exceeded");
    // No bound from the client: the tenant's cap goes upstream, in each provider's field.
    assert_eq!(
        gw.post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
            .await
            .status(),
        200
    );
    assert_eq!(
        gw.mock.stats.last_request().unwrap().body["max_tokens"],
        100
    );
    assert_eq!(
        gw.post("/v1/chat/completions", &key, &chat("gpt-official", "hi"))
            .await
            .status(),
        200
    );
    assert_eq!(
        gw.mock.stats.last_request().unwrap().body["max_completion_tokens"],
        100
    );
    gw.stop().await;
}
