//! Where the text of a caller-format stream frame lives: each piece of text belongs to one
//! channel (an OpenAI choice's content, refusal, reasoning or one tool call's arguments; an
//! Anthropic content block; an error message), and each frame names what it must stay ordered
//! behind. The streaming guard holds and scans text per channel (`stream/guard.rs`); the audit
//! counts it. A frame is parsed once, here.

use bytes::Bytes;
use serde_json::Value;

/// The part of an OpenAI choice a piece of text belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Part {
    Content,
    Refusal,
    /// `reasoning_content` / `reasoning` of OpenAI-compatible servers.
    Reasoning,
    /// The legacy `function_call.arguments`.
    FunctionCall,
    /// `tool_calls[].function.arguments`, by tool-call index.
    Tool(u64),
}

/// One text channel: matches are searched within a channel, never across two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    /// An OpenAI choice (by its `index`) and part.
    Choice(u64, Part),
    /// An Anthropic content block, by its `index`.
    Block(u64),
    /// Text outside any choice or block: an error message, a `message_start`'s content, a
    /// frame that is not JSON.
    Other,
}

/// What a frame stays ordered behind: frames of one channel keep their order; a frame scoped
/// to a choice (its finish chunk) waits for every channel of that choice; `All` waits for
/// everything before it, and everything after waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Channel(Key),
    Choice(u64),
    All,
}

/// One piece of text in a frame.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub key: Key,
    /// JSON pointer to the string in the parsed frame.
    pub pointer: String,
    pub text: String,
    /// The text is a serialized JSON value (a tool input object, a raw frame), not a string
    /// field: it cannot be rewritten in place, so a finding to redact in it blocks instead.
    pub opaque: bool,
}

/// A frame, parsed once.
pub(crate) struct Frame {
    pub event: Option<String>,
    /// `None` for `[DONE]` and frames whose data is not JSON.
    pub value: Option<Value>,
    pub segments: Vec<Segment>,
    pub scopes: Vec<Scope>,
    /// Channels (or all channels of a choice) this frame ends: no more text may follow there.
    pub closes: Vec<Scope>,
}

fn event_and_data(frame: &[u8]) -> (Option<String>, Option<String>) {
    let s = String::from_utf8_lossy(frame);
    let mut event = None;
    let mut data: Option<String> = None;
    for line in s.lines() {
        if let Some(e) = line.strip_prefix("event:") {
            event = Some(e.trim_start().to_owned());
        } else if let Some(d) = line.strip_prefix("data:") {
            let d = d.strip_prefix(' ').unwrap_or(d);
            // Several data lines form one payload, joined by newlines (the SSE rule).
            match &mut data {
                Some(x) => {
                    x.push('\n');
                    x.push_str(d);
                }
                None => data = Some(d.to_owned()),
            }
        }
    }
    (event, data)
}

fn seg(out: &mut Vec<Segment>, key: Key, pointer: String, v: &Value) {
    if let Some(t) = v.as_str().filter(|t| !t.is_empty()) {
        out.push(Segment {
            key,
            pointer,
            text: t.to_owned(),
            opaque: false,
        });
    }
}

fn opaque(out: &mut Vec<Segment>, key: Key, pointer: &str, v: &Value) {
    let empty = match v {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    };
    if !empty {
        out.push(Segment {
            key,
            pointer: pointer.to_owned(),
            text: v.to_string(),
            opaque: true,
        });
    }
}

/// Text fields of an OpenAI delta, and the part each belongs to.
const OPENAI_FIELDS: [(&str, Part); 4] = [
    ("content", Part::Content),
    ("refusal", Part::Refusal),
    ("reasoning_content", Part::Reasoning),
    ("reasoning", Part::Reasoning),
];

