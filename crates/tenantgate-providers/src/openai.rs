//! OpenAI chat-completions and embeddings: validation of what the gateway relies on, usage
//! extraction, and stream-chunk inspection. Everything else in a body passes through untouched.

use crate::{CodecError, Usage};
use serde_json::{Map, Value};

/// What the gateway needs to know about a chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMeta {
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
}

/// The most choices one chat request may ask for (OpenAI's own bound).
pub const MAX_N: u64 = 128;

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

pub(crate) fn opt_bool(body: &Map<String, Value>, key: &str) -> Result<Option<bool>, CodecError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(CodecError::new(
            format!("'{key}' must be a boolean"),
            Some(key),
        )),
    }
}

/// The largest count (tokens, dimensions) a request may name: no model comes near it, and
/// anything larger is a typo or a probe, answered as "too large" rather than "not an integer".
pub const MAX_COUNT: u64 = u32::MAX as u64;

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A positive integer parameter, absent or `null` meaning unset. Each way of getting it wrong
/// has its own message: zero or negative, too large, fractional, or not a number at all.
pub(crate) fn opt_pos_int(body: &Map<String, Value>, key: &str) -> Result<Option<u64>, CodecError> {
    let v = match body.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let err = |m: String| Err(CodecError::new(m, Some(key)));
    let Value::Number(n) = v else {
        return err(format!("'{key}' must be an integer, not {}", json_type(v)));
    };
    match (n.as_u64(), n.as_i64(), n.as_f64()) {
        (Some(0), _, _) => err(format!("'{key}' must be at least 1, not 0")),
        (Some(u), _, _) if u > MAX_COUNT => {
            err(format!("'{key}' is too large: at most {MAX_COUNT}"))
        }
        (Some(u), _, _) => Ok(Some(u)),
        (None, Some(i), _) => err(format!("'{key}' must be at least 1, not {i}")),
        (None, None, Some(f)) if f.fract() != 0.0 => {
            err(format!("'{key}' must be an integer, not {f}"))
        }
        (None, None, Some(f)) if f > 0.0 => {
            err(format!("'{key}' is too large: at most {MAX_COUNT}"))
        }
        _ => err(format!("'{key}' must be at least 1")),
    }
}

pub(crate) fn model_of(body: &Map<String, Value>) -> Result<String, CodecError> {
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(m.clone()),
        Some(_) => Err(CodecError::new(
            "'model' must be a non-empty string",
            Some("model"),
        )),
        None => Err(CodecError::new(
            "you must provide a model parameter",
            Some("model"),
        )),
    }
}

/// Validates the fields the gateway acts on and returns them.
pub fn chat_meta(body: &Map<String, Value>) -> Result<ChatMeta, CodecError> {
    let model = model_of(body)?;
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(CodecError::new(
                "'messages' must not be empty",
                Some("messages"),
            ))
        }
        Some(_) => {
            return Err(CodecError::new(
                "'messages' must be an array",
                Some("messages"),
            ))
        }
        None => return Err(CodecError::new("'messages' is required", Some("messages"))),
    };
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        match role {
            Some(r) if ROLES.contains(&r) => check_content(m, r, i)?,
            Some(r) => {
                return Err(CodecError::new(
                    format!(
                        "messages[{i}].role {r:?} is not one of {}",
                        ROLES.join(", ")
                    ),
                    Some(&format!("messages[{i}].role")),
                ))
            }
            None => {
                return Err(CodecError::new(
                    format!("messages[{i}] must be an object with a string 'role'"),
                    Some(&format!("messages[{i}]")),
                ))
            }
        }
    }
    let stream = opt_bool(body, "stream")?.unwrap_or(false);
    let include_usage = match body.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => opt_bool(o, "include_usage")
            .map_err(|_| {
                CodecError::new(
                    "'stream_options.include_usage' must be a boolean",
                    Some("stream_options.include_usage"),
                )
            })?
            .unwrap_or(false),
        Some(_) => {
            return Err(CodecError::new(
                "'stream_options' must be an object",
                Some("stream_options"),
            ))
        }
    };
    if !stream && body.get("stream_options").is_some_and(|v| !v.is_null()) {
        return Err(CodecError::new(
            "'stream_options' is only allowed when 'stream' is true",
            Some("stream_options"),
        ));
    }
    // Each choice is its own output the leak guard holds and scans: a bounded number of them.
    if opt_pos_int(body, "n")?.is_some_and(|n| n > MAX_N) {
        return Err(CodecError::new(
            format!("'n' must be at most {MAX_N}"),
            Some("n"),
        ));
    }
    let max_tokens = match opt_pos_int(body, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => opt_pos_int(body, "max_tokens")?,
    };
    Ok(ChatMeta {
        model,
        stream,
        include_usage,
        max_tokens,
    })
}

/// A message's `content`: a string or a non-empty array of parts. Only an assistant message
/// that calls tools (or a legacy function message) may leave it out or set it to `null`.
fn check_content(m: &Value, role: &str, i: usize) -> Result<(), CodecError> {
    let param = format!("messages[{i}].content");
    let content = m.get("content").unwrap_or(&Value::Null);
    let calls = m.get("tool_calls").is_some_and(|t| !t.is_null())
        || m.get("function_call").is_some_and(|t| !t.is_null());
    match content {
        Value::String(_) => Ok(()),
        Value::Array(a) if !a.is_empty() => Ok(()),
        Value::Array(_) => Err(CodecError::new(
            format!("{param} must not be an empty array"),
            Some(&param),
        )),
        Value::Null if (role == "assistant" && calls) || role == "function" => Ok(()),
        Value::Null if role == "assistant" => Err(CodecError::new(
            format!("{param} is required unless 'tool_calls' is set"),
            Some(&param),
        )),
        other => Err(CodecError::new(
            format!(
                "{param} must be a string or an array of content parts, not {}",
                json_type(other)
            ),
            Some(&param),
        )),
    }
}

