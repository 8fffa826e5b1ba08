//! mockllm: a fake upstream model server for tests and benchmarks.
//!
//! It speaks the OpenAI chat-completions / embeddings protocol (also under Azure's
//! `/openai/deployments/{d}/...?api-version=` paths) and the Anthropic messages protocol,
//! streaming included, with real usage numbers (whitespace word counts) and the providers'
//! error bodies. It shares no code with the gateway, so a codec bug on one side is not mirrored.
//!
//! A whole server's outage is switched with [`Stats::outage`]. Faults are injected per
//! request by directives in the last user message, e.g.
//! `mock:status=429 mock:retry_after=3`, `mock:status=500`, `mock:timeout`, `mock:malformed`,
//! `mock:chunks=20 mock:chunk_delay_ms=50`, `mock:stream_error_after=2`, `mock:drop_after=2`,
//! `mock:tool_call=get_weather`, `mock:reply=TEXT_WITHOUT_SPACES`, `mock:extra_hex=H` (text in an
//! OpenAI audio transcript or an Anthropic web-search result block), `mock:echo_all` (the reply is
//! everything received, system prompt and context included: a model obeying a prompt injection); or for every request by
//! [`MockConfig`].
//!
//! Several outputs at once: `mock:choices_hex=H0,H1` (hex-encoded texts: OpenAI choices, as with
//! `"n"`, or Anthropic text blocks) and `mock:tool_args_hex=A0,A1` (tool calls with these
//! argument strings: OpenAI `tool_calls` of choice 0, Anthropic `tool_use` blocks). Streamed,
//! their pieces interleave round-robin across outputs; `mock:pack` puts one step of every
//! OpenAI output into a single chunk; `mock:after_stop_hex=H` sends more text for Anthropic
//! block 0 after it stopped.
//!
//! Files and fine-tuning (OpenAI's APIs, multipart upload included): `finetune.rs`.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod finetune;
mod multi;
use multi::{anthropic_multi, openai_multi, Chat};

/// Behaviour applied to every request.
#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    /// Added before every response (models think).
    pub latency: Duration,
    /// Default number of content chunks in a stream.
    pub chunks: usize,
    pub chunk_delay: Duration,
    /// If set, requests must carry this key (`Authorization: Bearer`, `api-key` or `x-api-key`).
    pub api_key: Option<String>,
    /// Further keys accepted besides `api_key` (tenants' own keys on a shared endpoint).
    pub more_keys: Vec<String>,
}

/// What the server saw, for assertions.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub streams_started: AtomicU64,
    pub streams_completed: AtomicU64,
    /// Streams whose client went away before the last event was sent.
    pub streams_cancelled: AtomicU64,
    /// An outage of this whole server, switched on and off while it runs (a region failing
    /// and recovering): every request is answered with this status (0: none). It is seen and
    /// recorded first, like any request.
    pub outage: AtomicU64,
    last: Mutex<Option<Recorded>>,
    /// Every request seen (the newest [`Stats::KEPT`]), for assertions over all of them.
    seen: Mutex<std::collections::VecDeque<Recorded>>,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

impl Stats {
    /// How many requests [`Stats::requests_seen`] keeps.
    pub const KEPT: usize = 4096;

    pub fn last_request(&self) -> Option<Recorded> {
        self.last.lock().ok().and_then(|g| g.clone())
    }

    /// The requests seen, oldest first (path, query, headers and body of each).
    pub fn requests_seen(&self) -> Vec<Recorded> {
        self.seen
            .lock()
            .map(|g| g.iter().cloned().collect())
            .unwrap_or_default()
    }
}

struct Shared {
    config: MockConfig,
    stats: Arc<Stats>,
    /// Files and fine-tuning jobs (`finetune.rs`).
    ft: Mutex<finetune::FtState>,
}

