//! Translation as one table of (caller's wire x provider's wire): the request sent upstream,
//! the stream transform, and the complete answer, each one exhaustive `match` on the pair.
//! Guard-outbound runs here on complete answers, on the caller-format body (what leaves).

use crate::config::ProviderKind;
use crate::error::{GatewayError, Wire};
use crate::guard::Guard;
use crate::pipeline::request::{codec, ChatRequest, Surface};
use crate::stream::{Frames, Render, Transform};
use crate::upstream::transport::malformed;
use crate::upstream::{Endpoint, Route};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use tenantgate_providers::translate::{
    anthropic_response_to_openai, openai_request_to_anthropic, AnthropicToOpenAiStream,
};
use tenantgate_providers::translate_rev::{
    anthropic_request_to_openai, openai_response_to_anthropic, OpenAiToAnthropicStream,
};
use tenantgate_providers::{anthropic, openai, Usage};

/// The wire a provider speaks.
pub fn provider_wire(kind: ProviderKind) -> Wire {
    match kind {
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::OpenaiCompatible => Wire::OpenAi,
        ProviderKind::Anthropic | ProviderKind::Demo => Wire::Anthropic,
    }
}

/// A call's (caller, provider) wires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    pub client: Wire,
    pub provider: Wire,
    /// The endpoint the call came in on (its answer's final shape).
    pub surface: Surface,
}

impl Pair {
    pub fn of(req: &ChatRequest, route: &Route) -> Pair {
        Pair {
            client: req.wire,
            provider: provider_wire(route.provider.kind),
            surface: req.surface,
        }
    }

    /// The provider endpoint a chat call goes to.
    pub fn endpoint(self) -> Endpoint {
        match self.provider {
            Wire::OpenAi => Endpoint::Chat,
            Wire::Anthropic => Endpoint::Messages,
        }
    }

    /// Names the pair in the response cache's key: an answer cached for one caller wire, or
    /// one surface, is never served to another (a chat answer is never a Responses answer).
    pub fn cache_label(self) -> &'static str {
        match (self.surface, self.provider) {
            (Surface::ChatCompletions, Wire::OpenAi) => "openai-chat",
            (Surface::ChatCompletions, Wire::Anthropic) => "openai-chat-from-anthropic",
            (Surface::Messages, Wire::Anthropic) => "anthropic-messages",
            (Surface::Messages, Wire::OpenAi) => "anthropic-messages-from-openai",
            (Surface::Responses, Wire::OpenAi) => "openai-responses",
            (Surface::Responses, Wire::Anthropic) => "openai-responses-from-anthropic",
            (Surface::Completions, Wire::OpenAi) => "openai-completions",
            (Surface::Completions, Wire::Anthropic) => "openai-completions-from-anthropic",
        }
    }
}

/// The request as the provider takes it. `bound` is the output bound after the tenant's cap.
pub fn request(
    pair: Pair,
    req: &mut ChatRequest,
    route: &Route,
    bound: Option<u64>,
) -> Result<Map<String, Value>, GatewayError> {
    let provider = &route.provider;
    let model = &route.upstream_model;
    let body = std::mem::take(&mut req.body);
    match (pair.client, pair.provider) {
        (Wire::OpenAi, Wire::OpenAi) => {
            let mut body = body;
            openai::rewrite_chat_for_upstream(&mut body, model, req.stream);
            if let (None, Some(b)) = (req.max_tokens, bound) {
                // OpenAI's own API wants max_completion_tokens; older compatible servers
                // know max_tokens.
                let field = match provider.kind {
                    ProviderKind::OpenaiCompatible => "max_tokens",
                    ProviderKind::Openai
                    | ProviderKind::Azure
                    | ProviderKind::Anthropic
                    | ProviderKind::Demo => "max_completion_tokens",
                };
                body.insert(field.into(), json!(b));
            }
            Ok(body)
        }
        (Wire::OpenAi, Wire::Anthropic) => {
            let default_max = bound.unwrap_or(u64::from(route.default_max_tokens));
            openai_request_to_anthropic(&body, model, default_max).map_err(codec)
        }
        (Wire::Anthropic, Wire::Anthropic) => {
            let mut body = body;
            match provider.kind {
                // The demo model answers with the name it was called by.
                ProviderKind::Demo => {}
                ProviderKind::Anthropic
                | ProviderKind::Openai
                | ProviderKind::Azure
                | ProviderKind::OpenaiCompatible => {
                    body.insert("model".into(), json!(model));
                }
            }
            Ok(body)
        }
        (Wire::Anthropic, Wire::OpenAi) => {
            let mut body = anthropic_request_to_openai(&body, model).map_err(codec)?;
            let openai_hosted = matches!(provider.kind, ProviderKind::Openai | ProviderKind::Azure);
            if openai_hosted {
                if let Some(v) = body.remove("max_tokens") {
                    body.insert("max_completion_tokens".into(), v);
                }
            }
            Ok(body)
        }
    }
}

