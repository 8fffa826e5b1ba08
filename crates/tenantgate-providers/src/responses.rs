//! OpenAI's Responses API (`POST /v1/responses`) as a surface over chat completions: a
//! Responses request is read into an OpenAI chat request (what the gateway's one pipeline
//! carries, whatever the provider), and the chat answer, complete or streamed, is rendered back
//! as a Responses object or as the Responses SSE events. The gateway keeps no conversation
//! state: what needs it (`previous_response_id`, `conversation`, item references, background
//! runs) and the provider's built-in tools are refused with the parameter named.

use crate::openai::json_type;
use crate::sse::named_frame;
use crate::{CodecError, Usage};
use bytes::Bytes;
use serde_json::{json, Map, Value};

/// Parameters the gateway takes and ignores: they change nothing a gateway answers
/// (`store`: nothing is stored, whatever it says; the others are hints or labels).
const IGNORED: &[&str] = &[
    "store",
    "metadata",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "stream_options",
    "max_tool_calls",
];

/// Parameters that need state or tools the gateway does not have.
const REFUSED: &[(&str, &str)] = &[
    (
        "previous_response_id",
        "'previous_response_id' is not supported: this gateway keeps no conversation state; send the earlier turns in 'input'",
    ),
    (
        "conversation",
        "'conversation' is not supported: this gateway keeps no conversation state; send the earlier turns in 'input'",
    ),
    (
        "background",
        "'background' is not supported: responses are answered in the request",
    ),
    (
        "prompt",
        "'prompt' (a stored prompt template) is not supported: use the gateway's 'tenantgate.prompt'",
    ),
];

fn err(message: impl Into<String>, param: &str) -> CodecError {
    CodecError::new(message, Some(param))
}

/// Reads a Responses request into an OpenAI chat request. `Err` names the parameter at fault.
pub fn request_to_chat(body: &Map<String, Value>) -> Result<Map<String, Value>, CodecError> {
    let mut chat = Map::new();
    for (k, v) in body {
        if let Some((_, why)) = REFUSED.iter().find(|(name, _)| name == k) {
            // `background: false` and `null`s ask for nothing the gateway lacks.
            if !(v.is_null() || *v == Value::Bool(false)) {
                return Err(err(*why, k));
            }
            continue;
        }
        match k.as_str() {
            "model"
            | "stream"
            | "temperature"
            | "top_p"
            | "parallel_tool_calls"
            | "user"
            | "top_logprobs" => {
                chat.insert(k.clone(), v.clone());
            }
            "max_output_tokens" => {
                chat.insert("max_tokens".into(), v.clone());
            }
            "input" | "instructions" | "tools" | "tool_choice" | "text" | "reasoning"
            | "include" | "truncation" => {}
            k if IGNORED.contains(&k) => {}
            other => return Err(err(format!("Unknown parameter: '{other}'."), other)),
        }
    }
    let mut messages = Vec::new();
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(v) => {
            return Err(err(
                format!("'instructions' must be a string, not {}", json_type(v)),
                "instructions",
            ))
        }
    }
    match body.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                input_item(item, i, &mut messages)?;
            }
        }
        Some(Value::Array(_)) => return Err(err("'input' must not be empty", "input")),
        None | Some(Value::Null) => return Err(err("'input' is required", "input")),
        Some(v) => {
            return Err(err(
                format!(
                    "'input' must be a string or an array of input items, not {}",
                    json_type(v)
                ),
                "input",
            ))
        }
    }
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = body.get("tools").filter(|v| !v.is_null()) {
        let Value::Array(tools) = tools else {
            return Err(err("'tools' must be an array", "tools"));
        };
        let mut out = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            out.push(tool(t, i)?);
        }
        if !out.is_empty() {
            chat.insert("tools".into(), Value::Array(out));
        }
    }
    if let Some(tc) = body.get("tool_choice").filter(|v| !v.is_null()) {
        chat.insert("tool_choice".into(), tool_choice(tc)?);
    }
    if let Some(text) = body.get("text").filter(|v| !v.is_null()) {
        if let Some(rf) = text_format(text)? {
            chat.insert("response_format".into(), rf);
        }
    }
    if let Some(r) = body.get("reasoning").filter(|v| !v.is_null()) {
        match r.get("effort") {
            None | Some(Value::Null) => {}
            Some(Value::String(e)) => {
                chat.insert("reasoning_effort".into(), json!(e));
            }
            Some(_) => {
                return Err(err(
                    "'reasoning.effort' must be a string",
                    "reasoning.effort",
                ))
            }
        }
    }
    match body.get("include") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(_) => {
            return Err(err(
                "'include' is not supported: this gateway returns no extra output data",
                "include",
            ))
        }
    }
    match body.get("truncation").and_then(Value::as_str) {
        None | Some("disabled") => {}
        Some(_) => {
            return Err(err(
                "'truncation' must be \"disabled\": this gateway does not truncate the input",
                "truncation",
            ))
        }
    }
    Ok(chat)
}

