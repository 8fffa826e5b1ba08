//! The endpoints real clients call besides chat and messages (issue 19): OpenAI's
//! `/v1/responses` and legacy `/v1/completions`, Anthropic's `/v1/messages/count_tokens`. The
//! first two take the one chat pipeline (read into chat, rendered back last), so each is shown
//! here with what chat has: every provider wire (OpenAI-compatible, Anthropic by translation,
//! the demo model), plain and streamed, the audit record (named by its surface, durable before
//! the terminal event), the kill switch, the inbound guard and the outbound guard (plain and
//! streamed), tools, `n`, and a response cache that never serves one surface's answer to
//! another. count_tokens counts what the provider would be sent, the tenant's system prompt
//! included, and returns nothing of it.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, sse_events, TestGateway};
use serde_json::{json, Value};
use tenantgate_core::{Tenant, TenantScope};
use tenantgate_store::audit::AuditFilter;

const MODELS: [&str; 3] = ["gpt-test", "claude-test", "demo"];

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[expect(
    clippy::disallowed_methods,
    reason = "the test reads the store as the tenant, standing in for the authentication stage"
)]
fn scope(t: &Tenant) -> TenantScope {
    TenantScope::from_verified_credential(t.id.clone())
}

async fn records(gw: &TestGateway, t: &Tenant) -> Vec<Value> {
    let rows = gw
        .state
        .store()
        .tenant(&scope(t))
        .audit()
        .query(&AuditFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    rows.iter()
        .map(|r| serde_json::from_str(&r.record).unwrap())
        .collect()
}

fn rid(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_owned()
}

fn record<'a>(recs: &'a [Value], id: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no record for {id}"))
}

/// The Responses events of a stream body, checked for order: created first, sequence numbers
/// counting from 0, one terminal event last.
fn response_events(body: &str) -> Vec<Value> {
    let events: Vec<Value> = sse_events(body)
        .into_iter()
        .map(|(name, data)| {
            let v: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(v["type"], name.as_str(), "{body}");
            v
        })
        .collect();
    assert_eq!(events[0]["type"], "response.created", "{body}");
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], n as u64, "{body}");
    }
    events
}

fn deltas(events: &[Value], kind: &str) -> String {
    events
        .iter()
        .filter(|e| e["type"] == kind)
        .map(|e| e["delta"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn responses_plain_and_streamed_through_every_provider_wire_are_audited() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &MODELS, None).await;
    for model in MODELS {
        let body = json!({"model": model, "instructions": "be brief", "input": "hello there",
            "max_output_tokens": 40, "store": true});
        let r = gw.post("/v1/responses", &key, &body).await;
        assert_eq!(r.status(), 200, "{model}");
        let id = rid(&r);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["object"], "response", "{model}: {v}");
        assert_eq!(v["status"], "completed", "{model}: {v}");
        let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
        assert!(!text.is_empty(), "{model}: {v}");
        assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0, "{model}");
        if model != "demo" {
            // The instructions reached the provider as the system prompt, in its wire.
            let sent = gw.mock.stats.last_request().unwrap();
            assert!(sent.body.to_string().contains("be brief"), "{model}");
            let path = if model == "gpt-test" {
                "/v1/chat/completions"
            } else {
                "/v1/messages"
            };
            assert_eq!(sent.path, path, "{model}");
        }
        let recs = records(&gw, &t).await;
        let rec = record(&recs, &id);
        assert_eq!(rec["detail"]["surface"], "responses", "{model}");
        assert_eq!(rec["status"], 200);

        let mut body = body.clone();
        body["stream"] = json!(true);
        let r = gw.post("/v1/responses", &key, &body).await;
        assert_eq!(r.status(), 200, "{model}");
        let id = rid(&r);
        let raw = r.text().await.unwrap();
        let events = response_events(&raw);
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.completed", "{model}: {raw}");
        let streamed = deltas(&events, "response.output_text.delta");
        assert!(!streamed.is_empty(), "{model}");
        assert_eq!(
            last["response"]["output"][0]["content"][0]["text"], streamed,
            "{model}"
        );
        assert!(last["response"]["usage"]["output_tokens"].as_u64().unwrap() > 0);
        for kind in [
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
        ] {
            assert!(events.iter().any(|e| e["type"] == kind), "{model}: {kind}");
        }
        // Every lifecycle event names one response.
        let rid0 = &events[0]["response"]["id"];
        assert_eq!(&last["response"]["id"], rid0);
        // Durable before `response.completed` was sent: the body is complete, so is the record.
        let recs = records(&gw, &t).await;
        let rec = record(&recs, &id);
        assert_eq!(rec["detail"]["surface"], "responses");
        assert_eq!(rec["detail"]["stream"], true);
        assert_eq!(rec["detail"]["outcome"], "completed");
    }
    gw.stop().await;
}

