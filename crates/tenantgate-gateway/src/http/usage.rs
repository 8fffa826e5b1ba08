//! Tenant self-service for money: effective limits, the kill switch, usage. The tenant is
//! always the caller's.

use super::roles::{Member, TenantAdmin};
use super::tenant::{json_body, ok};
use crate::error::GatewayError;
use crate::limits::Counter;
use crate::pipeline::compose::st;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tenantgate_core::Role;
use tenantgate_store::audit::{UsageGroup, UsageOwner};

/// `GET /tenant/v1/limits`: the plan, the tenant's overrides, the effective limits, the kill
/// switch, and this month's and today's counted usage.
pub(super) async fn get_limits(
    State(app): State<AppState>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        let tenant = ctx.principal.scope.tenant_id();
        let (overrides, kill_switch) = ctx.view.limits(tenant);
        let adm = &app.0.rec.admission;
        let effective = adm.config.plan(ctx.tenant.plan).overlay(&overrides);
        let now = crate::clock::now_ms();
        let (day, month) = (crate::limits::day(now), crate::limits::month(now));
        let counter = |c: Counter| async move { adm.counter(tenant, &c).await.unwrap_or(0) };
        Ok(Json(json!({
            "plan": ctx.tenant.plan,
            "overrides": overrides,
            "effective": effective,
            "kill_switch": kill_switch,
            "counted": {
                "day_tokens": counter(Counter::DailyTokens { day }).await,
                "month_tokens": counter(Counter::MonthlyTokens { month }).await,
                "month_spend_micros": counter(Counter::MonthlySpend { month }).await,
            },
        }))
        .into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KillSwitch {
    enabled: bool,
}

/// `PUT /tenant/v1/kill-switch {"enabled": true}`: stops (or resumes) the tenant's model calls
/// on every replica at their next request.
pub(super) async fn put_kill_switch(
    State(app): State<AppState>,
    headers: HeaderMap,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        let k: KillSwitch = json_body(&app, &headers, body).await?;
        app.store()
            .tenant(&ctx.principal.scope)
            .set_kill_switch(k.enabled)
            .await
            .map_err(st)?;
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"kill_switch": k.enabled})).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageQuery {
    from: Option<i64>,
    to: Option<i64>,
    group_by: Option<String>,
}

/// `GET /tenant/v1/usage?from=&to=&group_by=minute|day|model|key|user`: requests, tokens and spend
/// of settled model calls (from the audit log, so as current as the last response).
pub(super) async fn usage(
    State(app): State<AppState>,
    Query(q): Query<UsageQuery>,
    Member(ctx): Member,
) -> Response {
    ok(async {
        // Members see their own usage only: their user's, or their key's without a user.
        let credential = ctx.principal.credential.to_string();
        let only = match (ctx.principal.role, &ctx.principal.user) {
            (Role::Member, Some(u)) => Some(UsageOwner::User(u)),
            (Role::Member, None) => Some(UsageOwner::Key(&credential)),
            _ => None,
        };
        let group = match q.group_by.as_deref().unwrap_or("day") {
            "minute" => UsageGroup::Minute,
            "day" => UsageGroup::Day,
            "model" => UsageGroup::Model,
            "key" => UsageGroup::Key,
            "user" => UsageGroup::User,
            other => {
                return Err(GatewayError::InvalidRequest {
                    message: format!(
                        "group_by must be minute, day, model, key or user, not {:?}",
                        crate::bounds::echo(other)
                    ),
                    param: Some("group_by".into()),
                })
            }
        };
        let now = crate::clock::now_ms();
        let from = match (group, q.from) {
            (_, Some(f)) => f,
            // By minute: the last hour unless asked.
            (UsageGroup::Minute, None) => now - 3_600_000,
            (UsageGroup::Day | UsageGroup::Model | UsageGroup::Key | UsageGroup::User, None) => {
                crate::limits::month_start_ms(now)
            }
        };
        let to = q.to.unwrap_or(i64::MAX);
        // One row per minute: at most a day of them in one answer.
        if matches!(group, UsageGroup::Minute) && to.min(now) - from > 86_400_000 {
            return Err(GatewayError::InvalidRequest {
                message: "group_by=minute covers at most 24 hours: set from (and to) within a day"
                    .into(),
                param: Some("from".into()),
            });
        }
        let rows = app
            .store()
            .tenant(&ctx.principal.scope)
            .audit()
            .usage(from, to, group, only)
            .await
            .map_err(st)?;
        let data: Vec<serde_json::Value> = rows
            .into_iter()
            .map(|r| {
                let group = match group {
                    UsageGroup::Minute => r
                        .group
                        .parse::<i64>()
                        .map(|m| minute_string(m * 60_000))
                        .unwrap_or(r.group.clone()),
                    UsageGroup::Day => r
                        .group
                        .parse::<i64>()
                        .map(|d| day_string(d * 86_400_000))
                        .unwrap_or(r.group.clone()),
                    _ => r.group.clone(),
                };
                json!({"group": group, "requests": r.requests, "input_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens, "cost_micros": r.cost_micros})
            })
            .collect();
        Ok(Json(
            json!({"object": "list", "group_by": q.group_by.unwrap_or_else(|| "day".into()),
            "from": from, "to": to, "data": data}),
        )
        .into_response())
    }
    .await)
}

/// `YYYY-MM-DDTHH:MMZ` of a Unix time in milliseconds.
fn minute_string(ms: i64) -> String {
    let s = tenantgate_audit::rfc3339(ms);
    format!("{}Z", s.get(..16).unwrap_or(&s))
}

/// `YYYY-MM-DD` of a Unix time in milliseconds.
fn day_string(ms: i64) -> String {
    let s = tenantgate_audit::rfc3339(ms);
    s.get(..10).unwrap_or(&s).to_owned()
}
