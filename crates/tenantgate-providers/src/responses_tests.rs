//! Unit tests of `responses.rs` (kept apart: the module stays under the size rule).
use super::*;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn input_items_become_chat_messages() {
    let chat = request_to_chat(&obj(json!({
        "model": "m", "instructions": "be brief", "max_output_tokens": 20,
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "store": true,
    })))
    .unwrap();
    assert_eq!(chat["max_tokens"], 20);
    let m = chat["messages"].as_array().unwrap();
    assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(
        m[1]["content"][0],
        json!({"type": "text", "text": "weather?"})
    );
    assert_eq!(m[2]["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"})
    );
    assert_eq!(chat["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(chat["tool_choice"]["function"]["name"], "get_weather");
    assert!(chat.get("store").is_none());
}

#[test]
fn stateful_and_built_in_features_are_refused_by_name() {
    for (body, param) in [
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "frobnicate": 1}),
            "frobnicate",
        ),
        (json!({"model": "m"}), "input"),
    ] {
        let e = request_to_chat(&obj(body)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some(param), "{e}");
    }
}

#[test]
fn a_complete_answer_renders_as_a_response() {
    let chat = json!({"id": "chatcmpl-1", "created": 5, "model": "m", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": "hi", "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2}});
    let r = chat_response_to_responses(&chat);
    assert_eq!(r["id"], "resp_1");
    assert_eq!(r["output"][0]["content"][0]["text"], "hi");
    assert_eq!(r["output"][1]["call_id"], "c1");
    assert_eq!(r["usage"]["total_tokens"], 5);
    assert_eq!(r["status"], "completed");
}

#[test]
fn a_chat_stream_renders_as_response_events_in_sequence() {
    let mut s = ChatToResponsesStream::new("m");
    let mut frames = Vec::new();
    for d in [
        r#"{"id":"chatcmpl-9","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
        r#"{"id":"chatcmpl-9","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
        r#"{"id":"chatcmpl-9","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
        r#"{"id":"chatcmpl-9","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}"#,
        "[DONE]",
    ] {
        frames.extend(s.on_data(d));
    }
    let events: Vec<Value> = frames
        .iter()
        .map(|f| {
            let s = String::from_utf8_lossy(f);
            let d = s.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            serde_json::from_str(d).unwrap()
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], n as u64);
    }
    let last = &events[events.len() - 1]["response"];
    assert_eq!(last["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(last["usage"]["output_tokens"], 2);
    assert_eq!(last["id"], events[0]["response"]["id"]);
    let mut s = ChatToResponsesStream::new("m");
    s.on_data(r#"{"id":"chatcmpl-9","choices":[{"index":0,"delta":{"content":"a"}}]}"#);
    let f = s.on_data(r#"{"error":{"message":"boom","code":"upstream_error"}}"#);
    assert!(String::from_utf8_lossy(&f[1]).contains("response.failed"));
    assert!(s.finished);
}
