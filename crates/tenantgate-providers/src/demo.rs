//! The built-in offline demo model. It is not a language model: it answers every request with a
//! labelled, deterministic description of what it received, so the quickstart, tests and
//! benchmarks run with no API key and no network. Usage is counted with the real tokenizer.
//!
//! It speaks the Anthropic messages format; OpenAI-format callers reach it through
//! [`crate::translate`], exactly like an Anthropic model.

use crate::anthropic::MessagesMeta;
use crate::openai::content_text;
use crate::{tokens, Usage};
use serde_json::{json, Value};

pub const NOTICE: &str = "[tenantgate demo model: offline, not an LLM]";

fn input_tokens(req: &Value) -> u64 {
    let mut n = 0;
    if let Some(s) = req.get("system") {
        n += tokens::count(&content_text(s));
    }
    for m in req["messages"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        // 4 tokens of per-message framing, as chat formats spend on role markers.
        n += 4 + tokens::count(&content_text(&m["content"]));
    }
    if let Some(t) = req.get("tools") {
        n += tokens::count(&t.to_string());
    }
    n
}

fn forced_tool(req: &Value) -> Option<String> {
    let tools = req.get("tools")?.as_array()?;
    match req["tool_choice"]["type"].as_str() {
        Some("any") => tools.first()?.get("name")?.as_str().map(str::to_owned),
        Some("tool") => req["tool_choice"]["name"].as_str().map(str::to_owned),
        _ => None,
    }
}

/// The reply text before any `max_tokens` cut.
pub fn reply_text(req: &Value) -> String {
    let msgs = req["messages"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let last_user = msgs
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| content_text(&m["content"]))
        .unwrap_or_default();
    let excerpt: String = last_user.chars().take(160).collect();
    format!(
        "{NOTICE} Received {} message(s), {} input tokens. Your last message was: \"{}\"",
        msgs.len(),
        input_tokens(req),
        excerpt
    )
}

struct Answer {
    text: String,
    tool: Option<String>,
    stop_reason: &'static str,
    usage: Usage,
}

fn answer(req: &Value, meta: &MessagesMeta) -> Answer {
    let input = input_tokens(req);
    if let Some(tool) = forced_tool(req) {
        return Answer {
            text: String::new(),
            usage: Usage {
                input_tokens: input,
                output_tokens: tokens::count(&tool) + 3,
            },
            tool: Some(tool),
            stop_reason: "tool_use",
        };
    }
    let (text, cut) = tokens::truncate(&reply_text(req), meta.max_tokens);
    Answer {
        usage: Usage {
            input_tokens: input,
            output_tokens: tokens::count(&text),
        },
        text,
        tool: None,
        stop_reason: if cut { "max_tokens" } else { "end_turn" },
    }
}

fn msg_id(req: &Value) -> String {
    // Deterministic per request content: same request, same id, like a cache would give.
    let digest = <sha2::Sha256 as sha2::Digest>::digest(req.to_string().as_bytes());
    format!("msg_demo_{}", &hex_lower(&digest)[..24])
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A complete Anthropic message response.
pub fn respond(req: &Value, meta: &MessagesMeta) -> Value {
    let a = answer(req, meta);
    let content = match &a.tool {
        Some(name) => json!([{"type":"tool_use","id":"toolu_demo_0","name":name,"input":{}}]),
        None => json!([{"type":"text","text":a.text}]),
    };
    json!({
        "id": msg_id(req), "type": "message", "role": "assistant", "model": meta.model,
        "content": content, "stop_reason": a.stop_reason, "stop_sequence": null,
        "usage": {"input_tokens": a.usage.input_tokens, "output_tokens": a.usage.output_tokens},
    })
}

/// The same answer as a sequence of Anthropic stream events `(event, data)`, one text delta
/// per token.
pub fn stream_events(req: &Value, meta: &MessagesMeta) -> Vec<(&'static str, Value)> {
    let a = answer(req, meta);
    let mut ev = vec![(
        "message_start",
        json!({"type":"message_start","message":{
            "id": msg_id(req), "type":"message","role":"assistant","model": meta.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": a.usage.input_tokens, "output_tokens": 1}}}),
    )];
    match &a.tool {
        Some(name) => {
            ev.push((
                "content_block_start",
                json!({"type":"content_block_start","index":0,
                "content_block":{"type":"tool_use","id":"toolu_demo_0","name":name,"input":{}}}),
            ));
            ev.push((
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,
                "delta":{"type":"input_json_delta","partial_json":"{}"}}),
            ));
        }
        None => {
            ev.push((
                "content_block_start",
                json!({"type":"content_block_start","index":0,
                "content_block":{"type":"text","text":""}}),
            ));
            ev.push(("ping", json!({"type":"ping"})));
            for piece in tokens::pieces(&a.text) {
                ev.push((
                    "content_block_delta",
                    json!({"type":"content_block_delta","index":0,
                    "delta":{"type":"text_delta","text":piece}}),
                ));
            }
        }
    }
    ev.push((
        "content_block_stop",
        json!({"type":"content_block_stop","index":0}),
    ));
    ev.push((
        "message_delta",
        json!({"type":"message_delta",
        "delta":{"stop_reason":a.stop_reason,"stop_sequence":null},
        "usage":{"output_tokens":a.usage.output_tokens}}),
    ));
    ev.push(("message_stop", json!({"type":"message_stop"})));
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(max: u64) -> MessagesMeta {
        MessagesMeta {
            model: "demo".into(),
            stream: false,
            max_tokens: max,
        }
    }

    #[test]
    fn demo_is_labelled_deterministic_and_counts_tokens() {
        let req = json!({"model":"demo","max_tokens":200,"messages":[{"role":"user","content":"hello there"}]});
        let a = respond(&req, &meta(200));
        assert_eq!(a, respond(&req, &meta(200)));
        let text = a["content"][0]["text"].as_str().unwrap();
        assert!(text.starts_with(NOTICE) && text.contains("hello there"));
        assert_eq!(
            a["usage"]["output_tokens"].as_u64(),
            Some(tokens::count(text))
        );
        assert_eq!(
            a["usage"]["input_tokens"].as_u64(),
            Some(4 + tokens::count("hello there"))
        );
    }

    #[test]
    fn max_tokens_cuts_the_reply() {
        let req =
            json!({"model":"demo","max_tokens":3,"messages":[{"role":"user","content":"hi"}]});
        let a = respond(&req, &meta(3));
        assert_eq!(a["stop_reason"], "max_tokens");
        assert_eq!(a["usage"]["output_tokens"], 3);
    }

    #[test]
    fn stream_concatenates_to_the_same_text() {
        let req = json!({"model":"demo","max_tokens":200,"messages":[{"role":"user","content":"stream me"}]});
        let whole = respond(&req, &meta(200))["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let streamed: String = stream_events(&req, &meta(200))
            .iter()
            .filter_map(|(_, d)| d["delta"]["text"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(streamed, whole);
    }
}
