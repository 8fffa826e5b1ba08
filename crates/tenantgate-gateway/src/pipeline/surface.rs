//! The last step of a complete chat answer: rendered in the shape of the endpoint it came in
//! on. The answer was guarded (and cached) in chat's shape, so what leaves on every surface
//! passed guard-outbound; the call's record keeps the rendered body, what the caller got.

use super::request::Surface;
use super::{Payload, Reply};
use crate::audit::Released;
use crate::error::GatewayError;
use bytes::Bytes;
use serde_json::Value;
use tenantgate_providers::{completions, responses};

pub(super) fn render_json(
    surface: Surface,
    answer: Released<Reply>,
) -> Result<Released<Reply>, GatewayError> {
    let reshape: fn(&Value) -> Value = match surface {
        Surface::ChatCompletions | Surface::Messages => return Ok(answer),
        Surface::Responses => responses::chat_response_to_responses,
        Surface::Completions => completions::chat_response_to_completion,
    };
    let Released {
        mut value,
        body,
        tokens,
    } = answer;
    let Payload::Json(bytes) = &value.payload else {
        // A stream renders its own frames.
        return Ok(Released {
            value,
            body,
            tokens,
        });
    };
    let chat: Value = serde_json::from_slice(bytes).map_err(|_| GatewayError::Internal)?;
    let out = Bytes::from(serde_json::to_vec(&reshape(&chat)).map_err(|_| GatewayError::Internal)?);
    value.payload = Payload::Json(out.clone());
    Ok(Released {
        value,
        body: body.map(|_| out),
        tokens,
    })
}
