//! `tenantgate incident ...`, the real binary against a separately running `tenantgate serve`
//! on one SQLite store: a freeze from the operator's shell holds the running gateway's calls
//! and an unfreeze releases them; the evidence bundle the CLI writes verifies offline with
//! `incident verify` and a tampered one does not (exit 1); containment kills the tenant's key.
//! Each command's records are read back from the tenant's chain and the platform's.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{bin, cli_json, serve_with, terminate};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The binary's exit status and its JSON output, success or not.
fn run(dir: &std::path::Path, args: &[&str]) -> (bool, Value) {
    let out = std::process::Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("TENANTGATE_CONFIG")
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&out.stderr).into_owned()));
    (out.status.success(), v)
}

async fn call(url: &str, key: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

/// Polls until a call answers `want` (the gateway reloaded its snapshot), within 10 s.
async fn until(url: &str, key: &str, want: u16) -> Value {
    let started = Instant::now();
    loop {
        let (s, v) = call(url, key).await;
        if s == want {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still {s}, want {want}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_commands_from_the_cli_act_on_a_running_gateway_and_are_recorded() {
    let mock = mockllm::start("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tg.db");
    let cfg = dir.path().join("tenantgate.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[database]
url = "sqlite:{}"
[demo]
enabled = false
bootstrap_tenant = false
[auth]
reload_interval_ms = 50
[audit]
checkpoint_interval_ms = 100
[[providers]]
name = "mock"
kind = "openai_compatible"
base_url = "{}/v1"
[[models]]
name = "gpt-test"
provider = "mock"
upstream_model = "m"
"#,
            db.display(),
            mock.base_url()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let with = |args: &[&str]| {
        let mut all = vec!["--config", cfg];
        all.extend_from_slice(args);
        all.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let cli = |args: &[&str]| {
        let all = with(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        cli_json(dir.path(), &all)
    };
    let t = cli(&["tenant", "create", "--slug", "acme", "--models", "gpt-test"]);
    let tenant_id = t["id"].as_str().unwrap().to_owned();
    let key = cli(&["key", "create", "--tenant", "acme"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut child, url) = serve_with(dir.path(), &[("TENANTGATE_CONFIG", cfg)]).await;
    until(&url, &key, 200).await;

    // Freeze from the shell: the running gateway refuses acme's calls at its next reload.
    let f = cli(&[
        "incident",
        "freeze",
        "--tenant",
        "acme",
        "--reason",
        "INC-1 leak",
    ]);
    let id = f["freeze"]["id"].as_str().unwrap().to_owned();
    let body = until(&url, &key, 403).await;
    assert_eq!(body["error"]["code"], "incident_freeze", "{body}");
    let st = cli(&["incident", "status"]);
    assert_eq!(st["freezes"][0]["id"], id.as_str());
    cli(&["incident", "unfreeze", &id]);
    until(&url, &key, 200).await;

    // The CLI's bundle (ends at the newest checkpoint a gateway signed), verified offline.
    let out = dir.path().join("evidence.tar");
    let out_s = out.to_str().unwrap().to_owned();
    let started = Instant::now();
    loop {
        let args = with(&["incident", "evidence", "--tenant", "acme", "--out", &out_s]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, v) = run(dir.path(), &args);
        if ok {
            assert_eq!(v["manifest"]["tenant"], tenant_id.as_str(), "{v}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no bundle: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pk = cli(&["audit", "public-key"])["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, v) = run(
        dir.path(),
        &["incident", "verify", &out_s, "--public-key", &pk],
    );
    assert!(ok, "{v}");
    assert_eq!(v["valid"], true);
    assert!(v["bundle"]["tenant_records"].as_u64().unwrap() >= 1, "{v}");
    let mut bytes = std::fs::read(&out).unwrap();
    let at = bytes
        .windows(8)
        .position(|w| w == b"api_call")
        .expect("a call in the bundle");
    bytes[at + 1] ^= 1;
    let bad = dir.path().join("tampered.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let (ok, v) = run(
        dir.path(),
        &[
            "incident",
            "verify",
            bad.to_str().unwrap(),
            "--public-key",
            &pk,
        ],
    );
    assert!(!ok, "a tampered bundle verified: {v}");
    assert_eq!(v["valid"], false);

    // Containment from the shell: the key is dead on the running gateway.
    let c = cli(&[
        "incident", "contain", "--tenant", "acme", "--reason", "INC-2",
    ]);
    assert_eq!(c["steps"].as_array().unwrap().len(), 7, "{c}");
    until(&url, &key, 401).await;
    terminate(&mut child).await;

    // Recorded in acme's chain and the platform's.
    let config = tenantgate_gateway::Config::load(Some(std::path::Path::new(cfg))).unwrap();
    let store = tenantgate_gateway::server::open_store(&config)
        .await
        .unwrap();
    #[expect(
        clippy::disallowed_methods,
        reason = "the test reads the chains as the operator"
    )]
    let admin = tenantgate_core::PlatformAdmin::local_operator("test");
    let p = store.platform(&admin);
    let actions = |records: Vec<tenantgate_store::audit::StoredRecord>| -> Vec<String> {
        records
            .iter()
            .filter_map(|r| {
                let v: Value = serde_json::from_str(&r.record).unwrap();
                v["detail"]["action"].as_str().map(str::to_owned)
            })
            .collect()
    };
    let acme = tenantgate_core::TenantId::parse(&tenant_id).unwrap();
    let platform = tenantgate_core::TenantId::platform_chain();
    let ta = actions(p.chain(&acme).records(1, i64::MAX as u64).await.unwrap());
    let pa = actions(
        p.chain(&platform)
            .records(1, i64::MAX as u64)
            .await
            .unwrap(),
    );
    for a in [
        "incident.freeze",
        "incident.unfreeze",
        "incident.evidence",
        "incident.contain.rotate_keys",
    ] {
        assert!(
            ta.iter().any(|x| x == a),
            "{a} not in the tenant's chain: {ta:?}"
        );
        assert!(
            pa.iter().any(|x| x == a),
            "{a} not in the platform's chain: {pa:?}"
        );
    }
    store.close().await;
}
