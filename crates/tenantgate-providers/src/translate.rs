//! Translation between the OpenAI chat-completions and Anthropic messages formats.
//!
//! Requests: OpenAI -> Anthropic (an OpenAI SDK calling an Anthropic model, or the demo model).
//! Responses and streams: Anthropic -> OpenAI, the way back.
//! Parameters with no Anthropic equivalent that change semantics (`n > 1`, `logprobs`) are
//! refused with a 400 rather than silently dropped; cosmetic ones (`seed`, penalties) are dropped.

use crate::openai::content_text;
use crate::sse::{data_frame, DONE_FRAME};
use crate::{unix_now, CodecError, Usage};
use bytes::Bytes;
use serde_json::{json, Map, Value};

fn image_block(url: &str) -> Value {
    // data:image/png;base64,XXXX -> base64 source; anything else is a URL source.
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((media, data)) = rest.split_once(";base64,") {
            return json!({"type":"image","source":{"type":"base64","media_type":media,"data":data}});
        }
    }
    json!({"type":"image","source":{"type":"url","url":url}})
}

fn user_blocks(content: &Value, i: usize) -> Result<Vec<Value>, CodecError> {
    match content {
        Value::String(s) => Ok(vec![json!({"type":"text","text":s})]),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"type":"text","text":p.get("text").cloned().unwrap_or(Value::String(String::new()))})),
                Some("image_url") => {
                    let url = p
                        .get("image_url")
                        .and_then(|u| u.get("url").or(Some(u)))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    Ok(image_block(url))
                }
                other => Err(CodecError::new(
                    format!("messages[{i}]: content part type {other:?} is not supported for this model"),
                    Some(&format!("messages[{i}].content")),
                )),
            })
            .collect(),
        Value::Null => Ok(vec![]),
        _ => Err(CodecError::new(
            format!("messages[{i}].content must be a string or an array"),
            Some(&format!("messages[{i}].content")),
        )),
    }
}

fn push_message(out: &mut Vec<Value>, role: &str, mut blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    // Anthropic wants alternating roles: merge consecutive messages of the same role.
    if let Some(last) = out.last_mut() {
        if last["role"] == role {
            if let Some(arr) = last["content"].as_array_mut() {
                arr.append(&mut blocks);
                return;
            }
        }
    }
    out.push(json!({"role": role, "content": blocks}));
}

/// OpenAI chat request -> Anthropic messages request for `upstream_model`.
/// `default_max_tokens` applies when the client set none (Anthropic requires one).
pub fn openai_request_to_anthropic(
    body: &Map<String, Value>,
    upstream_model: &str,
    default_max_tokens: u64,
) -> Result<Map<String, Value>, CodecError> {
    let meta = crate::openai::chat_meta(body)?;
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(CodecError::new(
            "'n' > 1 is not supported for this model",
            Some("n"),
        ));
    }
    if body.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(CodecError::new(
            "'logprobs' is not supported for this model",
            Some("logprobs"),
        ));
    }
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let empty = Vec::new();
    for (i, m) in body["messages"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .enumerate()
    {
        let role = m["role"].as_str().unwrap_or_default();
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(content_text(content)),
            "user" => push_message(&mut messages, "user", user_blocks(content, i)?),
            "assistant" => {
                let mut blocks = Vec::new();
                let text = content_text(content);
                if !text.is_empty() {
                    blocks.push(json!({"type":"text","text":text}));
                }
                for tc in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .unwrap_or(&empty)
                {
                    let f = &tc["function"];
                    let args = f["arguments"].as_str().unwrap_or("{}");
                    let input: Value =
                        serde_json::from_str(if args.trim().is_empty() { "{}" } else { args })
                            .map_err(|_| {
                                CodecError::new(
                                    format!(
                                        "messages[{i}].tool_calls: arguments are not valid JSON"
                                    ),
                                    Some(&format!("messages[{i}].tool_calls")),
                                )
                            })?;
                    blocks.push(
                        json!({"type":"tool_use","id":tc["id"],"name":f["name"],"input":input}),
                    );
                }
                push_message(&mut messages, "assistant", blocks);
            }
            "tool" | "function" => {
                let id = m.get("tool_call_id").cloned().unwrap_or(Value::Null);
                push_message(
                    &mut messages,
                    "user",
                    vec![
                        json!({"type":"tool_result","tool_use_id":id,"content":content_text(content)}),
                    ],
                );
            }
            _ => {}
        }
    }
    if messages.is_empty() {
        // Only system or developer messages: nothing for an Anthropic model to answer.
        return Err(CodecError::new(
            "'messages' needs at least one user or assistant message for this model",
            Some("messages"),
        ));
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("messages".into(), Value::Array(messages));
    out.insert(
        "max_tokens".into(),
        json!(meta.max_tokens.unwrap_or(default_max_tokens)),
    );
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
    }
    for k in ["temperature", "top_p"] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    match body.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if meta.stream {
        out.insert("stream".into(), json!(true));
    }
    if let Some(Value::Array(tools)) = body.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let f = &t["function"];
                let mut tool = json!({"name": f["name"], "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type":"object"}))});
                if let Some(d) = f.get("description") {
                    tool["description"] = d.clone();
                }
                tool
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => Some(json!({"type":"any"})),
        Some(Value::String(s)) if s == "none" => Some(json!({"type":"none"})),
        Some(Value::String(s)) if s == "auto" => Some(json!({"type":"auto"})),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|n| json!({"type":"tool","name":n})),
        _ => None,
    };
    if body.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        let c = choice.get_or_insert_with(|| json!({"type":"auto"}));
        c["disable_parallel_tool_use"] = json!(true);
    }
    if let Some(c) = choice {
        out.insert("tool_choice".into(), c);
    }
    if let Some(Value::String(u)) = body.get("user") {
        out.insert("metadata".into(), json!({"user_id": u}));
    }
    Ok(out)
}

pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

fn openai_usage(u: Usage) -> Value {
    json!({"prompt_tokens":u.input_tokens,"completion_tokens":u.output_tokens,"total_tokens":u.input_tokens + u.output_tokens})
}

/// Anthropic message response -> OpenAI chat completion. `model` is the name the client used.
pub fn anthropic_response_to_openai(resp: &Value, model: &str) -> Value {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in resp["content"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => tool_calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()}
            })),
            _ => {}
        }
    }
    let usage = crate::anthropic::usage_from(resp).unwrap_or_default();
    let mut message = json!({"role":"assistant","content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) }, "refusal": null});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    json!({
        "id": format!("chatcmpl-{}", resp["id"].as_str().unwrap_or("msg")),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{"index":0,"message":message,"logprobs":null,"finish_reason":finish_reason(resp["stop_reason"].as_str())}],
        "usage": openai_usage(usage),
    })
}

/// Anthropic error body -> (OpenAI error `type`, message).
pub fn anthropic_error_message(body: &Value) -> Option<(String, String)> {
    let e = body.get("error")?;
    Some((
        e["type"].as_str().unwrap_or("api_error").to_owned(),
        e["message"].as_str().unwrap_or("upstream error").to_owned(),
    ))
}

/// Turns an Anthropic message stream into OpenAI chat-completion chunks, event by event.
#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    /// Anthropic content-block index -> OpenAI tool-call index.
    tool_blocks: Vec<(u64, usize)>,
    pub usage: Usage,
    pub finished: bool,
}

