//! Guard-outbound for streams. Frames (already in the caller's format) carry text on channels
//! (`stream_text.rs`: one per OpenAI choice and part, tool call included, one per Anthropic
//! content block); each channel is scanned on its own text only, and a frame is released only
//! when every channel it carries text for allows it: at least `window` bytes of that channel's
//! text follow it (no match, never longer than the window, can straddle released and
//! unreleased text), no growing match starts in it, or the channel has ended. A frame also
//! waits for the earlier held frames it must stay ordered behind (same channel, its choice, or
//! all), so a quiet channel holds back only its own tail, not the other choices.
//!
//! Memory per stream is bounded: at most `MAX_CHANNELS` channels and `MAX_HELD_BYTES` of held
//! frames; a provider stream beyond either ends with the caller's in-stream error. Block ends
//! the stream with the caller's in-stream error; redact rewrites the held frames' text in the
//! channel where it was found; flag records each finding once.

use crate::error::GatewayError;
use crate::guard::{Guard, IncidentSink};
use crate::identity::auth::AuthIndex;
use crate::stream::text::{classify, reframe, Key, Scope, Segment};
use bytes::Bytes;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use tenantgate_core::TenantId;
use tenantgate_guard::{Action, Direction, Hit, Policy};

/// Text channels one stream may open (choices x parts, content blocks). OpenAI allows `n` up
/// to 128; a provider that opens more is refused rather than allocated for.
pub const MAX_CHANNELS: usize = 512;
/// Frames held back at once, in bytes: a bound a well-formed stream never nears (each channel
/// holds about one window), reached only by a provider stalling a channel behind a barrier.
pub const MAX_HELD_BYTES: usize = 4 << 20;

struct Held {
    raw: Bytes,
    event: Option<String>,
    value: Option<Value>,
    segments: Vec<Segment>,
    scopes: Vec<Scope>,
    /// The parsed value was rewritten (redaction): serialize it again on release.
    dirty: bool,
}

#[derive(Default)]
struct Channel {
    /// Text bytes of this channel in held frames.
    held: usize,
    /// Text bytes already released, to give findings a stable absolute position.
    released: usize,
    /// Start (in held text) of a match that may still be growing: frames from there on stay
    /// held, whatever the window says.
    hold_from: Option<usize>,
    /// No more text will come (its choice finished, its block stopped): its last check was
    /// final, so everything it holds may go.
    closed: bool,
}

pub struct StreamGuard {
    sink: IncidentSink,
    index: Arc<AuthIndex>,
    tenant: TenantId,
    ctx: crate::identity::TenantContext,
    policy: Policy,
    window: usize,
    held: VecDeque<Held>,
    held_bytes: usize,
    channels: BTreeMap<Key, Channel>,
    flagged: HashSet<(Key, usize, &'static str)>,
}

/// The scopes of the frames still held ahead of the one being considered.
#[derive(Default)]
struct Ahead {
    any: bool,
    all: bool,
    choices: HashSet<u64>,
    keys: HashSet<Key>,
    choice_keys: HashSet<u64>,
}

impl Ahead {
    fn conflicts(&self, scopes: &[Scope]) -> bool {
        if self.all {
            return true;
        }
        scopes.iter().any(|s| match s {
            Scope::All => self.any,
            Scope::Choice(i) => self.choices.contains(i) || self.choice_keys.contains(i),
            Scope::Channel(k) => {
                self.keys.contains(k) || matches!(k, Key::Choice(i, _) if self.choices.contains(i))
            }
        })
    }

