//! `/admin/v1/incidents/...`: the incident playbooks' commands for platform admins
//! (`lifecycle::incident`, shared with `tenantgate incident`), each recorded in the platform's
//! chain and in the tenant's when it names one. A change reaches this replica's snapshot at
//! once and every other replica's at its next reload.

use super::roles::Platform;
use super::tenant::{json_body, ok};
use crate::control::AuditSink;
use crate::error::GatewayError;
use crate::lifecycle::incident::{self, evidence, scope, FreezeTarget};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

fn sink(app: &AppState) -> AuditSink<'_> {
    AuditSink::Writer(&app.0.rec.log)
}

/// `{"tenant"|"route"|"model": ..., "reason": ...}`: exactly one target.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FreezeBody {
    tenant: Option<String>,
    route: Option<String>,
    model: Option<String>,
    reason: String,
}

/// `POST /admin/v1/incidents/freezes`: holds the matching calls on every replica (403
/// `incident_freeze` in the caller's wire) until a platform admin lifts it.
pub(super) async fn create_freeze(
    State(app): State<AppState>,
    headers: HeaderMap,
    Platform(admin): Platform,
    body: Body,
) -> Response {
    ok(async {
        let b: FreezeBody = json_body(&app, &headers, body).await?;
        let target = match (b.tenant, b.route, b.model) {
            (Some(t), None, None) => FreezeTarget::Tenant(t),
            (None, Some(r), None) => FreezeTarget::Route(r),
            (None, None, Some(m)) => FreezeTarget::Model(m),
            _ => {
                return Err(GatewayError::invalid(
                    "name exactly one of tenant, route, model",
                    "tenant",
                ))
            }
        };
        let f = incident::freeze(
            sink(&app),
            app.store(),
            &app.0.config,
            &admin,
            target,
            &b.reason,
        )
        .await?;
        app.reload_auth(false).await.ok();
        Ok((StatusCode::CREATED, Json(f)).into_response())
    }
    .await)
}

/// `DELETE /admin/v1/incidents/freezes/{freeze}`: lifts it (404 if there is none).
pub(super) async fn delete_freeze(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Platform(admin): Platform,
) -> Response {
    ok(async {
        let f = incident::unfreeze(sink(&app), app.store(), &admin, &id).await?;
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"lifted": f})).into_response())
    }
    .await)
}

/// `GET /admin/v1/incidents/status`: freezes, drains, kill switches, and the answering
/// replica's circuit breakers (each replica keeps its own).
pub(super) async fn status(State(app): State<AppState>, Platform(admin): Platform) -> Response {
    ok(async {
        let s = incident::status(app.store(), &admin).await?;
        let mut v = json!(s);
        v["circuits"] = json!(app.0.breakers.view());
        Ok(Json(v).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopeBody {
    needle: String,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
}

/// `POST /admin/v1/incidents/scope` with `{"needle", "from_ms"?, "to_ms"?}` (a body, not a
/// query: the needle stays out of URLs and request logs).
pub(super) async fn scope(
    State(app): State<AppState>,
    headers: HeaderMap,
    Platform(admin): Platform,
    body: Body,
) -> Response {
    ok(async {
        let b: ScopeBody = json_body(&app, &headers, body).await?;
        let q = scope::Query {
            needle: b.needle,
            from_ms: b.from_ms.unwrap_or(0),
            to_ms: b.to_ms.unwrap_or(i64::MAX),
        };
        let out = scope::scope(sink(&app), app.store(), app.keyring(), &admin, &q).await?;
        Ok(Json(out).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Window {
    from: Option<i64>,
    to: Option<i64>,
}

/// `GET /admin/v1/incidents/evidence/{tenant}?from=&to=` (ms): the signed evidence bundle
/// (tar), verifiable with `tenantgate incident verify`.
pub(super) async fn evidence(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    Query(w): Query<Window>,
    Platform(admin): Platform,
) -> Response {
    ok(async {
        let window = tenantgate_audit::Window {
            from_ms: w.from.unwrap_or(0),
            to_ms: w.to.unwrap_or(i64::MAX),
        };
        let (bytes, m) = evidence::build(
            sink(&app),
            app.store(),
            app.keyring(),
            &app.0.rec.log.signer,
            &admin,
            &tenant,
            window,
        )
        .await?;
        Ok((
            [
                ("content-type", "application/x-tar".to_owned()),
                (
                    "content-disposition",
                    format!("attachment; filename=\"evidence-{}.tar\"", m.tenant),
                ),
            ],
            Body::from(bytes),
        )
            .into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ContainBody {
    tenant: String,
    reason: String,
}

/// `POST /admin/v1/incidents/contain` with `{"tenant", "reason"}`: the containment's steps,
/// each with what it did.
pub(super) async fn contain(
    State(app): State<AppState>,
    headers: HeaderMap,
    Platform(admin): Platform,
    body: Body,
) -> Response {
    ok(async {
        let b: ContainBody = json_body(&app, &headers, body).await?;
        let steps = incident::contain(
            sink(&app),
            app.store(),
            app.keyring(),
            &admin,
            &b.tenant,
            &b.reason,
        )
        .await?;
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"tenant": b.tenant, "steps": steps})).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DrainBody {
    reason: String,
}

/// `PUT /admin/v1/incidents/drains/{provider}` with `{"reason"}`: the routing drain, recorded
/// as an incident command too.
pub(super) async fn drain(
    State(app): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    Platform(admin): Platform,
    body: Body,
) -> Response {
    ok(async {
        let b: DrainBody = json_body(&app, &headers, body).await?;
        let d = incident::drain(
            sink(&app),
            app.store(),
            &app.0.config,
            &admin,
            &provider,
            &b.reason,
        )
        .await?;
        app.reload_auth(false).await.ok();
        Ok(Json(d).into_response())
    }
    .await)
}

/// `DELETE /admin/v1/incidents/drains/{provider}`.
pub(super) async fn undrain(
    State(app): State<AppState>,
    Path(provider): Path<String>,
    Platform(admin): Platform,
) -> Response {
    ok(async {
        incident::undrain(sink(&app), app.store(), &app.0.config, &admin, &provider).await?;
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"provider": provider, "drained": false})).into_response())
    }
    .await)
}
