//! `GET /tenant/v1/export`: the tenant's export bundle (`lifecycle/export.rs`), streamed. The
//! tenant is the credential's; the archive is written by a task on the server's tracker into a
//! bounded channel the response body reads, so neither the archive nor a document is ever whole
//! in memory, and a client that stops reading stops the export.

use super::roles::TenantAdmin;
use super::tenant::ok;
use super::RequestId;
use crate::lifecycle::export::{write_bundle, Exported, Out, Source};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::json;
use tenantgate_audit::{Actor, EventType, Window};

pub(super) async fn export(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        let scope = ctx.principal.scope.clone();
        // All time, with its proofs: the audit export route's own code (it signs the head
        // through the writer if no checkpoint covers it yet).
        let all = Window {
            from_ms: 0,
            to_ms: i64::MAX,
        };
        let audit = super::audit::build_export(&app, &scope, all).await?;
        let (mut out, mut rx) = Out::channel();
        let task_app = app.clone();
        let file_name = format!(
            "attachment; filename=\"tenant-{}.tar\"",
            scope.tenant_id().as_str()
        );
        app.recorder().spawn(async move {
            let app = task_app;
            let src = Source {
                store: app.store(),
                keyring: app.keyring(),
                scope: &scope,
                signer: &app.0.rec.log.signer,
                audit,
            };
            match write_bundle(src, &mut out).await {
                Ok(done) => {
                    if let Err(e) = record(&app, &ctx, &rid.0, &done).await {
                        tracing::error!(tenant = %scope.tenant_id(), error = %e,
                            "an export was sent but could not be recorded");
                    }
                }
                Err(e) => {
                    tracing::warn!(tenant = %scope.tenant_id(), error = %e, "export failed");
                    out.fail().await;
                }
            }
        });
        let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok((
            [
                ("content-type", "application/x-tar".to_owned()),
                ("content-disposition", file_name),
            ],
            Body::from_stream(body),
        )
            .into_response())
    }
    .await)
}

/// The export, with its manifest's SHA-256, in the tenant's chain and the platform's.
async fn record(
    app: &AppState,
    ctx: &crate::identity::TenantContext,
    request_id: &str,
    done: &Exported,
) -> Result<(), String> {
    let detail = json!({
        "action": "tenant.export",
        "manifest_sha256": done.manifest_sha256,
        "chain_head": done.chain_head,
        "bytes": done.bytes,
    });
    crate::audit::event(
        app.recorder(),
        ctx,
        request_id,
        EventType::DataAccess,
        200,
        detail.clone(),
    )
    .await
    .map_err(|e| format!("{e:?}"))?;
    // The platform chain names the tenant by id and the actor by role only.
    let actor = Actor {
        kind: "tenant".into(),
        key_id: None,
        user: None,
        role: Some(ctx.principal.role.to_string()),
    };
    let entry = crate::audit::event_record(
        request_id,
        EventType::DataAccess,
        actor,
        crate::lifecycle::platform_detail(ctx.principal.scope.tenant_id(), detail),
    );
    app.0.rec.log.append_platform(entry).await.map(|_| ())
}
