//! Admission on the in-process backend: rate limits with OpenAI's headers, a spend budget
//! under 1,000 concurrent calls (never overspent by more than one reservation, every call
//! counted once), the kill switch, counters surviving a restart, and the usage API.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, minute_now, TestGateway};
use serde_json::{json, Value};
use std::sync::Arc;
use tenantgate_core::Tenant;
use tenantgate_gateway::config::{Config, Pricing};

/// 1,000 micro-dollars per token in and out: each call costs a visible amount.
fn priced(c: &mut Config) {
    for m in &mut c.models {
        m.pricing = Some(Pricing {
            input_per_mtok: 1_000_000_000,
            output_per_mtok: 1_000_000_000,
            cached_input_per_mtok: 0,
            training_per_mtok: 0,
        });
    }
}

async fn set_limits(gw: &TestGateway, t: &Tenant, json: &str) {
    let admin = TestGateway::admin();
    gw.state
        .store()
        .platform(&admin)
        .set_limits(&t.id, Some(json), None)
        .await
        .unwrap();
    gw.wait_for_revision().await;
}

#[tokio::test]
async fn requests_per_minute_answers_429_with_openai_headers() {
    let gw = TestGateway::start().await;
    // The window is the clock minute: a run that straddles a minute boundary starts over
    // with a fresh tenant (the precondition, not the assertion, is repeated).
    for attempt in 0..2 {
        let (t, key) = gw
            .tenant(&format!("acme-{attempt}"), &["gpt-test"], None)
            .await;
        set_limits(&gw, &t, r#"{"requests_per_minute": 3}"#).await;
        let m = minute_now();
        let mut remaining = Vec::new();
        for _ in 0..3 {
            let r = gw
                .post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
                .await;
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["x-ratelimit-limit-requests"], "3");
            assert!(r.headers()["x-ratelimit-reset-requests"]
                .to_str()
                .unwrap()
                .ends_with('s'));
            remaining.push(
                r.headers()["x-ratelimit-remaining-requests"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        let r = gw
            .post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
            .await;
        if minute_now() != m {
            continue;
        }
        assert_eq!(remaining, ["2", "1", "0"]);
        assert_eq!(r.status(), 429);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(body["error"]["type"], "requests");
        gw.stop().await;
        return;
    }
    panic!("two attempts straddled a minute boundary");
}

/// The budget test of the issue, on one process: 1,000 concurrent calls against a spend budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spend_budget_holds_under_1000_concurrent_calls_and_counts_each_call_once() {
    let gw = TestGateway::start_with(priced).await;
    let (t, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let budget: i64 = 2_000_000;
    // Only the budget may refuse here: the plan's concurrency limit is lifted.
    set_limits(
        &gw,
        &t,
        &format!(r#"{{"monthly_spend_micros": {budget}, "concurrent_requests": 100000}}"#),
    )
    .await;
    let gw = Arc::new(gw);
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (gw, key) = (gw.clone(), key.clone());
        #[expect(
            clippy::disallowed_methods,
            reason = "the test drives the server from outside; its tasks are not server background work"
        )]
        tasks.push(tokio::spawn(async move {
            let mut body = chat(
                "gpt-test",
                &format!("question number {i} mock:chunk_delay_ms=1"),
            );
            body["max_tokens"] = json!(20);
            let r = gw.post("/v1/chat/completions", &key, &body).await;
            let status = r.status().as_u16();
            let code = if status == 429 {
                r.json::<Value>().await.unwrap()["error"]["code"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            } else {
                String::new()
            };
            (status, code)
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let (status, code) = task.await.unwrap();
        match status {
            200 => ok += 1,
            429 => assert_eq!(code, "insufficient_quota"),
            s => panic!("unexpected status {s}"),
        }
    }
    let admin = gw.get("/tenant/v1/limits", &gw.admin_key(&t).await).await;
    let limits: Value = admin.json().await.unwrap();
    let counted = limits["counted"]["month_spend_micros"].as_i64().unwrap();
    let usage: Value = gw
        .get("/tenant/v1/usage?group_by=model", &gw.admin_key(&t).await)
        .await
        .json()
        .await
        .unwrap();
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
    // One call's reserved maximum: its prompt (tokenized as sent, well under 200 tokens) plus
    // 20 output tokens, at 1,000 micro-dollars a token.
    let max_reservation = 220 * 1000;
    assert!(ok > 0 && ok < 1000, "{ok} admitted");
    assert_eq!(requests, ok, "one usage record per admitted call");
    assert!(
        settled <= budget + max_reservation,
        "spent {settled} of {budget}"
    );
    assert_eq!(
        counted, settled,
        "the budget counter equals the sum of settled costs"
    );
    eprintln!(
        "1000 concurrent calls: {ok} admitted, spend {settled} of {budget} micro-dollars ({:.0}%)",
        settled as f64 * 100.0 / budget as f64
    );
    Arc::try_unwrap(gw).ok().unwrap().stop().await;
}

#[tokio::test]
async fn the_kill_switch_stops_calls_at_once_and_is_recorded() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let put = |on: bool| {
        gw.http
            .put(format!("{}/tenant/v1/kill-switch", gw.url))
            .bearer_auth(&admin)
            .json(&json!({"enabled": on}))
            .send()
    };
    assert_eq!(put(true).await.unwrap().status(), 200);
    let r = gw
        .post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_quota");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("kill switch"));
    // A member cannot flip it back.
    let r = gw
        .http
        .put(format!("{}/tenant/v1/kill-switch", gw.url))
        .bearer_auth(&key)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(put(false).await.unwrap().status(), 200);
    let r = gw
        .post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn budget_counters_survive_a_restart() {
    let gw = TestGateway::start_with(priced).await;
    let (t, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    for _ in 0..5 {
        let r = gw
            .post(
                "/v1/chat/completions",
                &key,
                &chat("gpt-test", "hello there"),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let before: Value = gw
        .get("/tenant/v1/limits", &admin)
        .await
        .json()
        .await
        .unwrap();
    let spent = before["counted"]["month_spend_micros"].as_i64().unwrap();
    assert!(spent > 0);
    let gw = gw.restart().await;
    let after: Value = gw
        .get("/tenant/v1/limits", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        after["counted"]["month_spend_micros"].as_i64().unwrap(),
        spent
    );
    assert_eq!(
        after["counted"]["month_tokens"],
        before["counted"]["month_tokens"]
    );
    // A budget just above what was spent admits exactly until it is reached.
    set_limits(&gw, &t, &format!(r#"{{"monthly_spend_micros": {spent}}}"#)).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            &key,
            &chat("gpt-test", "hello there"),
        )
        .await;
    assert_eq!(r.status(), 429);
    gw.stop().await;
}

#[tokio::test]
async fn usage_is_reported_by_model_and_user() {
    let gw = TestGateway::start_with(priced).await;
    let (t, key) = gw.tenant("acme", &["gpt-test", "claude-test"], None).await;
    let admin = gw.admin_key(&t).await;
    for m in ["gpt-test", "gpt-test", "claude-test"] {
        assert_eq!(
            gw.post("/v1/chat/completions", &key, &chat(m, "one two three"))
                .await
                .status(),
            200
        );
    }
    let by_model: Value = gw
        .get("/tenant/v1/usage?group_by=model", &admin)
        .await
        .json()
        .await
        .unwrap();
    let rows = by_model["data"].as_array().unwrap();
    let gpt = rows.iter().find(|r| r["group"] == "gpt-test").unwrap();
    assert_eq!(gpt["requests"], 2);
    assert!(gpt["cost_micros"].as_i64().unwrap() > 0);
    let by_user: Value = gw
        .get("/tenant/v1/usage?group_by=user", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_user["data"][0]["group"], "end-user-1");
    assert_eq!(by_user["data"][0]["requests"], 3);
    let by_day: Value = gw
        .get("/tenant/v1/usage", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_day["data"][0]["group"].as_str().unwrap().len(), 10);
    let bad = gw.get("/tenant/v1/usage?group_by=color", &admin).await;
    assert_eq!(bad.status(), 400);
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_the_client_abandons_settles_what_it_consumed() {
    let gw = TestGateway::start_with(priced).await;
    let (t, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let words = "word ".repeat(300);
    let mut s = chat(
        "gpt-test",
        &format!("{words} mock:chunks=100 mock:chunk_delay_ms=20"),
    );
    s["stream"] = json!(true);
    s["max_tokens"] = json!(1000);
    let mut resp = gw.post("/v1/chat/completions", &key, &s).await;
    for _ in 0..5 {
        resp.chunk().await.unwrap();
    }
    drop(resp);
    // OpenAI sends usage only at the end: the prompt (tokenized) and the output delivered
    // (counted) are settled, not zero and not the 1,000-token reservation.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let row = loop {
        let u: Value = gw
            .get("/tenant/v1/usage?group_by=model", &admin)
            .await
            .json()
            .await
            .unwrap();
        if let Some(r) = u["data"].as_array().and_then(|a| a.first()).cloned() {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no usage for the abandoned stream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let (input, output) = (
        row["input_tokens"].as_i64().unwrap(),
        row["output_tokens"].as_i64().unwrap(),
    );
    assert!(input >= 300, "prompt tokens counted: {row}");
    assert!(
        output > 0 && output < 1000,
        "delivered output counted: {row}"
    );
    assert_eq!(
        row["cost_micros"].as_i64().unwrap(),
        (input + output) * 1000
    );
    let limits: Value = gw
        .get("/tenant/v1/limits", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(limits["counted"]["month_spend_micros"], row["cost_micros"]);
    gw.stop().await;
}

#[tokio::test]
async fn a_spend_spike_trips_the_anomaly_breaker() {
    let gw = TestGateway::start_with(|c| {
        priced(c);
        c.limits.anomaly_multiple = 2;
        c.limits.anomaly_floor_micros_per_minute = 20_000;
    })
    .await;
    let (_, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let mut tripped = None;
    for _ in 0..30 {
        let mut body = chat("gpt-test", "a short question");
        body["max_tokens"] = json!(5);
        let r = gw.post("/v1/chat/completions", &key, &body).await;
        if r.status() == 429 {
            tripped = Some(r.json::<Value>().await.unwrap());
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let body = tripped.expect("the breaker never tripped");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("spend anomaly"));
    let metrics = gw.get("/metrics", "").await.text().await.unwrap();
    assert!(
        metrics.contains("tenantgate_admission_spend_anomalies_total 1"),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_cache_hit_costs_nothing() {
    let gw = TestGateway::start_with(|c| {
        priced(c);
        c.cache.enabled = true;
    })
    .await;
    let (t, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let cost = || async {
        let u: Value = gw
            .get("/tenant/v1/usage?group_by=model", &admin)
            .await
            .json()
            .await
            .unwrap();
        (
            u["data"][0]["requests"].as_i64().unwrap(),
            u["data"][0]["cost_micros"].as_i64().unwrap(),
        )
    };
    let body = chat("gpt-test", "the same question twice");
    let first = gw.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(first.headers()["x-tenantgate-cache"], "miss");
    let (n1, c1) = cost().await;
    assert_eq!(n1, 1);
    assert!(c1 > 0);
    let second = gw.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(second.headers()["x-tenantgate-cache"], "hit");
    // Recorded as a call, priced at zero: the provider was not called.
    assert_eq!(cost().await, (2, c1));
    let limits: Value = gw
        .get("/tenant/v1/limits", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(limits["counted"]["month_spend_micros"], c1);
    gw.stop().await;
}

/// Waits (deadline poll) until `check` returns something.
async fn poll<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Issue 14 item 8: a non-streamed call whose client leaves while the provider is still
/// thinking (the handler is dropped) is recorded as `cancelled` (499), settled at its prompt,
/// and its concurrency slot is free at once, not after `reservation_ttl_secs`: on both wires
/// and for embeddings.
#[tokio::test]
async fn a_cancelled_call_is_recorded_settled_and_frees_its_slot_at_once() {
    let gw = TestGateway::start_with(priced).await;
    let (t, key) = gw.tenant("acme", &["gpt-test", "claude-test"], None).await;
    let admin = gw.admin_key(&t).await;
    // One call at a time; the budget makes admission count tokens (the prompt is settled).
    set_limits(
        &gw,
        &t,
        r#"{"concurrent_requests": 1, "monthly_spend_micros": 1000000000000}"#,
    )
    .await;
    let gw = Arc::new(gw);
    let hang = "please think for an hour mock:timeout";
    let cases = [
        ("/v1/chat/completions", chat("gpt-test", hang)),
        (
            "/v1/messages",
            json!({"model": "claude-test", "max_tokens": 64,
                "messages": [{"role": "user", "content": hang}]}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "gpt-test", "input": hang}),
        ),
    ];
    for (i, (path, body)) in cases.into_iter().enumerate() {
        let seen = gw
            .mock
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed);
        #[expect(
            clippy::disallowed_methods,
            reason = "the test drives the server from outside; its tasks are not server background work"
        )]
        let call = {
            let (gw, key, body) = (gw.clone(), key.clone(), body.clone());
            tokio::spawn(async move { gw.post(path, &key, &body).await })
        };
        // The provider has the request: the call holds its reservation and slot.
        poll("the provider to receive the call", || async {
            (gw.mock
                .stats
                .requests
                .load(std::sync::atomic::Ordering::Relaxed)
                > seen)
                .then_some(())
        })
        .await;
        // The client gives up: its connection closes, the gateway drops the handler.
        call.abort();
        let _ = call.await;
        let rec = poll("the cancelled call's record", || async {
            let page: Value = gw
                .get("/tenant/v1/audit/records?status=499", &admin)
                .await
                .json()
                .await
                .unwrap();
            let recs = page["data"].as_array().unwrap().clone();
            (recs.len() == i + 1).then(|| recs[0]["record"].clone())
        })
        .await;
        assert_eq!(rec["event"], "api_call", "{path}: {rec}");
        assert_eq!(rec["detail"]["outcome"], "cancelled", "{path}: {rec}");
        // Settled at the prompt it sent (priced at 1,000 micro-dollars a token), no output.
        let input = rec["tokens"]["input"].as_i64().unwrap();
        assert!(input > 0, "{path}: {rec}");
        assert_eq!(rec["tokens"]["output"], 0, "{path}: {rec}");
        assert_eq!(rec["cost_micros"].as_i64().unwrap(), input * 1000, "{path}");
        // The slot is free at once: the next call (concurrency limit 1) is admitted.
        let r = gw
            .post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
            .await;
        assert_eq!(
            r.status(),
            200,
            "{path}: the cancelled call still holds its slot"
        );
    }
    // Every call settled exactly once: the budget counter is the sum of the recorded costs.
    let limits: Value = gw
        .get("/tenant/v1/limits", &admin)
        .await
        .json()
        .await
        .unwrap();
    let usage: Value = gw
        .get("/tenant/v1/usage?group_by=model", &admin)
        .await
        .json()
        .await
        .unwrap();
    let settled: i64 = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cost_micros"].as_i64().unwrap())
        .sum();
    assert_eq!(
        limits["counted"]["month_spend_micros"].as_i64().unwrap(),
        settled
    );
    Arc::try_unwrap(gw).ok().unwrap().stop().await;
}

/// Issue 14 item 13 (the counting part): a call refused after authentication (unknown model
/// 404, bad body 400, a model outside its allow-list 404) still uses one request of its
/// tenant's and key's per-minute windows; once a window is full, the caller gets 429 before
/// any other work (even a bad body is not read), and nothing reaches the provider.
#[tokio::test]
async fn refused_calls_count_against_the_request_rate() {
    let gw = TestGateway::start().await;
    // The windows are clock minutes: a run that straddles a boundary starts over with fresh
    // tenants (the precondition, not the assertion, is repeated).
    for attempt in 0..2 {
        let m = minute_now();
        let (t, key) = gw
            .tenant(&format!("acme-{attempt}"), &["gpt-test"], None)
            .await;
        let other_key = gw.key(&t, None).await;
        set_limits(
            &gw,
            &t,
            r#"{"requests_per_minute": 4, "key_requests_per_minute": 3}"#,
        )
        .await;
        let upstream_before = gw
            .mock
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed);
        let refused = [
            gw.post("/v1/chat/completions", &key, &chat("no-such-model", "hi"))
                .await
                .status(),
            gw.post_raw("/v1/chat/completions", &key, "{not json")
                .await
                .status(),
            gw.post("/v1/chat/completions", &key, &chat("claude-test", "hi"))
                .await
                .status(),
        ];
        // The key's window (3) is full: 429 first, even for a body that is not JSON.
        let over_valid = gw
            .post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
            .await;
        let over_status = over_valid.status();
        let over_code = over_valid.json::<Value>().await.unwrap()["error"]["code"].clone();
        let over_bad = gw
            .post_raw("/v1/chat/completions", &key, "{not json")
            .await
            .status();
        // Another key of the tenant has its own key window, but takes the tenant's last
        // request (4 counted: 3 refused + this one).
        let other = gw
            .post("/v1/chat/completions", &other_key, &chat("gpt-test", "hi"))
            .await
            .status();
        let tenant_full = gw
            .post("/v1/chat/completions", &other_key, &chat("gpt-test", "hi"))
            .await
            .status();
        let upstream_calls = gw
            .mock
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
            - upstream_before;
        if minute_now() != m {
            continue;
        }
        assert_eq!(refused.map(|s| s.as_u16()), [404, 400, 404]);
        assert_eq!(over_status, 429);
        assert_eq!(over_code, "rate_limit_exceeded");
        assert_eq!(over_bad, 429);
        assert_eq!(other, 200);
        assert_eq!(tenant_full, 429);
        assert_eq!(
            upstream_calls, 1,
            "only the admitted call reached the provider"
        );
        gw.stop().await;
        return;
    }
    panic!("two minute boundaries crossed");
}