/// Validates an embeddings request: `model` and a non-empty `input`.
pub fn embeddings_model(body: &Map<String, Value>) -> Result<String, CodecError> {
    let model = model_of(body)?;
    match body.get("input") {
        Some(Value::String(_)) => {}
        Some(Value::Array(a)) if !a.is_empty() => {}
        _ => {
            return Err(CodecError::new(
                "'input' must be a string or a non-empty array",
                Some("input"),
            ))
        }
    }
    // `dimensions`, when sent, is a positive integer: `null`, -1, 1.5 or "64" are refused,
    // not silently ignored (the caller would get vectors of another size than it asked for).
    if body.get("dimensions").is_some_and(Value::is_null) {
        return Err(CodecError::new(
            "'dimensions' must be an integer, not null",
            Some("dimensions"),
        ));
    }
    opt_pos_int(body, "dimensions")?;
    if let Some(f) = body.get("encoding_format") {
        if !matches!(f.as_str(), Some("float") | Some("base64")) {
            return Err(CodecError::new(
                "'encoding_format' must be \"float\" or \"base64\"",
                Some("encoding_format"),
            ));
        }
    }
    Ok(model)
}

/// Usage of a complete response body, without building its JSON tree. `Err` if the body is
/// not a JSON object (the whole body is still checked).
pub fn response_usage(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        usage: Option<Value>,
    }
    let p: Peek = serde_json::from_slice(body)?;
    Ok(p.usage.filter(|u| !u.is_null()).map(|u| Usage {
        input_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        output_tokens: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    }))
}

pub fn usage_from(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    if u.is_null() {
        return None;
    }
    Some(Usage {
        input_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        output_tokens: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

/// What one `data:` payload of a chat stream carries that the gateway cares about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChunkPeek {
    pub usage: Option<Usage>,
    /// The trailing `include_usage` chunk (`choices: []` with a usage object).
    pub usage_only: bool,
    /// An in-stream error object.
    pub error: bool,
}

pub fn peek_chunk(data: &str) -> ChunkPeek {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        choices: Option<Vec<serde::de::IgnoredAny>>,
        #[serde(default)]
        usage: Option<Value>,
        #[serde(default)]
        error: Option<serde::de::IgnoredAny>,
    }
    let Ok(p) = serde_json::from_str::<Peek>(data) else {
        return ChunkPeek::default();
    };
    let usage = p.usage.filter(|u| !u.is_null()).map(|u| Usage {
        input_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        output_tokens: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    });
    ChunkPeek {
        usage_only: usage.is_some() && p.choices.as_ref().is_none_or(|c| c.is_empty()),
        usage,
        error: p.error.is_some(),
    }
}

/// Rewrites a chat request for an OpenAI-compatible upstream: the provider's model name, and
/// `stream_options.include_usage = true` on streams so every call can be billed.
pub fn rewrite_chat_for_upstream(
    body: &mut Map<String, Value>,
    upstream_model: &str,
    stream: bool,
) {
    body.insert("model".into(), Value::String(upstream_model.to_owned()));
    if stream {
        let opts = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(o) = opts {
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
}

/// Plain text of a message `content` (string, or array of parts with `text`).
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn meta_reads_stream_and_usage_flags() {
        let m = chat_meta(&obj(
            json!({"model":"m","messages":[{"role":"user","content":"hi"}],
            "stream":true,"stream_options":{"include_usage":true},"max_tokens":5}),
        ))
        .unwrap();
        assert_eq!(
            m,
            ChatMeta {
                model: "m".into(),
                stream: true,
                include_usage: true,
                max_tokens: Some(5)
            }
        );
    }

    #[test]
    fn meta_rejects_wrong_types_naming_the_param() {
        for (body, param) in [
            (json!({"messages":[{"role":"user","content":"x"}]}), "model"),
            (json!({"model":"m","messages":"hi"}), "messages"),
            (
                json!({"model":"m","messages":[{"role":"boss","content":"x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}),
                "stream",
            ),
            (
                json!({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1}),
                "max_tokens",
            ),
            (
                json!({"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}),
                "stream_options",
            ),
            (
                json!({"model":"m","messages":[{"role":"user","content":"hi"}],"n":129}),
                "n",
            ),
            (
                json!({"model":"m","messages":[{"role":"user","content":"hi"}],"n":"2"}),
                "n",
            ),
            (
                json!({"model":"m","messages":[{"role":"user"}]}),
                "messages[0].content",
            ),
            (
                json!({"model":"m","messages":[{"role":"assistant","content":null}]}),
                "messages[0].content",
            ),
        ] {
            let e = chat_meta(&obj(body.clone())).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn usage_only_chunk_is_recognised() {
        let p = peek_chunk(
            r#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        );
        assert!(p.usage_only);
        assert_eq!(
            p.usage,
            Some(Usage {
                input_tokens: 3,
                output_tokens: 4
            })
        );
        let p = peek_chunk(
            r#"{"id":"x","choices":[{"index":0,"delta":{"content":"a"}}],"usage":null}"#,
        );
        assert_eq!(p, ChunkPeek::default());
        assert!(peek_chunk(r#"{"error":{"message":"boom"}}"#).error);
    }

    #[test]
    fn upstream_rewrite_forces_include_usage() {
        let mut b = obj(json!({"model":"alias","messages":[],"stream":true}));
        rewrite_chat_for_upstream(&mut b, "real-model", true);
        assert_eq!(b["model"], "real-model");
        assert_eq!(b["stream_options"]["include_usage"], true);
    }
}
