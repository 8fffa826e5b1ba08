//! The reverse direction: an Anthropic messages request to an OpenAI-format model (an Anthropic
//! SDK in front of OpenAI, Azure, vLLM or Ollama), and the answer back as an Anthropic message
//! or event stream.

use crate::sse::named_frame;
use crate::{CodecError, Usage};
use bytes::Bytes;
use serde_json::{json, Map, Value};

fn text_of_blocks(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn image_part(b: &Value) -> Option<Value> {
    let src = &b["source"];
    let url = match src["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            src["media_type"].as_str()?,
            src["data"].as_str()?
        ),
        Some("url") => src["url"].as_str()?.to_owned(),
        _ => return None,
    };
    Some(json!({"type":"image_url","image_url":{"url":url}}))
}

/// Anthropic messages request -> OpenAI chat request for `upstream_model` (with `max_tokens`;
/// the caller renames it for providers that want `max_completion_tokens`).
pub fn anthropic_request_to_openai(
    body: &Map<String, Value>,
    upstream_model: &str,
) -> Result<Map<String, Value>, CodecError> {
    let meta = crate::anthropic::messages_meta(body)?;
    let mut messages = Vec::new();
    if let Some(sys) = body.get("system") {
        let t = text_of_blocks(sys);
        if !t.is_empty() {
            messages.push(json!({"role":"system","content":t}));
        }
    }
    for (i, m) in body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let role = m["role"].as_str().unwrap_or("user");
        match (&m["content"], role) {
            (Value::String(s), _) => messages.push(json!({"role":role,"content":s})),
            (Value::Array(blocks), "assistant") => {
                let text: String = blocks
                    .iter()
                    .filter(|b| b["type"] == "text")
                    .filter_map(|b| b["text"].as_str())
                    .collect();
                let calls: Vec<Value> = blocks
                    .iter()
                    .filter(|b| b["type"] == "tool_use")
                    .map(|b| json!({"id":b["id"],"type":"function","function":{"name":b["name"],"arguments":b["input"].to_string()}}))
                    .collect();
                let mut msg = json!({"role":"assistant","content": if text.is_empty() { Value::Null } else { json!(text) }});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                messages.push(msg);
            }
            (Value::Array(blocks), _) => {
                // Tool results become tool messages, before the user's own parts.
                for b in blocks.iter().filter(|b| b["type"] == "tool_result") {
                    messages.push(json!({"role":"tool","tool_call_id":b["tool_use_id"],"content":text_of_blocks(&b["content"])}));
                }
                let mut parts = Vec::new();
                for b in blocks.iter().filter(|b| b["type"] != "tool_result") {
                    match b["type"].as_str() {
                        Some("text") => parts.push(json!({"type":"text","text":b["text"]})),
                        Some("image") => parts.extend(image_part(b)),
                        other => {
                            return Err(CodecError::new(
                                format!("messages.{i}.content: block type {other:?} is not supported for this model"),
                                Some(&format!("messages.{i}.content")),
                            ))
                        }
                    }
                }
                if !parts.is_empty() {
                    messages.push(json!({"role":"user","content":parts}));
                }
            }
            _ => {}
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), json!(meta.max_tokens));
    for k in ["temperature", "top_p"] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(stop) = body.get("stop_sequences").filter(|v| v.is_array()) {
        out.insert("stop".into(), stop.clone());
    }
    if meta.stream {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(Value::Array(tools)) = body.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut f = json!({"name":t["name"],"parameters":t.get("input_schema").cloned().unwrap_or(json!({"type":"object"}))});
                if let Some(d) = t.get("description") {
                    f["description"] = d.clone();
                }
                json!({"type":"function","function":f})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = body.get("tool_choice") {
        let choice = match tc["type"].as_str() {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type":"function","function":{"name":tc["name"]}}),
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), choice);
        if tc["disable_parallel_tool_use"] == true {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    if let Some(u) = body
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), json!(u));
    }
    Ok(out)
}

pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// OpenAI chat completion -> Anthropic message. `model` is the name the client used.
pub fn openai_response_to_anthropic(v: &Value, model: &str) -> Value {
    let choice = &v["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    if let Some(t) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type":"text","text":t}));
    }
    for c in msg["tool_calls"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let input: Value =
            serde_json::from_str(c["function"]["arguments"].as_str().unwrap_or("{}"))
                .unwrap_or(json!({}));
        content.push(
            json!({"type":"tool_use","id":c["id"],"name":c["function"]["name"],"input":input}),
        );
    }
    let u = crate::openai::usage_from(v).unwrap_or_default();
    json!({
        "id": format!("msg_{}", v["id"].as_str().unwrap_or("openai")),
        "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str()), "stop_sequence": null,
        "usage": {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens},
    })
}