/// One input item as chat messages: messages keep their role; function calls become an
/// assistant message's tool calls (consecutive calls in one message), their outputs tool
/// messages.
fn input_item(item: &Value, i: usize, messages: &mut Vec<Value>) -> Result<(), CodecError> {
    let Value::Object(o) = item else {
        return Err(err(
            format!("input[{i}] must be an object"),
            &format!("input[{i}]"),
        ));
    };
    let kind = o.get("type").and_then(Value::as_str).unwrap_or("message");
    match kind {
        "message" => {
            let role = match o.get("role").and_then(Value::as_str) {
                Some(r @ ("user" | "assistant" | "system" | "developer")) => r,
                _ => {
                    return Err(err(
                        format!("input[{i}].role must be one of user, assistant, system, developer"),
                        &format!("input[{i}].role"),
                    ))
                }
            };
            let content = match o.get("content") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) if !parts.is_empty() => {
                    let mut out = Vec::new();
                    for (j, p) in parts.iter().enumerate() {
                        out.push(content_part(p, i, j)?);
                    }
                    // Prior assistant turns are text only in chat.
                    if role == "assistant" {
                        Value::String(
                            out.iter()
                                .filter_map(|p| p["text"].as_str())
                                .collect::<Vec<_>>()
                                .join(""),
                        )
                    } else {
                        Value::Array(out)
                    }
                }
                _ => {
                    return Err(err(
                        format!("input[{i}].content must be a string or a non-empty array"),
                        &format!("input[{i}].content"),
                    ))
                }
            };
            messages.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let s = |k: &str| -> Result<String, CodecError> {
                o.get(k).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| {
                    err(
                        format!("input[{i}].{k} must be a string"),
                        &format!("input[{i}].{k}"),
                    )
                })
            };
            let call = json!({"id": s("call_id")?, "type": "function",
                "function": {"name": s("name")?, "arguments": s("arguments")?}});
            let joins = messages.last().is_some_and(|m: &Value| {
                m["role"] == "assistant" && m["tool_calls"].is_array() && m["content"].is_null()
            });
            match messages.last_mut() {
                Some(Value::Object(m)) if joins => {
                    if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
                        calls.push(call);
                    }
                }
                _ => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let call_id = o.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                err(
                    format!("input[{i}].call_id must be a string"),
                    &format!("input[{i}].call_id"),
                )
            })?;
            let output = match o.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(""),
                _ => {
                    return Err(err(
                        format!("input[{i}].output must be a string"),
                        &format!("input[{i}].output"),
                    ))
                }
            };
            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
        }
        "item_reference" => {
            return Err(err(
                format!("input[{i}]: item references are not supported: this gateway keeps no conversation state"),
                &format!("input[{i}].type"),
            ))
        }
        // Reasoning items of an earlier turn: opaque to chat models, carried by no chat wire.
        "reasoning" => {}
        other => {
            return Err(err(
                format!("input[{i}].type '{}' is not supported", crate::bounded(other)),
                &format!("input[{i}].type"),
            ))
        }
    }
    Ok(())
}

