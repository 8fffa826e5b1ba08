//! Streaming responses: upstream SSE bytes -> parsed events -> frames in the caller's format.
//!
//! Nothing is buffered beyond the event being parsed. The upstream response is owned by the
//! body stream, so when the client disconnects and hyper drops the body, the upstream
//! connection is dropped too (the provider stops generating). An upstream failure after the 200
//! reaches the client as its SDK's in-stream error; so does an upstream that ends without its
//! terminal event.

pub mod guard;
pub(crate) mod text;

use crate::error::GatewayError;
use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use std::collections::VecDeque;
use tenantgate_providers::anthropic::StreamUsage;
use tenantgate_providers::openai::peek_chunk;
use tenantgate_providers::sse::{self, data_frame, named_frame, DONE_FRAME};
use tenantgate_providers::translate::AnthropicToOpenAiStream;
use tenantgate_providers::Usage;

/// How upstream events become client frames: frames in the caller's wire (what the guard
/// scans and the record counts), then the surface's shape (what the caller receives).
pub struct Transform {
    frames: Frames,
    render: Render,
}

impl Transform {
    pub fn new(frames: Frames, render: Render) -> Transform {
        Transform { frames, render }
    }

    fn on_event(&mut self, ev: sse::Event, out: &mut VecDeque<Bytes>) {
        self.frames.on_event(ev, out)
    }

    fn finished(&self) -> bool {
        self.frames.finished()
    }

    pub fn usage(&self) -> Option<Usage> {
        self.frames.usage()
    }

    fn error_frame(&self, e: &GatewayError) -> Bytes {
        self.frames.error_frame(e)
    }
}

/// The last step of a streamed answer: guarded frames in the caller's wire, reshaped for the
/// endpoint the call came in on (a Responses stream's events, legacy completion chunks).
pub enum Render {
    /// Chat completions and messages: the frames as they are.
    Native,
    Responses(Box<tenantgate_providers::responses::ChatToResponsesStream>),
    Completions,
}

impl Render {
    /// The caller's bytes for one released frame (empty when the surface shows nothing of it).
    fn frame(&mut self, frame: Bytes) -> Bytes {
        let data = match self {
            Render::Native => return frame,
            Render::Responses(_) | Render::Completions => {
                let mut p = sse::Parser::new();
                let mut events = p.feed(&frame).unwrap_or_default();
                events.extend(p.finish());
                events
            }
        };
        let mut out = bytes::BytesMut::new();
        for ev in data {
            match self {
                Render::Native => {}
                Render::Responses(r) => {
                    for f in r.on_data(&ev.data) {
                        out.extend_from_slice(&f);
                    }
                }
                Render::Completions => {
                    if let Some(f) =
                        tenantgate_providers::completions::chat_chunk_to_completion(&ev.data)
                    {
                        out.extend_from_slice(&f);
                    }
                }
            }
        }
        out.freeze()
    }
}

/// How upstream events become frames in the caller's wire.
pub enum Frames {
    /// OpenAI upstream, OpenAI client: frames pass through; the usage-only chunk is forwarded
    /// only if the client asked for it.
    OpenAiPassthrough {
        include_usage: bool,
        usage: Option<Usage>,
        done: bool,
    },
    /// Anthropic (or demo) upstream, OpenAI client.
    AnthropicToOpenAi(AnthropicToOpenAiStream),
    /// Anthropic (or demo) upstream, Anthropic client.
    AnthropicPassthrough(StreamUsage),
    /// OpenAI-format upstream, Anthropic client.
    OpenAiToAnthropic(tenantgate_providers::translate_rev::OpenAiToAnthropicStream),
}

impl Frames {
    fn on_event(&mut self, ev: sse::Event, out: &mut VecDeque<Bytes>) {
        match self {
            Frames::OpenAiPassthrough {
                include_usage,
                usage,
                done,
            } => {
                if ev.data == "[DONE]" {
                    *done = true;
                    out.push_back(Bytes::from_static(DONE_FRAME));
                    return;
                }
                let peek = peek_chunk(&ev.data);
                if peek.usage.is_some() {
                    *usage = peek.usage;
                }
                if peek.error {
                    *done = true;
                }
                if peek.usage_only && !*include_usage {
                    return;
                }
                out.push_back(data_frame(&ev.data));
            }
            Frames::AnthropicToOpenAi(t) => out.extend(t.on_event(&ev.event, &ev.data)),
            Frames::OpenAiToAnthropic(t) => out.extend(t.on_data(&ev.data)),
            Frames::AnthropicPassthrough(u) => {
                u.on_event(&ev);
                out.push_back(named_frame(
                    if ev.event.is_empty() {
                        "message"
                    } else {
                        &ev.event
                    },
                    &ev.data,
                ));
            }
        }
    }