/// Turns an OpenAI chat-completion stream into Anthropic message events.
///
/// Content blocks: text opens a text block (closed when a tool call starts); each tool call
/// (by its OpenAI index) opens a `tool_use` block that stays open until the end, so argument
/// pieces of several tool calls may interleave, each on its own block index.
#[derive(Debug)]
pub struct OpenAiToAnthropicStream {
    model: String,
    started: bool,
    /// The open text block, if any.
    text: Option<u64>,
    next_index: u64,
    /// OpenAI tool-call index -> Anthropic content-block index, in opening order.
    tools: Vec<(u64, u64)>,
    finish: Option<String>,
    /// The prompt's token count as the gateway counted it, for `message_start` (the OpenAI
    /// stream reports usage only at its end) and for the end when the provider reports none.
    prompt_estimate: u64,
    usage_reported: bool,
    pub usage: Usage,
    pub finished: bool,
}

impl OpenAiToAnthropicStream {
    pub fn new(model: &str) -> Self {
        Self::with_prompt_estimate(model, 0)
    }

    /// `prompt_estimate`: the prompt's tokens as counted before the call (0: not counted).
    pub fn with_prompt_estimate(model: &str, prompt_estimate: u64) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            text: None,
            next_index: 0,
            tools: Vec::new(),
            finish: None,
            prompt_estimate,
            usage_reported: false,
            usage: Usage::default(),
            finished: false,
        }
    }

    fn ev(name: &str, data: Value) -> Bytes {
        named_frame(name, &data.to_string())
    }

    fn stop(i: u64) -> Bytes {
        Self::ev(
            "content_block_stop",
            json!({"type":"content_block_stop","index":i}),
        )
    }

    fn open(&mut self) -> u64 {
        let i = self.next_index;
        self.next_index += 1;
        i
    }

    fn open_tool(&mut self, oi: u64, tc: &Value, out: &mut Vec<Bytes>) -> u64 {
        if let Some(t) = self.text.take() {
            out.push(Self::stop(t));
        }
        let i = self.open();
        self.tools.push((oi, i));
        let id = match &tc["id"] {
            Value::String(s) => s.clone(),
            _ => format!("call_{oi}"),
        };
        out.push(Self::ev("content_block_start", json!({"type":"content_block_start","index":i,"content_block":{"type":"tool_use","id":id,"name":tc["function"]["name"].as_str().unwrap_or_default(),"input":{}}})));
        i
    }

    /// Frames for one upstream `data:` payload.
    pub fn on_data(&mut self, data: &str) -> Vec<Bytes> {
        let mut out = Vec::new();
        if data == "[DONE]" {
            let mut open: Vec<u64> = self.text.take().into_iter().collect();
            open.extend(self.tools.drain(..).map(|(_, i)| i));
            open.sort_unstable();
            out.extend(open.into_iter().map(Self::stop));
            // The real prompt count arrives with the final usage chunk: Anthropic clients
            // take `input_tokens` from message_delta when it is there.
            let input = if self.usage_reported {
                self.usage.input_tokens
            } else {
                self.usage.input_tokens = self.prompt_estimate;
                self.prompt_estimate
            };
            out.push(Self::ev("message_delta", json!({"type":"message_delta","delta":{"stop_reason":stop_reason(self.finish.as_deref()),"stop_sequence":null},"usage":{"input_tokens":input,"output_tokens":self.usage.output_tokens}})));
            out.push(Self::ev("message_stop", json!({"type":"message_stop"})));
            self.finished = true;
            return out;
        }
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        if let Some(e) = v.get("error") {
            out.push(Self::ev("error", json!({"type":"error","error":{"type":"api_error","message":e["message"].as_str().unwrap_or("upstream error")}})));
            self.finished = true;
            return out;
        }
        if !self.started {
            self.started = true;
            out.push(Self::ev("message_start", json!({"type":"message_start","message":{
                "id": format!("msg_{}", v["id"].as_str().unwrap_or("openai")), "type":"message","role":"assistant",
                "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": self.prompt_estimate, "output_tokens": 0}}})));
        }
        if let Some(u) = crate::openai::usage_from(&v) {
            self.usage = u;
            self.usage_reported = true;
        }
        let choice = &v["choices"][0];
        let delta = &choice["delta"];
        if let Some(t) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            let i = match self.text {
                Some(i) => i,
                None => {
                    let i = self.open();
                    self.text = Some(i);
                    out.push(Self::ev("content_block_start", json!({"type":"content_block_start","index":i,"content_block":{"type":"text","text":""}})));
                    i
                }
            };
            out.push(Self::ev("content_block_delta", json!({"type":"content_block_delta","index":i,"delta":{"type":"text_delta","text":t}})));
        }
        for tc in delta["tool_calls"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let oi = tc["index"].as_u64().unwrap_or(0);
            let known = self
                .tools
                .iter()
                .rev()
                .find(|(o, _)| *o == oi)
                .map(|(_, i)| *i);
            let i = match known {
                Some(i) if tc.get("id").is_none_or(Value::is_null) => i,
                // A new call (an id), or arguments for a call whose start never came.
                _ => self.open_tool(oi, tc, &mut out),
            };
            if let Some(args) = tc["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                out.push(Self::ev("content_block_delta", json!({"type":"content_block_delta","index":i,"delta":{"type":"input_json_delta","partial_json":args}})));
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.finish = Some(f.to_owned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_maps_system_tools_results_and_choice() {
        let body = json!({"model":"m","max_tokens":50,"system":[{"type":"text","text":"be brief"}],"stop_sequences":["END"],
            "messages":[
                {"role":"user","content":"weather?"},
                {"role":"assistant","content":[{"type":"text","text":"checking"},{"type":"tool_use","id":"t1","name":"w","input":{"city":"Paris"}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"sunny"},{"type":"text","text":"thanks"}]}],
            "tools":[{"name":"w","input_schema":{"type":"object"}}],"tool_choice":{"type":"any","disable_parallel_tool_use":true},"stream":true});
        let out = anthropic_request_to_openai(body.as_object().unwrap(), "gpt-x").unwrap();
        let msgs = out["messages"].as_array().unwrap();
        assert_eq!(msgs[0], json!({"role":"system","content":"be brief"}));
        assert_eq!(
            msgs[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(
            msgs[3],
            json!({"role":"tool","tool_call_id":"t1","content":"sunny"})
        );
        assert_eq!(msgs[4]["content"][0]["text"], "thanks");
        assert_eq!(out["stop"], json!(["END"]));
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert_eq!(out["tools"][0]["function"]["parameters"]["type"], "object");
    }

    #[test]
    fn stream_becomes_anthropic_events() {
        let mut t = OpenAiToAnthropicStream::new("my-gpt");
        let mut frames = Vec::new();
        for d in [
            json!({"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}).to_string(),
            json!({"id":"c1","choices":[{"index":0,"delta":{"content":"Hi"}}]}).to_string(),
            json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}).to_string(),
            json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}).to_string(),
            json!({"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}).to_string(),
            json!({"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}).to_string(),
            "[DONE]".to_owned(),
        ] {
            frames.extend(t.on_data(&d));
        }
        let names: Vec<String> = frames
            .iter()
            .map(|f| {
                String::from_utf8_lossy(f)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("event: ")
                    .to_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let delta = String::from_utf8_lossy(&frames[7]).into_owned();
        assert!(
            delta.contains("\"stop_reason\":\"tool_use\"")
                && delta.contains("\"output_tokens\":4")
                && delta.contains("\"input_tokens\":3"),
            "{delta}"
        );
        assert!(t.finished);
    }

    #[test]
    fn interleaved_tool_calls_keep_their_own_blocks_and_the_estimate_fills_missing_usage() {
        let mut t = OpenAiToAnthropicStream::with_prompt_estimate("my-gpt", 17);
        let mut frames = Vec::new();
        let call = |tc: Value| {
            json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[tc]}}]}).to_string()
        };
        for d in [
            call(
                json!({"index":0,"id":"a","type":"function","function":{"name":"f","arguments":""}}),
            ),
            call(
                json!({"index":1,"id":"b","type":"function","function":{"name":"g","arguments":""}}),
            ),
            call(json!({"index":0,"function":{"arguments":"{\"x\":"}})),
            call(json!({"index":1,"function":{"arguments":"{\"y\":"}})),
            call(json!({"index":0,"function":{"arguments":"1}"}})),
            "[DONE]".to_owned(),
        ] {
            frames.extend(t.on_data(&d));
        }
        let events: Vec<Value> = frames
            .iter()
            .map(|f| {
                let s = String::from_utf8_lossy(f);
                serde_json::from_str(s.lines().nth(1).unwrap().trim_start_matches("data: "))
                    .unwrap()
            })
            .collect();
        assert_eq!(events[0]["message"]["usage"]["input_tokens"], 17);
        let deltas: Vec<(u64, &str)> = events
            .iter()
            .filter(|e| e["type"] == "content_block_delta")
            .map(|e| {
                (
                    e["index"].as_u64().unwrap(),
                    e["delta"]["partial_json"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(deltas, [(0, "{\"x\":"), (1, "{\"y\":"), (0, "1}")]);
        let stops: Vec<u64> = events
            .iter()
            .filter(|e| e["type"] == "content_block_stop")
            .map(|e| e["index"].as_u64().unwrap())
            .collect();
        assert_eq!(stops, [0, 1], "both blocks stay open until the end");
        let md = events
            .iter()
            .find(|e| e["type"] == "message_delta")
            .unwrap();
        assert_eq!(md["usage"]["input_tokens"], 17);
    }
}
