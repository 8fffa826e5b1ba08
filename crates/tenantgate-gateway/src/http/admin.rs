//! Platform API, `/admin/v1`, for callers whose OIDC token carries `platform_admin` from an
//! issuer trusted to grant it. Platform admins run tenants (create, suspend, delete, limits)
//! but do not read their data: prompts, audit bodies and knowledge are reachable only under a
//! break-glass grant, which is recorded in the tenant's own audit chain, visible to its admins
//! (`GET /tenant/v1/break-glass`), expires by itself (at most one hour), and makes every read
//! under it a `break_glass` record of its own, written before the data is released.

use super::roles::{BreakGlass, Platform};
use super::tenant::{json_body, ok};
use crate::error::GatewayError;
use crate::pipeline::compose::{st, store_err};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use tenantgate_audit::EventType;
use tenantgate_core::{PlanTier, PlatformAdmin, Tenant, TenantScope, TenantStatus};

/// The longest a break-glass grant may last.
pub const MAX_GRANT_SECS: u64 = 3600;

/// A tenant that is not deleted, by slug or id; a deleted one answers 404.
async fn find_live(
    app: &AppState,
    admin: &PlatformAdmin,
    tenant: &str,
) -> Result<Tenant, GatewayError> {
    let t = find(app, admin, tenant).await?;
    if t.status == TenantStatus::Deleted {
        return Err(GatewayError::NotFound);
    }
    Ok(t)
}

/// A tenant named in the path (slug or id); a deleted one is still found (its chain lives on).
async fn find(app: &AppState, admin: &PlatformAdmin, tenant: &str) -> Result<Tenant, GatewayError> {
    app.store()
        .platform(admin)
        .find_tenant(tenant)
        .await
        .map_err(st)
}

async fn record(
    app: &AppState,
    admin: &PlatformAdmin,
    tenant: &Tenant,
    event: EventType,
    detail: serde_json::Value,
) -> Result<(), GatewayError> {
    crate::control::record_operator_event(
        crate::control::AuditSink::Writer(&app.0.rec.log),
        admin,
        &tenant.id,
        event,
        detail,
    )
    .await
    .map_err(|_| GatewayError::Unavailable("the audit log could not record this action".into()))
}

