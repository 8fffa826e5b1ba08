//! OpenAI's legacy completions (`POST /v1/completions`) as a surface over chat completions:
//! the prompt becomes one user message, and the chat answer (complete or streamed) is rendered
//! as `text_completion` objects and chunks, `choices[i].text`. What chat cannot express (a
//! `suffix` to insert before, `echo`, `logprobs`, `best_of`, a batch of prompts) is refused with
//! the parameter named.

use crate::sse::{data_frame, DONE_FRAME};
use crate::CodecError;
use bytes::Bytes;
use serde_json::{json, Map, Value};

fn err(message: impl Into<String>, param: &str) -> CodecError {
    CodecError::new(message, Some(param))
}

/// Reads a completions request into an OpenAI chat request.
pub fn request_to_chat(body: &Map<String, Value>) -> Result<Map<String, Value>, CodecError> {
    let mut chat = Map::new();
    for (k, v) in body {
        match k.as_str() {
            "model" | "max_tokens" | "n" | "stream" | "stream_options" | "temperature"
            | "top_p" | "stop" | "presence_penalty" | "frequency_penalty" | "logit_bias"
            | "seed" | "user" => {
                chat.insert(k.clone(), v.clone());
            }
            "prompt" => {}
            "suffix" if v.is_null() => {}
            "suffix" => {
                return Err(err(
                    "'suffix' is not supported: this gateway serves completions through chat models, which do not insert text",
                    "suffix",
                ))
            }
            "echo" if matches!(v, Value::Null | Value::Bool(false)) => {}
            "echo" => return Err(err("'echo' is not supported by this gateway", "echo")),
            "logprobs" if v.is_null() => {}
            "logprobs" => {
                return Err(err(
                    "'logprobs' is not supported by this gateway's completions",
                    "logprobs",
                ))
            }
            "best_of" if v.is_null() || v.as_u64() == Some(1) => {}
            "best_of" => return Err(err("'best_of' is not supported by this gateway", "best_of")),
            other => {
                return Err(err(
                    format!("Unknown parameter: '{}'.", crate::bounded(other)),
                    other,
                ))
            }
        }
    }
    let prompt = match body.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_owned()
        }
        Some(Value::Array(a)) if a.len() > 1 && a.iter().all(Value::is_string) => {
            return Err(err(
                "'prompt' must be one string: send one request per prompt",
                "prompt",
            ))
        }
        None | Some(Value::Null) => return Err(err("'prompt' is required", "prompt")),
        Some(_) => return Err(err(
            "'prompt' must be a string or an array of one string (token arrays are not supported)",
            "prompt",
        )),
    };
    chat.insert(
        "messages".into(),
        json!([{"role": "user", "content": prompt}]),
    );
    Ok(chat)
}

fn completion_id(chat_id: &str) -> String {
    format!("cmpl-{}", chat_id.trim_start_matches("chatcmpl-"))
}

/// A complete chat completion (already guarded) as a `text_completion`.
pub fn chat_response_to_completion(chat: &Value) -> Value {
    let choices: Vec<Value> = chat["choices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({"index": c["index"], "text": crate::openai::content_text(&c["message"]["content"]),
                "finish_reason": c["finish_reason"], "logprobs": null})
        })
        .collect();
    json!({
        "id": completion_id(chat["id"].as_str().unwrap_or("gateway")),
        "object": "text_completion",
        "created": chat["created"].as_u64().unwrap_or_else(crate::unix_now),
        "model": chat["model"],
        "choices": choices,
        "usage": chat["usage"],
    })
}

/// One `data:` payload of a chat stream (already guarded) as a `text_completion` chunk;
/// `None` for a chunk that carries nothing a completion shows (the role-only first delta).
/// `[DONE]` and in-stream errors pass unchanged (the same on both surfaces).
pub fn chat_chunk_to_completion(data: &str) -> Option<Bytes> {
    if data == "[DONE]" {
        return Some(Bytes::from_static(DONE_FRAME));
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return Some(data_frame(data));
    };
    if v.get("error").is_some() {
        return Some(data_frame(data));
    }
    let choices: Vec<Value> = v["choices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["delta"]["content"].is_string() || !c["finish_reason"].is_null())
        .map(|c| {
            json!({"index": c["index"], "text": c["delta"]["content"].as_str().unwrap_or_default(),
                "finish_reason": c["finish_reason"], "logprobs": null})
        })
        .collect();
    let usage = v.get("usage").filter(|u| !u.is_null());
    if choices.is_empty() && usage.is_none() {
        return None;
    }
    let mut out = json!({
        "id": completion_id(v["id"].as_str().unwrap_or("gateway")),
        "object": "text_completion",
        "created": v["created"].as_u64().unwrap_or_else(crate::unix_now),
        "model": v["model"],
        "choices": choices,
    });
    if let Some(u) = usage {
        out["usage"] = u.clone();
    }
    Some(data_frame(&out.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_prompt_becomes_one_user_message() {
        let chat = request_to_chat(&obj(
            json!({"model": "m", "prompt": ["hi"], "max_tokens": 5, "n": 2}),
        ))
        .unwrap();
        assert_eq!(chat["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(chat["n"], 2);
        for (body, param) in [
            (
                json!({"model": "m", "prompt": "x", "suffix": "y"}),
                "suffix",
            ),
            (json!({"model": "m", "prompt": "x", "echo": true}), "echo"),
            (
                json!({"model": "m", "prompt": "x", "logprobs": 2}),
                "logprobs",
            ),
            (json!({"model": "m", "prompt": ["a", "b"]}), "prompt"),
            (json!({"model": "m", "prompt": [1, 2]}), "prompt"),
            (json!({"model": "m"}), "prompt"),
        ] {
            let e = request_to_chat(&obj(body)).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param));
        }
    }

    #[test]
    fn answers_render_as_text_completions() {
        let chat = json!({"id": "chatcmpl-7", "created": 1, "model": "m", "choices": [
            {"index": 0, "message": {"content": "a"}, "finish_reason": "stop"},
            {"index": 1, "message": {"content": "b"}, "finish_reason": "stop"}]});
        let c = chat_response_to_completion(&chat);
        assert_eq!(c["object"], "text_completion");
        assert_eq!(c["choices"][1]["text"], "b");
        assert!(chat_chunk_to_completion(
            r#"{"id":"x","choices":[{"index":0,"delta":{"role":"assistant"}}]}"#
        )
        .is_none());
        let f = chat_chunk_to_completion(
            r#"{"id":"x","choices":[{"index":1,"delta":{"content":"hi"},"finish_reason":null}]}"#,
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&f).contains(r#""text":"hi""#));
    }
}
