//! Guard-outbound for streams. Frames (already in the caller's format) are held back only as
//! long as the text after them is shorter than the scanner's window: a frame is released once
//! at least `window` bytes of text follow it, so no match (never longer than the window) can
//! straddle released and unreleased text. Memory per stream is bounded by the window plus one
//! frame. Block ends the stream with the caller's in-stream error; redact rewrites the held
//! frames' text; flag records each finding once.

use crate::auth::AuthIndex;
use crate::error::GatewayError;
use crate::state::AppState;
use bytes::Bytes;
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use tenantgate_core::TenantId;
use tenantgate_guard::{Action, Direction, Policy};
use tenantgate_providers::sse::{data_frame, named_frame};

/// Where a frame's text lives, to read and rewrite it.
#[derive(Clone, Copy)]
pub(crate) enum Field {
    OpenAiContent,
    OpenAiToolArgs,
    AnthropicText,
    AnthropicJson,
}

struct Held {
    frame: Bytes,
    text: Option<(String, Field)>,
}

pub struct StreamGuard {
    state: AppState,
    index: Arc<AuthIndex>,
    tenant: TenantId,
    ctx: crate::pipeline::TenantContext,
    policy: Policy,
    window: usize,
    held: VecDeque<Held>,
    held_text: usize,
    /// Text bytes already released, to give findings a stable absolute position.
    released_text: usize,
    flagged: HashSet<(usize, &'static str)>,
    /// Start (in held text) of a match that may still be growing: frames from there on stay
    /// held, whatever the window says.
    hold_from: Option<usize>,
}

/// Splits a frame into (event name, JSON data); `None` for `[DONE]` and non-JSON frames.
fn parse(frame: &[u8]) -> Option<(Option<String>, Value)> {
    let s = std::str::from_utf8(frame).ok()?;
    let mut event = None;
    let mut data = None;
    for line in s.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            event = Some(e.to_owned());
        } else if let Some(d) = line.strip_prefix("data: ") {
            data = Some(d);
        }
    }
    let v: Value = serde_json::from_str(data?).ok()?;
    Some((event, v))
}

