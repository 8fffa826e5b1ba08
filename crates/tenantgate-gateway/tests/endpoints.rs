//! A tenant's own provider endpoints (issue 17): two mockllm servers, the platform's (shared)
//! and tenant A's own. Every call of A to a provider it has an endpoint for reaches only its
//! own server, with only its own key, on both wires, translated both ways, plain and streamed,
//! and embeddings; tenant B's reach only the shared server with the platform's key. Changes
//! take effect on the next call after the snapshot reload; the key is in no answer, no
//! listing, no audit record, no log line and not in clear in the database file.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::idp::{self, Idp};
use common::{TestGateway, UPSTREAM_KEY};
use mockllm::{MockConfig, MockHandle, Recorded};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

const OWN_KEY: &str = "sk-acme-own-7Q2W9E4R1T";

/// A fake upstream of the tenant's own, requiring its key.
async fn own_server(key: &str) -> MockHandle {
    mockllm::start(
        "127.0.0.1:0".parse().unwrap(),
        MockConfig {
            chunks: 4,
            api_key: Some(key.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// The credential a recorded request carried, whichever header its provider uses.
fn credential(r: &Recorded) -> Option<String> {
    let h = |n: &str| r.headers.get(n).cloned();
    h("authorization")
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned))
        .or_else(|| h("x-api-key"))
        .or_else(|| h("api-key"))
}

fn requests(m: &MockHandle) -> u64 {
    m.stats.requests.load(Ordering::SeqCst)
}

/// A gateway whose platform admins sign in at `idp`, and a platform admin's token.
async fn gateway(
    tweak: impl FnOnce(&mut tenantgate_gateway::Config) + Send + 'static,
) -> (TestGateway, Idp, String) {
    let idp = Idp::start(&["rsa1"]).await;
    let mut cfg = idp.config();
    cfg.platform_admins = true;
    let gw = TestGateway::start_with(move |c| {
        c.auth.oidc = vec![cfg];
        tweak(c);
    })
    .await;
    let token = idp::mint("rsa1", &idp.claims("ops", None, &["platform_admin"]));
    (gw, idp, token)
}

async fn put_endpoint(
    gw: &TestGateway,
    token: &str,
    tenant: &str,
    provider: &str,
    body: Value,
) -> reqwest::Response {
    gw.http
        .put(format!(
            "{}/admin/v1/tenants/{tenant}/endpoints/{provider}",
            gw.url
        ))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn delete_endpoint(
    gw: &TestGateway,
    token: &str,
    tenant: &str,
    provider: &str,
) -> reqwest::Response {
    gw.http
        .delete(format!(
            "{}/admin/v1/tenants/{tenant}/endpoints/{provider}",
            gw.url
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// One call of every shape the pipeline takes to a provider.
struct Shape {
    name: &'static str,
    path: &'static str,
    model: &'static str,
    stream: bool,
    /// The upstream path the provider must see.
    upstream: &'static str,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "openai chat",
        path: "/v1/chat/completions",
        model: "gpt-test",
        stream: false,
        upstream: "/v1/chat/completions",
    },
    Shape {
        name: "openai chat streamed",
        path: "/v1/chat/completions",
        model: "gpt-test",
        stream: true,
        upstream: "/v1/chat/completions",
    },
    Shape {
        name: "openai client, anthropic model",
        path: "/v1/chat/completions",
        model: "claude-test",
        stream: false,
        upstream: "/v1/messages",
    },
    Shape {
        name: "openai client, anthropic model, streamed",
        path: "/v1/chat/completions",
        model: "claude-test",
        stream: true,
        upstream: "/v1/messages",
    },
    Shape {
        name: "anthropic messages",
        path: "/v1/messages",
        model: "claude-test",
        stream: false,
        upstream: "/v1/messages",
    },
    Shape {
        name: "anthropic messages streamed",
        path: "/v1/messages",
        model: "claude-test",
        stream: true,
        upstream: "/v1/messages",
    },
    Shape {
        name: "anthropic client, openai model",
        path: "/v1/messages",
        model: "gpt-test",
        stream: false,
        upstream: "/v1/chat/completions",
    },
    Shape {
        name: "anthropic client, openai model, streamed",
        path: "/v1/messages",
        model: "gpt-test",
        stream: true,
        upstream: "/v1/chat/completions",
    },
    Shape {
        name: "embeddings",
        path: "/v1/embeddings",
        model: "gpt-test",
        stream: false,
        upstream: "/v1/embeddings",
    },
    Shape {
        name: "azure chat",
        path: "/v1/chat/completions",
        model: "azure-gpt",
        stream: false,
        upstream: "/openai/deployments/dep1/chat/completions",
    },
];

/// Makes the call `s` with `key`; returns the answer's text after checking it completed.
async fn call(gw: &TestGateway, key: &str, s: &Shape, text: &str) -> String {
    let body = match s.path {
        "/v1/embeddings" => json!({"model": s.model, "input": [text]}),
        "/v1/messages" => json!({"model": s.model, "max_tokens": 32, "stream": s.stream,
            "messages": [{"role": "user", "content": text}]}),
        _ => json!({"model": s.model, "stream": s.stream,
            "messages": [{"role": "user", "content": text}]}),
    };
    let r = gw.post(s.path, key, &body).await;
    let status = r.status();
    let out = r.text().await.unwrap();
    assert_eq!(status, 200, "{}: {out}", s.name);
    if s.stream {
        let end = if s.path == "/v1/messages" {
            "message_stop"
        } else {
            "[DONE]"
        };
        assert!(
            out.contains(end),
            "{}: the stream did not complete: {out}",
            s.name
        );
    }
    out
}

/// Calls `s` and checks it reached `to` once (and none of `others`), with `cred`, on the
/// provider path the shape needs.
async fn reaches(
    gw: &TestGateway,
    key: &str,
    s: &Shape,
    text: &str,
    to: &MockHandle,
    others: &[&MockHandle],
    cred: &str,
) {
    let to_before = requests(to);
    let others_before: Vec<u64> = others.iter().map(|m| requests(m)).collect();
    call(gw, key, s, text).await;
    assert_eq!(
        requests(to),
        to_before + 1,
        "{}: the expected server got no request",
        s.name
    );
    let others_after: Vec<u64> = others.iter().map(|m| requests(m)).collect();
    assert_eq!(
        others_after, others_before,
        "{}: another server got a request",
        s.name
    );
    let seen = to.stats.last_request().unwrap();
    assert_eq!(seen.path, s.upstream, "{}", s.name);
    assert_eq!(
        credential(&seen).as_deref(),
        Some(cred),
        "{}: wrong credential",
        s.name
    );
}

#[tokio::test]
async fn a_tenants_calls_reach_only_its_own_endpoint_with_its_own_key_and_others_the_shared_one() {
    let (gw, _idp, platform) = gateway(|c| c.cache.enabled = true).await;
    let own = own_server(OWN_KEY).await;
    let (_, a) = gw.tenant("acme", &["*"], None).await;
    let (_, b) = gw.tenant("globex", &["*"], None).await;

    // Before A has an endpoint, its answers come from the shared server (and one is cached).
    let cached = &SHAPES[0];
    reaches(
        &gw,
        &a,
        cached,
        "the cached question",
        &gw.mock,
        &[&own],
        UPSTREAM_KEY,
    )
    .await;

    // Base URLs as each provider kind takes them (OpenAI-style with `/v1`).
    for (provider, body) in [
        (
            "mock-openai",
            json!({"base_url": format!("{}/v1", own.base_url()), "api_key": OWN_KEY}),
        ),
        (
            "mock-anthropic",
            json!({"base_url": own.base_url(), "api_key": OWN_KEY}),
        ),
        (
            "mock-azure",
            json!({"base_url": own.base_url(), "api_key": OWN_KEY,
            "api_version": "2025-01-01-preview"}),
        ),
    ] {
        let r = put_endpoint(&gw, &platform, "acme", provider, body).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    // The answer cached from the shared server is not A's own endpoint's: the same request
    // now goes to A's server.
    reaches(
        &gw,
        &a,
        cached,
        "the cached question",
        &own,
        &[&gw.mock],
        OWN_KEY,
    )
    .await;

    for (i, s) in SHAPES.iter().enumerate() {
        reaches(
            &gw,
            &a,
            s,
            &format!("A's question {i}"),
            &own,
            &[&gw.mock],
            OWN_KEY,
        )
        .await;
        reaches(
            &gw,
            &b,
            s,
            &format!("B's question {i}"),
            &gw.mock,
            &[&own],
            UPSTREAM_KEY,
        )
        .await;
    }
    // Azure's api_version is the tenant's.
    let azure = own
        .stats
        .requests_seen()
        .into_iter()
        .rev()
        .find(|r| r.path.starts_with("/openai/"))
        .unwrap();
    assert_eq!(
        azure.query.get("api-version").map(String::as_str),
        Some("2025-01-01-preview")
    );
    // Over every request each server saw: only its own key, never the other's.
    for r in own.stats.requests_seen() {
        assert_eq!(credential(&r).as_deref(), Some(OWN_KEY), "{}", r.path);
        assert!(!format!("{:?}", r.headers).contains(UPSTREAM_KEY));
    }
    for r in gw.mock.stats.requests_seen() {
        assert_eq!(credential(&r).as_deref(), Some(UPSTREAM_KEY), "{}", r.path);
        assert!(!format!("{:?}", r.headers).contains(OWN_KEY));
    }

    // Replaced (another server, another key): the next call goes to the new one; the old
    // endpoint, opened and cached, is not used again.
    let newer = own_server("sk-acme-rotated-55").await;
    let r = put_endpoint(
        &gw,
        &platform,
        "acme",
        "mock-openai",
        json!({"base_url": format!("{}/v1", newer.base_url()), "api_key": "sk-acme-rotated-55"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    reaches(
        &gw,
        &a,
        &SHAPES[0],
        "after the rotation",
        &newer,
        &[&own, &gw.mock],
        "sk-acme-rotated-55",
    )
    .await;

    // Removed through the admin API: the next call takes the platform's endpoint again.
    let r = delete_endpoint(&gw, &platform, "acme", "mock-openai").await;
    assert_eq!(r.status(), 200);
    reaches(
        &gw,
        &a,
        &SHAPES[0],
        "after the removal",
        &gw.mock,
        &[&newer, &own],
        UPSTREAM_KEY,
    )
    .await;
    // Removing it again: nothing to remove.
    assert_eq!(
        delete_endpoint(&gw, &platform, "acme", "mock-openai")
            .await
            .status(),
        404
    );

    // Removed by another process (the CLI, another replica): this gateway's reload loop picks
    // the change up, and the next call after it goes to the shared server.
    let admin = TestGateway::admin();
    let t = gw
        .state
        .store()
        .platform(&admin)
        .find_tenant("acme")
        .await
        .unwrap();
    gw.state
        .keyring()
        .endpoints(gw.state.store(), &admin)
        .remove(&t.id, "mock-anthropic")
        .await
        .unwrap();
    gw.wait_for_revision().await;
    reaches(
        &gw,
        &a,
        &SHAPES[4],
        "after the other process",
        &gw.mock,
        &[&own],
        UPSTREAM_KEY,
    )
    .await;
    // The endpoint A still has keeps its calls.
    reaches(
        &gw,
        &a,
        &SHAPES[9],
        "still azure",
        &own,
        &[&gw.mock],
        OWN_KEY,
    )
    .await;
    assert_eq!(
        gw.state.endpoints().tenants(),
        1,
        "A's opened endpoints are kept"
    );

    // Deleted (no window: finalized in the call): its opened endpoints (keys included) leave
    // this process's memory with the snapshot that shows it deleted, and its endpoint rows
    // leave the database.
    let r = gw
        .http
        .delete(format!("{}/admin/v1/tenants/acme?window_secs=0", gw.url))
        .bearer_auth(&platform)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gw.state.endpoints().tenants(), 0);
    let left = gw
        .state
        .keyring()
        .endpoints(gw.state.store(), &admin)
        .list(&t.id)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    newer.stop().await;
    own.stop().await;
    gw.stop().await;
}

/// A log sink for the whole test binary: every event of every level.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_key_is_in_no_answer_listing_audit_record_log_line_or_database_byte() {
    // Installed once for this binary, before this test's gateway starts: TRACE, every target,
    // every thread (the audit writer's included).
    let cap = Capture::default();
    let writer = cap.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    const KEY: &str = "sk-marker-K3Y-9f8e7d6c5b4a";
    let (gw, _idp, platform) = gateway(|_| {}).await;
    let own = own_server(KEY).await;
    let (acme, a) = gw.tenant("acme", &["*"], None).await;
    let a_admin = gw.admin_key(&acme).await;
    let base = format!("{}/v1", own.base_url());
    let mut answers = Vec::new();

    let r = put_endpoint(
        &gw,
        &platform,
        "acme",
        "mock-openai",
        json!({"base_url": base, "api_key": KEY}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let set: Value = r.json().await.unwrap();
    assert_eq!(set["base_url"], base.as_str());
    answers.push(set.to_string());
    let r = gw.get("/admin/v1/tenants/acme/endpoints", &platform).await;
    assert_eq!(r.status(), 200);
    let listed: Value = r.json().await.unwrap();
    assert_eq!(listed["data"][0]["provider"], "mock-openai");
    assert_eq!(listed["data"][0]["base_url"], base.as_str());
    answers.push(listed.to_string());
    for s in [&SHAPES[0], &SHAPES[1], &SHAPES[6], &SHAPES[8]] {
        let before = requests(&own);
        answers.push(call(&gw, &a, s, "hello").await);
        assert_eq!(requests(&own), before + 1, "{}", s.name);
    }
    // A key the tenant's server refuses: the error names the provider, not the key.
    const WRONG: &str = "sk-wrong-M4RK-1234567";
    let r = put_endpoint(
        &gw,
        &platform,
        "acme",
        "mock-openai",
        json!({"base_url": base, "api_key": WRONG}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = gw
        .post("/v1/chat/completions", &a, &common::chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 502);
    answers.push(r.text().await.unwrap());
    // Refused inputs do not echo the key either.
    for (body, param) in [
        (
            json!({"base_url": "https://user:pw@example.com", "api_key": KEY}),
            "base_url",
        ),
        (
            json!({"base_url": base, "api_key": format!("{KEY} with spaces")}),
            "api_key",
        ),
        (
            json!({"base_url": base, "api_key": KEY, "api_version": "1"}),
            "api_version",
        ),
    ] {
        let r = put_endpoint(&gw, &platform, "acme", "mock-openai", body).await;
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["param"], param, "{e}");
        answers.push(e.to_string());
    }
    // The built-in demo model is no configured provider: nothing to set an endpoint for.
    let r = put_endpoint(
        &gw,
        &platform,
        "acme",
        "demo",
        json!({"base_url": base, "api_key": KEY}),
    )
    .await;
    assert_eq!(r.status(), 400);
    answers.push(r.text().await.unwrap());
    let r = put_endpoint(
        &gw,
        &platform,
        "acme",
        "mock-openai",
        json!({"base_url": base, "api_key": KEY}),
    )
    .await;
    assert_eq!(r.status(), 200);
    answers.push(r.text().await.unwrap());
    for path in ["/admin/v1/tenants/acme", "/admin/v1/tenants"] {
        answers.push(gw.get(path, &platform).await.text().await.unwrap());
    }
    for path in [
        "/tenant/v1/settings",
        "/tenant/v1/models",
        "/tenant/v1/me",
        "/v1/models",
    ] {
        answers.push(gw.get(path, &a_admin).await.text().await.unwrap());
    }
    // The audit chain: every change is recorded (provider and base URL), the key is not.
    let export = gw
        .get("/tenant/v1/audit/export", &a_admin)
        .await
        .text()
        .await
        .unwrap();
    let changes = export.matches("tenant.endpoint.set").count();
    assert_eq!(changes, 3, "{export}");
    assert!(export.contains(&base));
    // A's calls are on record as sent to its own endpoint.
    assert!(export.contains("\"tenant_endpoint_revision\""), "{export}");
    answers.push(export);
    for (i, text) in answers.iter().enumerate() {
        for k in [KEY, WRONG] {
            assert!(!text.contains(k), "answer {i} holds the key: {text}");
        }
    }

    // Stopped with the endpoint set: the database, its WAL and shared memory hold the base
    // URL in clear (the listing's copy and the audit records: the grep sees the rows), the
    // keys only sealed.
    let dir = gw.stop_keeping_files().await;
    own.stop().await;
    let mut db = Vec::new();
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("tg.db") {
            db.extend(std::fs::read(e.path()).unwrap());
        }
    }
    let holds =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        holds(&db, &own_base_host(&base)),
        "the grep does not see the endpoint rows"
    );
    for k in [KEY, WRONG] {
        assert!(!holds(&db, k), "the database file holds the key in clear");
    }
    let logs = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    // Not vacuous: the capture saw the calls and the store's work on the endpoints.
    assert!(logs.contains("gpt-test") && logs.contains("tenant_endpoints"));
    for k in [KEY, WRONG] {
        assert!(!logs.contains(k), "a log line holds the key");
    }
}

/// `http://127.0.0.1:PORT` of a base URL.
fn own_base_host(base: &str) -> String {
    base.trim_end_matches("/v1").to_owned()
}

/// A tenant on the dedicated tier (its data in its own data directory) never reaches the
/// platform's shared endpoints: a model whose provider it has no endpoint for is answered
/// like an unknown model and reaches no server; once it has its own endpoint, every call
/// (cache enabled: a dedicated tenant has no shared response cache) reaches only that one.
#[tokio::test]
async fn a_dedicated_tenant_reaches_only_its_own_endpoints() {
    let (gw, _idp, platform) = gateway(|c| c.cache.enabled = true).await;
    let own = own_server(OWN_KEY).await;
    let data = tempfile::tempdir().unwrap();
    let admin = TestGateway::admin();
    let t = gw
        .state
        .store()
        .platform(&admin)
        .create_tenant_at(
            &tenantgate_core::NewTenant {
                slug: "agency".into(),
                display_name: "Agency".into(),
                plan: tenantgate_core::PlanTier::Enterprise,
                isolation: tenantgate_core::IsolationTier::Dedicated,
                allowed_models: vec!["*".into()],
                max_tokens_per_request: None,
            },
            Some(data.path().to_str().unwrap()),
        )
        .await
        .unwrap();
    let key = gw.key(&t, None).await;
    let s = &SHAPES[0];
    let shared_before = requests(&gw.mock);
    let r = gw
        .post(
            s.path,
            &key,
            &json!({"model": s.model,
            "messages": [{"role": "user", "content": "hello"}]}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found", "{body}");
    assert_eq!(
        requests(&gw.mock),
        shared_before,
        "a shared endpoint was called"
    );

    let r = put_endpoint(
        &gw,
        &platform,
        "agency",
        "mock-openai",
        json!({"base_url": format!("{}/v1", own.base_url()), "api_key": OWN_KEY}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    gw.wait_for_revision().await;
    for _ in 0..2 {
        // The same question twice: no cache answers the second.
        reaches(
            &gw,
            &key,
            s,
            "the same question",
            &own,
            &[&gw.mock],
            OWN_KEY,
        )
        .await;
    }
    // Its audit records are in its own data directory.
    assert!(data.path().join("tenantgate.sqlite").exists());
}