/// `GET /admin/v1/health`: liveness of the store, the audit writer and the snapshot.
pub(super) async fn health(State(app): State<AppState>, _: Platform) -> Response {
    ok(async {
        let store = app.store().revision().await.is_ok();
        let index = app.0.auth.load();
        let body = json!({
            "status": if store { "ok" } else { "degraded" },
            "store": store,
            "revision": index.revision,
            "tenants": index.tenant_count(),
            "audit_write_failures": app.0.rec.log.stats.failures.load(std::sync::atomic::Ordering::Relaxed),
        });
        let status = if store { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        Ok((status, Json(body)).into_response())
    }
    .await)
}

/// `GET /admin/v1/plans`: each plan's default limits.
pub(super) async fn plans(State(app): State<AppState>, _: Platform) -> Response {
    ok(async {
        let limits = &app.0.rec.admission.config;
        let data: Vec<_> = PlanTier::ALL
            .iter()
            .map(|p| json!({"plan": p, "limits": limits.plan(*p)}))
            .collect();
        Ok(Json(json!({"object": "list", "data": data})).into_response())
    }
    .await)
}

/// `GET /admin/v1/tenants`: every tenant's metadata (no tenant data).
/// With `limit` (at most 500), one page by slug: `after` (the last slug seen) and `prefix`
/// narrow it, and the answer says `has_more` and the `total`.
pub(super) async fn list_tenants(
    State(app): State<AppState>,
    Query(q): Query<TenantsQuery>,
    Platform(admin): Platform,
) -> Response {
    ok(async {
        let platform = app.store().platform(&admin);
        let Some(limit) = q.limit else {
            let list = platform.list_tenants().await.map_err(st)?;
            return Ok(Json(json!({"object": "list", "data": list})).into_response());
        };
        if limit == 0 || limit > 500 {
            return Err(GatewayError::InvalidRequest {
                message: "limit must be between 1 and 500".into(),
                param: Some("limit".into()),
            });
        }
        let (after, prefix) = (q.after.unwrap_or_default(), q.prefix.unwrap_or_default());
        crate::bounds::check("after", &after, crate::bounds::MAX_NAME_BYTES)?;
        crate::bounds::check("prefix", &prefix, crate::bounds::MAX_NAME_BYTES)?;
        let (list, total) = platform
            .list_tenants_page(&after, &prefix, limit + 1)
            .await
            .map_err(st)?;
        let has_more = list.len() > limit as usize;
        let page: Vec<_> = list.into_iter().take(limit as usize).collect();
        Ok(
            Json(json!({"object": "list", "data": page, "has_more": has_more, "total": total}))
                .into_response(),
        )
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantsQuery {
    limit: Option<u32>,
    after: Option<String>,
    prefix: Option<String>,
}

/// `POST /admin/v1/tenants`: onboarding in one operation (`lifecycle::onboard`): a complete
/// tenant or nothing. With an `Idempotency-Key` header a retry returns the first result
/// (`Idempotent-Replayed: true`) and the key cannot be reused for another request.
pub(super) async fn create_tenant(
    State(app): State<AppState>,
    headers: HeaderMap,
    Platform(admin): Platform,
    body: Body,
) -> Response {
    use crate::lifecycle::onboard::{OnboardError, Onboarding, TenantSpec};
    ok(async {
        let spec: TenantSpec = json_body(&app, &headers, body).await?;
        let key = match headers.get("idempotency-key") {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                GatewayError::invalid("an idempotency key is visible ASCII", "idempotency-key")
            })?),
        };
        let onboarding = Onboarding::of_server(&app, &admin, "admin_api");
        let done = onboarding.run(&spec, key).await;
        // Whatever happened, this replica's snapshot follows the control plane now.
        app.reload_auth(false).await.ok();
        let done = done.map_err(|e| match e {
            OnboardError::Invalid { field, message } => GatewayError::invalid(message, field),
            OnboardError::Conflict(m) => GatewayError::Conflict(m),
            e @ OnboardError::Failed { .. } => GatewayError::Unavailable(e.to_string()),
        })?;
        let mut resp = (StatusCode::CREATED, Json(done.body)).into_response();
        if done.replayed {
            resp.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
        }
        Ok(resp)
    }
    .await)
}

/// `GET /admin/v1/tenants/{tenant}`: one tenant's metadata.
pub(super) async fn get_tenant(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    Platform(admin): Platform,
) -> Response {
    ok(async { Ok(Json(find(&app, &admin, &tenant).await?).into_response()) }.await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchTenant {
    status: Option<String>,
    plan: Option<PlanTier>,
    allowed_models: Option<Vec<String>>,
    max_tokens_per_request: Option<Option<u32>>,
}

/// `PATCH /admin/v1/tenants/{tenant}`: suspend or resume, change the plan, set the model
/// allow-list or the per-request token cap. Every replica applies it at its next snapshot
/// reload (the revision moves; PostgreSQL notifies); recorded in the tenant's and the
/// platform's chains, naming what changed.
pub(super) async fn patch_tenant(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Platform(admin): Platform,
    body: Body,
) -> Response {
    ok(async {
        let b: PatchTenant = json_body(&app, &headers, body).await?;
        let mut t = find_live(&app, &admin, &tenant).await?;
        let status = match b.status.as_deref() {
            None => None,
            Some("active") => Some(TenantStatus::Active),
            Some("suspended") => Some(TenantStatus::Suspended),
            Some(_) => {
                return Err(GatewayError::invalid(
                    "status must be active or suspended",
                    "status",
                ))
            }
        };
        if let Some(m) = &b.allowed_models {
            tenantgate_core::validate_model_policy(m, None)
                .map_err(|e| GatewayError::invalid(e, "allowed_models"))?;
        }
        if b.max_tokens_per_request == Some(Some(0)) {
            return Err(GatewayError::invalid(
                "max_tokens_per_request must be at least 1",
                "max_tokens_per_request",
            ));
        }
        let p = app.store().platform(&admin);
        let mut changed = serde_json::Map::new();
        if let Some(s) = status {
            t = p.set_status(&t.id, s).await.map_err(st)?;
            changed.insert("status".into(), json!(s));
        }
        if let Some(plan) = b.plan {
            t = p.set_plan(&t.id, plan).await.map_err(st)?;
            changed.insert("plan".into(), json!(plan));
        }
        if b.allowed_models.is_some() {
            changed.insert("allowed_models".into(), json!(true));
        }
        if b.max_tokens_per_request.is_some() {
            changed.insert("max_tokens_per_request".into(), json!(true));
        }
        if b.allowed_models.is_some() || b.max_tokens_per_request.is_some() {
            let models = b.allowed_models.unwrap_or_else(|| t.allowed_models.clone());
            let cap = b.max_tokens_per_request.unwrap_or(t.max_tokens_per_request);
            t = p.set_models(&t.id, &models, cap).await.map_err(st)?;
        }
        crate::lifecycle::record_step(
            crate::control::AuditSink::Writer(&app.0.rec.log),
            &admin,
            &t.id,
            EventType::ConfigurationChange,
            json!({"action": "tenant.update", "via": "admin_api", "changed": changed}),
        )
        .await
        .map_err(|_| {
            GatewayError::Unavailable("the audit log could not record this action".into())
        })?;
        app.reload_auth(false).await.ok();
        Ok(Json(t).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantRequest {
    tenant: String,
    reason: String,
    duration_secs: u64,
}

/// `POST /admin/v1/break-glass {"tenant", "reason", "duration_secs" <= 3600}`: the grant is
/// recorded in the tenant's chain before it exists.
pub(super) async fn create_grant(
    State(app): State<AppState>,
    headers: HeaderMap,
    Platform(admin): Platform,
    body: Body,
) -> Response {
    ok(async {
        let b: GrantRequest = json_body(&app, &headers, body).await?;
        if b.duration_secs == 0 || b.duration_secs > MAX_GRANT_SECS {
            return Err(GatewayError::invalid(
                "duration_secs must be 1..=3600",
                "duration_secs",
            ));
        }
        // Refused before anything is recorded: no grant record for a grant that is not made.
        tenantgate_store::identity::validate_reason(&b.reason).map_err(st)?;
        let t = find_live(&app, &admin, &b.tenant).await?;
        let expires = crate::clock::now_ms() + (b.duration_secs * 1000) as i64;
        record(
            &app,
            &admin,
            &t,
            EventType::BreakGlass,
            json!({
                "action": "break_glass.grant", "reason": b.reason, "expires_at_ms": expires,
            }),
        )
        .await?;
        let g = app
            .store()
            .platform(&admin)
            .create_grant(&t.id, &b.reason, expires)
            .await
            .map_err(st)?;
        Ok((StatusCode::CREATED, Json(g)).into_response())
    }
    .await)
}

/// `GET /admin/v1/break-glass`: every grant, newest first.
pub(super) async fn list_grants(
    State(app): State<AppState>,
    Platform(admin): Platform,
) -> Response {
    ok(async {
        let g = app
            .store()
            .platform(&admin)
            .grants(None)
            .await
            .map_err(st)?;
        Ok(Json(json!({"object": "list", "data": g})).into_response())
    }
    .await)
}

/// `DELETE /admin/v1/break-glass/{grant}`: ends a grant early.
pub(super) async fn revoke_grant(
    State(app): State<AppState>,
    Path(grant): Path<String>,
    Platform(admin): Platform,
) -> Response {
    ok(async {
        let g = app
            .store()
            .platform(&admin)
            .revoke_grant(&grant)
            .await
            .map_err(st)?;
        let t = find(&app, &admin, g.tenant_id.as_str()).await?;
        record(
            &app,
            &admin,
            &t,
            EventType::BreakGlass,
            json!({"action": "break_glass.revoke", "grant": g.id}),
        )
        .await?;
        Ok(Json(g).into_response())
    }
    .await)
}

/// `PUT /admin/v1/tenants/{tenant}/endpoints/{provider}` with `{"base_url", "api_key",
/// "api_version"?}`: the tenant's own endpoint for a configured provider. Its calls to that
/// provider go there from the next snapshot reload (this replica's at once), with its key
/// only. The answer, the listing and the audit record never hold the key.
pub(super) async fn put_endpoint(
    State(app): State<AppState>,
    Path((tenant, provider)): Path<(String, String)>,
    headers: HeaderMap,
    Platform(admin): Platform,
    body: Body,
) -> Response {
    ok(async {
        let b: PutEndpoint = json_body(&app, &headers, body).await?;
        let t = find_live(&app, &admin, &tenant).await?;
        let info = crate::control::set_endpoint(
            crate::control::AuditSink::Writer(&app.0.rec.log),
            app.store(),
            app.keyring(),
            &app.0.config,
            &admin,
            &t,
            &provider,
            crate::control::EndpointSecret {
                base_url: b.base_url,
                api_key: b.api_key,
                api_version: b.api_version,
            },
            crate::control::Via::AdminApi,
        )
        .await?;
        app.reload_auth(false).await.ok();
        Ok(Json(info).into_response())
    }
    .await)
}

/// The body of [`put_endpoint`]. No `Debug`: it holds the key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutEndpoint {
    base_url: String,
    api_key: String,
    #[serde(default)]
    api_version: Option<String>,
}

/// `GET /admin/v1/tenants/{tenant}/endpoints`: the tenant's own endpoints (providers, base
/// URLs, api_versions; never keys).
pub(super) async fn list_endpoints(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    Platform(admin): Platform,
) -> Response {
    ok(async {
        let t = find_live(&app, &admin, &tenant).await?;
        let data = crate::control::list_endpoints(app.store(), app.keyring(), &admin, &t).await?;
        Ok(Json(json!({"object": "list", "data": data})).into_response())
    }
    .await)
}

/// `DELETE /admin/v1/tenants/{tenant}/endpoints/{provider}`: the tenant's calls to that
/// provider take the platform's endpoint again (a `dedicated` tenant's: none, its models are
/// no longer available to it).
pub(super) async fn delete_endpoint(
    State(app): State<AppState>,
    Path((tenant, provider)): Path<(String, String)>,
    Platform(admin): Platform,
) -> Response {
    ok(async {
        let t = find_live(&app, &admin, &tenant).await?;
        crate::control::remove_endpoint(
            crate::control::AuditSink::Writer(&app.0.rec.log),
            app.store(),
            app.keyring(),
            &admin,
            &t,
            &provider,
            crate::control::Via::AdminApi,
        )
        .await?;
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"provider": provider, "removed": true})).into_response())
    }
    .await)
}

/// The audited break-glass path: a scope on `tenant` for this admin, only while it holds an
/// active grant, and only on a route whose handler took the `BreakGlass` extractor. The read is recorded in the tenant's chain (write-ahead, fail closed) before
/// the scope exists. Without a grant: 403, itself recorded as denied access.
async fn break_glass(
    app: &AppState,
    bg: &BreakGlass,
    tenant: &str,
    request_id: &str,
    what: &str,
) -> Result<(Tenant, TenantScope), GatewayError> {
    let admin = bg.admin();
    let t = find(app, admin, tenant).await?;
    let now = crate::clock::now_ms();
    let grant = app
        .store()
        .platform(admin)
        .active_grant(&t.id, now)
        .await
        .map_err(st)?;
    let Some(grant) = grant else {
        let denied = GatewayError::Forbidden(
            "tenant data needs an active break-glass grant (POST /admin/v1/break-glass)".into(),
        );
        crate::control::record_operator_outcome(
            crate::control::AuditSink::Writer(&app.0.rec.log),
            admin,
            &t.id,
            EventType::AccessDenied,
            denied.status().as_u16(),
            json!({"action": "break_glass.read", "read": what, "reason": "no active grant"}),
        )
        .await
        .map_err(|_| {
            GatewayError::Unavailable("the audit log could not record this action".into())
        })?;
        return Err(denied);
    };
    let mut entry = crate::audit::event_record(
        request_id,
        EventType::BreakGlass,
        crate::audit::operator_actor(admin),
        json!({"action": "break_glass.read", "read": what, "grant": grant.id}),
    );
    entry.record.status = 200;
    app.0
        .rec
        .log
        .append_operator(admin, &t.id, entry)
        .await
        .map_err(|_| {
            GatewayError::Unavailable("the audit log could not record this read".into())
        })?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the audited break-glass path: an active grant was checked and the read recorded in the tenant's chain"
    )]
    let scope = TenantScope::from_break_glass(t.id.clone());
    Ok((t, scope))
}

