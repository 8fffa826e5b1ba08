//! Bring your own key (issue 19): a tenant admin stores the tenant's own provider credential.
//! Its calls then carry that key, and only that key, on every path (both wires, plain and
//! streamed, translated); other tenants keep the platform's. The key is never returned,
//! listed, audited or stored in clear, is sent only where the platform points (a tenant cannot
//! choose the URL), and is unreadable once the tenant's keys are shredded.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, provider, sse_events, TestGateway, UPSTREAM_KEY};
use mockllm::{MockConfig, MockHandle};
use serde_json::{json, Value};
use tenantgate_gateway::config::{ModelConfig, ProviderKind};

const OWN_KEY: &str = "sk-acme-own-provider-key-7f3a";

/// A provider endpoint shared by the platform and the tenant's own key: it accepts both, and
/// records which one each request carried.
async fn shared_endpoint() -> MockHandle {
    mockllm::start(
        "127.0.0.1:0".parse().unwrap(),
        MockConfig {
            chunks: 3,
            api_key: Some(UPSTREAM_KEY.into()),
            more_keys: vec![OWN_KEY.into()],
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// The key the newest request carried, whichever header its wire uses.
fn last_key(m: &MockHandle) -> String {
    let r = m.stats.last_request().unwrap();
    r.headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned))
        .or_else(|| r.headers.get("x-api-key").cloned())
        .unwrap()
}

#[tokio::test]
async fn a_tenants_own_key_is_used_for_its_calls_only_and_never_shown() {
    let ep = shared_endpoint().await;
    let base = ep.base_url();
    let gw = TestGateway::start_with(move |c| {
        let key_file = c.providers[0].api_key_file.clone().unwrap();
        c.providers.push(provider(
            "byo-openai",
            ProviderKind::OpenaiCompatible,
            format!("{base}/v1"),
            &key_file,
        ));
        c.providers.push(provider(
            "byo-anthropic",
            ProviderKind::Anthropic,
            base.clone(),
            &key_file,
        ));
        for (name, provider) in [("byo-gpt", "byo-openai"), ("byo-claude", "byo-anthropic")] {
            c.models.push(ModelConfig {
                name: name.into(),
                provider: provider.into(),
                ..Default::default()
            });
        }
    })
    .await;
    let (acme, acme_key) = gw.tenant("acme", &["byo-gpt", "byo-claude"], None).await;
    let (_, other_key) = gw.tenant("initech", &["byo-gpt", "byo-claude"], None).await;
    let admin = gw.admin_key(&acme).await;
    let put = |provider: &str, body: Value| {
        gw.http
            .put(format!("{}/tenant/v1/provider-keys/{provider}", gw.url))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    // Before: the platform's key for everyone.
    let r = gw
        .post(
            "/v1/chat/completions",
            &acme_key,
            &chat("byo-gpt", "before"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(last_key(&ep), UPSTREAM_KEY);

    for provider in ["byo-openai", "byo-anthropic"] {
        let r = put(provider, json!({"api_key": OWN_KEY})).await.unwrap();
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        assert!(!body.contains(OWN_KEY), "the key came back: {body}");
    }
    gw.wait_for_revision().await;

    // Every path of acme's: both wires, plain and streamed, the translated pairs included.
    let calls: [(&str, Value); 6] = [
        ("/v1/chat/completions", chat("byo-gpt", "plain")),
        (
            "/v1/chat/completions",
            json!({"model":"byo-gpt","stream":true,"messages":[{"role":"user","content":"streamed"}]}),
        ),
        ("/v1/chat/completions", chat("byo-claude", "translated")),
        (
            "/v1/messages",
            json!({"model":"byo-claude","max_tokens":32,"messages":[{"role":"user","content":"native"}]}),
        ),
        (
            "/v1/messages",
            json!({"model":"byo-gpt","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"translated stream"}]}),
        ),
        (
            "/v1/messages",
            json!({"model":"byo-claude","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"native stream"}]}),
        ),
    ];
    for (path, body) in &calls {
        let r = gw.post(path, &acme_key, body).await;
        assert_eq!(r.status(), 200, "{path} {body}");
        let text = r.text().await.unwrap();
        if body["stream"] == true && *path == "/v1/messages" {
            assert_eq!(
                sse_events(&text).last().unwrap().0,
                "message_stop",
                "{text}"
            );
        }
        assert_eq!(last_key(&ep), OWN_KEY, "{path} {body}");
        // The other tenant, on the same models and endpoint: the platform's key.
        let r = gw.post(path, &other_key, body).await;
        assert_eq!(r.status(), 200);
        let _ = r.text().await.unwrap();
        assert_eq!(last_key(&ep), UPSTREAM_KEY, "{path} {body}");
    }

    // Listed without the key, and recorded without it (the tenant's whole chain).
    let list = gw
        .get("/tenant/v1/provider-keys", &admin)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("byo-openai") && !list.contains(OWN_KEY),
        "{list}"
    );
    let export = gw
        .get("/tenant/v1/audit/export", &admin)
        .await
        .text()
        .await
        .unwrap();
    assert!(export.contains("tenant.provider_key.set"), "{export}");
    assert!(!export.contains(OWN_KEY));
    // Sealed at rest: the database file holds no clear copy.
    let db = std::fs::read(gw.dir.path().join("tg.db")).unwrap();
    let wal = std::fs::read(gw.dir.path().join("tg.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes
                .windows(OWN_KEY.len())
                .any(|w| w == OWN_KEY.as_bytes()),
            "the key is stored in clear"
        );
    }

    // Bad input: an unknown provider, the demo model, an empty key, a URL: precise 400s.
    for (provider, body, param) in [
        ("nowhere", json!({"api_key": "sk-x"}), "provider"),
        ("demo", json!({"api_key": "sk-x"}), "provider"),
        ("byo-openai", json!({"api_key": ""}), "api_key"),
        (
            "byo-openai",
            json!({"api_key": "sk-x", "api_version": "2024-10-21"}),
            "api_version",
        ),
    ] {
        let r = put(provider, body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{provider} {body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["param"], param, "{e}");
    }
    // The tenant cannot choose where its key (and its prompts) are sent.
    let r = put(
        "byo-openai",
        json!({"api_key": "sk-x", "base_url": "http://169.254.169.254/v1"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);

    // Removed: acme is back on the platform's key.
    let r = gw
        .http
        .delete(format!("{}/tenant/v1/provider-keys/byo-openai", gw.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.wait_for_revision().await;
    let r = gw
        .post("/v1/chat/completions", &acme_key, &chat("byo-gpt", "after"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(last_key(&ep), UPSTREAM_KEY);

    // Crypto-shredded with the tenant: the sealed key no longer opens (after a restart, so
    // nothing opened before the shred is still in memory).
    gw.state
        .keyring()
        .shred(&TestGateway::admin(), &acme.id)
        .await
        .unwrap();
    let gw = gw.restart().await;
    let r = gw.post("/v1/messages", &acme_key, &calls[3].1).await;
    assert_ne!(
        r.status(),
        200,
        "a shredded tenant's own key was still used"
    );
    assert_eq!(
        last_key(&ep),
        UPSTREAM_KEY,
        "nothing was sent with acme's key"
    );
    gw.stop().await;
    ep.stop().await;
}