    fn finished(&self) -> bool {
        match self {
            Frames::OpenAiPassthrough { done, .. } => *done,
            Frames::AnthropicToOpenAi(t) => t.finished,
            Frames::AnthropicPassthrough(u) => u.seen_stop || u.error,
            Frames::OpenAiToAnthropic(t) => t.finished,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        match self {
            Frames::OpenAiPassthrough { usage, .. } => *usage,
            Frames::AnthropicToOpenAi(t) => Some(t.usage),
            Frames::AnthropicPassthrough(u) => Some(u.usage),
            Frames::OpenAiToAnthropic(t) => Some(t.usage),
        }
    }

    /// The caller-format frame for a failure after the 200.
    fn error_frame(&self, e: &GatewayError) -> Bytes {
        match self {
            Frames::OpenAiPassthrough { .. } | Frames::AnthropicToOpenAi(_) => {
                data_frame(&serde_json::json!({"error": e.openai_object()}).to_string())
            }
            Frames::AnthropicPassthrough(_) | Frames::OpenAiToAnthropic(_) => {
                named_frame("error", &e.anthropic_body().to_string())
            }
        }
    }
}

/// Reported once when a stream ends, however it ends.
pub struct StreamEnd {
    pub request_id: String,
    pub tenant: String,
    pub model: String,
    pub started: std::time::Instant,
}

impl StreamEnd {
    fn report(&self, outcome: &str, usage: Option<Usage>) {
        let u = usage.unwrap_or_default();
        tracing::info!(
            request_id = %self.request_id, tenant = %self.tenant, model = %self.model,
            outcome, input_tokens = u.input_tokens, output_tokens = u.output_tokens,
            duration_ms = self.started.elapsed().as_millis() as u64, "stream ended"
        );
    }
}

struct State {
    upstream: BoxStream<'static, Result<Bytes, GatewayError>>,
    parser: sse::Parser,
    transform: Transform,
    /// Frames the transform produced, before the guard looked at them.
    staging: VecDeque<Bytes>,
    guard: Option<crate::stream::guard::StreamGuard>,
    pending: VecDeque<Bytes>,
    done: bool,
    end: Option<StreamEnd>,
    /// The call's audit record, written before the terminal frame is released.
    audit: Option<crate::audit::StreamAudit>,
    /// How the stream ended (set with `done`), for the record.
    outcome: Option<(&'static str, Option<GatewayError>)>,
    /// In flight on `/metrics` until dropped; times the first frame.
    live: Option<crate::telemetry::red::Live>,
}

impl Drop for State {
    fn drop(&mut self) {
        // Still holding the report: the client went away before the stream finished.
        if let Some(end) = self.end.take() {
            end.report("client_disconnected", self.transform.usage());
        }
        // Not yet written: the client left before the terminal frame. Recorded all the same.
        if let Some(a) = self.audit.take() {
            a.write_detached("client_disconnected", tokens(self.transform.usage()));
        }
    }
}

fn tokens(u: Option<Usage>) -> Option<tenantgate_audit::Tokens> {
    u.map(|u| tenantgate_audit::Tokens {
        input: u.input_tokens,
        output: u.output_tokens,
    })
}

impl State {
    /// Passes staged frames through the guard (if any) to the output queue.
    fn release(&mut self) {
        while let Some(frame) = self.staging.pop_front() {
            match &mut self.guard {
                None => self.pending.push_back(frame),
                Some(g) => {
                    if let Err(e) = g.push(frame, &mut self.pending) {
                        self.staging.clear();
                        self.pending.push_back(self.transform.error_frame(&e));
                        self.done = true;
                        self.outcome = Some(("blocked", Some(e)));
                        if let Some(end) = self.end.take() {
                            end.report("blocked", self.transform.usage());
                        }
                        return;
                    }
                }
            }
        }
    }

