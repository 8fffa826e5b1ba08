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

/// Self-hosted servers (vLLM, SGLang) share one KV/prefix cache across everything they serve;
/// the gateway sends each tenant's own keyed `cache_salt`, on both wires, whatever the client
/// sent, and none to a provider configured without it.
#[tokio::test]
async fn self_hosted_prefix_caches_are_salted_per_tenant_on_both_wires() {
    let gw = TestGateway::start_with(|c| {
        let mut off = c.providers[0].clone();
        off.name = "mock-nosalt".into();
        off.cache_salt = Some(false);
        c.providers.push(off);
        let mut m = c.models[0].clone();
        m.name = "gpt-nosalt".into();
        m.provider = "mock-nosalt".into();
        c.models.push(m);
    })
    .await;
    let models = ["gpt-test", "gpt-nosalt", "gpt-official"];
    let (_, a) = gw.tenant("acme", &models, None).await;
    let (_, b) = gw.tenant("globex", &models, None).await;
    let sent = |gw: &TestGateway| gw.mock.stats.last_request().unwrap().body;
    let openai = |model: &str, salt: Option<&str>| {
        let mut r = chat(model, "hi");
        if let Some(s) = salt {
            r["cache_salt"] = json!(s);
        }
        r
    };
    let anthropic = |model: &str, salt: Option<&str>| {
        let mut r = json!({"model": model, "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}]});
        if let Some(s) = salt {
            r["cache_salt"] = json!(s);
        }
        r
    };
    let ask = async |path: &str, key: &str, body: Value| {
        let r = gw.post(path, key, &body).await;
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
        sent(&gw)["cache_salt"].clone()
    };

    // OpenAI wire, passthrough to the openai_compatible provider.
    let sa = ask("/v1/chat/completions", &a, openai("gpt-test", None)).await;
    assert!(sa.as_str().unwrap().starts_with("tg-"), "{sa}");
    assert_eq!(
        ask("/v1/chat/completions", &a, openai("gpt-test", None)).await,
        sa,
        "stable per tenant"
    );
    let sb = ask("/v1/chat/completions", &b, openai("gpt-test", None)).await;
    assert_ne!(sa, sb);
    // Both clients pick one salt hoping to share the server's cache: they do not.
    let ca = ask(
        "/v1/chat/completions",
        &a,
        openai("gpt-test", Some("shared")),
    )
    .await;
    let cb = ask(
        "/v1/chat/completions",
        &b,
        openai("gpt-test", Some("shared")),
    )
    .await;
    assert_ne!(ca, json!("shared"));
    assert_ne!(ca, cb);
    // Anthropic wire, translated to the same OpenAI-format provider: the same tenant salts.
    assert_eq!(
        ask("/v1/messages", &a, anthropic("gpt-test", None)).await,
        sa
    );
    assert_eq!(
        ask("/v1/messages", &b, anthropic("gpt-test", Some("shared"))).await,
        sb,
        "the Anthropic wire forwards no client salt"
    );
    // Embeddings reach the same prefix cache: the tenant's salt, never the client's own.
    let emb = |salt: &str| json!({"model": "gpt-test", "input": "hi", "cache_salt": salt});
    assert_eq!(ask("/v1/embeddings", &a, emb("shared")).await, ca);
    assert_eq!(ask("/v1/embeddings", &b, emb("shared")).await, cb);
    // Turned off: no salt at all, the client's included, on both wires.
    for (path, body) in [
        ("/v1/chat/completions", openai("gpt-nosalt", Some("shared"))),
        ("/v1/messages", anthropic("gpt-nosalt", Some("shared"))),
    ] {
        assert_eq!(ask(path, &a, body).await, Value::Null, "{path}");
    }
    // OpenAI itself rejects unknown parameters: none there, its prompt_cache_key instead.
    let r = gw
        .post(
            "/v1/chat/completions",
            &a,
            &openai("gpt-official", Some("shared")),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body = sent(&gw);
    assert!(body.get("cache_salt").is_none(), "{body}");
    assert!(body["prompt_cache_key"]
        .as_str()
        .unwrap()
        .starts_with("tg-"));
    gw.stop().await;
}

#[test]
fn cache_salt_is_on_for_openai_compatible_and_refused_where_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let load = |toml: &str| {
        let p = dir.path().join("c.toml");
        std::fs::write(&p, toml).unwrap();
        tenantgate_gateway::Config::load(Some(&p))
    };
    let c = load(
        "[[providers]]\nname=\"v\"\nkind=\"openai_compatible\"\nbase_url=\"http://x/v1\"\n\
         [[providers]]\nname=\"w\"\nkind=\"openai_compatible\"\nbase_url=\"http://x/v1\"\n\
         cache_salt=false\n",
    )
    .unwrap();
    assert!(c.providers[0].sends_cache_salt());
    assert!(!c.providers[1].sends_cache_salt());
    let e = load(
        "[[providers]]\nname=\"o\"\nkind=\"anthropic\"\napi_key_file=\"/k\"\ncache_salt=true\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("providers[0].cache_salt"), "{e}");
}

/// The response cache on every (caller wire x provider wire) pair: OpenAI to an OpenAI-format
/// model, OpenAI to an Anthropic-format model, Anthropic to Anthropic, and Anthropic to an
/// OpenAI-format model. On each, another tenant's byte-identical request goes to the provider
/// (never A's entry), A's repeat is a hit with A's answer in the caller's own wire, and an
/// answer cached for one caller wire is never served to the other.
#[tokio::test]
async fn every_wire_pair_caches_per_tenant_and_per_caller_wire() {
    let gw = TestGateway::start_with(|c| c.cache.enabled = true).await;
    let (_, a) = gw.tenant("acme", &["gpt-test", "claude-test"], None).await;
    let (_, b) = gw
        .tenant("globex", &["gpt-test", "claude-test"], None)
        .await;
    let upstream = || gw.mock.stats.requests.load(Ordering::Relaxed);
    let anthropic = |model: &str| {
        json!({"model": model, "max_tokens": 40,
            "messages": [{"role": "user", "content": "what is our roadmap?"}]})
    };
    let pairs = [
        (
            "/v1/chat/completions",
            chat("gpt-test", "what is our roadmap?"),
            "chat.completion",
        ),
        (
            "/v1/chat/completions",
            chat("claude-test", "what is our roadmap?"),
            "chat.completion",
        ),
        ("/v1/messages", anthropic("claude-test"), "message"),
        ("/v1/messages", anthropic("gpt-test"), "message"),
    ];
    let shape = |v: &Value| {
        v.get("object")
            .or_else(|| v.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    for (path, req, kind) in pairs {
        let n0 = upstream();
        let r = gw.post(path, &a, &req).await;
        assert_eq!(r.status(), 200, "{path} {}", req["model"]);
        assert_eq!(
            r.headers()["x-tenantgate-cache"],
            "miss",
            "{path} {}",
            req["model"]
        );
        let first: Value = r.json().await.unwrap();
        assert_eq!(shape(&first), kind, "{path}: {first}");
        // The attack: B's identical request must reach the provider, not A's entry.
        let r = gw.post(path, &b, &req).await;
        assert_eq!(
            r.headers()["x-tenantgate-cache"],
            "miss",
            "{path} {}",
            req["model"]
        );
        assert_eq!(
            upstream(),
            n0 + 2,
            "{path} {}: B served from A's entry",
            req["model"]
        );
        // A's repeat: a hit, A's own answer, in the caller's wire, no provider call.
        let r = gw.post(path, &a, &req).await;
        assert_eq!(
            r.headers()["x-tenantgate-cache"],
            "hit",
            "{path} {}",
            req["model"]
        );
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            first,
            "{path} {}",
            req["model"]
        );
        assert_eq!(upstream(), n0 + 2);
    }
    gw.stop().await;
}
