//! The official OpenAI and Anthropic Python SDKs against a running gateway.
//!
//! Needs a Python with the `openai` and `anthropic` packages: `TENANTGATE_PYTHON` names it
//! (default `python3`). When `TENANTGATE_SDK_TESTS=1` (set by `scripts/test.sh` and CI) a
//! missing package fails the test; otherwise the test says it is skipped and returns.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::TestGateway;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_work_unchanged_against_the_gateway() {
    let python = std::env::var("TENANTGATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let required = std::env::var("TENANTGATE_SDK_TESTS").as_deref() == Ok("1");
    let probe = tokio::process::Command::new(&python)
        .args(["-c", "import openai, anthropic"])
        .output()
        .await;
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(
            !required,
            "TENANTGATE_SDK_TESTS=1 but {python} cannot import openai and anthropic: {probe:?}"
        );
        common::skip::skip(&format!(
            "{python} lacks the openai/anthropic packages (scripts/test.sh installs them)"
        ));
        return;
    }
    let gw = TestGateway::start().await;
    let (_, key) = gw
        .tenant("sdk-tenant", &["gpt-test", "claude-test", "demo"], None)
        .await;
    let (killed, killed_key) = gw.tenant("sdk-killed", &["gpt-test"], None).await;
    let admin = TestGateway::admin();
    gw.state
        .store()
        .platform(&admin)
        .set_limits(&killed.id, None, Some(true))
        .await
        .unwrap();
    gw.wait_for_revision().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/check_sdks.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .env("TG_BASE_URL", &gw.url)
        .env("TG_KEY", &key)
        .env("TG_KILLED_KEY", &killed_key)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK checks failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("sdk checks passed"));
    // The SDK (max_retries=2) tried the killed tenant once: one refusal in its audit chain.
    let admin_key = gw.admin_key(&killed).await;
    let recs: serde_json::Value = gw
        .get("/tenant/v1/audit/records?event=access_denied", &admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        recs["data"].as_array().unwrap().len(),
        1,
        "the SDK retried: {recs}"
    );
    gw.stop().await;
}