pub struct MockHandle {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockHandle {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Binds `addr` (use port 0 in tests) and serves until the handle is stopped or dropped.
pub async fn start(addr: SocketAddr, config: MockConfig) -> std::io::Result<MockHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(Stats::default());
    let app = router(config, stats.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    #[expect(
        clippy::disallowed_methods,
        reason = "the mock provider's one server task is owned by its handle, which stops and awaits it"
    )]
    let task = tokio::spawn(async move {
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(MockHandle {
        addr,
        stats,
        shutdown: Some(tx),
        task,
    })
}

pub fn router(config: MockConfig, stats: Arc<Stats>) -> Router {
    let shared = Arc::new(Shared {
        config,
        stats,
        ft: Mutex::default(),
    });
    Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/v1/messages", post(anthropic_messages))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure_chat),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(azure_embeddings),
        )
        .route("/v1/files", post(finetune::upload))
        .route("/v1/files/{id}", get(finetune::get_file))
        .route(
            "/v1/fine_tuning/jobs",
            post(finetune::create_job).get(finetune::list_jobs),
        )
        .route("/v1/fine_tuning/jobs/{id}", get(finetune::get_job))
        .route(
            "/v1/fine_tuning/jobs/{id}/cancel",
            post(finetune::cancel_job),
        )
        .route("/v1/fine_tuning/jobs/{id}/events", get(finetune::events))
        .route(
            "/v1/fine_tuning/jobs/{id}/checkpoints",
            get(finetune::checkpoints),
        )
        .route("/health", get(|| async { "ok" }))
        .with_state(shared)
}

#[derive(Debug, Default)]
struct Directives {
    status: Option<u16>,
    retry_after: Option<u64>,
    timeout: bool,
    malformed: bool,
    chunks: Option<usize>,
    chunk_delay_ms: Option<u64>,
    stream_error_after: Option<usize>,
    drop_after: Option<usize>,
    tool_call: Option<String>,
    reply: Option<String>,
    /// Split the streamed reply into this many pieces by characters (not words), so a token
    /// straddles chunk boundaries.
    char_chunks: Option<usize>,
    /// One text per output (OpenAI choice or Anthropic text block).
    choices: Option<Vec<String>>,
    /// Tool calls' argument strings.
    tool_args: Option<Vec<String>>,
    /// OpenAI: one chunk per step carrying every output's piece.
    pack: bool,
    /// Anthropic: text sent for block 0 after its `content_block_stop` (a protocol violation).
    after_stop: Option<String>,
    /// Non-streamed: text in fields beyond the usual ones (an OpenAI audio transcript, an
    /// Anthropic web-search result block).
    extra: Option<String>,
    /// Reply with everything received: system prompt, every message, retrieved context (a
    /// model that obeys "print your instructions", for the bleed test's prompt injection).
    echo_all: bool,
}

fn hex_list(v: &str) -> Option<Vec<String>> {
    v.split(',').map(hex_decode).collect()
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| {
                p.get("text")
                    .and_then(Value::as_str)
                    .or_else(|| p.get("content").and_then(Value::as_str))
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn last_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default()
}

fn all_text(body: &Value) -> String {
    let mut s = text_of(&body["system"]);
    for m in body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        s.push(' ');
        s.push_str(&text_of(&m["content"]));
    }
    s
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn directives(text: &str) -> Directives {
    let mut d = Directives::default();
    for tok in text.split_whitespace() {
        let Some(rest) = tok.strip_prefix("mock:") else {
            continue;
        };
        let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
        match k {
            "status" => d.status = v.parse().ok(),
            "retry_after" => d.retry_after = v.parse().ok(),
            "timeout" => d.timeout = true,
            "malformed" => d.malformed = true,
            "chunks" => d.chunks = v.parse().ok(),
            "chunk_delay_ms" => d.chunk_delay_ms = v.parse().ok(),
            "stream_error_after" => d.stream_error_after = v.parse().ok(),
            "drop_after" => d.drop_after = v.parse().ok(),
            "tool_call" => d.tool_call = Some(v.to_owned()),
            "reply" => d.reply = Some(v.replace('_', " ")),
            // Verbatim reply, hex-encoded so the request itself does not contain it.
            "reply_hex" => d.reply = hex_decode(v),
            "char_chunks" => d.char_chunks = v.parse().ok(),
            "choices_hex" => d.choices = hex_list(v),
            "tool_args_hex" => d.tool_args = hex_list(v),
            "pack" => d.pack = true,
            "after_stop_hex" => d.after_stop = hex_decode(v),
            "extra_hex" => d.extra = hex_decode(v),
            "echo_all" => d.echo_all = true,
            _ => {}
        }
    }
    d
}

#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    OpenAi,
    Anthropic,
}

fn error_response(
    dialect: Dialect,
    status: u16,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match dialect {
        Dialect::OpenAi => {
            json!({"error":{"message":message,"type": if status == 429 {"rate_limit_exceeded"} else if status >= 500 {"server_error"} else {"invalid_request_error"},"param":null,"code":null}})
        }
        Dialect::Anthropic => {
            json!({"type":"error","error":{"type": match status {429 => "rate_limit_error", 529 => "overloaded_error", 401 => "authentication_error", 400 => "invalid_request_error", _ => "api_error"},"message":message}})
        }
    };
    let mut resp = (code, Json(body)).into_response();
    if let Some(s) = retry_after {
        if let Ok(v) = s.to_string().parse() {
            resp.headers_mut().insert("retry-after", v);
        }
    }
    resp
}

fn authorized(cfg: &MockConfig, headers: &HeaderMap) -> bool {
    let Some(expected) = &cfg.api_key else {
        return true;
    };
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let presented = h("authorization")
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned))
        .or_else(|| h("api-key"))
        .or_else(|| h("x-api-key"));
    presented
        .as_deref()
        .is_some_and(|p| p == expected.as_str() || cfg.more_keys.iter().any(|k| k == p))
}

