//! `/admin/v1` routes of offboarding (`lifecycle::offboard`): the deletion window, its
//! cancellation, the deletion certificate, and the platform chain's export.

use super::roles::Platform;
use super::tenant::ok;
use crate::error::GatewayError;
use crate::lifecycle::offboard::{self, OffboardError};
use crate::pipeline::compose::st;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tenantgate_core::{PlatformAdmin, Tenant, TenantStatus};

fn offboard_err(e: OffboardError) -> GatewayError {
    match e {
        OffboardError::Store(e) => st(e),
        OffboardError::Audit(m) | OffboardError::Keys(m) => {
            tracing::error!(error = %m, "offboarding step failed");
            GatewayError::Unavailable(m)
        }
    }
}

async fn find(app: &AppState, admin: &PlatformAdmin, tenant: &str) -> Result<Tenant, GatewayError> {
    app.store()
        .platform(admin)
        .find_tenant(tenant)
        .await
        .map_err(st)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteQuery {
    window_secs: Option<u64>,
}

/// `DELETE /admin/v1/tenants/{tenant}[?window_secs=N]` (or `{"window_secs": N}`): starts
/// offboarding. The tenant is `pending_deletion` (every call refused, on every replica)
/// until the window ends (`lifecycle.deletion_window_secs` if none is given); 0 finalizes
/// now and answers with the deletion certificate.
pub(super) async fn delete_tenant(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    Query(q): Query<DeleteQuery>,
    Platform(admin): Platform,
    body: Body,
) -> Response {
    ok(async {
        // `{"window_secs": N}` is small: 1 KiB is plenty.
        let body = super::read_body(body, 1024).await?;
        let from_body = if body.iter().all(u8::is_ascii_whitespace) {
            DeleteQuery::default()
        } else {
            serde_json::from_slice::<DeleteQuery>(&body)
                .map_err(|e| GatewayError::invalid(format!("invalid body: {e}"), "window_secs"))?
        };
        let window = q
            .window_secs
            .or(from_body.window_secs)
            .unwrap_or(app.0.config.lifecycle.deletion_window_secs);
        if window > crate::config::MAX_DELETION_WINDOW_SECS {
            return Err(GatewayError::invalid(
                format!(
                    "window_secs must be at most {}",
                    crate::config::MAX_DELETION_WINDOW_SECS
                ),
                "window_secs",
            ));
        }
        let t = find(&app, &admin, &tenant).await?;
        match t.status {
            TenantStatus::Active | TenantStatus::Suspended | TenantStatus::PendingDeletion => {}
            TenantStatus::Deleted => return Err(GatewayError::NotFound),
        }
        let (t, pending) = offboard::request(
            crate::control::AuditSink::Writer(&app.0.rec.log),
            app.store(),
            &admin,
            &t.id,
            window,
        )
        .await
        .map_err(offboard_err)?;
        app.reload_auth(false).await.ok();
        let mut certificate = serde_json::Value::Null;
        let mut t = t;
        if window == 0 {
            let maintenance = offboard::maintenance_store(&app).await.map_err(st)?;
            let r = offboard::finalize(&app, &maintenance, &admin, &t.id).await;
            // On PostgreSQL an owner's pool of its own; on SQLite the shared store itself.
            match maintenance.db() {
                tenantgate_store::Db::Postgres(_) => maintenance.close().await,
                tenantgate_store::Db::Sqlite(_) => {}
            }
            certificate = r.map_err(offboard_err)?.unwrap_or_default();
            t = find(&app, &admin, t.id.as_str()).await?;
        }
        Ok(
            Json(json!({"tenant": t, "deletion": pending, "certificate": certificate}))
                .into_response(),
        )
    }
    .await)
}

/// `POST /admin/v1/tenants/{tenant}/restore`: cancels a pending deletion (the tenant's prior
/// status back); a live tenant is answered unchanged. 409 once finalization began.
pub(super) async fn restore_tenant(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    Platform(admin): Platform,
) -> Response {
    ok(async {
        let t = find(&app, &admin, &tenant).await?;
        let t = match t.status {
            TenantStatus::Active | TenantStatus::Suspended => t,
            TenantStatus::PendingDeletion => {
                let t = offboard::restore(
                    crate::control::AuditSink::Writer(&app.0.rec.log),
                    app.store(),
                    &admin,
                    &t.id,
                )
                .await
                .map_err(offboard_err)?;
                app.reload_auth(false).await.ok();
                t
            }
            TenantStatus::Deleted => return Err(GatewayError::NotFound),
        };
        Ok(Json(t).into_response())
    }
    .await)
}

/// `GET /admin/v1/tenants/{tenant}/deletion-certificate`: the certificate record from the
/// platform's chain and the export (JSON lines, `export_jsonl`) that proves it under a
/// signed checkpoint; 404 for a tenant not finalized.
pub(super) async fn deletion_certificate(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    Platform(admin): Platform,
) -> Response {
    ok(async {
        let t = find(&app, &admin, &tenant).await?;
        let found = offboard::certificate(app.store(), &admin, &app.0.rec.log.signer, &t.id)
            .await
            .map_err(offboard_err)?;
        let Some((record, lines)) = found else {
            return Err(GatewayError::NotFound);
        };
        Ok(Json(json!({
            "tenant": t.id,
            "certificate": record,
            "export_jsonl": tenantgate_audit::jsonl(&lines),
        }))
        .into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportQuery {
    from: Option<i64>,
    to: Option<i64>,
    format: Option<String>,
}

/// `GET /admin/v1/audit/export`: the platform's own chain (lifecycle steps, deletion
/// certificates) in the tenant export's format, so `tenantgate audit verify` checks it.
pub(super) async fn platform_audit_export(
    State(app): State<AppState>,
    Query(q): Query<ExportQuery>,
    Platform(admin): Platform,
) -> Response {
    ok(async {
        let (csv, window) = super::audit::export_query(q.from, q.to, q.format.as_deref())?;
        let platform = tenantgate_core::TenantId::platform_chain();
        let store = app.store();
        let p = store.platform(&admin);
        let chain = p.chain(&platform);
        let lines = super::audit::build_chain_export(&app, &chain, &platform, window, None).await?;
        Ok(super::audit::download(&lines, csv, "platform"))
    }
    .await)
}
