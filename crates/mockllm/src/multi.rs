//! Responses with several outputs at once (`mock:choices_hex`, `"n"`, `mock:tool_args_hex`,
//! `mock:pack`): OpenAI choices and tool calls, Anthropic text and tool_use blocks, streamed
//! with their pieces interleaved round-robin.

use super::{split_reply, sse_response, words, Directives, Frame, Shared};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;

pub(crate) struct Chat<'a> {
    pub id: &'a str,
    pub model: &'a str,
    pub created: u64,
    pub prompt_tokens: u64,
}

fn tool_name(k: usize) -> String {
    format!("tool_{k}")
}

/// Pieces of every output, interleaved round-robin: `(output, piece)` per step.
fn interleave(
    outputs: &[String],
    d: &Directives,
    default_chunks: usize,
) -> Vec<Vec<(usize, String)>> {
    let split: Vec<Vec<String>> = outputs
        .iter()
        .map(|t| split_reply(t, d, default_chunks))
        .collect();
    let steps = split.iter().map(Vec::len).max().unwrap_or(0);
    (0..steps)
        .map(|step| {
            split
                .iter()
                .enumerate()
                .filter_map(|(o, p)| p.get(step).map(|p| (o, p.clone())))
                .collect()
        })
        .collect()
}

/// An OpenAI chat with several outputs: `texts` as choices, `tool_args_hex` as tool calls of
/// choice 0.
pub(crate) fn openai_multi(
    shared: &Shared,
    body: &Value,
    d: &Directives,
    c: &Chat,
    texts: Vec<String>,
) -> Response {
    let tools = d.tool_args.clone().unwrap_or_default();
    let completion: u64 = texts.iter().chain(&tools).map(|t| words(t)).sum();
    let usage = json!({"prompt_tokens":c.prompt_tokens,"completion_tokens":completion,"total_tokens":c.prompt_tokens+completion});
    let finish = |i: usize| {
        if i == 0 && !tools.is_empty() {
            "tool_calls"
        } else {
            "stop"
        }
    };
    if !body["stream"].as_bool().unwrap_or(false) {
        let choices: Vec<Value> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut msg = json!({"role":"assistant","content":t,"refusal":null});
                if i == 0 && !tools.is_empty() {
                    msg["tool_calls"] = tools
                        .iter()
                        .enumerate()
                        .map(|(k, a)| json!({"id":format!("call_mock_{k}"),"type":"function","function":{"name":tool_name(k),"arguments":a}}))
                        .collect();
                }
                json!({"index":i,"message":msg,"logprobs":null,"finish_reason":finish(i)})
            })
            .collect();
        return Json(
            json!({"id":c.id,"object":"chat.completion","created":c.created,"model":c.model,
            "choices":choices,"usage":usage,"system_fingerprint":"fp_mock"}),
        )
        .into_response();
    }
    let include_usage = body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let frame = |choices: Vec<Value>| {
        let mut f = json!({"id":c.id,"object":"chat.completion.chunk","created":c.created,"model":c.model,
                           "system_fingerprint":"fp_mock","choices":choices});
        if include_usage {
            f["usage"] = Value::Null;
        }
        Frame::Bytes(format!("data: {f}\n\n"))
    };
    let choice = |i: usize, delta: Value, finish: Value| json!({"index":i,"delta":delta,"logprobs":null,"finish_reason":finish});
    let mut frames = vec![frame(
        (0..texts.len())
            .map(|i| choice(i, json!({"role":"assistant","content":""}), Value::Null))
            .collect(),
    )];
    if !tools.is_empty() {
        let heads: Vec<Value> = (0..tools.len())
            .map(|k| json!({"index":k,"id":format!("call_mock_{k}"),"type":"function","function":{"name":tool_name(k),"arguments":""}}))
            .collect();
        frames.push(frame(vec![choice(
            0,
            json!({"tool_calls":heads}),
            Value::Null,
        )]));
    }
    // Outputs 0..texts are choices' content, the rest tool calls of choice 0.
    let outputs: Vec<String> = texts.iter().chain(&tools).cloned().collect();
    let delta_of = |o: usize, piece: &str| -> (usize, Value) {
        if o < texts.len() {
            (o, json!({"content":piece}))
        } else {
            (
                0,
                json!({"tool_calls":[{"index":o - texts.len(),"function":{"arguments":piece}}]}),
            )
        }
    };
    for step in interleave(&outputs, d, shared.config.chunks) {
        if d.pack {
            // One chunk: one entry per choice, its content and tool-call pieces merged.
            let mut merged: Vec<(usize, Value)> = Vec::new();
            for (o, piece) in &step {
                let (i, delta) = delta_of(*o, piece);
                let slot = match merged.iter().position(|(j, _)| *j == i) {
                    Some(p) => p,
                    None => {
                        merged.push((i, json!({})));
                        merged.len() - 1
                    }
                };
                let m = &mut merged[slot].1;
                if let Some(t) = delta.get("content") {
                    m["content"] = t.clone();
                }
                if let Some(Value::Array(calls)) = delta.get("tool_calls") {
                    if !m["tool_calls"].is_array() {
                        m["tool_calls"] = json!([]);
                    }
                    if let Some(a) = m["tool_calls"].as_array_mut() {
                        a.extend(calls.iter().cloned());
                    }
                }
            }
            frames.push(frame(
                merged
                    .into_iter()
                    .map(|(i, dl)| choice(i, dl, Value::Null))
                    .collect(),
            ));
        } else {
            for (o, piece) in &step {
                let (i, delta) = delta_of(*o, piece);
                frames.push(frame(vec![choice(i, delta, Value::Null)]));
            }
        }
    }
    frames.push(frame(
        (0..texts.len())
            .map(|i| choice(i, json!({}), json!(finish(i))))
            .collect(),
    ));
    if include_usage {
        frames.push(Frame::Bytes(format!("data: {}\n\n", json!({"id":c.id,"object":"chat.completion.chunk","created":c.created,"model":c.model,"choices":[],"usage":usage}))));
    }
    frames.push(Frame::Bytes("data: [DONE]\n\n".into()));
    let delay = d
        .chunk_delay_ms
        .map(Duration::from_millis)
        .unwrap_or(shared.config.chunk_delay);
    sse_response(shared, frames, delay)
}

