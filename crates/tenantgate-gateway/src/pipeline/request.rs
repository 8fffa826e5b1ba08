//! A chat request in the caller's wire, read once: what every stage needs to know about it
//! (model, stream, output bound, choices) and the few operations whose shape depends on the
//! wire (guard inbound, system prompt, retrieved context), each one `match` on [`Wire`].

pub(crate) use crate::error::codec;
use crate::error::{GatewayError, Wire};
use crate::guard::Guard;
use crate::pipeline::compose::{self, PromptRequest};
use serde_json::{Map, Value};
use tenantgate_providers::{anthropic, completions, openai, responses};
use tenantgate_store::prompts::ClientSystem;

/// The endpoint a chat call came in on: what its answer must look like. Responses and legacy
/// completions are OpenAI-wire chat requests inside the pipeline (read into chat at
/// [`parse`]), rendered back into their own shape as the last step
/// (`translate::Pair::cache_label`, `crate::stream::Render`, `surface::render_json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// OpenAI `/v1/chat/completions`.
    ChatCompletions,
    /// Anthropic `/v1/messages`.
    Messages,
    /// OpenAI `/v1/responses`.
    Responses,
    /// OpenAI's legacy `/v1/completions`.
    Completions,
}

impl Surface {
    /// Its `surface` label on `/metrics`.
    pub fn metrics_label(self) -> crate::telemetry::red::CallSurface {
        use crate::telemetry::red::CallSurface;
        match self {
            Surface::ChatCompletions => CallSurface::ChatCompletions,
            Surface::Messages => CallSurface::Messages,
            Surface::Responses => CallSurface::Responses,
            Surface::Completions => CallSurface::Completions,
        }
    }

    /// The wire of the request inside the pipeline (and of the caller's errors).
    pub fn wire(self) -> Wire {
        match self {
            Surface::ChatCompletions | Surface::Responses | Surface::Completions => Wire::OpenAi,
            Surface::Messages => Wire::Anthropic,
        }
    }

    /// The name in a call's audit record, for the surfaces that are not their wire's own.
    pub fn audit_label(self) -> Option<&'static str> {
        match self {
            Surface::ChatCompletions | Surface::Messages => None,
            Surface::Responses => Some("responses"),
            Surface::Completions => Some("completions"),
        }
    }
}

pub struct ChatRequest {
    /// The caller's wire: the request's shape and the shape its answer must have.
    pub wire: Wire,
    /// The endpoint it came in on (the shape its answer is rendered in at the end).
    pub surface: Surface,
    /// The request in the caller's wire, the gateway's extension removed.
    pub body: Map<String, Value>,
    /// The gateway's extension (prompt, variables, knowledge bases).
    pub ext: PromptRequest,
    pub model: String,
    pub stream: bool,
    /// OpenAI's `stream_options.include_usage` (always false on the Anthropic wire).
    pub include_usage: bool,
    /// The output bound the client set, and the parameter it set it with.
    pub max_tokens: Option<u64>,
    pub max_tokens_param: &'static str,
    /// How many choices the output bound applies to (OpenAI's `n`).
    pub choices: u64,
}

/// Reads a chat request that came in on `surface`.
pub fn parse(surface: Surface, mut body: Map<String, Value>) -> Result<ChatRequest, GatewayError> {
    let ext = compose::take_extension(&mut body)?;
    // The other OpenAI surfaces, read into a chat request once, here.
    let body = match surface {
        Surface::ChatCompletions | Surface::Messages => body,
        Surface::Responses => responses::request_to_chat(&body).map_err(codec)?,
        Surface::Completions => completions::request_to_chat(&body).map_err(codec)?,
    };
    let wire = surface.wire();
    match wire {
        Wire::OpenAi => {
            let meta = openai::chat_meta(&body).map_err(codec)?;
            let max_tokens_param = match surface {
                Surface::Responses => "max_output_tokens",
                Surface::ChatCompletions | Surface::Messages | Surface::Completions => {
                    if body.contains_key("max_completion_tokens") {
                        "max_completion_tokens"
                    } else {
                        "max_tokens"
                    }
                }
            };
            // A Responses stream ends with its usage (`response.completed`): the chat stream
            // under it always carries it.
            let include_usage = match surface {
                Surface::Responses => true,
                Surface::ChatCompletions | Surface::Messages | Surface::Completions => {
                    meta.include_usage
                }
            };
            // `max_tokens` bounds each choice: `n` choices may produce n times as much.
            let choices = body.get("n").and_then(Value::as_u64).unwrap_or(1);
            Ok(ChatRequest {
                wire,
                surface,
                body,
                ext,
                model: meta.model,
                stream: meta.stream,
                include_usage,
                max_tokens: meta.max_tokens,
                max_tokens_param,
                choices,
            })
        }
        Wire::Anthropic => {
            let meta = anthropic::messages_meta(&body).map_err(codec)?;
            Ok(ChatRequest {
                wire,
                surface,
                body,
                ext,
                model: meta.model,
                stream: meta.stream,
                include_usage: false,
                max_tokens: Some(meta.max_tokens),
                max_tokens_param: "max_tokens",
                choices: 1,
            })
        }
    }
}

impl ChatRequest {
    /// Guard inbound: everything the client wrote, whatever its role, before the tenant's own
    /// (trusted, unscanned) system prompt joins it.
    pub fn guard_inbound(&mut self, guard: &Guard<'_>) -> Result<(), GatewayError> {
        match self.wire {
            Wire::OpenAi => guard.guard_openai_request(&mut self.body),
            Wire::Anthropic => guard.guard_anthropic_request(&mut self.body),
        }
    }

    /// Places the tenant's system prompt, applying its policy to the client's own.
    pub fn apply_system(
        &mut self,
        system: String,
        policy: ClientSystem,
    ) -> Result<(), GatewayError> {
        match self.wire {
            Wire::OpenAi => compose::apply_openai(&mut self.body, system, policy),
            Wire::Anthropic => compose::apply_anthropic(&mut self.body, system, policy),
        }
    }

    /// Adds retrieved context: a system message after the leading system messages (OpenAI),
    /// or appended to `system` (Anthropic).
    pub fn add_context(&mut self, context: String) {
        match self.wire {
            Wire::OpenAi => {
                if let Some(Value::Array(messages)) = self.body.get_mut("messages") {
                    let at = messages
                        .iter()
                        .take_while(|m| {
                            matches!(m["role"].as_str(), Some("system") | Some("developer"))
                        })
                        .count();
                    messages.insert(
                        at,
                        serde_json::json!({"role": "system", "content": context}),
                    );
                }
            }
            Wire::Anthropic => {
                let system = self
                    .body
                    .get("system")
                    .map(compose::text_of)
                    .unwrap_or_default();
                let system = if system.is_empty() {
                    context
                } else {
                    format!("{system}\n\n{context}")
                };
                self.body.insert("system".into(), Value::String(system));
            }
        }
    }

    /// The retrieval query: the text of the last user message (both wires call it `user`).
    pub fn last_user_text(&self) -> Option<String> {
        let messages = self.body.get("messages")?.as_array()?;
        let m = messages.iter().rev().find(|m| m["role"] == "user")?;
        let text = compose::text_of(&m["content"]);
        (!text.trim().is_empty()).then_some(text)
    }
}
