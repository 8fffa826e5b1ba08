//! Budgets and the kill switch across replicas: three `tenantgate serve` processes share one
//! Redis (limits) and one database. 1,000 concurrent calls from one tenant against a spend
//! budget, one replica restarted in the middle: the admitted spend never exceeds the budget by
//! more than one call's reserved maximum, and the shared counter equals the sum of the settled
//! costs in the audit log (no call counted twice). Then the tenant's kill switch, flipped on one
//! replica, stops calls on the others within a second.
//!
//! Needs `TENANTGATE_TEST_REDIS_URL` (skipped without it, with a message).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{cli_json, serve_with, terminate};
use rand::Rng;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_holds_across_three_replicas_sharing_redis() {
    let Some(redis) = common::skip::backend_url("TENANTGATE_TEST_REDIS_URL") else {
        return;
    };
    let mock = mockllm::start("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("tgtest:{:016x}:", rand::thread_rng().gen::<u64>());
    std::fs::write(
        dir.path().join("tenantgate.toml"),
        format!(
            r#"
[demo]
enabled = false
bootstrap_tenant = false
[limits]
backend = "redis"
redis_url = "{redis}"
redis_prefix = "{prefix}"
reservation_ttl_secs = 30
[[providers]]
name = "mock"
kind = "openai_compatible"
base_url = "{}/v1"
[[models]]
name = "priced"
provider = "mock"
upstream_model = "m"
pricing = {{ input_per_mtok = 1000000000, output_per_mtok = 1000000000 }}
"#,
            mock.base_url()
        ),
    )
    .unwrap();
    let cfg = dir.path().join("tenantgate.toml");
    let cfg = cfg.to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut all = vec!["--config", cfg];
        all.extend_from_slice(args);
        cli_json(dir.path(), &all)
    };
    // Enterprise: no rate or concurrency limits by default, so only the budget refuses.
    cli(&[
        "tenant",
        "create",
        "--slug",
        "acme",
        "--models",
        "priced",
        "--plan",
        "enterprise",
    ]);
    let key = cli(&["key", "create", "--tenant", "acme"])["key"]
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
    let budget: i64 = 3_000_000;
    cli(&[
        "tenant",
        "limits",
        "acme",
        "--set",
        &format!(r#"{{"monthly_spend_micros": {budget}}}"#),
    ]);

    let env = [("TENANTGATE_CONFIG", cfg)];
    let serve = |_: usize| serve_with(dir.path(), &env);
    let mut replicas = Vec::new();
    for i in 0..3 {
        replicas.push(serve(i).await);
    }
    let urls: Vec<String> = replicas.iter().map(|r| r.1.clone()).collect();
    let urls = Arc::new(std::sync::Mutex::new(urls));
    let http = reqwest::Client::new();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..1000usize {
        let (http, key, urls, done) = (http.clone(), key.clone(), urls.clone(), done.clone());
        #[expect(clippy::disallowed_methods, reason = "the test drives the server from outside; its tasks are not server background work")]
        tasks.push(tokio::spawn(async move {
            // A call whose replica is being restarted goes to the next one, as a load
            // balancer would send it.
            for attempt in 0..3 {
                let url = urls.lock().unwrap()[(i + attempt) % 3].clone();
                let r = http
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&json!({"model": "priced", "max_tokens": 20,
                        "messages": [{"role": "user", "content": format!("question {i} mock:chunk_delay_ms=2")}]}))
                    .send()
                    .await;
                if let Ok(r) = r {
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or_default();
                    done.fetch_add(1, Ordering::Relaxed);
                    return (status, body["error"]["code"].as_str().unwrap_or("").to_owned());
                }
            }
            (0, "unreachable".to_owned())
        }));
    }
    // Restart replica 1 in the middle (graceful: in-flight calls finish and settle).
    while done.load(Ordering::Relaxed) < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    terminate(&mut replicas[1].0).await;
    replicas[1] = serve(1).await;
    urls.lock().unwrap()[1] = replicas[1].1.clone();
    let mut admitted = 0;
    for t in tasks {
        let (status, code) = t.await.unwrap();
        match status {
            200 => admitted += 1,
            429 => assert_eq!(code, "insufficient_quota"),
            s => panic!("unexpected status {s} ({code})"),
        }
    }
    let url0 = urls.lock().unwrap()[0].clone();
    let get = |path: &str| {
        let (http, url0, admin) = (http.clone(), url0.clone(), admin.clone());
        let path = path.to_owned();
        async move {
            http.get(format!("{url0}{path}"))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let limits = get("/tenant/v1/limits").await;
    let counted = limits["counted"]["month_spend_micros"].as_i64().unwrap();
    let usage = get("/tenant/v1/usage?group_by=model").await;
    let settled: i64 = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cost_micros"].as_i64().unwrap())
        .sum();
    let requests: i64 = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_i64().unwrap())
        .sum();
    let max_reservation = 220 * 1000;
    assert!(admitted > 0 && admitted < 1000, "{admitted} admitted");
    assert_eq!(requests, admitted, "one settled record per admitted call");
    assert!(
        settled <= budget + max_reservation,
        "spent {settled} of {budget}"
    );
    assert_eq!(
        counted, settled,
        "the shared counter equals the sum of settled costs"
    );
    eprintln!(
        "3 replicas, 1000 concurrent calls, one restart: {admitted} admitted, spend {settled} of {budget} micro-dollars ({:.0}%)",
        settled as f64 * 100.0 / budget as f64
    );

    // The kill switch, flipped through replica 0, stops replicas 1 and 2 within a second.
    let r = http
        .put(format!("{url0}/tenant/v1/kill-switch"))
        .bearer_auth(&admin)
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let flipped = Instant::now();
    for i in 1..3 {
        let url = urls.lock().unwrap()[i].clone();
        loop {
            let r = http
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&json!({"model": "priced", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}))
                .send()
                .await
                .unwrap();
            let body: Value = r.json().await.unwrap();
            if body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("kill switch"))
            {
                break;
            }
            assert!(
                flipped.elapsed() < Duration::from_secs(1),
                "replica {i} still serving 1 s after the kill switch"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    eprintln!(
        "kill switch effective on the other replicas after {} ms",
        flipped.elapsed().as_millis()
    );
    for r in &mut replicas {
        terminate(&mut r.0).await;
    }
}