/// An Anthropic message with several blocks: `choices_hex` as text blocks, then
/// `tool_args_hex` as tool_use blocks; streamed, every block starts first and their deltas
/// interleave.
pub(crate) fn anthropic_multi(shared: &Shared, body: &Value, d: &Directives, c: &Chat) -> Response {
    let texts = d.choices.clone().unwrap_or_default();
    let tools = d.tool_args.clone().unwrap_or_default();
    let output: u64 = texts.iter().chain(&tools).map(|t| words(t)).sum();
    let usage = json!({"input_tokens":c.prompt_tokens,"output_tokens":output});
    let stop = if tools.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    let tool_block = |k: usize, input: Value| json!({"type":"tool_use","id":format!("toolu_mock_{k}"),"name":tool_name(k),"input":input});
    if !body["stream"].as_bool().unwrap_or(false) {
        let mut content: Vec<Value> = texts
            .iter()
            .map(|t| json!({"type":"text","text":t}))
            .collect();
        content.extend(tools.iter().enumerate().map(|(k, a)| {
            tool_block(
                k,
                serde_json::from_str(a).unwrap_or_else(|_| json!({"raw":a})),
            )
        }));
        return Json(
            json!({"id":c.id,"type":"message","role":"assistant","model":c.model,"content":content,
            "stop_reason":stop,"stop_sequence":null,"usage":usage}),
        )
        .into_response();
    }
    let ev = |name: &str, data: Value| Frame::Bytes(format!("event: {name}\ndata: {data}\n\n"));
    let mut frames = vec![ev(
        "message_start",
        json!({"type":"message_start","message":{"id":c.id,"type":"message","role":"assistant","model":c.model,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":c.prompt_tokens,"output_tokens":1}}}),
    )];
    for i in 0..texts.len() {
        frames.push(ev("content_block_start", json!({"type":"content_block_start","index":i,"content_block":{"type":"text","text":""}})));
    }
    for k in 0..tools.len() {
        frames.push(ev("content_block_start", json!({"type":"content_block_start","index":texts.len() + k,"content_block":tool_block(k, json!({}))})));
    }
    let outputs: Vec<String> = texts.iter().chain(&tools).cloned().collect();
    for step in interleave(&outputs, d, shared.config.chunks) {
        for (o, piece) in step {
            let delta = if o < texts.len() {
                json!({"type":"text_delta","text":piece})
            } else {
                json!({"type":"input_json_delta","partial_json":piece})
            };
            frames.push(ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":o,"delta":delta}),
            ));
        }
    }
    for o in 0..outputs.len() {
        frames.push(ev(
            "content_block_stop",
            json!({"type":"content_block_stop","index":o}),
        ));
    }
    // A misbehaving provider: more text for block 0 after it stopped.
    if let Some(t) = &d.after_stop {
        frames.push(ev(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":t}}),
        ));
    }
    frames.push(ev("message_delta", json!({"type":"message_delta","delta":{"stop_reason":stop,"stop_sequence":null},"usage":{"output_tokens":output}})));
    frames.push(ev("message_stop", json!({"type":"message_stop"})));
    let delay = d
        .chunk_delay_ms
        .map(Duration::from_millis)
        .unwrap_or(shared.config.chunk_delay);
    sse_response(shared, frames, delay)
}
