//! The stream guard against a paced upstream (one chunk every `DELAY`): text that cannot begin
//! a match reaches the client as its chunk arrives, not after a window of later text, while
//! another tenant's canary split across chunks is still withheld and the stream blocked. On
//! every wire: OpenAI with `n: 2`, OpenAI client on an Anthropic model, Anthropic client on an
//! OpenAI model.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::TestGateway;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const DELAY: Duration = Duration::from_millis(300);

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Outputs `texts`, each in 4 pieces, one upstream chunk every `DELAY`.
fn directives(texts: &[&str]) -> String {
    let list: Vec<String> = texts.iter().map(|t| hex(t)).collect();
    format!(
        "mock:char_chunks=4 mock:chunk_delay_ms={} mock:choices_hex={}",
        DELAY.as_millis(),
        list.join(",")
    )
}

#[derive(Clone, Copy, Debug)]
enum Wire {
    /// OpenAI client, OpenAI model, `n: 2`.
    OpenAiN2,
    /// OpenAI client, Anthropic model (one text block: the translation writes every text block
    /// into choice 0, which is then one channel).
    OpenAiOnAnthropic,
    /// Anthropic client, OpenAI model.
    AnthropicOnOpenAi,
}

impl Wire {
    const ALL: [Wire; 3] = [
        Wire::OpenAiN2,
        Wire::OpenAiOnAnthropic,
        Wire::AnthropicOnOpenAi,
    ];

    async fn send(self, gw: &TestGateway, key: &str, d: &str) -> reqwest::Response {
        let msgs = json!([{"role": "user", "content": d}]);
        let (path, body) = match self {
            Wire::OpenAiN2 => (
                "/v1/chat/completions",
                json!({"model": "gpt-test", "stream": true, "n": 2, "messages": msgs}),
            ),
            Wire::OpenAiOnAnthropic => (
                "/v1/chat/completions",
                json!({"model": "claude-test", "stream": true, "messages": msgs}),
            ),
            Wire::AnthropicOnOpenAi => (
                "/v1/messages",
                json!({"model": "gpt-test", "stream": true, "max_tokens": 200, "messages": msgs}),
            ),
        };
        let r = gw
            .http
            .post(format!("{}{path}", gw.url))
            .bearer_auth(key)
            .header("x-api-key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{self:?}");
        r
    }

    /// What the upstream sends: two choices with `n: 2`, else one output.
    fn texts<'a>(self, clean: &'a str, other: &'a str) -> Vec<&'a str> {
        match self {
            Wire::OpenAiN2 => vec![clean, other],
            Wire::OpenAiOnAnthropic | Wire::AnthropicOnOpenAi => vec![other],
        }
    }
}

/// The response's SSE frames, each with the moment it reached the client.
async fn timed_frames(mut r: reqwest::Response) -> Vec<(Instant, String)> {
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(bytes) = r.chunk().await.unwrap() {
        let now = Instant::now();
        buf.extend_from_slice(&bytes);
        while let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
            out.push((now, String::from_utf8(buf[..i].to_vec()).unwrap()));
            buf.drain(..i + 2);
        }
    }
    out
}

/// The text a frame carries for the client (OpenAI delta content, Anthropic text delta).
fn frame_text(frame: &str) -> String {
    let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else {
        return String::new();
    };
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return String::new();
    };
    let mut t = String::new();
    for c in v["choices"].as_array().into_iter().flatten() {
        t.push_str(c["delta"]["content"].as_str().unwrap_or_default());
    }
    t.push_str(v["delta"]["text"].as_str().unwrap_or_default());
    t
}

/// When the first text reached the client, and when the next text-carrying frame did.
fn first_two_texts(frames: &[(Instant, String)]) -> (Instant, Instant) {
    let mut texts = frames
        .iter()
        .filter(|(_, f)| !frame_text(f).is_empty())
        .map(|(t, _)| *t);
    (texts.next().unwrap(), texts.next().unwrap())
}

#[tokio::test]
async fn first_text_reaches_the_client_before_the_next_upstream_chunk() {
    let gw = TestGateway::start().await;
    let (_, b, _) = gw.canary_and_other_tenant().await;
    let clean = "Hello world, how are you today? Fine, I hope.";
    for wire in Wire::ALL {
        let started = Instant::now();
        let r = wire
            .send(&gw, &b, &directives(&wire.texts(clean, clean)))
            .await;
        let frames = timed_frames(r).await;
        let (first, second) = first_two_texts(&frames);
        // The upstream sends the next piece DELAY after the first: had the first been held
        // until more text came, both would reach the client at the same moment.
        assert!(
            second.duration_since(first) >= DELAY / 2,
            "{wire:?}: the first text waited for the next chunk ({:?} apart, first after {:?})",
            second.duration_since(first),
            first.duration_since(started)
        );
        let all: String = frames.iter().map(|(_, f)| frame_text(f)).collect();
        assert!(all.starts_with("Hello world"), "{wire:?}: {all}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_canary_split_across_paced_chunks_is_still_blocked() {
    let gw = TestGateway::start().await;
    let (canary, b, _) = gw.canary_and_other_tenant().await;
    let clean = "Hello world, how are you today? Fine, I hope.";
    // The first of its 4 pieces is clean; the canary spans the next ones.
    let leaky = format!("Here is the answer you asked for: {canary} done.");
    for wire in Wire::ALL {
        let texts = wire.texts(clean, &leaky);
        let r = wire.send(&gw, &b, &directives(&texts)).await;
        let frames = timed_frames(r).await;
        let body: String = frames.iter().map(|(_, f)| format!("{f}\n\n")).collect();
        let half = canary.len() / 2;
        assert!(
            !body.contains(&canary[..half]) && !body.contains(&canary[half..]),
            "{wire:?}: part of the canary was released: {body}"
        );
        let (_, last) = frames.last().unwrap();
        assert!(
            last.contains("response_blocked") || last.contains("leak-prevention"),
            "{wire:?}: not blocked: {body}"
        );
        // Text before the canary (and the other output's) still went out as it came.
        assert!(
            frames
                .iter()
                .any(|(_, f)| frame_text(f).starts_with("Here is")),
            "{wire:?}: nothing was released before the block: {body}"
        );
    }
    gw.stop().await;
}
