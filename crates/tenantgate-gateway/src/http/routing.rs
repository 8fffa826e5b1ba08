//! Routing as platform admins see and steer it (the provider-outage playbook): every model's
//! targets, each provider's drain, and this replica's circuit breakers; draining a provider
//! takes it out of every model's targets on every replica, recorded in the platform's chain.

use super::roles::Platform;
use super::tenant::{json_body, ok};
use crate::control::AuditSink;
use crate::pipeline::compose::st;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// `GET /admin/v1/routing`: models and their targets, providers (drained or not), and the
/// circuits of the replica that answers.
pub(super) async fn status(State(app): State<AppState>, Platform(admin): Platform) -> Response {
    ok(async {
        let drains = app.store().platform(&admin).drains().await.map_err(st)?;
        let catalog = &app.0.catalog;
        let circuits = app.0.breakers.view();
        let models: Vec<Value> = catalog
            .routes()
            .filter_map(|r| {
                let plan = catalog.plan(&r.name)?;
                Some(json!({
                    "model": r.name,
                    "strategy": plan.strategy,
                    "fallback": plan.fallback,
                    "targets": plan.targets.iter().map(|(t, w)| json!({
                        "provider": t.provider.name,
                        "upstream_model": t.upstream_model,
                        "weight": w,
                        "drained": drains.iter().any(|d| d.provider == t.provider.name),
                        "circuit": circuits.iter().find(|c| c.endpoint == t.provider.name)
                            .map_or("closed", |c| c.state),
                    })).collect::<Vec<_>>(),
                }))
            })
            .collect();
        let providers: Vec<Value> = catalog
            .providers()
            .map(|p| {
                json!({
                    "provider": p.name,
                    "kind": p.kind,
                    "drain": drains.iter().find(|d| d.provider == p.name),
                })
            })
            .collect();
        Ok(Json(json!({
            "models": models,
            "providers": providers,
            // This replica's: each replica keeps its own circuits.
            "circuits": circuits,
            "retry_policy": app.0.config.routing,
        }))
        .into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DrainBody {
    reason: String,
}

/// `PUT /admin/v1/routing/drains/{provider}` with `{"reason"}`: no model call goes to the
/// provider (its targets are skipped; models fail over or answer 503) on every replica from
/// its next snapshot reload, this one's at once.
pub(super) async fn drain(
    State(app): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    Platform(admin): Platform,
    body: Body,
) -> Response {
    ok(async {
        let b: DrainBody = json_body(&app, &headers, body).await?;
        let d = crate::control::drain_provider(
            AuditSink::Writer(&app.0.rec.log),
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

/// `DELETE /admin/v1/routing/drains/{provider}`: the provider takes calls again (404 if it
/// was not drained).
pub(super) async fn undrain(
    State(app): State<AppState>,
    Path(provider): Path<String>,
    Platform(admin): Platform,
) -> Response {
    ok(async {
        crate::control::undrain_provider(
            AuditSink::Writer(&app.0.rec.log),
            app.store(),
            &app.0.config,
            &admin,
            &provider,
        )
        .await?;
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"provider": provider, "drained": false})).into_response())
    }
    .await)
}