    fn add(&mut self, scopes: &[Scope]) {
        self.any = true;
        for s in scopes {
            match s {
                Scope::All => self.all = true,
                Scope::Choice(i) => {
                    self.choices.insert(*i);
                }
                Scope::Channel(k) => {
                    self.keys.insert(*k);
                    if let Key::Choice(i, _) = k {
                        self.choice_keys.insert(*i);
                    }
                }
            }
        }
    }
}

fn too_much(what: &str) -> GatewayError {
    GatewayError::UpstreamFailed(format!(
        "the provider's stream could not be checked by the leak guard: {what}"
    ))
}

impl StreamGuard {
    pub fn new(sink: &IncidentSink, ctx: &crate::identity::TenantContext) -> Self {
        let tenant = ctx.principal.scope.tenant_id().clone();
        let ctx = ctx.clone();
        let index = ctx.view.clone();
        let policy = index.guard_policy(&tenant).clone();
        let window = index.scanner.window();
        Self {
            sink: sink.clone(),
            index,
            tenant,
            ctx,
            policy,
            window,
            held: VecDeque::new(),
            held_bytes: 0,
            channels: BTreeMap::new(),
            flagged: HashSet::new(),
        }
    }

    /// Takes one frame; appends releasable frames to `out`. `Err` means: stop the stream.
    pub fn push(&mut self, frame: Bytes, out: &mut VecDeque<Bytes>) -> Result<(), GatewayError> {
        let f = classify(&frame);
        let mut touched: Vec<Key> = Vec::new();
        for s in &f.segments {
            if !self.channels.contains_key(&s.key) && self.channels.len() >= MAX_CHANNELS {
                self.held.clear();
                return Err(too_much("too many parallel outputs"));
            }
            let ch = self.channels.entry(s.key).or_default();
            if ch.closed {
                // Text after its choice finished or its block stopped: the earlier part was
                // released as final, so a match across the two could not be seen.
                self.held.clear();
                return Err(too_much("text after the end of its output"));
            }
            ch.held += s.text.len();
            if !touched.contains(&s.key) {
                touched.push(s.key);
            }
        }
        self.held_bytes += frame.len();
        self.held.push_back(Held {
            raw: frame,
            event: f.event,
            value: f.value,
            segments: f.segments,
            scopes: f.scopes,
            dirty: false,
        });
        for k in touched {
            self.check(k, false)?;
        }
        for c in &f.closes {
            let keys: Vec<Key> = match c {
                Scope::Channel(k) => vec![*k],
                Scope::Choice(i) => self
                    .channels
                    .keys()
                    .filter(|k| matches!(k, Key::Choice(j, _) if j == i))
                    .copied()
                    .collect(),
                Scope::All => Vec::new(),
            };
            for k in keys {
                self.check(k, true)?;
                self.channels.entry(k).or_default().closed = true;
            }
        }
        self.release(out);
        if self.held_bytes > MAX_HELD_BYTES {
            self.held.clear();
            return Err(too_much("an output stalled while others kept coming"));
        }
        Ok(())
    }

    /// At the end of the stream: a last check of every channel (matches at the very end are
    /// final now), then everything held is released, in order.
    pub fn flush(&mut self, out: &mut VecDeque<Bytes>) -> Result<(), GatewayError> {
        let keys: Vec<Key> = self.channels.keys().copied().collect();
        for k in keys {
            self.check(k, true)?;
        }
        while let Some(h) = self.held.pop_front() {
            out.push_back(Self::bytes(h));
        }
        self.held_bytes = 0;
        Ok(())
    }

    fn bytes(h: Held) -> Bytes {
        match (h.dirty, &h.value) {
            (true, Some(v)) => reframe(h.event.as_deref(), v),
            _ => h.raw,
        }
    }

    /// Whether every channel `h` carries text for lets it go.
    fn text_ready(&self, h: &Held) -> bool {
        let mut lens: Vec<(Key, usize)> = Vec::new();
        for s in &h.segments {
            match lens.iter_mut().find(|(k, _)| *k == s.key) {
                Some((_, n)) => *n += s.text.len(),
                None => lens.push((s.key, s.text.len())),
            }
        }
        lens.iter().all(|(k, len)| {
            self.channels.get(k).is_none_or(|ch| {
                ch.closed
                    || (ch.held - len >= self.window && ch.hold_from.is_none_or(|h| h >= *len))
            })
        })
    }