fn content_part(p: &Value, i: usize, j: usize) -> Result<Value, CodecError> {
    let param = format!("input[{i}].content[{j}]");
    match p.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text") => match p.get("text") {
            Some(Value::String(t)) => Ok(json!({"type": "text", "text": t})),
            _ => Err(err(format!("{param}.text must be a string"), &format!("{param}.text"))),
        },
        Some("input_image") => match p.get("image_url").and_then(Value::as_str) {
            Some(url) => {
                let detail = p.get("detail").and_then(Value::as_str).unwrap_or("auto");
                Ok(json!({"type": "image_url", "image_url": {"url": url, "detail": detail}}))
            }
            None => Err(err(
                format!("{param}: only 'image_url' images are supported (no file ids: this gateway stores no files for responses)"),
                &format!("{param}.image_url"),
            )),
        },
        Some("refusal") => match p.get("refusal") {
            Some(Value::String(t)) => Ok(json!({"type": "text", "text": t})),
            _ => Err(err(format!("{param}.refusal must be a string"), &format!("{param}.refusal"))),
        },
        Some(other) => Err(err(
            format!("{param}.type '{}' is not supported", crate::bounded(other)),
            &format!("{param}.type"),
        )),
        None => Err(err(format!("{param}.type is required"), &format!("{param}.type"))),
    }
}

fn tool(t: &Value, i: usize) -> Result<Value, CodecError> {
    match t.get("type").and_then(Value::as_str) {
        Some("function") => {
            let name = t.get("name").and_then(Value::as_str).ok_or_else(|| {
                err(format!("tools[{i}].name must be a string"), &format!("tools[{i}].name"))
            })?;
            let mut f = Map::new();
            f.insert("name".into(), json!(name));
            for k in ["description", "parameters", "strict"] {
                if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                    f.insert(k.into(), v.clone());
                }
            }
            Ok(json!({"type": "function", "function": f}))
        }
        Some(other) => Err(err(
            format!(
                "tools[{i}].type '{}' is not supported: only function tools (built-in tools run at OpenAI, not at this gateway)",
                crate::bounded(other)
            ),
            &format!("tools[{i}].type"),
        )),
        None => Err(err(format!("tools[{i}].type is required"), &format!("tools[{i}].type"))),
    }
}

fn tool_choice(tc: &Value) -> Result<Value, CodecError> {
    match tc {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(tc.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            match o.get("name").and_then(Value::as_str) {
                Some(n) => Ok(json!({"type": "function", "function": {"name": n}})),
                None => Err(err(
                    "'tool_choice.name' must be a string",
                    "tool_choice.name",
                )),
            }
        }
        _ => Err(err(
            "'tool_choice' must be \"auto\", \"none\", \"required\" or a function",
            "tool_choice",
        )),
    }
}

fn text_format(text: &Value) -> Result<Option<Value>, CodecError> {
    let Some(format) = text.get("format").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut s = Map::new();
            for k in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(k).filter(|v| !v.is_null()) {
                    s.insert(k.into(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": s})))
        }
        _ => Err(err(
            "'text.format.type' must be \"text\", \"json_object\" or \"json_schema\"",
            "text.format.type",
        )),
    }
}

/// The Responses id for a chat completion's id (the same call, under the prefix Responses
/// clients expect).
fn response_id(chat_id: &str) -> String {
    format!("resp_{}", chat_id.trim_start_matches("chatcmpl-"))
}

fn usage_object(u: Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

/// A Responses object around `output`.
fn response_object(
    id: &str,
    created: u64,
    model: &str,
    status: &str,
    output: Vec<Value>,
    usage: Option<Usage>,
    finish: Option<&str>,
) -> Value {
    let incomplete = (finish == Some("length")).then(|| json!({"reason": "max_output_tokens"}));
    json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status,
        "model": model,
        "output": output,
        "usage": usage.map(usage_object),
        "error": null,
        "incomplete_details": incomplete,
        "instructions": null,
        "metadata": {},
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "store": false,
    })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": arguments, "status": status})
}

