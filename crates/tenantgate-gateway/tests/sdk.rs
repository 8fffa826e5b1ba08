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
        eprintln!("skipping SDK test: {python} lacks the openai/anthropic packages (scripts/test.sh installs them)");
        return;
    }
    let gw = TestGateway::start().await;
    let (_, key) = gw
        .tenant("sdk-tenant", &["gpt-test", "claude-test", "demo"], None)
        .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/check_sdks.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .env("TG_BASE_URL", &gw.url)
        .env("TG_KEY", &key)
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
    gw.stop().await;
}
