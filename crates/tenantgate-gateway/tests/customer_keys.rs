//! Customer-managed keys through the gateway, against a local AWS KMS (moto, through the
//! official SDK): a tenant on the schema tier moved to its own key (as the CLI does, from another keyring) answers
//! chat; when it disables the key, its next calls fail closed with 503 `tenant_key_unavailable`
//! within the KEK cache's bound; enabling the key restores them; a tenant on the platform's key
//! is served throughout.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;
#[path = "common/moto.rs"]
mod moto;

use common::{chat, TestGateway};
use std::time::{Duration, Instant};

/// `encryption.kek_cache_secs` in this test: the bound revocation must show within.
const BOUND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_on_its_own_key_fails_closed_when_it_disables_it_and_recovers_when_it_enables_it()
{
    let Some(kms) = moto::moto().await else {
        return;
    };
    let gw = TestGateway::start_with(|c| c.encryption.kek_cache_secs = BOUND.as_secs()).await;
    // A regulated tenant: the schema tier (its own SQLite file here), its KEK in its own KMS.
    let acme = gw
        .state
        .store()
        .platform(&TestGateway::admin())
        .create_tenant(&tenantgate_core::NewTenant {
            slug: "acme".into(),
            display_name: "Acme".into(),
            plan: tenantgate_core::PlanTier::Enterprise,
            isolation: tenantgate_core::IsolationTier::Schema,
            allowed_models: vec!["gpt-test".into()],
            max_tokens_per_request: None,
        })
        .await
        .unwrap();
    let acme_key = gw.key(&acme, None).await;
    let (_, globex_key) = gw.tenant("globex", &["gpt-test"], None).await;
    let ok = |r: &reqwest::Response| r.status() == 200;
    assert!(ok(&gw
        .post("/v1/chat/completions", &acme_key, &chat("gpt-test", "hi"))
        .await));

    // The operator moves acme to its own key as `tenantgate keys use-kms` does: from a keyring
    // of its own (another process's), so the gateway learns of it through the snapshot.
    let arn = kms.create_key().await;
    let cli =
        tenantgate_gateway::control::keyring(gw.state.store(), &gw.config.encryption).unwrap();
    let status = cli
        .use_customer_key(
            &TestGateway::admin(),
            &acme.id,
            Some(&kms.customer_key(&arn)),
        )
        .await
        .unwrap();
    assert_eq!(status.wrapped_by.as_deref(), Some(&*format!("aws:{arn}")));
    gw.wait_for_revision().await;
    let r = gw
        .post("/v1/chat/completions", &acme_key, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    kms.disable(&arn).await;
    let disabled_at = Instant::now();
    let refused = loop {
        let r = gw
            .post("/v1/chat/completions", &acme_key, &chat("gpt-test", "hi"))
            .await;
        // The tenant on the platform's key is served throughout.
        let other = gw
            .post("/v1/chat/completions", &globex_key, &chat("gpt-test", "hi"))
            .await;
        assert_eq!(other.status(), 200);
        if r.status() != 200 {
            break r;
        }
        assert!(
            disabled_at.elapsed() < BOUND * 5,
            "acme still served {:?} after disabling its key",
            disabled_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = disabled_at.elapsed();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["x-should-retry"], "false");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "tenant_key_unavailable", "{body}");
    // Within the bound (plus the time of one call and a poll step).
    assert!(took <= BOUND + Duration::from_millis(700), "took {took:?}");
    // Fail closed on the other wire too, and on every call while the key stays disabled.
    let r = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &acme_key)
        .json(&serde_json::json!({"model": "gpt-test", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error", "{body}");

    kms.enable(&arn).await;
    let enabled_at = Instant::now();
    loop {
        let r = gw
            .post("/v1/chat/completions", &acme_key, &chat("gpt-test", "hi"))
            .await;
        let other = gw
            .post("/v1/chat/completions", &globex_key, &chat("gpt-test", "hi"))
            .await;
        assert_eq!(other.status(), 200);
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(
            enabled_at.elapsed() < BOUND * 5,
            "acme not served {:?} after enabling its key",
            enabled_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}
