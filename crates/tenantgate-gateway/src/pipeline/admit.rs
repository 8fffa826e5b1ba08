//! Stage admit: the kill switch, then every rate limit and budget of the tenant, key and end
//! user (`crate::limits`), reserving the call's maximum. Settled by the call's record.

use crate::clock::now_ms;
use crate::error::GatewayError;
use crate::limits::{Admission, Ask, Counted, Reservation};
use crate::pipeline::{AuthorizedCall, TenantContext};
use serde_json::{Map, Value};

/// The request-rate part of admission, at the front of a model call (right after
/// authentication, before the body is read): the call uses one request of the tenant's, key's
/// and end user's per-minute windows even if it is refused later.
pub async fn count_request(
    admission: &Admission,
    ctx: &TenantContext,
    request_id: &str,
) -> Result<Option<Counted>, GatewayError> {
    let tenant = ctx.principal.scope.tenant_id();
    let (overrides, _) = ctx.view.limits(tenant);
    let limits = admission.config.plan(ctx.tenant.plan).overlay(&overrides);
    let key = ctx.principal.credential.to_string();
    admission
        .count_request(
            tenant,
            &key,
            ctx.principal.user.as_deref(),
            &limits,
            request_id,
            now_ms(),
        )
        .await
}

/// What a call may consume at most, as admission reserves it.
pub struct Bound<'a> {
    /// The request as it will be sent, for the tokenizer.
    pub prompt: &'a Map<String, Value>,
    /// Prompt tokens still to be added after admission (retrieved context), at most.
    pub later_prompt_tokens: u64,
    /// Output tokens at most (every choice).
    pub max_output: u64,
}

/// What a reservation is for.
pub enum Part {
    /// A call of its own; its request already counted by [`count_request`] if `Some`.
    Call(Option<Counted>),
    /// Work inside a call that is already admitted (a chat's retrieval query embedding): no
    /// request or concurrency slot of its own.
    Within,
}

/// Reserves the call's maximum (prompt tokens by the tokenizer plus the output bound, priced at
/// the dearest of its targets' prices) after the kill switch.
pub async fn reserve(
    admission: &Admission,
    call: &AuthorizedCall,
    request_id: &str,
    bound: Bound<'_>,
    part: Part,
) -> Result<Reservation, GatewayError> {
    let tenant = call.ctx.principal.scope.tenant_id();
    let (overrides, kill_switch) = call.ctx.view.limits(tenant);
    if kill_switch {
        return Err(GatewayError::InsufficientQuota(
            "Spending is stopped: this tenant's kill switch is on.".into(),
        ));
    }
    let limits = admission
        .config
        .plan(call.ctx.tenant.plan)
        .overlay(&overrides);
    // The prompt as it stands is counted; what retrieval may still add is reserved at its
    // bound (and counted into the prompt once known, `Reservation::prompt_tokens`).
    let (prompt_tokens, later) = if limits.counts_tokens() {
        let text = serde_json::to_string(bound.prompt).unwrap_or_default();
        (
            tenantgate_providers::tokens::count(&text),
            bound.later_prompt_tokens,
        )
    } else {
        (0, 0)
    };
    // The most any of its targets costs: the call may be served by any of them.
    let pricing = call.reserve_pricing();
    let key = call.ctx.principal.credential.to_string();
    let ask = Ask {
        tenant,
        key: &key,
        user: call.ctx.principal.user.as_deref(),
        request_id,
        limits: &limits,
        tokens: prompt_tokens + later + bound.max_output,
        prompt_tokens,
        cost: pricing.cost(prompt_tokens + later, 0, bound.max_output),
        now_ms: now_ms(),
    };
    match part {
        Part::Call(counted) => admission.reserve_counted(ask, counted).await,
        Part::Within => admission.reserve_within(ask).await,
    }
}
