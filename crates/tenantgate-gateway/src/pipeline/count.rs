//! Anthropic's `/v1/messages/count_tokens`: the tokens a messages request would be billed for
//! as the provider would be sent it (the tenant's system prompt included, its text never
//! returned), by the gateway's tokenizer (`tenantgate_providers::tokens`, an estimate for
//! non-OpenAI models). It takes the stages of a chat call up to admission: authenticated,
//! counted against the request rate windows (by `call`), the model on the tenant's
//! allow-list, the inbound guard, the system prompt; it makes no provider call, reserves
//! nothing and is recorded with zero tokens.

use super::{authorize, compose, request, Deps, Labels, Reply, TenantContext};
use crate::audit::{CallAudit, Released};
use crate::error::GatewayError;
use crate::guard;
use bytes::Bytes;
use serde_json::{Map, Value};
use std::time::Duration;

pub(super) async fn tokens(
    deps: &Deps<'_>,
    audit: &mut CallAudit,
    ctx: TenantContext,
    mut body: Map<String, Value>,
) -> Result<Released<Reply>, GatewayError> {
    audit.note("operation", "count_tokens");
    // The request has no output bound; validated as the messages request it describes.
    body.entry("max_tokens").or_insert(Value::from(1));
    let mut req = request::parse(request::Surface::Messages, body)?;
    audit.set_requested_model(&req.model);
    let call = authorize::model(deps.catalog, &deps.endpoints, ctx, &req.model).await?;
    audit.set_model(
        &req.model,
        &call.route.upstream_model,
        &call.route.provider.name,
    );
    let guard = guard::Guard::new(&call.ctx, deps.incidents);
    req.guard_inbound(&guard)?;
    guard.guard_values(&mut req.ext.variables, tenantgate_guard::Direction::Inbound)?;
    if let Some((system, policy)) = deps.prompts.system_prompt(&call.ctx, &req.ext).await? {
        req.apply_system(system, policy)?;
    }
    audit.set_prompt(&req.body);
    let n = count(&req.body);
    let out = Bytes::from(serde_json::json!({ "input_tokens": n }).to_string());
    let labels = Labels {
        tenant: call.ctx.tenant.slug.clone(),
        model: req.model.clone(),
        usage: None,
    };
    let mut released = Reply::json(out, None, labels, Duration::ZERO);
    // Nothing was generated and nothing billed.
    released.tokens = Some(tenantgate_audit::Tokens {
        input: 0,
        output: 0,
    });
    Ok(released)
}

/// Tokens of a messages request: the system prompt, each message's text (other blocks, such
/// as tool use and results, as their JSON), and the tool definitions, plus a few per message
/// for the turn markers the provider adds.
fn count(body: &Map<String, Value>) -> u64 {
    use tenantgate_providers::tokens::count as tok;
    const PER_MESSAGE: u64 = 3;
    let mut n = body.get("system").map_or(0, |s| tok(&compose::text_of(s)));
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        n += PER_MESSAGE;
        match &m["content"] {
            Value::Array(blocks) => {
                for b in blocks {
                    n += match b["type"].as_str() {
                        Some("text") => tok(b["text"].as_str().unwrap_or_default()),
                        _ => tok(&b.to_string()),
                    };
                }
            }
            c => n += tok(&compose::text_of(c)),
        }
    }
    if let Some(tools) = body.get("tools") {
        n += tok(&tools.to_string());
    }
    n
}
