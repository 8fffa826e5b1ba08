//! Guard-outbound for streams. Frames (already in the caller's format) carry text on channels
//! (`stream_text.rs`: one per OpenAI choice and part, tool call included, one per Anthropic
//! content block); each channel is scanned on its own text only, and a frame is released only
//! when every channel it carries text for allows it: none of that text lies at or after the
//! channel's hold offset, or the channel has ended. The hold offset is where a match that
//! would block or be redacted could still be in progress (`tenantgate_guard::Watch`: anchored
//! walks of the detectors' automata, fed each piece once), or where a found match that may
//! still grow starts; text that cannot begin such a match goes at once. Each piece is scanned
//! together with the channel's text from the earliest partial match of any detector that is
//! on (flagging ones too), so a match split across frames is seen whole, and nothing older is
//! scanned again. A frame also waits for the earlier held frames it must stay ordered behind
//! (same channel, its choice, or all), so a quiet channel holds back only its own tail, not
//! the other choices.
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
use tenantgate_guard::{Action, Direction, Hit, Policy, Scanner, Watch};

/// Text channels one stream may open (choices x parts, content blocks). OpenAI allows `n` up
/// to 128; a provider that opens more is refused rather than allocated for.
pub const MAX_CHANNELS: usize = 512;
/// Frames held back at once, in bytes: a bound a well-formed stream never nears (each channel
/// holds at most a match in progress), reached only by a provider stalling a channel behind a
/// barrier, or by a match that keeps growing.
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

struct Channel {
    /// Text bytes of this channel in held frames.
    held: usize,
    /// Offset in the channel's text where the held text starts (all before it was released).
    released: usize,
    /// The channel's text from `base` on: every held byte, the released text a match in
    /// progress may still need, and one character before that (context for word boundaries).
    buf: String,
    base: usize,
    /// Partial matches, fed each piece of text once.
    watch: Watch,
    /// Start of a found match that may still be growing and is redacted once complete: frames
    /// from there on stay held.
    growing_hold: Option<usize>,
    /// Start of a found match that may still be growing and is only flagged: scanned again
    /// with the next piece, not held.
    growing_scan: Option<usize>,
    /// No more text will come (its choice finished, its block stopped): its last check was
    /// final, so everything it holds may go.
    closed: bool,
}

impl Channel {
    fn new(scanner: &Scanner, policy: &Policy) -> Channel {
        Channel {
            held: 0,
            released: 0,
            buf: String::new(),
            base: 0,
            watch: scanner.watch(policy),
            growing_hold: None,
            growing_scan: None,
            closed: false,
        }
    }

    /// Text from this offset on may not be released yet.
    fn hold(&self) -> usize {
        [self.watch.hold_from(), self.growing_hold]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(usize::MAX)
    }

    /// Where the next scan must start to see every match that may still be in progress.
    fn scan_start(&self) -> usize {
        [self.watch.scan_from(), self.growing_hold, self.growing_scan]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.watch.end())
    }

    /// Drops the text no scan and no redaction will need again, keeping one character of
    /// context before it.
    fn trim(&mut self) {
        let keep = self.scan_start().min(self.released) - self.base;
        if keep == 0 {
            return;
        }
        let mut cut = keep - 1;
        while !self.buf.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut > 0 {
            self.buf.drain(..cut);
            self.base += cut;
        }
    }
}

