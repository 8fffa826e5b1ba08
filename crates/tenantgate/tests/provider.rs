//! `tenantgate provider drain|undrain|status`, the real binary against a separately running
//! `tenantgate serve`: the provider-outage playbook from the operator's shell. A drain reaches
//! the running gateway through its snapshot reload and its calls fail over to the next
//! target; an undrain brings them back; both are listed and recorded.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{cli_json, serve_with, terminate};
use mockllm::{MockConfig, MockHandle};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const KEY: &str = "sk-platform-regions-3333";

async fn region() -> MockHandle {
    mockllm::start(
        "127.0.0.1:0".parse().unwrap(),
        MockConfig {
            api_key: Some(KEY.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn seen(m: &MockHandle) -> u64 {
    m.stats.requests.load(Ordering::SeqCst)
}

/// Calls until `to` takes them (the gateway reloaded its snapshot), within 5 s; then one more
/// call reaches `to` alone.
async fn moves_to(url: &str, key: &str, to: &MockHandle, other: &MockHandle) {
    let http = reqwest::Client::new();
    let call = || async {
        http.post(format!("{url}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "gpt-ha", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let started = Instant::now();
    loop {
        let before = seen(to);
        assert_eq!(call().await, 200);
        if seen(to) > before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the change did not reach the gateway"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (t, o) = (seen(to), seen(other));
    assert_eq!(call().await, 200);
    assert_eq!((seen(to), seen(other)), (t + 1, o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_from_the_cli_moves_a_running_gateways_calls_and_an_undrain_brings_them_back() {
    let east = region().await;
    let west = region().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("provider.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let cfg = dir.path().join("tenantgate.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[demo]
bootstrap_tenant = false
[auth]
reload_interval_ms = 50
[[providers]]
name = "east"
kind = "openai_compatible"
base_url = "{}/v1"
api_key_file = "{k}"
[[providers]]
name = "west"
kind = "openai_compatible"
base_url = "{}/v1"
api_key_file = "{k}"
[[models]]
name = "gpt-ha"
provider = "east"
[[models.targets]]
provider = "west"
"#,
            east.base_url(),
            west.base_url(),
            k = key_file.display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut all = vec!["--config", cfg];
        all.extend_from_slice(args);
        cli_json(dir.path(), &all)
    };
    cli(&["tenant", "create", "--slug", "acme", "--models", "gpt-ha"]);
    let member = cli(&["key", "create", "--tenant", "acme"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut child, url) = serve_with(dir.path(), &[("TENANTGATE_CONFIG", cfg)]).await;
    moves_to(&url, &member, &east, &west).await;

    let d = cli(&[
        "provider",
        "drain",
        "east",
        "--reason",
        "INC-2231 us-east 5xx",
    ]);
    assert_eq!(d["provider"], "east");
    assert!(d["actor"].as_str().unwrap().starts_with("cli:"), "{d}");
    moves_to(&url, &member, &west, &east).await;
    let status = cli(&["provider", "status"]);
    assert_eq!(
        status["drains"][0]["reason"], "INC-2231 us-east 5xx",
        "{status}"
    );
    assert_eq!(status["models"][0]["targets"], json!(["east", "west"]));

    // Refusals name what is wrong and change nothing.
    let out = std::process::Command::new(common::bin())
        .args([
            "--config", cfg, "provider", "drain", "nowhere", "--reason", "x",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));

    let u: Value = cli(&["provider", "undrain", "east"]);
    assert_eq!(u["drained"], false);
    moves_to(&url, &member, &east, &west).await;
    assert_eq!(cli(&["provider", "status"])["drains"], json!([]));
    terminate(&mut child).await;
    east.stop().await;
    west.stop().await;
}
