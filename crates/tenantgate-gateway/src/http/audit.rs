//! The tenant's audit API (`/tenant/v1/audit...`), and the middleware that records every
//! tenant-API call in the caller's chain with the status the caller got: changes as
//! `configuration_change`, reads as `data_access`, role refusals as `access_denied`, other
//! refusals and failures as `request_failed`. The tenant is the caller's, always.

use super::roles::{Member, TenantAdmin};
use super::tenant::{json_body, ok};
use super::RequestId;
use crate::error::{GatewayError, Wire};
use crate::pipeline::compose::st;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use tenantgate_audit::{AuditPolicy, Checkpoint, EventType, ExportLine, Window, GENESIS};
use tenantgate_core::TenantScope;
use tenantgate_store::audit::{AuditFilter, StoredRecord};

/// Records a tenant-API call in the caller's chain before its response is released. Runs
/// after the handler (so it sees the outcome); an unauthenticated call has no chain.
pub(super) async fn record_tenant_call(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    path: MatchedPath,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let via_console = req.extensions().get::<super::ViaConsole>().is_some();
    let ctx = app.resolve_tenant(req.headers()).await.ok();
    let resp = next.run(req).await;
    let Some(ctx) = ctx else { return resp };
    let status = resp.status();
    let event = control_event(&method, status);
    let mut detail = json!({"method": method.as_str(), "route": path.as_str()});
    if via_console {
        detail["via"] = json!("console");
    }
    match crate::audit::event(app.recorder(), &ctx, &rid.0, event, status.as_u16(), detail).await {
        Ok(()) => resp,
        Err(e) => e.render(Wire::OpenAi),
    }
}

/// The event a control-plane call is, by the status its caller got: only a call that
/// succeeded is a change or a read; a refusal by role is `access_denied`; anything else that
/// did not complete (400, 404, 409, 5xx) is `request_failed`, never a change.
pub(super) fn control_event(method: &Method, status: StatusCode) -> EventType {
    match status.as_u16() {
        200..=399 if method == Method::GET || method == Method::HEAD => EventType::DataAccess,
        200..=399 => EventType::ConfigurationChange,
        401 | 403 => EventType::AccessDenied,
        _ => EventType::RequestFailed,
    }
}

/// Query parameters shared by the record query and the export. Times are Unix milliseconds.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    from: Option<i64>,
    to: Option<i64>,
    user: Option<String>,
    key_id: Option<String>,
    model: Option<String>,
    event: Option<String>,
    status: Option<u16>,
    before_seq: Option<u64>,
    limit: Option<u32>,
    format: Option<String>,
}

fn record_json(r: &StoredRecord) -> Result<Value, GatewayError> {
    serde_json::from_str(&r.record).map_err(|_| GatewayError::Internal)
}

/// `GET /tenant/v1/audit/records`: the tenant's records, newest first, filtered.
pub(super) async fn records(
    State(app): State<AppState>,
    Query(q): Query<AuditQuery>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        if let Some(e) = &q.event {
            if tenantgate_audit::EventType::parse(e).is_none() {
                return Err(GatewayError::invalid(
                    format!("unknown event type {:?}", crate::bounds::echo(e)),
                    "event",
                ));
            }
        }
        for (param, v) in [
            ("user", &q.user),
            ("key_id", &q.key_id),
            ("model", &q.model),
        ] {
            if let Some(v) = v {
                crate::bounds::check(param, v, crate::bounds::MAX_FILTER_BYTES)?;
            }
        }
        let limit = q.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(GatewayError::invalid(
                "limit must be between 1 and 1000",
                "limit",
            ));
        }
        let f = AuditFilter {
            from_ms: q.from,
            to_ms: q.to,
            user: q.user,
            key_id: q.key_id,
            model: q.model,
            event: q.event,
            status: q.status,
            before_seq: q.before_seq,
            limit,
        };
        let rows = app
            .store()
            .tenant(&ctx.principal.scope)
            .audit()
            .query(&f)
            .await
            .map_err(st)?;
        let next = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| r.seq))
            .flatten();
        let data = rows
            .iter()
            .map(|r| {
                Ok(json!({"seq": r.seq, "hash": hex::encode(r.hash), "record": record_json(r)?}))
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        Ok(Json(json!({"object": "list", "data": data, "next_before_seq": next})).into_response())
    }
    .await)
}

/// `GET /tenant/v1/audit/export?from=&to=&format=jsonl|csv`: every record in the window with
/// what verifies it offline (`tenantgate audit verify`).
pub(super) async fn export(
    State(app): State<AppState>,
    Query(q): Query<AuditQuery>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(export_response(&app, &ctx.principal.scope, &ctx.tenant.slug, &q).await)
}

/// An export of the window `q` names, as a download.
pub(super) async fn export_response(
    app: &AppState,
    scope: &TenantScope,
    slug: &str,
    q: &AuditQuery,
) -> Result<Response, GatewayError> {
    let (csv, window) = export_query(q.from, q.to, q.format.as_deref())?;
    let lines = build_export(app, scope, window).await?;
    Ok(download(&lines, csv, slug))
}