pub struct StreamGuard {
    sink: IncidentSink,
    index: Arc<AuthIndex>,
    tenant: TenantId,
    ctx: crate::identity::TenantContext,
    policy: Policy,
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
        Self {
            sink: sink.clone(),
            index,
            tenant,
            ctx,
            policy,
            held: VecDeque::new(),
            held_bytes: 0,
            channels: BTreeMap::new(),
            flagged: HashSet::new(),
        }
    }

    /// Takes one frame; appends releasable frames to `out`. `Err` means: stop the stream.
    pub fn push(&mut self, frame: Bytes, out: &mut VecDeque<Bytes>) -> Result<(), GatewayError> {
        let f = classify(&frame);
        let scanner = &self.index.scanner;
        // Each channel this frame adds text to, and where its scan must start: where a match
        // could have been in progress before this text (or the new text itself).
        let mut touched: Vec<(Key, usize)> = Vec::new();
        for s in &f.segments {
            if !self.channels.contains_key(&s.key) && self.channels.len() >= MAX_CHANNELS {
                self.held.clear();
                return Err(too_much("too many parallel outputs"));
            }
            let ch = self
                .channels
                .entry(s.key)
                .or_insert_with(|| Channel::new(scanner, &self.policy));
            if ch.closed {
                // Text after its choice finished or its block stopped: the earlier part was
                // released as final, so a match across the two could not be seen.
                self.held.clear();
                return Err(too_much("text after the end of its output"));
            }
            if !touched.iter().any(|(k, _)| *k == s.key) {
                touched.push((s.key, ch.scan_start()));
            }
            ch.held += s.text.len();
            ch.buf.push_str(&s.text);
            ch.watch.feed(scanner, &s.text);
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
        for (k, from) in touched {
            self.check(k, from, false)?;
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
                self.close(k)?;
            }
        }
        self.release(out);
        if self.held_bytes > MAX_HELD_BYTES {
            self.held.clear();
            return Err(too_much("an output stalled while others kept coming"));
        }
        Ok(())
    }

    /// The last check of a channel (matches at its end are final now); then it may release
    /// everything it holds.
    fn close(&mut self, k: Key) -> Result<(), GatewayError> {
        let from = self.channels.get(&k).map(Channel::scan_start);
        if let Some(from) = from {
            self.check(k, from, true)?;
        }
        let scanner = &self.index.scanner;
        self.channels
            .entry(k)
            .or_insert_with(|| Channel::new(scanner, &self.policy))
            .closed = true;
        Ok(())
    }

    /// At the end of the stream: a last check of every channel (matches at the very end are
    /// final now), then everything held is released, in order.
    pub fn flush(&mut self, out: &mut VecDeque<Bytes>) -> Result<(), GatewayError> {
        let keys: Vec<(Key, usize)> = self
            .channels
            .iter()
            .map(|(k, ch)| (*k, ch.scan_start()))
            .collect();
        for (k, from) in keys {
            self.check(k, from, true)?;
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

    /// Whether every channel `h` carries text for lets it go. `h` is the first held frame of
    /// each of its channels (frames of a channel stay in order), so its text starts at the
    /// channel's `released` offset.
    fn text_ready(&self, h: &Held) -> bool {
        let mut lens: Vec<(Key, usize)> = Vec::new();
        for s in &h.segments {
            match lens.iter_mut().find(|(k, _)| *k == s.key) {
                Some((_, n)) => *n += s.text.len(),
                None => lens.push((s.key, s.text.len())),
            }
        }
        lens.iter().all(|(k, len)| {
            self.channels
                .get(k)
                .is_none_or(|ch| ch.closed || ch.released + len <= ch.hold())
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
                }
            }
            out.push_back(Self::bytes(h));
        }
    }

    /// Scans one channel's text from offset `from` (where a match could be in progress before
    /// the latest text) to its end. `last`: no more text will come on it. Before that, a match
    /// that reaches the end may still be growing (an API key still arriving): it is blocked at
    /// once if the policy blocks, but redacted (or flagged) only once complete.
    fn check(&mut self, key: Key, from: usize, last: bool) -> Result<(), GatewayError> {
        let Some(ch) = self.channels.get(&key) else {
            return Ok(());
        };
        let end = ch.watch.end();
        if from >= end && ch.growing_hold.is_none() && ch.growing_scan.is_none() {
            return Ok(());
        }
        let (base, released) = (ch.base, ch.released);
        let hits = self.index.scanner.scan_from(
            &self.tenant,
            &ch.buf,
            from.max(base) - base,
            Direction::Outbound,
            &self.policy,
        );
        let mut growing_hold: Option<usize> = None;
        let mut growing_scan: Option<usize> = None;
        let mut redact = Vec::new();
        let mut opaque: Option<Vec<(usize, usize)>> = None;
        for h in hits {
            let h = Hit {
                start: h.start + base,
                end: h.end + base,
                ..h
            };
            let mut action = self.policy.action(h.detector);
            if !last && h.end == end {
                match action {
                    Action::Block => {}
                    Action::Redact => {
                        growing_hold = Some(growing_hold.map_or(h.start, |x| x.min(h.start)));
                        continue;
                    }
                    Action::Flag | Action::Off => {
                        growing_scan = Some(growing_scan.map_or(h.start, |x| x.min(h.start)));
                        continue;
                    }
                }
            }
            // Text that cannot be rewritten in place (a tool input object) is withheld whole.
            if action == Action::Redact
                && opaque
                    .get_or_insert_with(|| self.opaque_spans(key, released))
                    .iter()
                    .any(|(s, e)| h.start < *e && h.end > *s)
            {
                action = Action::Block;
            }
            // A finding still growing is seen again by the next scan: count it once.
            if self.flagged.insert((key, h.start, h.detector.as_str())) {
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
                Action::Redact => redact.push(h),
                Action::Flag | Action::Off => {}
            }
        }
        if !redact.is_empty() {
            self.apply_redactions(key, &redact);
            // Redactions before a growing match moved it: it starts further on now.
            let moved = |x: usize| {
                redact.iter().filter(|r| r.end <= x).fold(x, |x, r| {
                    x + "[REDACTED:]".len() + r.detector.as_str().len()
                        - (r.end - r.start.max(released))
                })
            };
            growing_hold = growing_hold.map(moved);
            growing_scan = growing_scan.map(moved);
        }
        if let Some(ch) = self.channels.get_mut(&key) {
            ch.growing_hold = growing_hold;
            ch.growing_scan = growing_scan;
            ch.trim();
        }
        Ok(())
    }

    /// Spans (offsets in the channel's text) of held text that is a serialized value.
    fn opaque_spans(&self, key: Key, released: usize) -> Vec<(usize, usize)> {
        let mut at = released;
        let mut spans = Vec::new();
        for s in self.held.iter().flat_map(|h| &h.segments) {
            if s.key == key {
                if s.opaque {
                    spans.push((at, at + s.text.len()));
                }
                at += s.text.len();
            }
        }
        spans
    }

    /// Rewrites one channel's held text so each redacted span (offsets in the channel's text)
    /// is replaced in the segment where it starts and removed from the segments it continues
    /// into; then the channel's buffer and partial matches follow the new text.
    fn apply_redactions(&mut self, key: Key, hits: &[Hit]) {
        let Some(released) = self.channels.get(&key).map(|c| c.released) else {
            return;
        };
        // In held-text offsets; a match never starts in released text (it would have been
        // held), but if it did, only its held part could still be rewritten.
        let hits: Vec<Hit> = hits
            .iter()
            .filter(|h| h.end > released)
            .map(|h| Hit {
                start: h.start.saturating_sub(released),
                end: h.end - released,
                ..*h
            })
            .collect();
        let mut offset = 0;
        let mut total = 0;
        let mut joined = String::new();
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
                joined.push_str(&s.text);
            }
            h.dirty |= changed;
        }
        let scanner = &self.index.scanner;
        if let Some(ch) = self.channels.get_mut(&key) {
            ch.held = total;
            // The buffer always covers the held text (`trim` keeps from `released` on).
            ch.buf.truncate(ch.released - ch.base);
            ch.buf.push_str(&joined);
            ch.watch.restart(ch.base);
            ch.watch.feed(scanner, &ch.buf);
        }
    }
}