    /// Releases, in order, every held frame whose text may go and that is not ordered behind a
    /// frame still held.
    fn release(&mut self, out: &mut VecDeque<Bytes>) {
        let mut ahead = Ahead::default();
        let mut i = 0;
        while i < self.held.len() && !ahead.all {
            let h = &self.held[i];
            if ahead.conflicts(&h.scopes) || !self.text_ready(h) {
                ahead.add(&h.scopes);
                i += 1;
                continue;
            }
            let Some(h) = self.held.remove(i) else { break };
            self.held_bytes -= h.raw.len();
            for s in &h.segments {
                if let Some(ch) = self.channels.get_mut(&s.key) {
                    let n = s.text.len();
                    ch.held -= n;
                    ch.released += n;
                    ch.hold_from = ch.hold_from.map(|x| x.saturating_sub(n));
                }
            }
            out.push_back(Self::bytes(h));
        }
    }

    /// Scans the held text of one channel. `last`: no more text will come on it. Before that,
    /// a match that reaches the end of the held text may still be growing (an API key still
    /// arriving): it is blocked at once if the policy blocks, but redacted only once complete.
    fn check(&mut self, key: Key, last: bool) -> Result<(), GatewayError> {
        let mut joined = String::new();
        let mut opaque = Vec::new();
        for s in self.held.iter().flat_map(|h| &h.segments) {
            if s.key == key {
                if s.opaque {
                    opaque.push((joined.len(), joined.len() + s.text.len()));
                }
                joined.push_str(&s.text);
            }
        }
        let released = self.channels.get(&key).map_or(0, |c| c.released);
        let hits =
            self.index
                .scanner
                .scan(&self.tenant, &joined, Direction::Outbound, &self.policy);
        let mut hold_from = None;
        let mut redact = Vec::new();
        for h in &hits {
            let mut action = self.policy.action(h.detector);
            if !last && h.end == joined.len() && action != Action::Block {
                hold_from = Some(hold_from.map_or(h.start, |x: usize| x.min(h.start)));
                continue;
            }
            // Text that cannot be rewritten in place (a tool input object) is withheld whole.
            if action == Action::Redact && opaque.iter().any(|(s, e)| h.start < *e && h.end > *s) {
                action = Action::Block;
            }
            // Held text is scanned again as frames arrive: count each finding once.
            if self
                .flagged
                .insert((key, released + h.start, h.detector.as_str()))
            {
                Guard::new(&self.ctx, &self.sink).record_incident(
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
            self.apply_redactions(key, &redact);
            // Redactions before a growing match moved it: hold from where it starts now.
            hold_from = hold_from.map(|x| {
                redact.iter().filter(|r| r.end <= x).fold(x, |x, r| {
                    x + "[REDACTED:]".len() + r.detector.as_str().len() - (r.end - r.start)
                })
            });
        }
        if let Some(ch) = self.channels.get_mut(&key) {
            ch.hold_from = hold_from;
        }
        Ok(())
    }

    /// Rewrites one channel's held text so each redacted span is replaced in the segment where
    /// it starts and removed from the segments it continues into.
    fn apply_redactions(&mut self, key: Key, hits: &[Hit]) {
        let mut offset = 0;
        let mut total = 0;
        for h in self.held.iter_mut() {
            let mut changed = false;
            for s in h.segments.iter_mut().filter(|s| s.key == key) {
                let (start, end) = (offset, offset + s.text.len());
                offset = end;
                let mut new = String::new();
                let mut at = start;
                for hit in hits.iter().filter(|x| x.start < end && x.end > start) {
                    let from = hit.start.max(start);
                    new.push_str(&s.text[at - start..from - start]);
                    if hit.start >= start {
                        new.push_str("[REDACTED:");
                        new.push_str(hit.detector.as_str());
                        new.push(']');
                    }
                    at = hit.end.min(end);
                }
                new.push_str(&s.text[at - start..]);
                if new != s.text {
                    if let Some(slot) = h.value.as_mut().and_then(|v| v.pointer_mut(&s.pointer)) {
                        *slot = Value::String(new.clone());
                        changed = true;
                    }
                    s.text = new;
                }
                total += s.text.len();
            }
            h.dirty |= changed;
        }
        if let Some(ch) = self.channels.get_mut(&key) {
            ch.held = total;
        }
    }
}
