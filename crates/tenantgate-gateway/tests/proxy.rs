//! Proxying: OpenAI-compatible, Azure and Anthropic upstreams, translation, streaming, tools,
//! embeddings, and the demo model.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, sse_data, sse_events, TestGateway, UPSTREAM_KEY};
use serde_json::{json, Value};

#[tokio::test]
async fn openai_compatible_chat_is_proxied_with_upstream_name_and_credentials() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            &key,
            &chat("gpt-test", "hello upstream"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    let overhead: f64 = r.headers()["x-tenantgate-overhead-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(overhead >= 0.0);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply to: hello upstream"
    );
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    let seen = gw.mock.stats.last_request().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.body["model"], "gpt-upstream");
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}")
    );
    // The tenant's own key never travels upstream.
    assert!(!seen.headers.values().any(|v| v.contains(&key)));
    gw.stop().await;
}

#[tokio::test]
async fn azure_deployments_get_path_api_version_and_api_key_header() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["azure-gpt"], None).await;
    let r = gw
        .post("/v1/chat/completions", &key, &chat("azure-gpt", "hi azure"))
        .await;
    assert_eq!(r.status(), 200);
    let seen = gw.mock.stats.last_request().unwrap();
    assert_eq!(seen.path, "/openai/deployments/dep1/chat/completions");
    assert_eq!(seen.query["api-version"], "2024-10-21");
    assert_eq!(seen.headers["api-key"], UPSTREAM_KEY);
    assert!(!seen.headers.contains_key("authorization"));
    gw.stop().await;
}

#[tokio::test]
async fn streaming_forces_usage_upstream_but_forwards_it_only_when_asked() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let mut body = chat("gpt-test", "one two three four five");
    body["stream"] = json!(true);
    let text = gw
        .post("/v1/chat/completions", &key, &body)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        gw.mock.stats.last_request().unwrap().body["stream_options"]["include_usage"],
        true
    );
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(
        data.iter().all(|d| !d.contains("\"choices\":[]")),
        "usage chunk leaked: {text}"
    );
    let content: String = data[..data.len() - 1]
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, "mock reply to: one two three four five");

    body["stream_options"] = json!({"include_usage": true});
    let text = gw
        .post("/v1/chat/completions", &key, &body)
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 8);
    gw.stop().await;
}

