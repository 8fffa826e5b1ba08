//! Provider wire formats as pure functions: no sockets, no runtime.
//!
//! - [`sse`]: incremental Server-Sent Events framing (parse and write).
//! - [`openai`] / [`anthropic`]: the parts of each wire format the gateway reads or rewrites.
//! - [`translate`]: OpenAI chat <-> Anthropic messages, requests, responses and streams.
//! - [`demo`]: the built-in offline demo model (speaks the Anthropic format; OpenAI callers reach
//!   it through [`translate`], like any Anthropic model).
//! - [`responses`] / [`completions`]: OpenAI's Responses API and legacy completions as
//!   surfaces over chat: requests read into chat requests, chat answers rendered back.
//! - [`tokens`]: token counting with a real BPE tokenizer (tiktoken `o200k_base`).
//!
//! Architecture Invariant: this crate does no I/O; the gateway owns the one HTTP transport.

pub mod anthropic;
pub mod completions;
pub mod demo;
pub mod embed;
pub mod openai;
pub mod responses;
pub mod sse;
pub mod tokens;
pub mod translate;
pub mod translate_rev;

use serde::Serialize;

/// Token usage of one call, in the provider-neutral form the gateway accounts with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A request the codecs refuse, with the parameter at fault (OpenAI's `param`).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct CodecError {
    pub message: String,
    pub param: Option<String>,
}

impl CodecError {
    pub fn new(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A client string quoted in an error message, bounded (a client can send anything there).
pub(crate) fn bounded(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}