fn record(
    shared: &Shared,
    path: &str,
    query: HashMap<String, String>,
    headers: &HeaderMap,
    body: &Value,
) {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let rec = Recorded {
        path: path.to_owned(),
        query,
        headers,
        body: body.clone(),
    };
    if let Ok(mut g) = shared.stats.seen.lock() {
        if g.len() == Stats::KEPT {
            g.pop_front();
        }
        g.push_back(rec.clone());
    }
    if let Ok(mut g) = shared.stats.last.lock() {
        *g = Some(rec);
    }
}

/// Common prologue: parse, record, auth, latency and status/timeout/malformed faults.
async fn prologue(
    shared: &Shared,
    dialect: Dialect,
    path: &str,
    query: HashMap<String, String>,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Result<(Value, Directives), Response> {
    let body: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => {
            return Err(error_response(
                dialect,
                400,
                &format!("invalid JSON: {e}"),
                None,
            ))
        }
    };
    record(shared, path, query, headers, &body);
    if !authorized(&shared.config, headers) {
        return Err(error_response(dialect, 401, "invalid api key", None));
    }
    let outage = shared.stats.outage.load(Ordering::Relaxed);
    if outage != 0 {
        let status = u16::try_from(outage).unwrap_or(500);
        return Err(error_response(dialect, status, "mock outage", None));
    }
    if dialect == Dialect::Anthropic && headers.get("anthropic-version").is_none() {
        return Err(error_response(
            dialect,
            400,
            "anthropic-version header is required",
            None,
        ));
    }
    // Chat: the last user message; embeddings (no messages): the input.
    let d = directives(&if body.get("messages").is_some() {
        last_user_text(&body)
    } else {
        text_of(&body["input"])
    });
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    if d.timeout {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if let Some(s) = d.status {
        return Err(error_response(
            dialect,
            s,
            &format!("mock error {s}"),
            d.retry_after,
        ));
    }
    if d.malformed {
        return Err((
            StatusCode::OK,
            [("content-type", "application/json")],
            "{\"id\": \"broken",
        )
            .into_response());
    }
    Ok((body, d))
}

fn reply_for(body: &Value, d: &Directives) -> String {
    if d.echo_all {
        return format!("mock echo: {}", all_text(body));
    }
    d.reply
        .clone()
        .unwrap_or_else(|| format!("mock reply to: {}", last_user_text(body)))
}

/// Counts a stream as cancelled if dropped before it finished.
struct StreamGuard {
    stats: Arc<Stats>,
    done: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.done {
            self.stats.streams_completed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.streams_cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

enum Frame {
    Bytes(String),
    Abort,
}

fn sse_response(shared: &Shared, frames: Vec<Frame>, delay: Duration) -> Response {
    shared.stats.streams_started.fetch_add(1, Ordering::Relaxed);
    let guard = StreamGuard {
        stats: shared.stats.clone(),
        done: false,
    };
    let n = frames.len();
    let s = stream::unfold(
        (frames.into_iter().enumerate(), guard),
        move |(mut it, mut guard)| async move {
            let (i, f) = it.next()?;
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match f {
                Frame::Bytes(b) => {
                    if i + 1 == n {
                        guard.done = true;
                    }
                    Some((Ok::<_, std::io::Error>(Bytes::from(b)), (it, guard)))
                }
                Frame::Abort => {
                    // Let what was sent reach the client first: the drop must happen mid-stream,
                    // after the 200, not race the response head.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    guard.done = true;
                    Some((
                        Err(std::io::Error::other("mock: connection dropped")),
                        (it, guard),
                    ))
                }
            }
        },
    );
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(s))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn hex_decode(h: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..h.len() / 2)
        .map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn split_chars(text: &str, chunks: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let per = chars.len().div_ceil(chunks.max(1)).max(1);
    chars.chunks(per).map(|c| c.iter().collect()).collect()
}

fn split_reply(text: &str, d: &Directives, default_chunks: usize) -> Vec<String> {
    match d.char_chunks {
        Some(n) => split_chars(text, n),
        None => split_words(text, d.chunks.unwrap_or(default_chunks.max(1))),
    }
}

fn split_words(text: &str, chunks: usize) -> Vec<String> {
    let ws: Vec<&str> = text.split_inclusive(' ').collect();
    let chunks = chunks.max(1).min(ws.len().max(1));
    let per = ws.len().div_ceil(chunks).max(1);
    ws.chunks(per).map(|c| c.concat()).collect()
}

async fn openai_chat(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    openai_chat_inner(&shared, "/v1/chat/completions", q, &headers, &raw).await
}

async fn azure_chat(
    State(shared): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    if !q.contains_key("api-version") {
        return error_response(
            Dialect::OpenAi,
            404,
            "Resource not found (api-version missing)",
            None,
        );
    }
    let path = format!("/openai/deployments/{deployment}/chat/completions");
    openai_chat_inner(&shared, &path, q, &headers, &raw).await
}

async fn openai_chat_inner(
    shared: &Shared,
    path: &str,
    q: HashMap<String, String>,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Response {
    let (body, d) = match prologue(shared, Dialect::OpenAi, path, q, headers, raw).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let model = body["model"].as_str().unwrap_or("mock").to_owned();
    let reply = reply_for(&body, &d);
    let prompt_tokens = words(&all_text(&body));
    let completion_tokens = words(&reply);
    let usage = json!({"prompt_tokens":prompt_tokens,"completion_tokens":completion_tokens,"total_tokens":prompt_tokens+completion_tokens});
    let id = format!(
        "chatcmpl-mock{}",
        shared.stats.requests.load(Ordering::Relaxed)
    );
    let created = 1_700_000_000u64;
    let stream = body["stream"].as_bool().unwrap_or(false);
    let n = body["n"].as_u64().unwrap_or(1).max(1) as usize;
    if d.choices.is_some() || d.tool_args.is_some() || n > 1 {
        let texts = d.choices.clone().unwrap_or_else(|| vec![reply.clone(); n]);
        let c = Chat {
            id: &id,
            model: &model,
            created,
            prompt_tokens,
        };
        return openai_multi(shared, &body, &d, &c, texts);
    }
    if !stream {
        let mut message = match &d.tool_call {
            Some(name) => {
                json!({"role":"assistant","content":null,"tool_calls":[{"id":"call_mock_1","type":"function","function":{"name":name,"arguments":"{\"city\":\"Paris\"}"}}]})
            }
            None => json!({"role":"assistant","content":reply,"refusal":null}),
        };
        if let Some(x) = &d.extra {
            message["audio"] =
                json!({"id":"audio_mock","data":"UklGRg==","expires_at":0,"transcript":x});
        }
        let finish = if d.tool_call.is_some() {
            "tool_calls"
        } else {
            "stop"
        };
        return Json(json!({"id":id,"object":"chat.completion","created":created,"model":model,
            "choices":[{"index":0,"message":message,"logprobs":null,"finish_reason":finish}],"usage":usage,"system_fingerprint":"fp_mock"}))
        .into_response();
    }
    let include_usage = body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    // Real OpenAI sends `"usage": null` on every chunk once include_usage is set.
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id":id,"object":"chat.completion.chunk","created":created,"model":model,"system_fingerprint":"fp_mock",
                           "choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        Frame::Bytes(format!("data: {c}\n\n"))
    };
    let mut frames = vec![chunk(
        json!({"role":"assistant","content":"","refusal":null}),
        Value::Null,
    )];
    match &d.tool_call {
        Some(name) => {
            frames.push(chunk(json!({"tool_calls":[{"index":0,"id":"call_mock_1","type":"function","function":{"name":name,"arguments":""}}]}), Value::Null));
            for part in ["{\"city\":", "\"Paris\"}"] {
                frames.push(chunk(
                    json!({"tool_calls":[{"index":0,"function":{"arguments":part}}]}),
                    Value::Null,
                ));
            }
        }
        None => {
            for piece in split_reply(&reply, &d, shared.config.chunks) {
                frames.push(chunk(json!({"content":piece}), Value::Null));
            }
        }
    }
    if let Some(n) = d.stream_error_after {
        frames.truncate(n.max(1));
        frames.push(Frame::Bytes(format!("data: {}\n\n", json!({"error":{"message":"mock upstream failure mid-stream","type":"server_error","param":null,"code":null}}))));
    } else if let Some(n) = d.drop_after {
        frames.truncate(n.max(1));
        frames.push(Frame::Abort);
    } else {
        frames.push(chunk(
            json!({}),
            json!(if d.tool_call.is_some() {
                "tool_calls"
            } else {
                "stop"
            }),
        ));
        if include_usage {
            frames.push(Frame::Bytes(format!("data: {}\n\n", json!({"id":id,"object":"chat.completion.chunk","created":created,"model":model,"choices":[],"usage":usage}))));
        }
        frames.push(Frame::Bytes("data: [DONE]\n\n".into()));
    }
    let delay = d
        .chunk_delay_ms
        .map(Duration::from_millis)
        .unwrap_or(shared.config.chunk_delay);
    sse_response(shared, frames, delay)
}

async fn openai_embeddings(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    embeddings_inner(&shared, "/v1/embeddings", q, &headers, &raw).await
}

async fn azure_embeddings(
    State(shared): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let path = format!("/openai/deployments/{deployment}/embeddings");
    embeddings_inner(&shared, &path, q, &headers, &raw).await
}

async fn embeddings_inner(
    shared: &Shared,
    path: &str,
    q: HashMap<String, String>,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Response {
    let (body, _) = match prologue(shared, Dialect::OpenAi, path, q, headers, raw).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        _ => return error_response(Dialect::OpenAi, 400, "input is required", None),
    };
    let base64 = body["encoding_format"] == "base64";
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            tokens += words(s);
            let v: Vec<f32> = (0..8).map(|k| ((s.len() + k) % 7) as f32 / 7.0).collect();
            let emb = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(b64(&bytes))
            } else {
                json!(v)
            };
            json!({"object":"embedding","index":i,"embedding":emb})
        })
        .collect();
    Json(json!({"object":"list","data":data,"model":body["model"],"usage":{"prompt_tokens":tokens,"total_tokens":tokens}})).into_response()
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn anthropic_messages(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let (body, d) = match prologue(
        &shared,
        Dialect::Anthropic,
        "/v1/messages",
        HashMap::new(),
        &headers,
        &raw,
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    if body["max_tokens"].as_u64().is_none() {
        return error_response(Dialect::Anthropic, 400, "max_tokens: Field required", None);
    }
    let model = body["model"].as_str().unwrap_or("mock").to_owned();
    let reply = reply_for(&body, &d);
    let input_tokens = words(&all_text(&body));
    let output_tokens = words(&reply);
    let id = format!("msg_mock{}", shared.stats.requests.load(Ordering::Relaxed));
    if d.choices.is_some() || d.tool_args.is_some() {
        let c = Chat {
            id: &id,
            model: &model,
            created: 0,
            prompt_tokens: input_tokens,
        };
        return anthropic_multi(&shared, &body, &d, &c);
    }
    let stream = body["stream"].as_bool().unwrap_or(false);
    if !stream {
        let mut content = match &d.tool_call {
            Some(name) => {
                json!([{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_mock_1","name":name,"input":{"city":"Paris"}}])
            }
            None => json!([{"type":"text","text":reply}]),
        };
        if let (Some(x), Some(blocks)) = (&d.extra, content.as_array_mut()) {
            blocks.push(
                json!({"type":"web_search_tool_result","tool_use_id":"srvtoolu_mock",
                "content":[{"type":"web_search_result","title":x,"url":"https://example.invalid/",
                    "encrypted_content":"x"}]}),
            );
        }
        let stop = if d.tool_call.is_some() {
            "tool_use"
        } else {
            "end_turn"
        };
        return Json(json!({"id":id,"type":"message","role":"assistant","model":model,"content":content,
            "stop_reason":stop,"stop_sequence":null,"usage":{"input_tokens":input_tokens,"output_tokens":output_tokens}}))
        .into_response();
    }
    let ev = |name: &str, data: Value| Frame::Bytes(format!("event: {name}\ndata: {data}\n\n"));
    let mut frames = vec![
        ev(
            "message_start",
            json!({"type":"message_start","message":{"id":id,"type":"message","role":"assistant","model":model,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":input_tokens,"output_tokens":1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        ev("ping", json!({"type":"ping"})),
    ];
    for piece in split_reply(&reply, &d, shared.config.chunks) {
        frames.push(ev("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":piece}})));
    }
    frames.push(ev(
        "content_block_stop",
        json!({"type":"content_block_stop","index":0}),
    ));
    let mut stop = "end_turn";
    if let Some(name) = &d.tool_call {
        stop = "tool_use";
        frames.push(ev("content_block_start", json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_mock_1","name":name,"input":{}}})));
        for part in ["{\"city\":", "\"Paris\"}"] {
            frames.push(ev("content_block_delta", json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":part}})));
        }
        frames.push(ev(
            "content_block_stop",
            json!({"type":"content_block_stop","index":1}),
        ));
    }
    if let Some(n) = d.stream_error_after {
        frames.truncate(n.max(1));
        frames.push(ev("error", json!({"type":"error","error":{"type":"overloaded_error","message":"mock upstream failure mid-stream"}})));
    } else if let Some(n) = d.drop_after {
        frames.truncate(n.max(1));
        frames.push(Frame::Abort);
    } else {
        frames.push(ev("message_delta", json!({"type":"message_delta","delta":{"stop_reason":stop,"stop_sequence":null},"usage":{"output_tokens":output_tokens}})));
        frames.push(ev("message_stop", json!({"type":"message_stop"})));
    }
    let delay = d
        .chunk_delay_ms
        .map(Duration::from_millis)
        .unwrap_or(shared.config.chunk_delay);
    sse_response(&shared, frames, delay)
}
