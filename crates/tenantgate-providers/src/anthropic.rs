//! Anthropic messages: validation, usage extraction and stream usage tracking.

use crate::openai::{model_of, opt_bool, opt_pos_int};
use crate::sse::Event;
use crate::{CodecError, Usage};
use serde_json::{Map, Value};

pub const API_VERSION: &str = "2023-06-01";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagesMeta {
    pub model: String,
    pub stream: bool,
    pub max_tokens: u64,
}

pub fn messages_meta(body: &Map<String, Value>) -> Result<MessagesMeta, CodecError> {
    let model = model_of(body)?;
    match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {
            for (i, msg) in m.iter().enumerate() {
                match msg.get("role").and_then(Value::as_str) {
                    Some("user") | Some("assistant") => {}
                    _ => {
                        return Err(CodecError::new(
                            format!("messages.{i}.role: must be \"user\" or \"assistant\""),
                            Some(&format!("messages.{i}.role")),
                        ))
                    }
                }
                let param = format!("messages.{i}.content");
                match msg.get("content") {
                    Some(Value::String(_)) => {}
                    Some(Value::Array(a)) if !a.is_empty() => {}
                    None => {
                        return Err(CodecError::new(
                            format!("{param}: Field required"),
                            Some(&param),
                        ))
                    }
                    Some(_) => {
                        return Err(CodecError::new(
                            format!(
                                "{param}: must be a string or a non-empty array of content blocks"
                            ),
                            Some(&param),
                        ))
                    }
                }
            }
        }
        _ => {
            return Err(CodecError::new(
                "messages: must be a non-empty array",
                Some("messages"),
            ))
        }
    }
    let max_tokens = opt_pos_int(body, "max_tokens")?
        .ok_or_else(|| CodecError::new("max_tokens: Field required", Some("max_tokens")))?;
    Ok(MessagesMeta {
        model,
        stream: opt_bool(body, "stream")?.unwrap_or(false),
        max_tokens,
    })
}

fn usage_of(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        // Cached reads and cache writes are input too; all three are billed.
        input_tokens: n("input_tokens")
            + n("cache_read_input_tokens")
            + n("cache_creation_input_tokens"),
        output_tokens: n("output_tokens"),
    }
}

pub fn usage_from(v: &Value) -> Option<Usage> {
    v.get("usage").filter(|u| u.is_object()).map(usage_of)
}

/// Tracks usage across a message stream: input from `message_start`, output from the
/// cumulative `message_delta` usage (the last one wins, never summed).
#[derive(Debug, Default, Clone)]
pub struct StreamUsage {
    pub usage: Usage,
    pub seen_stop: bool,
    pub error: bool,
}

impl StreamUsage {
    pub fn on_event(&mut self, ev: &Event) {
        match ev.event.as_str() {
            "message_start" => {
                if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
                    if let Some(u) = v.get("message").and_then(|m| m.get("usage")) {
                        self.usage = usage_of(u);
                    }
                }
            }
            "message_delta" => {
                if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
                    if let Some(u) = v.get("usage") {
                        if let Some(o) = u.get("output_tokens").and_then(Value::as_u64) {
                            self.usage.output_tokens = o;
                        }
                        // Newer API versions may also report input in message_delta.
                        if u.get("input_tokens").is_some() {
                            let inp = usage_of(u).input_tokens;
                            if inp > 0 {
                                self.usage.input_tokens = inp;
                            }
                        }
                    }
                }
            }
            "message_stop" => self.seen_stop = true,
            "error" => self.error = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn max_tokens_is_required() {
        let b = json!({"model":"claude","messages":[{"role":"user","content":"hi"}]});
        let e = messages_meta(b.as_object().unwrap()).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
    }

    #[test]
    fn stream_usage_is_cumulative_not_summed() {
        let mut s = StreamUsage::default();
        s.on_event(&Event {
            event: "message_start".into(),
            data: json!({"message":{"usage":{"input_tokens":10,"output_tokens":1}}}).to_string(),
        });
        s.on_event(&Event {
            event: "message_delta".into(),
            data: json!({"usage":{"output_tokens":5}}).to_string(),
        });
        s.on_event(&Event {
            event: "message_delta".into(),
            data: json!({"usage":{"output_tokens":7}}).to_string(),
        });
        assert_eq!(
            s.usage,
            Usage {
                input_tokens: 10,
                output_tokens: 7
            }
        );
    }
}
