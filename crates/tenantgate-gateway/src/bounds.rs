//! Bounds on client-supplied strings, in one place. Anything a caller names (a model, a user,
//! metadata, a prompt or knowledge-base name, a filter) can reach the audit chain, a log line,
//! a usage group or a limits counter's key; unbounded, one key could fill the shared database
//! (a 3 MB model name was refused, but echoed, recorded and grouped). A value over its bound is
//! a 400 naming the parameter and its length, never quoting the value; other errors quote at
//! most [`ECHO_CHARS`] characters of what the caller sent.

use crate::error::GatewayError;
use serde_json::{Map, Value};

/// A model name (`model`; a model id in a path; a knowledge base's embedding model).
pub const MAX_MODEL_BYTES: usize = 256;
/// An end-user id (OpenAI `user`, Anthropic `metadata.user_id`, an OIDC subject).
pub const MAX_USER_BYTES: usize = 256;
/// A name the caller refers to: a prompt, a knowledge base, a document.
pub const MAX_NAME_BYTES: usize = 256;
/// Request `metadata`: OpenAI's own bounds (16 pairs, 64-character keys, 512-character values).
pub const MAX_METADATA_PAIRS: usize = 16;
pub const MAX_METADATA_KEY_BYTES: usize = 64;
pub const MAX_METADATA_VALUE_BYTES: usize = 512;
/// A query filter value (audit records by user, key or model).
pub const MAX_FILTER_BYTES: usize = 256;
/// Knowledge bases one request may name.
pub const MAX_KNOWLEDGE_BASES: usize = 16;
/// The most of a caller's string quoted back in an error message.
pub const ECHO_CHARS: usize = 64;
/// The most of a request path written to a log line.
pub const LOG_PATH_BYTES: usize = 256;

/// `value` within `max` bytes, or a 400 that names `param` and the sizes, not the value.
pub fn check(param: &str, value: &str, max: usize) -> Result<(), GatewayError> {
    if value.len() <= max {
        Ok(())
    } else {
        Err(GatewayError::invalid(
            format!(
                "'{param}' is {} bytes long; at most {max} are accepted",
                value.len()
            ),
            param,
        ))
    }
}

/// A caller's string as quoted in an error: at most [`ECHO_CHARS`] characters, marked when cut.
pub fn echo(value: &str) -> String {
    let mut s: String = value.chars().take(ECHO_CHARS).collect();
    if s.len() < value.len() {
        s.push_str("...");
    }
    s
}

/// A path as written to a log line: at most [`LOG_PATH_BYTES`] bytes (cut at a character).
pub fn for_log(path: &str) -> &str {
    if path.len() <= LOG_PATH_BYTES {
        return path;
    }
    let mut end = LOG_PATH_BYTES;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

fn check_str_field(
    obj: &Map<String, Value>,
    key: &str,
    param: &str,
    max: usize,
) -> Result<(), GatewayError> {
    match obj.get(key) {
        Some(Value::String(s)) => check(param, s, max),
        _ => Ok(()),
    }
}

fn check_metadata(meta: &Value) -> Result<(), GatewayError> {
    let Value::Object(m) = meta else {
        return Ok(());
    };
    if m.len() > MAX_METADATA_PAIRS {
        return Err(GatewayError::invalid(
            format!(
                "'metadata' has {} keys; at most {MAX_METADATA_PAIRS} are accepted",
                m.len()
            ),
            "metadata",
        ));
    }
    for (k, v) in m {
        check("metadata", k, MAX_METADATA_KEY_BYTES)?;
        let len = match v {
            Value::String(s) => s.len(),
            other => other.to_string().len(),
        };
        if len > MAX_METADATA_VALUE_BYTES {
            return Err(GatewayError::invalid(
                format!(
                    "a 'metadata' value is {len} bytes long; at most {MAX_METADATA_VALUE_BYTES} are accepted"
                ),
                "metadata",
            ));
        }
    }
    Ok(())
}

/// The identifying fields of an inference request (both wires, embeddings), checked as the
/// body is parsed, before any of them is recorded, logged or used as a key.
pub fn request_fields(req: &Map<String, Value>) -> Result<(), GatewayError> {
    check_str_field(req, "model", "model", MAX_MODEL_BYTES)?;
    check_str_field(req, "user", "user", MAX_USER_BYTES)?;
    if let Some(meta) = req.get("metadata") {
        check_metadata(meta)?;
        if let Value::Object(m) = meta {
            check_str_field(m, "user_id", "metadata.user_id", MAX_USER_BYTES)?;
        }
    }
    if let Some(Value::Object(ext)) = req.get("tenantgate") {
        check_str_field(ext, "prompt", "tenantgate.prompt", MAX_NAME_BYTES)?;
        if let Some(Value::Array(kbs)) = ext.get("knowledge_bases") {
            if kbs.len() > MAX_KNOWLEDGE_BASES {
                return Err(GatewayError::invalid(
                    format!(
                        "'tenantgate.knowledge_bases' names {} knowledge bases; at most {MAX_KNOWLEDGE_BASES} are accepted",
                        kbs.len()
                    ),
                    "tenantgate.knowledge_bases",
                ));
            }
            for kb in kbs.iter().filter_map(Value::as_str) {
                check("tenantgate.knowledge_bases", kb, MAX_NAME_BYTES)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use serde_json::json;

    #[test]
    fn an_oversize_value_is_named_not_quoted() {
        let long = "m".repeat(MAX_MODEL_BYTES + 1);
        let body = json!({"model": long});
        let e = request_fields(body.as_object().unwrap()).unwrap_err();
        let text = e.openai_object().to_string();
        assert!(text.contains("\"model\""), "{text}");
        assert!(!text.contains(&"m".repeat(ECHO_CHARS + 1)), "{text}");
        let ok = json!({"model": "m".repeat(MAX_MODEL_BYTES), "user": "u", "metadata": {"a": "b"}});
        request_fields(ok.as_object().unwrap()).unwrap();
    }

    #[test]
    fn echo_and_log_cut_at_characters() {
        let s = "é".repeat(300);
        assert_eq!(echo(&s).chars().count(), ECHO_CHARS + 3);
        assert!(for_log(&s).len() <= LOG_PATH_BYTES);
        assert_eq!(for_log("/v1/models"), "/v1/models");
    }
}
