//! Every failure comes back in the caller's SDK shape with the right status, including failures
//! after the 200 of a stream, and a client that goes away cancels the upstream call.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, sse_data, sse_events, TestGateway};
use serde_json::{json, Value};
use std::time::Duration;

async fn openai_error(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    assert!(r.headers().contains_key("x-request-id"));
    let v: Value = r.json().await.unwrap();
    let e = &v["error"];
    assert!(
        e["message"].is_string() && e["type"].is_string(),
        "not an OpenAI error object: {v}"
    );
    assert!(
        e.as_object().unwrap().contains_key("param") && e.as_object().unwrap().contains_key("code")
    );
    (status, v)
}

#[tokio::test]
async fn client_errors_have_the_right_status_and_shape() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let (s, _) = openai_error(gw.post_raw("/v1/chat/completions", &key, "{not json").await).await;
    assert_eq!(s, 400);
    let (s, v) = openai_error(
        gw.post(
            "/v1/chat/completions",
            &key,
            &json!({"model":"gpt-test","messages":[{"role":"user","content":"x"}],"stream":"yes"}),
        )
        .await,
    )
    .await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("stream")));
    let (s, v) = openai_error(
        gw.post("/v1/chat/completions", &key, &json!({"model":"gpt-test"}))
            .await,
    )
    .await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("messages")));
    let (s, _) = openai_error(
        gw.post(
            "/v1/chat/completions",
            "tgk_not_a_real_key",
            &chat("gpt-test", "x"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 401);
    let r = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&chat("gpt-test", "x"))
        .send()
        .await
        .unwrap();
    let (s, v) = openai_error(r).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("missing_api_key"))
    );
    let (s, v) = openai_error(
        gw.post("/v1/chat/completions", &key, &chat("no-such-model", "x"))
            .await,
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    let big = "x".repeat(70 * 1024);
    let (s, _) = openai_error(
        gw.post("/v1/chat/completions", &key, &chat("gpt-test", &big))
            .await,
    )
    .await;
    assert_eq!(s, 413);
    let (s, _) = openai_error(gw.get("/v1/nowhere", &key).await).await;
    assert_eq!(s, 404);
    let (s, _) = openai_error(gw.get("/v1/chat/completions", &key).await).await;
    assert_eq!(s, 405);
    gw.stop().await;
}

#[tokio::test]
async fn anthropic_route_errors_use_anthropic_shape() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["claude-test"], None).await;
    for (body, status) in [
        ("{", 400),
        (
            "{\"model\":\"claude-test\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            400,
        ),
    ] {
        let r = gw
            .http
            .post(format!("{}/v1/messages", gw.url))
            .header("x-api-key", &key)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert!(v["error"]["message"].is_string());
    }
    let r = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    gw.stop().await;
}

#[tokio::test]
async fn upstream_failures_map_to_gateway_statuses() {
    let gw = TestGateway::start().await;
    let (_, key) = gw
        .tenant("acme", &["gpt-test", "slow-gpt", "claude-test"], None)
        .await;
    let (s, v) = openai_error(
        gw.post(
            "/v1/chat/completions",
            &key,
            &chat("gpt-test", "mock:status=500"),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (502, Some("upstream_error"))
    );
    let r = gw
        .post(
            "/v1/chat/completions",
            &key,
            &chat("gpt-test", "mock:status=429 mock:retry_after=7"),
        )
        .await;
    assert_eq!(r.headers()["retry-after"], "7");
    assert!(
        !r.headers().contains_key("x-should-retry"),
        "upstream 429s may be retried by the SDK"
    );
    assert_eq!(openai_error(r).await.0, 429);
    let (s, v) = openai_error(
        gw.post(
            "/v1/chat/completions",
            &key,
            &chat("gpt-test", "mock:status=400"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("mock error 400"));
    let (s, _) = openai_error(
        gw.post(
            "/v1/chat/completions",
            &key,
            &chat("gpt-test", "mock:status=401"),
        )
        .await,
    )
    .await;
    assert_eq!(
        s, 502,
        "the provider refusing our credentials is not the caller's 401"
    );
    let (s, _) = openai_error(
        gw.post(
            "/v1/chat/completions",
            &key,
            &chat("gpt-test", "mock:malformed"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 502);
    let (s, _) = openai_error(
        gw.post(
            "/v1/chat/completions",
            &key,
            &chat("slow-gpt", "mock:timeout"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 504);
    let (s, _) = openai_error(
        gw.post(
            "/v1/chat/completions",
            &key,
            &chat("claude-test", "mock:status=529"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 502);
    gw.stop().await;
}

#[tokio::test]
async fn a_dead_provider_is_a_502_not_a_hang() {
    let gw = TestGateway::start_with(|c| {
        c.providers[0].base_url = Some("http://127.0.0.1:9/v1".into());
    })
    .await;
    let (_, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let (s, _) = openai_error(
        gw.post("/v1/chat/completions", &key, &chat("gpt-test", "x"))
            .await,
    )
    .await;
    assert_eq!(s, 502);
    gw.stop().await;
}

#[tokio::test]
async fn failures_after_the_200_arrive_as_in_stream_errors() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["gpt-test", "claude-test"], None).await;
    for (model, directive) in [
        ("gpt-test", "mock:stream_error_after=2"),
        ("gpt-test", "mock:drop_after=2"),
        ("claude-test", "mock:stream_error_after=3"),
        ("claude-test", "mock:drop_after=3"),
    ] {
        let mut body = chat(model, &format!("a b c d e f {directive}"));
        body["stream"] = json!(true);
        let r = gw.post("/v1/chat/completions", &key, &body).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let data = sse_data(&text);
        let last: Value = serde_json::from_str(data.last().unwrap())
            .unwrap_or_else(|_| panic!("{model} {directive}: {text}"));
        assert!(
            last["error"]["message"].is_string(),
            "{model} {directive}: {text}"
        );
    }
    // Anthropic surface: a late failure is `event: error`.
    let body = json!({"model":"claude-test","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"a b c mock:drop_after=3"}]});
    let text = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (event, data) = sse_events(&text).pop().unwrap();
    assert_eq!(event, "error", "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap()["type"],
        "error"
    );
    gw.stop().await;
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let words = "w ".repeat(100);
    let mut body = chat(
        "gpt-test",
        &format!("{words} mock:chunks=100 mock:chunk_delay_ms=30"),
    );
    body["stream"] = json!(true);
    let mut r = gw.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(r.status(), 200);
    assert!(r.chunk().await.unwrap().is_some());
    drop(r);
    let stats = gw.mock.stats.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stats
        .streams_cancelled
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "upstream stream was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        stats
            .streams_completed
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    gw.stop().await;
}
