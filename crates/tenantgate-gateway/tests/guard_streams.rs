//! The leak guard on responses with several outputs: `n > 1` choices, several tool calls,
//! several content blocks, streamed with their pieces interleaved, on every wire and
//! translation. Each output is held and scanned on its own: another tenant's canary split
//! across the interleaved pieces of one choice is caught, and a secret in one output is
//! redacted there while the other outputs arrive intact.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{sse_data, sse_events, TestGateway};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const KEY: &str = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123";
const CLEAN: &str = "The quick brown fox jumps over the lazy dog while the band plays on.";

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn hex_list(items: &[String]) -> String {
    items.iter().map(|s| hex(s)).collect::<Vec<_>>().join(",")
}

/// Mock directives for outputs `texts` (choices / text blocks) and tool calls `tools`, streamed
/// in pieces of a few characters, interleaved.
fn directives(texts: &[String], tools: &[String], extra: &str) -> String {
    let mut d = format!("mock:char_chunks=9 {extra}");
    if !texts.is_empty() {
        d.push_str(&format!(" mock:choices_hex={}", hex_list(texts)));
    }
    if !tools.is_empty() {
        d.push_str(&format!(" mock:tool_args_hex={}", hex_list(tools)));
    }
    d
}

fn openai_req(model: &str, d: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": d}]})
}

fn anthropic_req(model: &str, d: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 200, "stream": stream,
           "messages": [{"role": "user", "content": d}]})
}

async fn messages(gw: &TestGateway, key: &str, body: &Value) -> reqwest::Response {
    gw.http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// OpenAI stream: content per choice, and arguments per (choice, tool-call index).
type Outputs = (BTreeMap<u64, String>, BTreeMap<(u64, u64), String>);

fn openai_outputs(body: &str) -> Outputs {
    let (mut content, mut tools) = (BTreeMap::new(), BTreeMap::new());
    for v in sse_data(body)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
    {
        for c in v["choices"].as_array().into_iter().flatten() {
            let i = c["index"].as_u64().unwrap();
            if let Some(t) = c["delta"]["content"].as_str() {
                content.entry(i).or_insert_with(String::new).push_str(t);
            }
            for tc in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let k = tc["index"].as_u64().unwrap();
                let a = tc["function"]["arguments"].as_str().unwrap_or_default();
                tools.entry((i, k)).or_insert_with(String::new).push_str(a);
            }
        }
    }
    (content, tools)
}

/// Anthropic stream: text or partial JSON per content block.
fn anthropic_blocks(body: &str) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    for (e, d) in sse_events(body) {
        if e != "content_block_delta" {
            continue;
        }
        let v: Value = serde_json::from_str(&d).unwrap();
        let t = v["delta"]["text"]
            .as_str()
            .or(v["delta"]["partial_json"].as_str())
            .unwrap();
        out.entry(v["index"].as_u64().unwrap())
            .or_insert_with(String::new)
            .push_str(t);
    }
    out
}

/// No part of `canary` that would identify it (either half) reached the caller.
fn assert_withheld(body: &str, canary: &str, what: &str) {
    let half = canary.len() / 2;
    assert!(
        !body.contains(&canary[..half]) && !body.contains(&canary[half..]),
        "{what}: part of the canary was released: {body}"
    );
}

fn openai_blocked(body: &str, canary: &str, what: &str) {
    let last: Value = serde_json::from_str(sse_data(body).last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "response_blocked", "{what}: {body}");
    assert_withheld(body, canary, what);
}

fn anthropic_blocked(body: &str, canary: &str, what: &str) {
    let (event, data) = sse_events(body).pop().unwrap();
    assert_eq!(event, "error", "{what}: {body}");
    assert!(data.contains("leak-prevention"), "{what}: {data}");
    assert_withheld(body, canary, what);
}