#[tokio::test]
async fn tool_calls_pass_through_openai_and_translate_from_anthropic() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["gpt-test", "claude-test"], None).await;
    let tools = json!([{"type":"function","function":{"name":"get_weather","description":"w","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]);
    for model in ["gpt-test", "claude-test"] {
        let mut body = chat(model, "weather? mock:tool_call=get_weather");
        body["tools"] = tools.clone();
        let v: Value = gw
            .post("/v1/chat/completions", &key, &body)
            .await
            .json()
            .await
            .unwrap();
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather", "{model}: {v}");
        assert_eq!(
            serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
            json!({"city":"Paris"})
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let seen = gw.mock.stats.last_request().unwrap();
        if model == "claude-test" {
            assert_eq!(seen.body["tools"][0]["input_schema"]["type"], "object");
        } else {
            assert_eq!(seen.body["tools"], tools);
        }
        // streamed: the arguments arrive in pieces and concatenate to the same JSON
        body["stream"] = json!(true);
        let text = gw
            .post("/v1/chat/completions", &key, &body)
            .await
            .text()
            .await
            .unwrap();
        let args: String = sse_data(&text)
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"city":"Paris"}),
            "{model}: {text}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn openai_requests_to_anthropic_models_are_translated_both_ways() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["claude-test"], None).await;
    let body = json!({"model":"claude-test","max_tokens":64,"stop":["END"],"messages":[
        {"role":"system","content":"be terse"},{"role":"user","content":"hello claude"}]});
    let r = gw.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude-test");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply to: hello claude"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let seen = gw.mock.stats.last_request().unwrap();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.body["model"], "claude-upstream");
    assert_eq!(seen.body["system"], "be terse");
    assert_eq!(seen.body["stop_sequences"], json!(["END"]));
    assert_eq!(seen.headers["x-api-key"], UPSTREAM_KEY);
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");

    let mut s = body.clone();
    s["stream"] = json!(true);
    s["stream_options"] = json!({"include_usage": true});
    let text = gw
        .post("/v1/chat/completions", &key, &s)
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "mock reply to: hello claude");
    let last = chunks.last().unwrap();
    assert_eq!(last["usage"]["prompt_tokens"], 4);
    assert_eq!(last["usage"]["completion_tokens"], 5);
    gw.stop().await;
}

#[tokio::test]
async fn anthropic_surface_passes_through_streaming_events() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["claude-test", "gpt-test"], None).await;
    let body = json!({"model":"claude-test","max_tokens":50,"messages":[{"role":"user","content":"hi there"}]});
    let r = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "mock reply to: hi there");
    let mut s = body.clone();
    s["stream"] = json!(true);
    let text = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .json(&s)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let names: Vec<String> = sse_events(&text).into_iter().map(|(e, _)| e).collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(names.contains(&"ping".to_owned()) && names.contains(&"message_delta".to_owned()));
    // An OpenAI-format model through the Anthropic surface: translated both ways.
    let body = json!({"model":"gpt-test","max_tokens":20,"system":"be terse","messages":[{"role":"user","content":"hello gpt"}]});
    let r = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["type"].as_str(), v["model"].as_str()),
        (Some("message"), Some("gpt-test"))
    );
    assert_eq!(v["content"][0]["text"], "mock reply to: hello gpt");
    assert_eq!(v["stop_reason"], "end_turn");
    let seen = gw.mock.stats.last_request().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.body["messages"][0],
        json!({"role":"system","content":"be terse"})
    );
    assert_eq!(seen.body["max_tokens"], 20);
    let mut s = body.clone();
    s["stream"] = json!(true);
    let text = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .json(&s)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let streamed: String = events
        .iter()
        .filter(|(e, _)| e == "content_block_delta")
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(streamed, "mock reply to: hello gpt");
    // tool use comes back as a tool_use block
    let tools = json!({"model":"gpt-test","max_tokens":20,"tools":[{"name":"get_weather","input_schema":{"type":"object"}}],
        "messages":[{"role":"user","content":"weather? mock:tool_call=get_weather"}]});
    let v: Value = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .json(&tools)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"][0]["input"], json!({"city":"Paris"}));
    gw.stop().await;
}

#[tokio::test]
async fn demo_model_answers_both_surfaces_with_real_token_counts() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["demo"], None).await;
    let v: Value = gw
        .post("/v1/chat/completions", &key, &chat("demo", "hello demo"))
        .await
        .json()
        .await
        .unwrap();
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with(tenantgate_providers::demo::NOTICE));
    assert_eq!(
        v["usage"]["completion_tokens"].as_u64().unwrap(),
        tenantgate_providers::tokens::count(text)
    );
    assert_eq!(
        v["usage"]["prompt_tokens"].as_u64().unwrap(),
        4 + tenantgate_providers::tokens::count("hello demo")
    );
    let mut s = chat("demo", "hello demo");
    s["stream"] = json!(true);
    let body = gw
        .post("/v1/chat/completions", &key, &s)
        .await
        .text()
        .await
        .unwrap();
    let streamed: String = sse_data(&body)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(streamed, text);
    gw.stop().await;
}

#[tokio::test]
async fn embeddings_are_proxied_and_the_demo_embeds_offline() {
    let gw = TestGateway::start().await;
    let (_, key) = gw
        .tenant("acme", &["gpt-test", "demo", "claude-test"], None)
        .await;
    let v: Value = gw
        .post(
            "/v1/embeddings",
            &key,
            &json!({"model":"gpt-test","input":["a b","c"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        gw.mock.stats.last_request().unwrap().body["model"],
        "gpt-upstream"
    );
    let v: Value = gw
        .post(
            "/v1/embeddings",
            &key,
            &json!({"model":"demo","input":"quarterly report"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 384);
    let v: Value = gw
        .post(
            "/v1/embeddings",
            &key,
            &json!({"model":"demo","input":"x","encoding_format":"base64","dimensions":8}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["embedding"].as_str().unwrap().len(), 44); // 32 bytes -> 44 base64 chars
    let r = gw
        .post(
            "/v1/embeddings",
            &key,
            &json!({"model":"claude-test","input":"x"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    gw.stop().await;
}