fn openai_chunk(v: &Value, f: &mut Frame) {
    if let Some(e) = v.get("error") {
        seg(
            &mut f.segments,
            Key::Other,
            "/error/message".into(),
            &e["message"],
        );
        f.scopes.push(Scope::All);
        return;
    }
    let choices = v["choices"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if choices.is_empty() {
        // The usage chunk, or something unknown: it keeps its place among all frames.
        f.scopes.push(Scope::All);
        return;
    }
    for (pos, c) in choices.iter().enumerate() {
        let i = c["index"].as_u64().unwrap_or(pos as u64);
        let d = &c["delta"];
        let mut touched = false;
        for (field, part) in OPENAI_FIELDS {
            if d.get(field).is_some_and(Value::is_string) {
                touched = true;
                let key = Key::Choice(i, part);
                f.scopes.push(Scope::Channel(key));
                seg(
                    &mut f.segments,
                    key,
                    format!("/choices/{pos}/delta/{field}"),
                    &d[field],
                );
            }
        }
        if d["function_call"].is_object() {
            touched = true;
            let key = Key::Choice(i, Part::FunctionCall);
            f.scopes.push(Scope::Channel(key));
            seg(
                &mut f.segments,
                key,
                format!("/choices/{pos}/delta/function_call/arguments"),
                &d["function_call"]["arguments"],
            );
        }
        for (tpos, tc) in d["tool_calls"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            touched = true;
            let key = Key::Choice(i, Part::Tool(tc["index"].as_u64().unwrap_or(tpos as u64)));
            f.scopes.push(Scope::Channel(key));
            seg(
                &mut f.segments,
                key,
                format!("/choices/{pos}/delta/tool_calls/{tpos}/function/arguments"),
                &tc["function"]["arguments"],
            );
        }
        if c["finish_reason"].is_string() {
            f.scopes.push(Scope::Choice(i));
            f.closes.push(Scope::Choice(i));
        } else if !touched {
            f.scopes.push(Scope::Choice(i));
        }
    }
}

fn anthropic_event(event: &str, v: &Value, f: &mut Frame) {
    let block = Key::Block(v["index"].as_u64().unwrap_or(0));
    match event {
        "content_block_start" => {
            let b = &v["content_block"];
            seg(
                &mut f.segments,
                block,
                "/content_block/text".into(),
                &b["text"],
            );
            seg(
                &mut f.segments,
                block,
                "/content_block/thinking".into(),
                &b["thinking"],
            );
            opaque(&mut f.segments, block, "/content_block/input", &b["input"]);
            // Clients append blocks in the order their starts arrive: starts stay in order.
            f.scopes.push(Scope::All);
        }
        "content_block_delta" => {
            let d = &v["delta"];
            for field in ["text", "partial_json", "thinking"] {
                seg(&mut f.segments, block, format!("/delta/{field}"), &d[field]);
            }
            f.scopes.push(Scope::Channel(block));
        }
        "content_block_stop" => {
            f.scopes.push(Scope::Channel(block));
            f.closes.push(Scope::Channel(block));
        }
        "error" => {
            seg(
                &mut f.segments,
                Key::Other,
                "/error/message".into(),
                &v["error"]["message"],
            );
            f.scopes.push(Scope::All);
        }
        "message_start" => {
            opaque(
                &mut f.segments,
                Key::Other,
                "/message/content",
                &v["message"]["content"],
            );
            f.scopes.push(Scope::All);
        }
        // message_delta, message_stop, ping, and events added later: in place among all.
        _ => f.scopes.push(Scope::All),
    }
}

/// Parses a caller-format frame (an OpenAI `data:` chunk, or an Anthropic named event).
pub(crate) fn classify(frame: &[u8]) -> Frame {
    let (event, data) = event_and_data(frame);
    let mut f = Frame {
        event,
        value: None,
        segments: Vec::new(),
        scopes: Vec::new(),
        closes: Vec::new(),
    };
    let Some(data) = data else {
        f.scopes.push(Scope::All);
        return f;
    };
    if data == "[DONE]" {
        f.scopes.push(Scope::All);
        return f;
    }
    match serde_json::from_str::<Value>(&data) {
        Ok(v) => {
            match f.event.clone() {
                Some(e) => anthropic_event(&e, &v, &mut f),
                None => openai_chunk(&v, &mut f),
            }
            f.value = Some(v);
        }
        Err(_) => {
            // Not JSON, yet it reaches the caller as it is: its bytes are text to scan.
            f.segments.push(Segment {
                key: Key::Other,
                pointer: String::new(),
                text: data,
                opaque: true,
            });
            f.scopes.push(Scope::All);
        }
    }
    f
}

/// Serializes a (rewritten) frame back to SSE.
pub(crate) fn reframe(event: Option<&str>, v: &Value) -> Bytes {
    match event {
        Some(e) => tenantgate_providers::sse::named_frame(e, &v.to_string()),
        None => tenantgate_providers::sse::data_frame(&v.to_string()),
    }
}

/// All the text a frame carries (every channel), e.g. to count the tokens delivered.
pub(crate) fn frame_text(frame: &[u8]) -> Option<String> {
    let f = classify(frame);
    let texts: Vec<&str> = f
        .segments
        .iter()
        .filter(|s| !s.opaque)
        .map(|s| s.text.as_str())
        .collect();
    (!texts.is_empty()).then(|| texts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_choice_and_tool_call_is_its_own_channel() {
        let chunk = json!({"choices":[
            {"index":0,"delta":{"content":"a"}},
            {"index":1,"delta":{"content":"b","tool_calls":[{"index":0,"function":{"arguments":"x"}},{"index":3,"function":{"arguments":"y"}}]}},
            {"index":2,"delta":{},"finish_reason":"stop"}]});
        let f = classify(&tenantgate_providers::sse::data_frame(&chunk.to_string()));
        let keys: Vec<(Key, &str)> = f
            .segments
            .iter()
            .map(|s| (s.key, s.text.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                (Key::Choice(0, Part::Content), "a"),
                (Key::Choice(1, Part::Content), "b"),
                (Key::Choice(1, Part::Tool(0)), "x"),
                (Key::Choice(1, Part::Tool(3)), "y"),
            ]
        );
        assert_eq!(f.closes, [Scope::Choice(2)]);
        let e = tenantgate_providers::sse::named_frame(
            "content_block_delta",
            &json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}).to_string(),
        );
        let f = classify(&e);
        assert_eq!(f.segments[0].key, Key::Block(2));
        assert_eq!(f.segments[0].pointer, "/delta/partial_json");
        assert_eq!(f.scopes, [Scope::Channel(Key::Block(2))]);
    }
}
