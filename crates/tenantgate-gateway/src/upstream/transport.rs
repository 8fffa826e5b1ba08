//! Sending a request to a provider and reading its answer: over HTTP for real providers, in
//! process for the offline demo model, both as the same [`Answer`] so nothing above this
//! module branches on which.

use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::upstream::{status_error, transport_error, Endpoint, Provider};
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use serde_json::{json, Map, Value};
use tenantgate_providers::{anthropic, demo, embed, sse, tokens};

/// A provider's successful answer: a complete JSON body, or its SSE bytes as they arrive.
pub enum Answer {
    Json(Bytes),
    Stream(BoxStream<'static, Result<Bytes, GatewayError>>),
}

/// Sends `body` to the provider's `ep`. A non-2xx answer is the matching error; a JSON answer
/// is read whole.
pub async fn call(
    provider: &Provider,
    ep: Endpoint,
    upstream_model: &str,
    body: &Map<String, Value>,
    stream: bool,
) -> Result<Answer, GatewayError> {
    match provider.kind {
        ProviderKind::Demo => demo_answer(ep, upstream_model, body, stream),
        ProviderKind::Openai
        | ProviderKind::Azure
        | ProviderKind::OpenaiCompatible
        | ProviderKind::Anthropic => {
            let bytes = serde_json::to_vec(body).map_err(|_| GatewayError::Internal)?;
            let resp = provider.send(ep, upstream_model, bytes).await?;
            if !resp.status().is_success() {
                return Err(status_error_of(&provider.name, resp).await);
            }
            if stream {
                let name = provider.name.clone();
                return Ok(Answer::Stream(
                    resp.bytes_stream()
                        .map(move |r| r.map_err(|e| transport_error(&name, &e)))
                        .boxed(),
                ));
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| transport_error(&provider.name, &e))?;
            Ok(Answer::Json(bytes))
        }
    }
}

/// Reads a provider's non-2xx response into the matching error.
async fn status_error_of(provider: &str, resp: reqwest::Response) -> GatewayError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.bytes().await.unwrap_or_default();
    status_error(provider, status, retry_after, &body)
}

/// A provider answered 2xx with a body that is not what its API returns.
pub fn malformed(provider: &str) -> GatewayError {
    GatewayError::UpstreamFailed(format!(
        "provider {provider:?} returned a malformed response"
    ))
}

/// The offline demo model: Anthropic messages (plain, or as the SSE bytes a real provider
/// would send, so the demo goes through exactly the streaming path of a real model) and
/// OpenAI-format embeddings.
fn demo_answer(
    ep: Endpoint,
    model: &str,
    body: &Map<String, Value>,
    stream: bool,
) -> Result<Answer, GatewayError> {
    match ep {
        Endpoint::Messages => {
            let meta = anthropic::messages_meta(body).map_err(crate::error::codec)?;
            let req = Value::Object(body.clone());
            if stream {
                let frames: Vec<Result<Bytes, GatewayError>> = demo::stream_events(&req, &meta)
                    .into_iter()
                    .map(|(e, d)| Ok(sse::named_frame(e, &d.to_string())))
                    .collect();
                return Ok(Answer::Stream(futures_util::stream::iter(frames).boxed()));
            }
            let out = demo::respond(&req, &meta);
            Ok(Answer::Json(Bytes::from(
                serde_json::to_vec(&out).map_err(|_| GatewayError::Internal)?,
            )))
        }
        Endpoint::Embeddings => {
            let out = demo_embeddings(body, model)?;
            Ok(Answer::Json(Bytes::from(
                serde_json::to_vec(&out).map_err(|_| GatewayError::Internal)?,
            )))
        }
        // The demo model speaks the Anthropic wire: the translation table never sends it
        // an OpenAI chat request.
        Endpoint::Chat => Err(GatewayError::Internal),
    }
}

fn demo_embeddings(req: &Map<String, Value>, model: &str) -> Result<Value, GatewayError> {
    use base64::Engine;
    let inputs: Vec<&str> = match &req["input"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| GatewayError::InvalidRequest {
                    message: "the demo embedder accepts strings only".into(),
                    param: Some("input".into()),
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(GatewayError::InvalidRequest {
                message: "'input' must be a string or an array of strings".into(),
                param: Some("input".into()),
            })
        }
    };
    let dims = match req.get("dimensions").and_then(Value::as_u64) {
        None => embed::DEMO_DIMS,
        Some(d) if (1..=3072).contains(&d) => d as usize,
        Some(_) => {
            return Err(GatewayError::InvalidRequest {
                message: "'dimensions' must be between 1 and 3072".into(),
                param: Some("dimensions".into()),
            })
        }
    };
    let base64 = req.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut total = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            total += tokens::count(text);
            let v = embed::embed(text, dims);
            let emb = if base64 {
                json!(base64::engine::general_purpose::STANDARD.encode(embed::le_bytes(&v)))
            } else {
                json!(v)
            };
            json!({"object":"embedding","index":i,"embedding":emb})
        })
        .collect();
    Ok(
        json!({"object":"list","data":data,"model":model,"usage":{"prompt_tokens":total,"total_tokens":total}}),
    )
}