impl AnthropicToOpenAiStream {
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self {
            id: "chatcmpl-pending".into(),
            model: model.to_owned(),
            created: unix_now(),
            include_usage,
            tool_blocks: Vec::new(),
            usage: Usage::default(),
            finished: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        data_frame(
            &json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}],
            })
            .to_string(),
        )
    }

    /// Frames to send for one upstream event (possibly none).
    pub fn on_event(&mut self, event: &str, data: &str) -> Vec<Bytes> {
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        match event {
            "message_start" => {
                let m = &v["message"];
                if let Some(id) = m["id"].as_str() {
                    self.id = format!("chatcmpl-{id}");
                }
                if let Some(u) = m.get("usage") {
                    self.usage =
                        crate::anthropic::usage_from(&json!({"usage":u})).unwrap_or_default();
                }
                vec![self.chunk(
                    json!({"role":"assistant","content":"","refusal":null}),
                    None,
                )]
            }
            "content_block_start" => {
                let block = &v["content_block"];
                let idx = v["index"].as_u64().unwrap_or(0);
                match block["type"].as_str() {
                    Some("tool_use") => {
                        let n = self.tool_blocks.len();
                        self.tool_blocks.push((idx, n));
                        vec![self.chunk(json!({"tool_calls":[{"index":n,"id":block["id"],"type":"function","function":{"name":block["name"],"arguments":""}}]}), None)]
                    }
                    Some("text") => match block["text"].as_str() {
                        Some(t) if !t.is_empty() => vec![self.chunk(json!({"content":t}), None)],
                        _ => vec![],
                    },
                    _ => vec![],
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => vec![self.chunk(json!({"content":d["text"]}), None)],
                    Some("input_json_delta") => {
                        let idx = v["index"].as_u64().unwrap_or(0);
                        let n = self
                            .tool_blocks
                            .iter()
                            .find(|(b, _)| *b == idx)
                            .map(|(_, n)| *n)
                            .unwrap_or(0);
                        vec![self.chunk(json!({"tool_calls":[{"index":n,"function":{"arguments":d["partial_json"]}}]}), None)]
                    }
                    _ => vec![],
                }
            }
            "message_delta" => {
                if let Some(o) = v["usage"]["output_tokens"].as_u64() {
                    self.usage.output_tokens = o;
                }
                let reason = finish_reason(v["delta"]["stop_reason"].as_str());
                vec![self.chunk(json!({}), Some(reason))]
            }
            "message_stop" => {
                self.finished = true;
                let mut out = Vec::new();
                if self.include_usage {
                    out.push(data_frame(
                        &json!({"id":self.id,"object":"chat.completion.chunk","created":self.created,
                                "model":self.model,"choices":[],"usage":openai_usage(self.usage)})
                        .to_string(),
                    ));
                }
                out.push(Bytes::from_static(DONE_FRAME));
                out
            }
            "error" => {
                self.finished = true;
                let (kind, msg) = anthropic_error_message(&v)
                    .unwrap_or_else(|| ("api_error".into(), "upstream error".into()));
                vec![data_frame(
                    &json!({"error":{"message":msg,"type":kind,"param":null,"code":null}})
                        .to_string(),
                )]
            }
            _ => vec![], // ping, content_block_stop, unknown future events
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_translation_maps_system_tools_and_tool_results() {
        let body = json!({
            "model":"claude-x","max_tokens":100,"stop":"END","user":"u1",
            "messages":[
                {"role":"system","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"weather?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                {"role":"tool","tool_call_id":"call_1","content":"sunny"},
                {"role":"tool","tool_call_id":"call_2","content":"warm"}
            ],
            "tools":[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
            "tool_choice":"required","parallel_tool_calls":false
        });
        let out =
            openai_request_to_anthropic(body.as_object().unwrap(), "claude-3-5", 4096).unwrap();
        assert_eq!(out["model"], "claude-3-5");
        assert_eq!(out["system"], "be brief");
        assert_eq!(out["max_tokens"], 100);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(
            out["messages"][0]["content"][1]["source"]["media_type"],
            "image/png"
        );
        assert_eq!(out["messages"][1]["content"][0]["input"]["city"], "Paris");
        // two tool results merged into one user turn
        assert_eq!(out["messages"][2]["content"].as_array().unwrap().len(), 2);
        assert_eq!(out["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(
            out["tool_choice"],
            json!({"type":"any","disable_parallel_tool_use":true})
        );
        assert_eq!(out["metadata"]["user_id"], "u1");
    }

    #[test]
    fn semantics_changing_params_are_refused() {
        let body = json!({"model":"c","messages":[{"role":"user","content":"x"}],"n":2});
        let e = openai_request_to_anthropic(body.as_object().unwrap(), "c", 10).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("n"));
    }

    #[test]
    fn response_translation_carries_tool_calls_and_usage() {
        let resp = json!({"id":"msg_1","type":"message","role":"assistant","content":[
            {"type":"text","text":"Let me check."},
            {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}],
            "stop_reason":"tool_use","usage":{"input_tokens":12,"output_tokens":7,"cache_read_input_tokens":3}});
        let out = anthropic_response_to_openai(&resp, "my-claude");
        assert_eq!(out["model"], "my-claude");
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(out["usage"]["prompt_tokens"], 15);
        assert_eq!(out["usage"]["total_tokens"], 22);
    }

    #[test]
    fn stream_translation_produces_openai_chunks_and_done() {
        let mut t = AnthropicToOpenAiStream::new("m", true);
        let events = [
            (
                "message_start",
                json!({"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":5,"output_tokens":1}}}),
            ),
            (
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            ),
            ("ping", json!({"type":"ping"})),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}),
            ),
            (
                "content_block_start",
                json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}),
            ),
            (
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}),
            ),
            ("message_stop", json!({"type":"message_stop"})),
        ];
        let mut frames = Vec::new();
        for (e, d) in events {
            frames.extend(t.on_event(e, &d.to_string()));
        }
        let text: Vec<String> = frames
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert!(text[0].contains("\"role\":\"assistant\""));
        assert!(text[1].contains("\"content\":\"Hi\""));
        assert!(text[2].contains("\"name\":\"f\""));
        assert!(text[3].contains("\"arguments\":\"{\\\"a\\\":\""));
        assert!(text[4].contains("\"finish_reason\":\"tool_calls\""));
        assert!(text[5].contains("\"choices\":[]") && text[5].contains("\"completion_tokens\":9"));
        assert_eq!(text[6], "data: [DONE]\n\n");
        assert_eq!(
            t.usage,
            Usage {
                input_tokens: 5,
                output_tokens: 9
            }
        );
    }

    #[test]
    fn stream_error_becomes_openai_in_stream_error() {
        let mut t = AnthropicToOpenAiStream::new("m", false);
        let f = t.on_event(
            "error",
            &json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})
                .to_string(),
        );
        let s = String::from_utf8_lossy(&f[0]).into_owned();
        assert!(
            s.starts_with("data: {\"error\":") && s.contains("Overloaded"),
            "{s}"
        );
    }
}