pub(crate) fn text_of(frame: &[u8]) -> Option<(String, Field)> {
    let (event, v) = parse(frame)?;
    match event.as_deref() {
        Some("content_block_delta") => {
            let d = &v["delta"];
            if let Some(t) = d["text"].as_str() {
                return Some((t.to_owned(), Field::AnthropicText));
            }
            d["partial_json"]
                .as_str()
                .map(|t| (t.to_owned(), Field::AnthropicJson))
        }
        Some(_) => None,
        None => {
            let d = &v["choices"][0]["delta"];
            if let Some(t) = d["content"].as_str() {
                return Some((t.to_owned(), Field::OpenAiContent));
            }
            d["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(|t| (t.to_owned(), Field::OpenAiToolArgs))
        }
    }
}

fn rewrite(frame: &[u8], field: Field, text: &str) -> Bytes {
    let Some((event, mut v)) = parse(frame) else {
        return Bytes::copy_from_slice(frame);
    };
    let slot = match field {
        Field::OpenAiContent => &mut v["choices"][0]["delta"]["content"],
        Field::OpenAiToolArgs => {
            &mut v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        }
        Field::AnthropicText => &mut v["delta"]["text"],
        Field::AnthropicJson => &mut v["delta"]["partial_json"],
    };
    *slot = Value::String(text.to_owned());
    match event {
        Some(e) => named_frame(&e, &v.to_string()),
        None => data_frame(&v.to_string()),
    }
}

impl StreamGuard {
    pub fn new(state: &AppState, ctx: &crate::pipeline::TenantContext) -> Self {
        let tenant = ctx.principal.scope.tenant_id().clone();
        let ctx = crate::pipeline::TenantContext {
            principal: ctx.principal.clone(),
            tenant: ctx.tenant.clone(),
        };
        let index = state.0.auth.load_full();
        let policy = index.guard_policy(&tenant).clone();
        let window = index.scanner.window();
        Self {
            state: state.clone(),
            index,
            tenant,
            ctx,
            policy,
            window,
            held: VecDeque::new(),
            held_text: 0,
            released_text: 0,
            flagged: HashSet::new(),
            hold_from: None,
        }
    }

    /// Takes one frame; appends releasable frames to `out`. `Err` means: stop the stream.
    pub fn push(&mut self, frame: Bytes, out: &mut VecDeque<Bytes>) -> Result<(), GatewayError> {
        let text = text_of(&frame);
        if let Some((t, _)) = &text {
            self.held_text += t.len();
        }
        self.held.push_back(Held { frame, text });
        self.check(false)?;
        while let Some(front) = self.held.front() {
            let front_len = front.text.as_ref().map_or(0, |(t, _)| t.len());
            if front.text.is_some() && self.held_text - front_len < self.window {
                break;
            }
            // A growing match starts inside this frame: keep it until the match is complete.
            if front.text.is_some() && self.hold_from.is_some_and(|h| h < front_len) {
                break;
            }
            self.hold_from = self.hold_from.map(|h| h - front_len);
            self.held_text -= front_len;
            self.released_text += front_len;
            if let Some(h) = self.held.pop_front() {
                out.push_back(h.frame);
            }
        }
        Ok(())
    }

    /// At the end of the stream: a last check (matches at the very end are final now), then
    /// everything held is released.
    pub fn flush(&mut self, out: &mut VecDeque<Bytes>) -> Result<(), GatewayError> {
        self.check(true)?;
        out.extend(self.held.drain(..).map(|h| h.frame));
        self.held_text = 0;
        Ok(())
    }

    /// `last`: no more text will come. Before that, a match that reaches the end of the held
    /// text may still be growing (an API key still arriving): it is blocked at once if the
    /// policy blocks, but redacted only once it is complete.
    fn check(&mut self, last: bool) -> Result<(), GatewayError> {
        let mut joined = String::with_capacity(self.held_text);
        for h in &self.held {
            if let Some((t, _)) = &h.text {
                joined.push_str(t);
            }
        }
        let hits =
            self.index
                .scanner
                .scan(&self.tenant, &joined, Direction::Outbound, &self.policy);
        if hits.is_empty() {
            return Ok(());
        }
        let mut redact = Vec::new();
        for h in &hits {
            let action = self.policy.action(h.detector);
            if !last && h.end == joined.len() && action != Action::Block {
                self.hold_from = Some(self.hold_from.map_or(h.start, |x| x.min(h.start)));
                continue;
            }
            // Held text is scanned again as frames arrive: count each finding once.
            if self
                .flagged
                .insert((self.released_text + h.start, h.detector.as_str()))
            {
                self.state.record_incident(
                    &self.ctx,
                    &self.policy,
                    h.detector,
                    action,
                    Direction::Outbound,
                );
            }
            match action {
                Action::Block => {
                    self.held.clear();
                    return Err(GatewayError::OutputBlocked(h.detector.as_str()));
                }
                Action::Redact => redact.push(*h),
                Action::Flag | Action::Off => {}
            }
        }
        if !redact.is_empty() {
            self.apply_redactions(&redact);
        }
        Ok(())
    }

    /// Rewrites held frames so each redacted span is replaced in the frame where it starts and
    /// removed from the frames it continues into.
    fn apply_redactions(&mut self, hits: &[tenantgate_guard::Hit]) {
        let mut offset = 0;
        let mut total = 0;
        for h in self.held.iter_mut() {
            let Some((text, field)) = h.text.clone() else {
                continue;
            };
            let (start, end) = (offset, offset + text.len());
            offset = end;
            let mut new = String::new();
            let mut at = start;
            for hit in hits.iter().filter(|x| x.start < end && x.end > start) {
                let s = hit.start.max(start);
                new.push_str(&text[at - start..s - start]);
                if hit.start >= start {
                    new.push_str("[REDACTED:");
                    new.push_str(hit.detector.as_str());
                    new.push(']');
                }
                at = hit.end.min(end);
            }
            new.push_str(&text[at - start..]);
            if new != text {
                h.frame = rewrite(&h.frame, field, &new);
                h.text = Some((new, field));
            }
            total += h.text.as_ref().map_or(0, |(t, _)| t.len());
        }
        self.held_text = total;
    }
}
