//! `tenantgate tenant endpoint set|list|remove`, the real binary against a separately running
//! `tenantgate serve`: the change reaches the gateway through its snapshot reload, the
//! tenant's calls go to its own server with its own key and back to the platform's after the
//! removal; the key is in no command output, no error, no audit record, no line of the
//! server's log and not in clear in the database files.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{bin, cli_json, terminate};
use mockllm::{MockConfig, MockHandle};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const SHARED_KEY: &str = "sk-platform-shared-1111";
const OWN_KEY: &str = "sk-acme-own-CLI-2222";

async fn mock(key: &str) -> MockHandle {
    mockllm::start(
        "127.0.0.1:0".parse().unwrap(),
        MockConfig {
            api_key: Some(key.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// `tenantgate serve` with `config`, its whole log (TRACE, every target)
/// collected line by line.
async fn serve(
    dir: &Path,
    config: &str,
) -> (tokio::process::Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = tokio::process::Command::new(bin())
        .args(["--config", config, "serve"])
        .current_dir(dir)
        .env_remove("TENANTGATE_CONFIG")
        .env("TENANTGATE_SERVER__LISTEN", "127.0.0.1:0")
        .env("TENANTGATE_LOG_FORMAT", "json")
        .env("TENANTGATE_LOG", "trace")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(Mutex::new(Vec::new()));
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("no listening line within 30 s")
            .unwrap()
            .expect("serve exited before listening");
        log.lock().unwrap().push(line.clone());
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "tenantgate listening" {
            break format!("http://{}", v["fields"]["addr"].as_str().unwrap());
        }
    };
    let sink = log.clone();
    #[expect(
        clippy::disallowed_methods,
        reason = "the test drives the server from outside; its tasks are not server background work"
    )]
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    (child, url, log)
}

/// One chat call; its status.
async fn chat(url: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Calls until `to` gets the call (the gateway reloaded its snapshot), within 5 s; then
/// checks one more call reaches `to` alone, with `key`.
async fn switches_to(url: &str, member: &str, to: &MockHandle, other: &MockHandle, key: &str) {
    let started = Instant::now();
    loop {
        let before = to.stats.requests.load(Ordering::SeqCst);
        assert_eq!(chat(url, member).await, 200);
        if to.stats.requests.load(Ordering::SeqCst) > before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the change did not reach the gateway"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (t, o) = (
        to.stats.requests.load(Ordering::SeqCst),
        other.stats.requests.load(Ordering::SeqCst),
    );
    assert_eq!(chat(url, member).await, 200);
    assert_eq!(to.stats.requests.load(Ordering::SeqCst), t + 1);
    assert_eq!(other.stats.requests.load(Ordering::SeqCst), o);
    let seen = to.stats.last_request().unwrap();
    assert_eq!(seen.headers["authorization"], format!("Bearer {key}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_commands_reroute_a_running_gateway_and_never_show_the_key() {
    let shared = mock(SHARED_KEY).await;
    let own = mock(OWN_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let shared_key = dir.path().join("shared.key");
    let own_key = dir.path().join("own.key");
    std::fs::write(&shared_key, format!("{SHARED_KEY}\n")).unwrap();
    std::fs::write(&own_key, format!("{OWN_KEY}\n")).unwrap();
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
name = "shared"
kind = "openai_compatible"
base_url = "{}/v1"
api_key_file = "{}"
[[models]]
name = "gpt-test"
provider = "shared"
upstream_model = "m"
"#,
            shared.base_url(),
            shared_key.display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--config", cfg];
        all.extend_from_slice(args);
        std::process::Command::new(bin())
            .args(&all)
            .current_dir(dir.path())
            .env_remove("TENANTGATE_CONFIG")
            .output()
            .unwrap()
    };
    let cli = |args: &[&str]| {
        let mut all = vec!["--config", cfg];
        all.extend_from_slice(args);
        cli_json(dir.path(), &all)
    };
    let mut outputs = Vec::new();
    cli(&["tenant", "create", "--slug", "acme", "--models", "gpt-test"]);
    let member = cli(&["key", "create", "--tenant", "acme"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = cli(&[
        "key",
        "create",
        "--tenant",
        "acme",
        "--role",
        "tenant_admin",
    ])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut child, url, log) = serve(dir.path(), cfg).await;
    switches_to(&url, &member, &shared, &own, SHARED_KEY).await;

    let own_base = format!("{}/v1", own.base_url());
    let set = cli(&[
        "tenant",
        "endpoint",
        "set",
        "acme",
        "--provider",
        "shared",
        "--base-url",
        &own_base,
        "--api-key-file",
        own_key.to_str().unwrap(),
    ]);
    assert_eq!(set["endpoint"]["provider"], "shared");
    assert_eq!(set["endpoint"]["base_url"], own_base.as_str());
    outputs.push(set.to_string());
    switches_to(&url, &member, &own, &shared, OWN_KEY).await;

    let listed = cli(&["tenant", "endpoint", "list", "acme"]);
    assert_eq!(listed["endpoints"][0]["base_url"], own_base.as_str());
    assert_eq!(listed["endpoints"].as_array().unwrap().len(), 1);
    outputs.push(listed.to_string());

    // Refused: an unknown provider, a URL carrying a query; the errors name the problem.
    for (args, says) in [
        (
            vec!["--provider", "nope", "--base-url", own_base.as_str()],
            "no provider \"nope\"",
        ),
        (
            vec![
                "--provider",
                "shared",
                "--base-url",
                "https://h.example/v1?k=1",
            ],
            "base_url",
        ),
    ] {
        let mut all = vec!["tenant", "endpoint", "set", "acme"];
        all.extend(args);
        all.extend(["--api-key-file", own_key.to_str().unwrap()]);
        let out = run(&all);
        assert!(!out.status.success());
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(says), "{text}");
        outputs.push(text);
    }

    let removed = cli(&[
        "tenant",
        "endpoint",
        "remove",
        "acme",
        "--provider",
        "shared",
    ]);
    assert_eq!(removed["removed"], true);
    outputs.push(removed.to_string());
    switches_to(&url, &member, &shared, &own, SHARED_KEY).await;
    let out = run(&[
        "tenant",
        "endpoint",
        "remove",
        "acme",
        "--provider",
        "shared",
    ]);
    assert!(!out.status.success(), "nothing left to remove");

    // Both changes are in the tenant's audit chain, made by the operator on the CLI.
    let records: Value = reqwest::Client::new()
        .get(format!(
            "{url}/tenant/v1/audit/records?event=configuration_change"
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = records["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["record"]["actor"]["kind"] == "platform")
        .filter_map(|r| {
            let d = &r["record"]["detail"];
            Some((d["action"].as_str()?, d["via"].as_str().unwrap_or_default()))
        })
        .collect();
    assert_eq!(
        &actions[..2],
        [
            ("tenant.endpoint.remove", "cli"),
            ("tenant.endpoint.set", "cli")
        ],
        "{records}"
    );
    outputs.push(records.to_string());

    terminate(&mut child).await;
    for (i, o) in outputs.iter().enumerate() {
        assert!(!o.contains(OWN_KEY), "output {i} holds the key: {o}");
    }
    let log = log.lock().unwrap().join("\n");
    assert!(
        log.contains("tenant_endpoints"),
        "the log saw the snapshot reloads"
    );
    assert!(!log.contains(OWN_KEY), "the server's log holds the key");
    let mut bytes = Vec::new();
    for e in std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .flatten()
    {
        if e.path().is_file() {
            bytes.extend(std::fs::read(e.path()).unwrap());
        }
    }
    let holds = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(holds(&own_base), "the grep sees the endpoint rows");
    assert!(!holds(OWN_KEY), "the database holds the key in clear");
    shared.stop().await;
    own.stop().await;
}