    /// Releases what the guard holds; `false` if its last check blocked the stream (the
    /// caller's error frame is then queued instead).
    fn flush_guard(&mut self) -> bool {
        let Some(g) = &mut self.guard else {
            return true;
        };
        match g.flush(&mut self.pending) {
            Ok(()) => true,
            Err(e) => {
                self.pending.push_back(self.transform.error_frame(&e));
                self.done = true;
                self.outcome = Some(("blocked", Some(e)));
                if let Some(end) = self.end.take() {
                    end.report("blocked", self.transform.usage());
                }
                false
            }
        }
    }

    fn fail(&mut self, e: &GatewayError) {
        if !self.flush_guard() {
            return;
        }
        self.pending.push_back(self.transform.error_frame(e));
        self.done = true;
        self.outcome = Some(("upstream_failed", Some(e.clone())));
        if let Some(end) = self.end.take() {
            end.report("upstream_failed", self.transform.usage());
        }
    }

    fn complete(&mut self) {
        if !self.flush_guard() {
            return;
        }
        self.done = true;
        self.outcome = Some(("completed", None));
        if let Some(end) = self.end.take() {
            end.report("completed", self.transform.usage());
        }
    }
}

/// Hands a released frame to the call's record: what the caller received (`out`, the
/// surface's shape) and, when the record counts it, the text of the guarded `frame`.
fn observe(a: &mut crate::audit::StreamAudit, frame: &Bytes, out: &Bytes) {
    let text = if a.counts_output() {
        text::frame_text(frame)
    } else {
        None
    };
    a.observe(out, text.as_deref());
}

/// Turns an upstream byte stream into the client's SSE frames.
pub(crate) fn transform_stream(
    upstream: impl Stream<Item = Result<Bytes, GatewayError>> + Send + 'static,
    transform: Transform,
    end: StreamEnd,
    guard: Option<crate::stream::guard::StreamGuard>,
    audit: Option<crate::audit::StreamAudit>,
    live: Option<crate::telemetry::red::Live>,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let state = State {
        upstream: upstream.boxed(),
        parser: sse::Parser::new(),
        transform,
        staging: VecDeque::new(),
        guard,
        pending: VecDeque::new(),
        done: false,
        end: Some(end),
        audit,
        outcome: None,
        live,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(frame) = st.pending.pop_front() {
                let out = st.transform.render.frame(frame.clone());
                if st.done && st.pending.is_empty() {
                    // The terminal frame: the call's record is written first.
                    if let Some(a) = st.audit.take() {
                        let (outcome, err) = st.outcome.take().unwrap_or(("completed", None));
                        let mut a = a;
                        observe(&mut a, &frame, &out);
                        let written = a
                            .write(outcome, err.as_ref(), tokens(st.transform.usage()))
                            .await;
                        if let Err(e) = written {
                            let failed = st.transform.error_frame(&e);
                            return Some((Ok(st.transform.render.frame(failed)), st));
                        }
                    }
                } else if let Some(a) = &mut st.audit {
                    observe(a, &frame, &out);
                }
                if out.is_empty() && !st.done {
                    // Nothing of it shows on this surface (a usage-only chunk, a role delta).
                    continue;
                }
                if let Some(l) = &mut st.live {
                    l.first_frame();
                }
                return Some((Ok(out), st));
            }
            if st.done {
                return None;
            }
            match st.upstream.next().await {
                Some(Ok(chunk)) => match st.parser.feed(&chunk) {
                    Ok(events) => {
                        for ev in events {
                            st.transform.on_event(ev, &mut st.staging);
                        }
                        st.release();
                        if !st.done && st.transform.finished() {
                            st.complete();
                        }
                    }
                    Err(e) => st.fail(&GatewayError::UpstreamFailed(e.to_string())),
                },
                Some(Err(e)) => st.fail(&e),
                None => {
                    if let Some(ev) = st.parser.finish() {
                        st.transform.on_event(ev, &mut st.staging);
                    }
                    st.release();
                    if st.done {
                        continue;
                    }
                    if st.transform.finished() {
                        st.complete();
                    } else {
                        st.fail(&GatewayError::UpstreamFailed(
                            "the provider ended the stream early".into(),
                        ));
                    }
                }
            }
        }
    })
}