/// `GET /admin/v1/tenants/{tenant}/prompts` (break-glass): the tenant's prompts with their
/// active templates.
pub(super) async fn bg_prompts(
    State(app): State<AppState>,
    Extension(rid): Extension<super::RequestId>,
    Path(tenant): Path<String>,
    bg: BreakGlass,
) -> Response {
    ok(async {
        let (_, scope) = break_glass(&app, &bg, &tenant, &rid.0, "prompts").await?;
        let prompts = app.keyring().prompts(app.store(), &scope);
        let mut data = Vec::new();
        for p in prompts.list().await.map_err(store_err)? {
            let active = prompts.get(&p.name, None).await.ok();
            data.push(json!({"prompt": p, "active": active}));
        }
        Ok(Json(json!({"object": "list", "data": data})).into_response())
    }
    .await)
}

/// `GET /admin/v1/tenants/{tenant}/audit/export` (break-glass): the tenant's audit export,
/// sealed bodies opened.
pub(super) async fn bg_audit_export(
    State(app): State<AppState>,
    Extension(rid): Extension<super::RequestId>,
    Path(tenant): Path<String>,
    Query(q): Query<super::audit::AuditQuery>,
    bg: BreakGlass,
) -> Response {
    ok(async {
        let (t, scope) = break_glass(&app, &bg, &tenant, &rid.0, "audit").await?;
        super::audit::export_response(&app, &scope, &t.slug, &q).await
    }
    .await)
}

/// `GET /admin/v1/tenants/{tenant}/knowledge-bases` (break-glass): the tenant's knowledge
/// bases and their documents.
pub(super) async fn bg_knowledge(
    State(app): State<AppState>,
    Extension(rid): Extension<super::RequestId>,
    Path(tenant): Path<String>,
    bg: BreakGlass,
) -> Response {
    ok(async {
        let (_, scope) = break_glass(&app, &bg, &tenant, &rid.0, "knowledge").await?;
        let store = app.store();
        let handle = store.tenant(&scope);
        let mut data = Vec::new();
        for kb in handle.knowledge_bases().await.map_err(st)? {
            let docs = handle.documents(&kb.id).await.map_err(st)?;
            data.push(json!({"knowledge_base": kb, "documents": docs}));
        }
        Ok(Json(json!({"object": "list", "data": data})).into_response())
    }
    .await)
}