#[tokio::test]
async fn n2_stream_with_a_canary_in_choice_1_is_blocked_and_a_secret_redacted_in_its_choice() {
    let gw = TestGateway::start().await;
    let (canary, b, _) = gw.canary_and_other_tenant().await;
    let leaky = format!("Sure, from the other file: {canary} as requested, nothing else.");
    for pack in ["", "mock:pack"] {
        // (a) OpenAI client, OpenAI model: choice 1 carries the canary, choice 0 is clean.
        let d = directives(&[CLEAN.into(), leaky.clone()], &[], pack);
        let r = gw
            .post(
                "/v1/chat/completions",
                &b,
                &openai_req("gpt-test", &d, true),
            )
            .await;
        assert_eq!(r.status(), 200);
        openai_blocked(&r.text().await.unwrap(), &canary, &format!("n=2 {pack}"));
        // The same canary in the arguments of tool call 1 while tool call 0 streams too.
        let args = [
            "{\"city\":\"Paris\",\"units\":\"metric\"}".to_owned(),
            format!("{{\"note\":\"see {canary} for details\"}}"),
        ];
        let d = directives(&[CLEAN.into()], &args, pack);
        let r = gw
            .post(
                "/v1/chat/completions",
                &b,
                &openai_req("gpt-test", &d, true),
            )
            .await;
        openai_blocked(&r.text().await.unwrap(), &canary, &format!("tools {pack}"));
        // Redact (the default for secrets): only choice 1's text and tool call 0's arguments
        // change; every other output arrives exactly as sent.
        let d = directives(
            &[CLEAN.into(), format!("your key: {KEY} keep it safe")],
            &[
                format!("{{\"key\":\"{KEY}\"}}"),
                "{\"city\":\"Paris\"}".into(),
            ],
            pack,
        );
        let r = gw
            .post(
                "/v1/chat/completions",
                &b,
                &openai_req("gpt-test", &d, true),
            )
            .await;
        let body = r.text().await.unwrap();
        assert_eq!(
            sse_data(&body).last().map(String::as_str),
            Some("[DONE]"),
            "{body}"
        );
        let (content, tools) = openai_outputs(&body);
        assert_eq!(content[&0], CLEAN, "{pack}");
        assert_eq!(
            content[&1], "your key: [REDACTED:secrets] keep it safe",
            "{pack}"
        );
        assert_eq!(tools[&(0, 0)], "{\"key\":\"[REDACTED:secrets]\"}", "{pack}");
        assert_eq!(tools[&(0, 1)], "{\"city\":\"Paris\"}", "{pack}");
        assert!(!body.contains("AbCdEfGh"), "{body}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn openai_client_on_an_anthropic_model_is_guarded_per_content_block() {
    // (b) Anthropic has no `n`; several content blocks (text and tool_use input) interleave.
    let gw = TestGateway::start().await;
    let (canary, b, _) = gw.canary_and_other_tenant().await;
    let args = [
        format!("{{\"q\":\"{canary}\"}}"),
        "{\"city\":\"Paris\",\"units\":\"metric\"}".to_owned(),
    ];
    let d = directives(&[CLEAN.into()], &args, "");
    let r = gw
        .post(
            "/v1/chat/completions",
            &b,
            &openai_req("claude-test", &d, true),
        )
        .await;
    openai_blocked(&r.text().await.unwrap(), &canary, "translated tool input");
    let d = directives(
        &[format!("{CLEAN} Also {KEY}.")],
        &[
            format!("{{\"key\":\"{KEY}\"}}"),
            "{\"city\":\"Paris\"}".into(),
        ],
        "",
    );
    let body = gw
        .post(
            "/v1/chat/completions",
            &b,
            &openai_req("claude-test", &d, true),
        )
        .await
        .text()
        .await
        .unwrap();
    let (content, tools) = openai_outputs(&body);
    assert_eq!(content[&0], format!("{CLEAN} Also [REDACTED:secrets]."));
    assert_eq!(tools[&(0, 0)], "{\"key\":\"[REDACTED:secrets]\"}");
    assert_eq!(tools[&(0, 1)], "{\"city\":\"Paris\"}");
    assert_eq!(sse_data(&body).last().map(String::as_str), Some("[DONE]"));
    gw.stop().await;
}

#[tokio::test]
async fn anthropic_stream_is_guarded_per_content_block() {
    let gw = TestGateway::start().await;
    let (canary, b, _) = gw.canary_and_other_tenant().await;
    let leaky = format!("Sure, from the other file: {canary} as requested.");
    // (c) Anthropic client, Anthropic model: text block 1 leaks while block 0 is clean.
    let d = directives(&[CLEAN.into(), leaky.clone()], &[], "");
    let r = messages(&gw, &b, &anthropic_req("claude-test", &d, true)).await;
    anthropic_blocked(&r.text().await.unwrap(), &canary, "text blocks");
    // ... a tool_use block's partial JSON leaks.
    let args = [
        "{\"city\":\"Paris\",\"units\":\"metric\"}".to_owned(),
        format!("{{\"q\":\"{canary}\"}}"),
    ];
    let d = directives(&[CLEAN.into()], &args, "");
    let r = messages(&gw, &b, &anthropic_req("claude-test", &d, true)).await;
    anthropic_blocked(&r.text().await.unwrap(), &canary, "tool_use blocks");
    // (d) Anthropic client, OpenAI-format model (translated): tool calls interleave by index.
    let r = messages(&gw, &b, &anthropic_req("gpt-test", &d, true)).await;
    anthropic_blocked(&r.text().await.unwrap(), &canary, "translated tool calls");
    // Redact, on both: every block keeps its own text.
    let args = [
        format!("{{\"key\":\"{KEY}\"}}"),
        "{\"city\":\"Paris\",\"units\":\"metric\"}".to_owned(),
    ];
    for model in ["claude-test", "gpt-test"] {
        let texts: Vec<String> = if model == "claude-test" {
            vec![CLEAN.into(), format!("your key: {KEY} keep it safe")]
        } else {
            vec![format!("your key: {KEY} keep it safe")]
        };
        let d = directives(&texts, &args, "");
        let body = messages(&gw, &b, &anthropic_req(model, &d, true))
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(
            sse_events(&body).last().unwrap().0,
            "message_stop",
            "{body}"
        );
        // (The translation opens blocks in arrival order: compare the set of blocks.)
        let mut blocks: Vec<String> = anthropic_blocks(&body).into_values().collect();
        let mut want: Vec<String> = texts
            .iter()
            .map(|t| t.replace(KEY, "[REDACTED:secrets]"))
            .collect();
        want.push("{\"key\":\"[REDACTED:secrets]\"}".into());
        want.push(args[1].clone());
        blocks.sort();
        want.sort();
        assert_eq!(blocks, want, "{model}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_quiet_choice_holds_back_only_its_own_text() {
    let gw = TestGateway::start().await;
    let (_, member) = gw.tenant("acme", &["gpt-test"], None).await;
    // Choice 0 ends on what could begin a secret (held until its choice ends) and goes quiet;
    // choice 1 keeps talking.
    let long: String = (0..40).map(|i| format!("word{i} ")).collect();
    let d = directives(&["Hi sk-".into(), long.clone()], &[], "");
    let body = gw
        .post(
            "/v1/chat/completions",
            &member,
            &openai_req("gpt-test", &d, true),
        )
        .await
        .text()
        .await
        .unwrap();
    let (content, _) = openai_outputs(&body);
    assert_eq!(
        (content[&0].as_str(), content[&1].as_str()),
        ("Hi sk-", long.as_str())
    );
    // Choice 1's text went out while choice 0's tail was still held, not after it.
    let chunks: Vec<Value> = sse_data(&body)
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let pos = |i: u64, pred: &dyn Fn(&str) -> bool| {
        chunks.iter().position(|c| {
            c["choices"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|ch| ch["index"] == i && ch["delta"]["content"].as_str().is_some_and(pred))
        })
    };
    let held = pos(0, &|t| t.contains('s')).unwrap();
    let first_long = pos(1, &|t| !t.is_empty()).unwrap();
    assert!(first_long < held, "choice 1 waited for choice 0: {body}");
    gw.stop().await;
}

#[tokio::test]
async fn text_after_an_output_ended_ends_the_stream() {
    // A provider sends a canary in two halves, the second after block 0 stopped: the first
    // half was final when the block stopped, so the second must not follow it out.
    let gw = TestGateway::start().await;
    let (canary, b, _) = gw.canary_and_other_tenant().await;
    let half = canary.len() / 2;
    let d = format!(
        "{} mock:after_stop_hex={}",
        directives(&[format!("{CLEAN} {}", &canary[..half])], &[], ""),
        hex(&format!("{} done", &canary[half..]))
    );
    let body = messages(&gw, &b, &anthropic_req("claude-test", &d, true))
        .await
        .text()
        .await
        .unwrap();
    let (event, data) = sse_events(&body).pop().unwrap();
    assert_eq!(event, "error", "{body}");
    assert!(data.contains("after the end of its output"), "{data}");
    assert!(!body.contains(&canary[half..]), "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn n2_complete_responses_are_guarded_per_choice_and_tool_call() {
    let gw = TestGateway::start().await;
    let (canary, b, _) = gw.canary_and_other_tenant().await;
    let leaky = format!("From the other file: {canary}.");
    let d = directives(&[CLEAN.into(), leaky], &[], "");
    let r = gw
        .post(
            "/v1/chat/completions",
            &b,
            &openai_req("gpt-test", &d, false),
        )
        .await;
    assert_eq!(r.status(), 403);
    assert_withheld(&r.text().await.unwrap(), &canary, "n=2 complete");
    let d = directives(
        &[CLEAN.into(), format!("key {KEY}")],
        &[format!("{{\"key\":\"{KEY}\"}}")],
        "",
    );
    let v: Value = gw
        .post(
            "/v1/chat/completions",
            &b,
            &openai_req("gpt-test", &d, false),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], CLEAN);
    assert_eq!(
        v["choices"][1]["message"]["content"],
        "key [REDACTED:secrets]"
    );
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"key\":\"[REDACTED:secrets]\"}"
    );
    // Anthropic: text blocks and tool_use input, object keys included.
    let d = directives(&[CLEAN.into()], &[format!("{{\"{canary}\":1}}")], "");
    let r = messages(&gw, &b, &anthropic_req("claude-test", &d, false)).await;
    assert_eq!(r.status(), 403);
    assert_withheld(&r.text().await.unwrap(), &canary, "tool input key");
    gw.stop().await;
}

#[tokio::test]
async fn outputs_beyond_the_bound_are_refused() {
    let gw = TestGateway::start().await;
    let (_, member) = gw.tenant("acme", &["gpt-test"], None).await;
    let mut req = openai_req("gpt-test", "hi", true);
    req["n"] = json!(tenantgate_providers::openai::MAX_N + 1);
    let r = gw.post("/v1/chat/completions", &member, &req).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "n", "{v}");
    // A provider opening more outputs than the guard holds: the stream ends with an error
    // instead of the guard growing.
    let many: Vec<String> = (0..tenantgate_gateway::stream::guard::MAX_CHANNELS + 1)
        .map(|_| "{}".to_owned())
        .collect();
    let d = format!("mock:tool_args_hex={}", hex_list(&many));
    let body = gw
        .post(
            "/v1/chat/completions",
            &member,
            &openai_req("gpt-test", &d, true),
        )
        .await
        .text()
        .await
        .unwrap();
    let last: Value = serde_json::from_str(sse_data(&body).last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many parallel outputs"),
        "{last}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn n_choices_reserve_n_outputs() {
    let gw = TestGateway::start().await;
    let (t, member) = gw.tenant("acme", &["gpt-test"], None).await;
    gw.state
        .store()
        .platform(&TestGateway::admin())
        .set_limits(&t.id, Some(r#"{"tokens_per_minute": 100}"#), None)
        .await
        .unwrap();
    gw.wait_for_revision().await;
    let req = |n: u64| json!({"model":"gpt-test","max_tokens":40,"n":n,"messages":[{"role":"user","content":"hi"}]});
    // Three choices of up to 40 tokens each do not fit a 100-token minute; one does.
    let r = gw.post("/v1/chat/completions", &member, &req(3)).await;
    assert_eq!(r.status(), 429);
    let r = gw.post("/v1/chat/completions", &member, &req(1)).await;
    assert_eq!(r.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn anthropic_client_streaming_from_an_openai_model_gets_real_input_tokens() {
    let gw = TestGateway::start().await;
    let (_, member) = gw.tenant("acme", &["gpt-test"], None).await;
    let prompt = "count these seven words for me please";
    let complete: Value = messages(&gw, &member, &anthropic_req("gpt-test", prompt, false))
        .await
        .json()
        .await
        .unwrap();
    let input = complete["usage"]["input_tokens"].as_u64().unwrap();
    assert!(input > 0, "{complete}");
    let body = messages(&gw, &member, &anthropic_req("gpt-test", prompt, true))
        .await
        .text()
        .await
        .unwrap();
    let (_, delta) = sse_events(&body)
        .into_iter()
        .find(|(e, _)| e == "message_delta")
        .unwrap();
    let delta: Value = serde_json::from_str(&delta).unwrap();
    assert_eq!(delta["usage"]["input_tokens"], input, "{body}");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
    gw.stop().await;
}