/// A complete chat completion (already guarded) as a Responses object: the first choice's
/// text as a message item, its tool calls as function-call items.
pub fn chat_response_to_responses(chat: &Value) -> Value {
    let chat_id = chat["id"].as_str().unwrap_or("gateway");
    let id = response_id(chat_id);
    let choice = &chat["choices"][0];
    let msg = &choice["message"];
    let mut output = Vec::new();
    let text = crate::openai::content_text(&msg["content"]);
    if !text.is_empty() || msg["tool_calls"].as_array().is_none_or(|c| c.is_empty()) {
        output.push(message_item(
            &format!("msg_{}", &id[5..]),
            &text,
            "completed",
        ));
    }
    for (k, c) in msg["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let call_id = c["id"].as_str().unwrap_or_default();
        output.push(call_item(
            &format!("fc_{}_{k}", &id[5..]),
            call_id,
            c["function"]["name"].as_str().unwrap_or_default(),
            c["function"]["arguments"].as_str().unwrap_or_default(),
            "completed",
        ));
    }
    let finish = choice["finish_reason"].as_str();
    let status = if finish == Some("length") {
        "incomplete"
    } else {
        "completed"
    };
    response_object(
        &id,
        chat["created"].as_u64().unwrap_or_else(crate::unix_now),
        chat["model"].as_str().unwrap_or_default(),
        status,
        output,
        crate::openai::usage_from(chat),
        finish,
    )
}

/// An output item being streamed.
enum Item {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// A chat completion stream (its `data:` payloads, already guarded) as Responses SSE events.
/// Only the first choice is rendered (Responses has one output).
pub struct ChatToResponsesStream {
    id: String,
    model: String,
    created: u64,
    seq: u64,
    started: bool,
    items: Vec<Item>,
    /// Index in `items` of the open message, and of each chat tool call (by its index).
    message: Option<usize>,
    calls: Vec<(u64, usize)>,
    usage: Option<Usage>,
    finish: Option<String>,
    pub finished: bool,
}

impl ChatToResponsesStream {
    pub fn new(model: &str) -> Self {
        ChatToResponsesStream {
            id: String::new(),
            model: model.to_owned(),
            created: crate::unix_now(),
            seq: 0,
            started: false,
            items: Vec::new(),
            message: None,
            calls: Vec::new(),
            usage: None,
            finish: None,
            finished: false,
        }
    }

    fn event(&mut self, kind: &str, mut v: Value, out: &mut Vec<Bytes>) {
        v["type"] = json!(kind);
        v["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.push(named_frame(kind, &v.to_string()));
    }

    fn snapshot(&self, status: &str) -> Value {
        let output = self
            .items
            .iter()
            .map(|it| self.item_value(it, "completed"))
            .collect();
        let usage = (status != "in_progress").then_some(self.usage).flatten();
        response_object(
            &self.id,
            self.created,
            &self.model,
            status,
            output,
            usage,
            self.finish.as_deref(),
        )
    }

    fn item_value(&self, it: &Item, status: &str) -> Value {
        match it {
            Item::Message { id, text } => message_item(id, text, status),
            Item::Call {
                id,
                call_id,
                name,
                arguments,
            } => call_item(id, call_id, name, arguments, status),
        }
    }

    fn start(&mut self, chat_id: Option<&str>, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = response_id(chat_id.unwrap_or("gateway"));
        let r = self.snapshot("in_progress");
        self.event("response.created", json!({"response": r}), out);
        let r = self.snapshot("in_progress");
        self.event("response.in_progress", json!({"response": r}), out);
    }

    fn open_message(&mut self, out: &mut Vec<Bytes>) -> usize {
        if let Some(i) = self.message {
            return i;
        }
        let i = self.items.len();
        let id = format!("msg_{}_{i}", &self.id[5..]);
        self.items.push(Item::Message {
            id: id.clone(),
            text: String::new(),
        });
        self.message = Some(i);
        let item = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
        self.event(
            "response.output_item.added",
            json!({"output_index": i, "item": item}),
            out,
        );
        self.event(
            "response.content_part.added",
            json!({"item_id": id, "output_index": i, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
            out,
        );
        i
    }

    /// Events for one `data:` payload of the chat stream.
    pub fn on_data(&mut self, data: &str) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        if data == "[DONE]" {
            self.start(None, &mut out);
            self.complete(&mut out);
            return out;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return out;
        };
        if let Some(e) = v.get("error") {
            self.start(None, &mut out);
            self.fail(e, &mut out);
            return out;
        }
        self.start(v["id"].as_str(), &mut out);
        if let Some(u) = crate::openai::usage_from(&v) {
            self.usage = Some(u);
        }
        let Some(choice) = v["choices"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["index"].as_u64().unwrap_or(0) == 0))
        else {
            return out;
        };
        let delta = &choice["delta"];
        if let Some(t) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            let i = self.open_message(&mut out);
            let id = match &mut self.items[i] {
                Item::Message { id, text } => {
                    text.push_str(t);
                    id.clone()
                }
                Item::Call { id, .. } => id.clone(),
            };
            self.event(
                "response.output_text.delta",
                json!({"item_id": id, "output_index": i, "content_index": 0, "delta": t, "logprobs": []}),
                &mut out,
            );
        }
        for c in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = c["index"].as_u64().unwrap_or(0);
            let i = match self.calls.iter().find(|(k, _)| *k == index) {
                Some((_, i)) => *i,
                None => {
                    let i = self.items.len();
                    let id = format!("fc_{}_{i}", &self.id[5..]);
                    let call_id = c["id"].as_str().unwrap_or_default().to_owned();
                    let name = c["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let item = call_item(&id, &call_id, &name, "", "in_progress");
                    self.items.push(Item::Call {
                        id,
                        call_id,
                        name,
                        arguments: String::new(),
                    });
                    self.calls.push((index, i));
                    self.event(
                        "response.output_item.added",
                        json!({"output_index": i, "item": item}),
                        &mut out,
                    );
                    i
                }
            };
            if let Some(a) = c["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                let id = match &mut self.items[i] {
                    Item::Call { id, arguments, .. } => {
                        arguments.push_str(a);
                        id.clone()
                    }
                    Item::Message { id, .. } => id.clone(),
                };
                self.event(
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": i, "delta": a}),
                    &mut out,
                );
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.finish = Some(f.to_owned());
        }
        out
    }

