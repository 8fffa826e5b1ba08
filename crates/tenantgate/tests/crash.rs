//! Crash durability of the audit log: the real binary is killed with SIGKILL under load,
//! again and again. Afterwards every call that received a 200 has its record, and the chain
//! (re-signed across restarts) verifies offline.
//!
//! `TENANTGATE_CRASH_KILLS` sets the number of kills (CI runs a short loop; the full 200-kill
//! run is `scripts/crash-loop.sh`).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{bin, cli_json, serve};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_calls_survive_sigkill_and_the_chain_verifies() {
    let kills: usize = std::env::var("TENANTGATE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    // First start bootstraps the demo tenant (and its member key).
    let (mut first, _) = serve(dir.path()).await;
    first.kill().await.unwrap();
    let key = std::fs::read_to_string(dir.path().join("data/demo-key.txt"))
        .unwrap()
        .trim()
        .to_owned();
    let admin = cli_json(
        dir.path(),
        &[
            "key",
            "create",
            "--tenant",
            "demo",
            "--role",
            "tenant_admin",
        ],
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let public_key = cli_json(dir.path(), &["audit", "public-key"])["public_key"]
        .as_str()
        .unwrap()
        .to_owned();

    let http = reqwest::Client::new();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();
    for round in 0..kills {
        let (mut child, url) = serve(dir.path()).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut load = Vec::new();
        for _ in 0..8 {
            let (http, url, key, acked, stop) = (
                http.clone(),
                url.clone(),
                key.clone(),
                acked.clone(),
                stop.clone(),
            );
            #[expect(clippy::disallowed_methods, reason = "the test drives the server from outside; its tasks are not server background work")]
            load.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = http
                        .post(format!("{url}/v1/chat/completions"))
                        .bearer_auth(&key)
                        .json(&serde_json::json!({"model": "demo", "messages": [{"role": "user", "content": "hello"}]}))
                        .send()
                        .await;
                    let Ok(r) = r else { continue };
                    if r.status() != 200 {
                        continue;
                    }
                    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
                    // Acknowledged = the whole 200 response arrived.
                    if r.bytes().await.is_ok() {
                        acked.lock().unwrap().push(id);
                    }
                }
            }));
        }
        // Kill at a varying moment, mid-load.
        let ms = 40 + (round as u64 * 37) % 200;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        stop.store(true, Ordering::Relaxed);
        for t in load {
            t.await.unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= kills,
        "too little load to mean anything: {} acknowledged calls",
        acked.len()
    );

    // After the last kill: start again, export the whole chain, verify it offline with the
    // pinned key, and find every acknowledged call in it.
    let (mut child, url) = serve(dir.path()).await;
    let export = http
        .get(format!("{url}/tenant/v1/audit/export"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    let text = export.text().await.unwrap();
    child.start_kill().unwrap();
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, &text).unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "audit",
            "verify",
            file.to_str().unwrap(),
            "--public-key",
            &public_key,
        ])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    assert_eq!(report["valid"], true);
    assert_eq!(report["keys_pinned"], true);
    let ids: std::collections::HashSet<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["type"] == "record")
        .filter_map(|l| l["record"]["id"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged calls without a record: {lost:?}"
    );
    eprintln!(
        "{kills} kills in {:.1} s: {} acknowledged calls, {} records, all present, chain verifies",
        started.elapsed().as_secs_f64(),
        acked.len(),
        report["records"]
    );
}