/// An export request's format (`true`: CSV) and window; the tenant's export and the
/// platform chain's take the same query.
pub(super) fn export_query(
    from: Option<i64>,
    to: Option<i64>,
    format: Option<&str>,
) -> Result<(bool, Window), GatewayError> {
    let csv = match format {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(f) => {
            return Err(GatewayError::invalid(
                format!(
                    "format must be jsonl or csv, not {:?}",
                    crate::bounds::for_log(f)
                ),
                "format",
            ))
        }
    };
    let window = Window {
        from_ms: from.unwrap_or(0),
        to_ms: to.unwrap_or(i64::MAX),
    };
    if window.from_ms > window.to_ms {
        return Err(GatewayError::invalid("from must not be after to", "from"));
    }
    Ok((csv, window))
}

/// An export as a download named `audit-{name}.jsonl` (or `.csv`).
pub(super) fn download(lines: &[ExportLine], csv: bool, name: &str) -> Response {
    let (body, ctype, ext) = if csv {
        (
            tenantgate_audit::csv_export(lines),
            "text/csv; charset=utf-8",
            "csv",
        )
    } else {
        (
            tenantgate_audit::jsonl(lines).into_bytes(),
            "application/x-ndjson",
            "jsonl",
        )
    };
    (
        [
            ("content-type", ctype.to_owned()),
            (
                "content-disposition",
                format!("attachment; filename=\"audit-{name}.{ext}\""),
            ),
        ],
        Body::from(body),
    )
        .into_response()
}

/// Builds an export of `window`: from the checkpoint (or genesis) before its first record to
/// the checkpoint at or after its last, signing the current head if no checkpoint covers it.
pub(crate) async fn build_export(
    app: &AppState,
    scope: &TenantScope,
    window: Window,
) -> Result<Vec<ExportLine>, GatewayError> {
    let audit = app.store().tenant(scope);
    let audit = audit.audit();
    build_chain_export(app, &audit, scope.tenant_id(), window, Some(scope)).await
}

/// An export of one chain: a tenant's (with `bodies`, the scope its kept bodies open under)
/// or the platform's (`GET /admin/v1/audit/export`, deletion certificates; no bodies).
pub(crate) async fn build_chain_export(
    app: &AppState,
    audit: &tenantgate_store::audit::TenantAudit<'_>,
    chain: &tenantgate_core::TenantId,
    window: Window,
    bodies: Option<&TenantScope>,
) -> Result<Vec<ExportLine>, GatewayError> {
    let signer = &app.0.rec.log.signer;
    let tenant = chain.as_str();
    let genesis = tenantgate_audit::Anchor {
        seq: 0,
        hash: hex::encode(GENESIS),
    };
    let Some((first, last)) = audit
        .seq_range(window.from_ms, window.to_ms)
        .await
        .map_err(st)?
    else {
        return Ok(tenantgate_audit::assemble(
            tenant,
            window,
            genesis,
            Vec::new(),
            Vec::new(),
            signer,
            crate::clock::now_ms(),
        ));
    };
    // A chain that no longer extends its last signed checkpoint is not exported as if it were
    // whole: the break is what the tenant (and the operator) must see.
    if let Some(why) = app.0.rec.log.broken(chain) {
        return Err(GatewayError::AuditChainBroken(why));
    }
    let (start, _) = audit.checkpoint_around(first - 1).await.map_err(st)?;
    let (_, end) = audit.checkpoint_around(last).await.map_err(st)?;
    let end: Checkpoint = match end {
        Some(cp) => cp,
        None => {
            // Nothing signed covers the window's end yet: the writer signs the head now, with
            // the same continuity checks as its own checkpoints.
            app.0.rec.log.sign_head(chain).await.map_err(|why| {
                match app.0.rec.log.broken(chain) {
                    Some(b) => GatewayError::AuditChainBroken(b),
                    None => GatewayError::Unavailable(why),
                }
            })?
        }
    };
    crate::audit::export::assemble(
        audit,
        app.keyring(),
        signer,
        chain,
        bodies,
        window,
        start,
        end,
    )
    .await
}

/// `GET /tenant/v1/audit/public-key`: the key checkpoints and exports are signed with.
pub(super) async fn public_key(State(app): State<AppState>, _: Member) -> Response {
    Json(json!({"keys": [app.0.rec.log.signer.public_key()]})).into_response()
}

/// `GET /tenant/v1/audit-policy`.
pub(super) async fn get_policy(
    State(app): State<AppState>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        let stored = app
            .store()
            .tenant(&ctx.principal.scope)
            .audit()
            .policy()
            .await
            .map_err(st)?;
        let policy: AuditPolicy = stored
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        Ok(Json(policy).into_response())
    }
    .await)
}

/// `PUT /tenant/v1/audit-policy`: bodies kept (sealed | sha256 | redacted | none), fail
/// mode, retention.
pub(super) async fn put_policy(
    State(app): State<AppState>,
    headers: HeaderMap,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        let policy: AuditPolicy = json_body(&app, &headers, body).await?;
        policy
            .validate()
            .map_err(|m| GatewayError::invalid(m, "retention_days"))?;
        let json = serde_json::to_string(&policy).map_err(|_| GatewayError::Internal)?;
        app.store()
            .tenant(&ctx.principal.scope)
            .audit()
            .set_policy(&json)
            .await
            .map_err(st)?;
        app.reload_auth(false).await.ok();
        Ok(Json(policy).into_response())
    }
    .await)
}