    /// Closes every item, then `response.completed` (or `response.incomplete` when the output
    /// bound cut the answer).
    fn complete(&mut self, out: &mut Vec<Bytes>) {
        self.finished = true;
        for i in 0..self.items.len() {
            let done = self.item_value(&self.items[i], "completed");
            match &self.items[i] {
                Item::Message { id, text } => {
                    let (id, text) = (id.clone(), text.clone());
                    self.event(
                        "response.output_text.done",
                        json!({"item_id": id, "output_index": i, "content_index": 0, "text": text, "logprobs": []}),
                        out,
                    );
                    self.event(
                        "response.content_part.done",
                        json!({"item_id": id, "output_index": i, "content_index": 0,
                            "part": {"type": "output_text", "text": text, "annotations": []}}),
                        out,
                    );
                }
                Item::Call { id, arguments, .. } => {
                    let (id, arguments) = (id.clone(), arguments.clone());
                    self.event(
                        "response.function_call_arguments.done",
                        json!({"item_id": id, "output_index": i, "arguments": arguments}),
                        out,
                    );
                }
            }
            self.event(
                "response.output_item.done",
                json!({"output_index": i, "item": done}),
                out,
            );
        }
        let (kind, status) = if self.finish.as_deref() == Some("length") {
            ("response.incomplete", "incomplete")
        } else {
            ("response.completed", "completed")
        };
        let r = self.snapshot(status);
        self.event(kind, json!({"response": r}), out);
    }

    /// An in-stream failure (provider, guard, audit): `error`, then `response.failed` with
    /// the same code and message.
    fn fail(&mut self, e: &Value, out: &mut Vec<Bytes>) {
        self.finished = true;
        let code = e["code"]
            .as_str()
            .or(e["type"].as_str())
            .unwrap_or("server_error");
        let message = e["message"].as_str().unwrap_or("the response failed");
        self.event(
            "error",
            json!({"code": code, "message": message, "param": e["param"].clone()}),
            out,
        );
        let mut r = self.snapshot("failed");
        r["error"] = json!({"code": code, "message": message});
        self.event("response.failed", json!({"response": r}), out);
    }
}

#[cfg(test)]
#[path = "responses_tests.rs"]
mod tests;