/// How the provider's stream becomes the caller's. `prompt_estimate` is the prompt as
/// admission counted it (an OpenAI stream's usage arrives last; Anthropic's `message_start`
/// carries input tokens first). The frames are in the caller's wire (what the stream guard
/// scans); the surface's render reshapes them last.
pub fn stream(pair: Pair, req: &ChatRequest, prompt_estimate: u64) -> Transform {
    let frames = match (pair.client, pair.provider) {
        (Wire::OpenAi, Wire::OpenAi) => Frames::OpenAiPassthrough {
            include_usage: req.include_usage,
            usage: None,
            done: false,
        },
        (Wire::OpenAi, Wire::Anthropic) => {
            Frames::AnthropicToOpenAi(AnthropicToOpenAiStream::new(&req.model, req.include_usage))
        }
        (Wire::Anthropic, Wire::Anthropic) => {
            Frames::AnthropicPassthrough(anthropic::StreamUsage::default())
        }
        (Wire::Anthropic, Wire::OpenAi) => Frames::OpenAiToAnthropic(
            OpenAiToAnthropicStream::with_prompt_estimate(&req.model, prompt_estimate),
        ),
    };
    let render = match pair.surface {
        Surface::ChatCompletions | Surface::Messages => Render::Native,
        Surface::Responses => Render::Responses(Box::new(
            tenantgate_providers::responses::ChatToResponsesStream::new(&req.model),
        )),
        Surface::Completions => Render::Completions,
    };
    Transform::new(frames, render)
}

/// The provider's complete answer as the caller's, through guard-outbound, with its usage.
/// A passthrough body is scanned raw and only parsed if the scan finds something.
pub fn response(
    pair: Pair,
    provider: &str,
    bytes: Bytes,
    model: &str,
    guard: &Guard<'_>,
) -> Result<(Bytes, Option<Usage>), GatewayError> {
    let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).map_err(|_| malformed(provider));
    let render = |v: &Value| {
        serde_json::to_vec(v)
            .map(Bytes::from)
            .map_err(|_| GatewayError::Internal)
    };
    match (pair.client, pair.provider) {
        (Wire::OpenAi, Wire::OpenAi) => {
            let usage = openai::response_usage(&bytes).map_err(|_| malformed(provider))?;
            Ok((guard.guard_passthrough(bytes, false)?, usage))
        }
        (Wire::Anthropic, Wire::Anthropic) => {
            let usage = anthropic::usage_from(&parse(&bytes)?);
            Ok((guard.guard_passthrough(bytes, true)?, usage))
        }
        (Wire::OpenAi, Wire::Anthropic) => {
            let mut out = anthropic_response_to_openai(&parse(&bytes)?, model);
            let usage = openai::usage_from(&out);
            guard.guard_openai_response(&mut out)?;
            Ok((render(&out)?, usage))
        }
        (Wire::Anthropic, Wire::OpenAi) => {
            let mut out = openai_response_to_anthropic(&parse(&bytes)?, model);
            let usage = anthropic::usage_from(&out);
            guard.guard_anthropic_response(&mut out)?;
            Ok((render(&out)?, usage))
        }
    }
}

/// A cached answer (stored in the caller's wire) re-checked under the tenant's guard policy as
/// it is now.
pub fn cached(pair: Pair, bytes: Bytes, guard: &Guard<'_>) -> Result<Bytes, GatewayError> {
    guard.guard_passthrough(bytes, pair.client == Wire::Anthropic)
}