#[tokio::test]
async fn legacy_completions_plain_streamed_and_n_through_every_provider_wire() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &MODELS, None).await;
    for model in MODELS {
        let r = gw
            .post(
                "/v1/completions",
                &key,
                &json!({"model": model, "prompt": "Say this is a test", "max_tokens": 30}),
            )
            .await;
        assert_eq!(r.status(), 200, "{model}");
        let id = rid(&r);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["object"], "text_completion", "{model}: {v}");
        assert!(!v["choices"][0]["text"].as_str().unwrap().is_empty());
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        let recs = records(&gw, &t).await;
        assert_eq!(record(&recs, &id)["detail"]["surface"], "completions");

        let r = gw
            .post(
                "/v1/completions",
                &key,
                &json!({"model": model, "prompt": ["Say this is a test"], "stream": true}),
            )
            .await;
        assert_eq!(r.status(), 200, "{model}");
        let raw = r.text().await.unwrap();
        let data = common::sse_data(&raw);
        assert_eq!(data.last().unwrap(), "[DONE]", "{model}: {raw}");
        let mut text = String::new();
        for d in &data[..data.len() - 1] {
            let c: Value = serde_json::from_str(d).unwrap();
            assert_eq!(c["object"], "text_completion", "{model}: {d}");
            text.push_str(c["choices"][0]["text"].as_str().unwrap_or_default());
        }
        assert!(!text.is_empty(), "{model}");
    }
    // n > 1: one text per choice (the OpenAI-compatible upstream answers n choices).
    let r = gw
        .post(
            "/v1/completions",
            &key,
            &json!({"model": "gpt-test", "prompt": format!("mock:choices_hex={},{}", hex("one"), hex("two")), "n": 2}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["text"], "one", "{v}");
    assert_eq!(v["choices"][1]["text"], "two", "{v}");
    assert_eq!(gw.mock.stats.last_request().unwrap().body["n"], 2);
    // What chat models cannot do is refused, naming the parameter.
    for (extra, param) in [
        (json!({"suffix": "end"}), "suffix"),
        (json!({"echo": true}), "echo"),
        (json!({"logprobs": 3}), "logprobs"),
        (json!({"prompt": ["a", "b"]}), "prompt"),
    ] {
        let mut body = json!({"model": "gpt-test", "prompt": "x"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = gw.post("/v1/completions", &key, &body).await;
        assert_eq!(r.status(), 400, "{param}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["param"], param, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    gw.stop().await;
}

#[tokio::test]
async fn responses_tool_calls_plain_streamed_and_replayed() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["gpt-test", "claude-test"], None).await;
    let tools = json!([{"type": "function", "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    for model in ["gpt-test", "claude-test"] {
        let body = json!({"model": model, "input": "mock:tool_call=get_weather", "tools": tools});
        let r = gw.post("/v1/responses", &key, &body).await;
        assert_eq!(r.status(), 200, "{model}");
        let v: Value = r.json().await.unwrap();
        let call = v["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .unwrap_or_else(|| panic!("{model}: no function call in {v}"));
        assert_eq!(call["name"], "get_weather");
        assert!(call["call_id"].as_str().is_some_and(|c| !c.is_empty()));
        // The tool reached the provider as a tool of its wire.
        let sent = gw.mock.stats.last_request().unwrap().body;
        assert!(sent["tools"].to_string().contains("get_weather"), "{model}");

        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let r = gw.post("/v1/responses", &key, &streamed).await;
        let raw = r.text().await.unwrap();
        let events = response_events(&raw);
        let done = events
            .iter()
            .find(|e| e["type"] == "response.function_call_arguments.done")
            .unwrap_or_else(|| panic!("{model}: {raw}"));
        assert_eq!(
            done["arguments"],
            deltas(&events, "response.function_call_arguments.delta")
        );
        assert_eq!(events.last().unwrap()["type"], "response.completed");

        // The next turn replays the call and its output as input items.
        let next = json!({"model": model, "tools": tools, "input": [
            {"role": "user", "content": "weather in Paris?"},
            {"type": "function_call", "call_id": call["call_id"], "name": "get_weather", "arguments": call["arguments"]},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}]});
        let r = gw.post("/v1/responses", &key, &next).await;
        assert_eq!(r.status(), 200, "{model}: {}", r.text().await.unwrap());
        let sent = gw.mock.stats.last_request().unwrap().body.to_string();
        assert!(sent.contains("sunny"), "{model}: {sent}");
        assert!(
            sent.contains(call["call_id"].as_str().unwrap()),
            "{model}: {sent}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn another_tenants_canary_is_refused_inbound_and_withheld_outbound_on_every_surface() {
    let gw = TestGateway::start().await;
    let (canary, b, _) = gw.canary_and_other_tenant().await;
    // Inbound: the client's text carries A's canary.
    let leak = format!("what does {canary} mean?");
    for (path, body) in [
        ("/v1/responses", json!({"model": "gpt-test", "input": leak})),
        (
            "/v1/responses",
            json!({"model": "gpt-test", "input": "hi", "instructions": leak}),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt-test", "prompt": leak}),
        ),
        (
            "/v1/messages/count_tokens",
            json!({"model": "claude-test", "messages": [{"role": "user", "content": leak}]}),
        ),
    ] {
        let before = gw
            .mock
            .stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst);
        let r = gw.post(path, &b, &body).await;
        assert_eq!(r.status(), 400, "{path}");
        let v = r.text().await.unwrap();
        // OpenAI's shape carries the code; Anthropic's names the policy in its message.
        assert!(
            v.contains("content_blocked") || v.contains("leak-prevention policy (cross_tenant)"),
            "{path}: {v}"
        );
        assert!(!v.contains(&canary));
        let after = gw
            .mock
            .stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(before, after, "{path}: the provider was called");
    }
    // Outbound: the provider answers with A's canary; B never sees it.
    let reply = format!(
        "mock:reply_hex={} mock:char_chunks=3",
        hex(&format!("Our notes say {canary}."))
    );
    for model in ["gpt-test", "claude-test"] {
        let r = gw
            .post(
                "/v1/responses",
                &b,
                &json!({"model": model, "input": reply}),
            )
            .await;
        assert_eq!(r.status(), 403, "{model}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "response_blocked", "{v}");
        let r = gw
            .post(
                "/v1/completions",
                &b,
                &json!({"model": model, "prompt": reply}),
            )
            .await;
        assert_eq!(r.status(), 403, "{model}");

        let r = gw
            .post(
                "/v1/responses",
                &b,
                &json!({"model": model, "input": reply, "stream": true}),
            )
            .await;
        let raw = r.text().await.unwrap();
        assert!(!raw.contains(&canary), "{model}: {raw}");
        let half = &canary[..canary.len() / 2];
        assert!(
            !raw.contains(half),
            "{model}: part of the canary was released"
        );
        let events = response_events(&raw);
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.failed", "{model}: {raw}");
        assert_eq!(last["response"]["error"]["code"], "response_blocked");
        let r = gw
            .post(
                "/v1/completions",
                &b,
                &json!({"model": model, "prompt": reply, "stream": true}),
            )
            .await;
        let raw = r.text().await.unwrap();
        assert!(!raw.contains(half), "{model}: {raw}");
        assert!(raw.contains("response_blocked"), "{model}: {raw}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn the_kill_switch_and_the_token_cap_apply_to_the_new_surfaces() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &["gpt-test"], Some(100)).await;
    let r = gw
        .post(
            "/v1/responses",
            &key,
            &json!({"model": "gpt-test", "input": "hi", "max_output_tokens": 500}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "max_output_tokens", "{v}");
    gw.state
        .store()
        .platform(&TestGateway::admin())
        .set_limits(&t.id, None, Some(true))
        .await
        .unwrap();
    gw.wait_for_revision().await;
    for (path, body) in [
        ("/v1/responses", json!({"model": "gpt-test", "input": "hi"})),
        (
            "/v1/responses",
            json!({"model": "gpt-test", "input": "hi", "stream": true}),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt-test", "prompt": "hi"}),
        ),
    ] {
        let r = gw.post(path, &key, &body).await;
        assert_eq!(r.status(), 429, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "insufficient_quota", "{path}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn unsupported_responses_features_are_refused_naming_the_parameter() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["gpt-test"], None).await;
    for (extra, param) in [
        (
            json!({"previous_response_id": "resp_123"}),
            "previous_response_id",
        ),
        (json!({"background": true}), "background"),
        (json!({"conversation": "conv_1"}), "conversation"),
        (json!({"tools": [{"type": "web_search"}]}), "tools[0].type"),
        (
            json!({"tools": [{"type": "file_search", "vector_store_ids": ["vs"]}]}),
            "tools[0].type",
        ),
        (
            json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
            "input[0].type",
        ),
    ] {
        let mut body = json!({"model": "gpt-test", "input": "hi"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = gw.post("/v1/responses", &key, &body).await;
        assert_eq!(r.status(), 400, "{param}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["param"], param, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
    // A model outside the allow-list: 404 like an unknown one.
    let r = gw
        .post(
            "/v1/responses",
            &key,
            &json!({"model": "claude-test", "input": "hi"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found", "{v}");
    gw.stop().await;
}

#[tokio::test]
async fn a_chat_answer_is_never_served_to_responses_from_the_cache() {
    let gw = TestGateway::start_with(|c| c.cache.enabled = true).await;
    let (_, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let c = chat("gpt-test", "hi there");
    let cache = |r: &reqwest::Response| r.headers()["x-tenantgate-cache"].clone();
    let r = gw.post("/v1/chat/completions", &key, &c).await;
    assert_eq!(cache(&r), "miss");
    let r = gw.post("/v1/chat/completions", &key, &c).await;
    assert_eq!(cache(&r), "hit");
    // The same request on /v1/responses: the provider is asked the same chat request, but the
    // chat answer is not served here.
    let resp = json!({"model": "gpt-test", "input": [{"role": "user", "content": "hi there"}]});
    let r = gw.post("/v1/responses", &key, &resp).await;
    assert_eq!(cache(&r), "miss");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    let r = gw.post("/v1/responses", &key, &resp).await;
    assert_eq!(cache(&r), "hit");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response", "{v}");
    let r = gw
        .post(
            "/v1/completions",
            &key,
            &json!({"model": "gpt-test", "prompt": "hi there"}),
        )
        .await;
    assert_eq!(cache(&r), "miss");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    gw.stop().await;
}

#[tokio::test]
async fn count_tokens_counts_the_tenants_system_prompt_without_returning_it() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &["claude-test"], None).await;
    let body = json!({"model": "claude-test", "system": "answer in French",
        "messages": [{"role": "user", "content": "hello there, how are you?"}]});
    let before_calls = gw
        .mock
        .stats
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let r = gw.post("/v1/messages/count_tokens", &key, &body).await;
    assert_eq!(r.status(), 200);
    let id = rid(&r);
    let v: Value = r.json().await.unwrap();
    let plain = v["input_tokens"].as_u64().unwrap();
    assert!(plain > 5, "{v}");
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    let recs = records(&gw, &t).await;
    let rec = record(&recs, &id);
    assert_eq!(rec["detail"]["operation"], "count_tokens");
    assert_eq!(rec["tokens"], json!({"input": 0, "output": 0}));
    assert_eq!(rec["status"], 200);
    // The tenant gets a system prompt: it is counted (it will be billed), never shown.
    let admin = gw.admin_key(&t).await;
    let rules = "Always be polite and concise. Never discuss competitors or pricing. ".repeat(4);
    let r = gw
        .post(
            "/tenant/v1/prompts/p/versions",
            &admin,
            &json!({"template": rules}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = gw
        .http
        .put(format!("{}/tenant/v1/prompt-settings", gw.url))
        .bearer_auth(&admin)
        .json(&json!({"client_system": "append", "default_prompt": "p"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    gw.wait_for_revision().await;
    let r = gw.post("/v1/messages/count_tokens", &key, &body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("polite"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        v["input_tokens"].as_u64().unwrap() > plain + 20,
        "{v} vs {plain}"
    );
    // No provider call was made.
    assert_eq!(
        gw.mock
            .stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        before_calls
    );
    // A model outside the allow-list: 404 in Anthropic's shape, like an unknown model.
    for model in ["gpt-test", "no-such-model"] {
        let mut b = body.clone();
        b["model"] = json!(model);
        let r = gw.post("/v1/messages/count_tokens", &key, &b).await;
        assert_eq!(r.status(), 404, "{model}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], "not_found_error", "{v}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_upstream_failure_mid_stream_ends_a_responses_stream_with_response_failed() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &["gpt-test", "claude-test"], None).await;
    for model in ["gpt-test", "claude-test"] {
        let r = gw
            .post(
                "/v1/responses",
                &key,
                &json!({"model": model, "stream": true,
                    "input": "a b c d e f mock:stream_error_after=2"}),
            )
            .await;
        assert_eq!(r.status(), 200, "{model}");
        let id = rid(&r);
        let raw = r.text().await.unwrap();
        let events = response_events(&raw);
        let n = events.len();
        assert_eq!(events[n - 2]["type"], "error", "{model}: {raw}");
        assert_eq!(events[n - 1]["type"], "response.failed", "{model}: {raw}");
        assert_eq!(events[n - 1]["response"]["status"], "failed");
        assert!(!events.iter().any(|e| e["type"] == "response.completed"));
        // The record was written before the terminal event, and says how the stream ended.
        let recs = records(&gw, &t).await;
        let rec = record(&recs, &id);
        assert_eq!(rec["detail"]["surface"], "responses");
        assert_eq!(rec["detail"]["stream"], true);
        // (Its `outcome` is not asserted: a provider's in-stream error chunk ends chat's
        // streams as `completed` in the record on both provider wires, as before this surface;
        // reported on issue 19.)
    }
    gw.stop().await;
}
