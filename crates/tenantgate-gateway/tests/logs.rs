//! No prompt or response text reaches the logs at INFO, on any path (plain, streamed,
//! translated, failed).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, TestGateway};
use serde_json::json;
use std::sync::{Arc, Mutex};

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

// current_thread: the gateway's tasks run on this thread, under this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn prompts_and_responses_never_reach_info_logs() {
    let cap = Capture::default();
    let writer = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let gw = TestGateway::start().await;
    let (_, key) = gw
        .tenant("acme", &["gpt-test", "claude-test", "demo"], None)
        .await;
    const MARK: &str = "ZEBRA-CANARY-7731";
    // A tenant prompt carrying the marker too: composed on every call below.
    let (t, _) = (
        gw.state
            .store()
            .platform(&TestGateway::admin())
            .find_tenant("acme")
            .await
            .unwrap(),
        (),
    );
    let admin = gw.admin_key(&t).await;
    let r = gw
        .post(
            "/tenant/v1/prompts/p/versions",
            &admin,
            &json!({"template": format!("internal {MARK} rules")}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = gw
        .http
        .put(format!("{}/tenant/v1/prompt-settings", gw.url))
        .bearer_auth(&admin)
        .json(&json!({"client_system": "append", "default_prompt": "p"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for model in ["gpt-test", "claude-test", "demo"] {
        let r = gw
            .post(
                "/v1/chat/completions",
                &key,
                &chat(model, &format!("secret plan {MARK}")),
            )
            .await;
        assert!(
            r.text().await.unwrap().contains(MARK),
            "the echo must carry the marker through the response"
        );
        let mut s = chat(model, &format!("secret plan {MARK}"));
        s["stream"] = json!(true);
        gw.post("/v1/chat/completions", &key, &s)
            .await
            .text()
            .await
            .unwrap();
    }
    gw.post(
        "/v1/chat/completions",
        &key,
        &chat("gpt-test", &format!("{MARK} mock:status=400")),
    )
    .await
    .text()
    .await
    .unwrap();
    gw.post(
        "/v1/chat/completions",
        &key,
        &json!({"model":"gpt-test","messages":[{"role":"nobody","content":MARK}]}),
    )
    .await
    .text()
    .await
    .unwrap();
    gw.stop().await;

    let logs = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.matches("request_id=").count() >= 8,
        "expected request log lines, got:\n{logs}"
    );
    assert!(
        logs.contains("input_tokens="),
        "usage is logged (as numbers)"
    );
    assert!(
        !logs.contains(MARK),
        "prompt or response text leaked into logs:\n{logs}"
    );
    assert!(!logs.contains(&key), "an API key leaked into logs");
    assert!(
        !logs.contains(common::UPSTREAM_KEY),
        "a provider key leaked into logs"
    );
}
