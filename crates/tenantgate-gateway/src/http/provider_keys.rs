//! Bring your own key: a tenant admin stores the tenant's own credential for a configured
//! provider (`/tenant/v1/provider-keys`). From the next snapshot reload (this replica's at
//! once) every call of the tenant to that provider uses it, and only it: the tenant's own
//! endpoint (`upstream::endpoints`; `pipeline::authorize::reach`), never the platform's
//! credential as a fallback. The key is sealed with the tenant's keys, so shredding the tenant
//! destroys it; it is never returned, listed, audited or logged.
//!
//! A tenant admin sets the key only, never where it is sent: the endpoint keeps the base URL a
//! platform admin gave the tenant, or else the platform's own for that provider. A tenant
//! choosing the URL would make the gateway a proxy into wherever it points (SSRF).

use super::roles::TenantAdmin;
use super::tenant::{json_body, ok};
use super::RequestId;
use crate::error::GatewayError;
use crate::pipeline::compose::st;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use tenantgate_audit::EventType;
use tenantgate_store::endpoints::EndpointSecret;

/// The body of [`put`]. No `Debug`: it holds the key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutKey {
    api_key: String,
    /// Azure only: the API version the tenant's deployment speaks.
    #[serde(default)]
    api_version: Option<String>,
}

/// `GET /tenant/v1/provider-keys`: the providers the tenant has its own credential (or
/// endpoint) for, with the base URL and revision; never a key.
pub(super) async fn list(State(app): State<AppState>, TenantAdmin(ctx): TenantAdmin) -> Response {
    ok(async {
        let data = app
            .keyring()
            .tenant_endpoints(app.store(), &ctx.principal.scope)
            .list()
            .await
            .map_err(st)?;
        Ok(Json(json!({"object": "list", "data": data})).into_response())
    }
    .await)
}

/// `PUT /tenant/v1/provider-keys/{provider}` with `{"api_key", "api_version"?}`.
pub(super) async fn put(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        let b: PutKey = json_body(&app, &headers, body).await?;
        crate::bounds::check("provider", &provider, crate::bounds::MAX_NAME_BYTES)?;
        let platform = app.0.catalog.provider(&provider).ok_or_else(|| {
            GatewayError::invalid(
                format!("no provider {provider:?} is configured"),
                "provider",
            )
        })?;
        let own = app
            .keyring()
            .tenant_endpoints(app.store(), &ctx.principal.scope);
        // The base URL a platform admin set for the tenant stays; otherwise the platform's.
        let base_url = match own
            .list()
            .await
            .map_err(st)?
            .into_iter()
            .find(|e| e.provider == provider)
        {
            Some(e) => e.base_url,
            None => platform.base_url().to_owned(),
        };
        let mut endpoint = EndpointSecret {
            base_url,
            api_key: b.api_key.clone(),
            api_version: b.api_version.clone(),
        };
        drop(b);
        crate::upstream::endpoints::validate(&app.0.config, &provider, &mut endpoint)?;
        let info = own
            .set(&provider, &endpoint)
            .await
            .map_err(crate::error::store_err)?;
        drop(endpoint);
        record(
            &app,
            &ctx,
            &rid,
            json!({
                "action": "tenant.provider_key.set",
                "provider": info.provider,
                "revision": info.revision,
            }),
        )
        .await?;
        app.reload_auth(false).await.ok();
        Ok(Json(info).into_response())
    }
    .await)
}

/// `DELETE /tenant/v1/provider-keys/{provider}`: the tenant's calls to that provider take the
/// platform's credential again (a `dedicated` tenant's: none).
pub(super) async fn delete(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(provider): Path<String>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        crate::bounds::check("provider", &provider, crate::bounds::MAX_NAME_BYTES)?;
        app.keyring()
            .tenant_endpoints(app.store(), &ctx.principal.scope)
            .remove(&provider)
            .await
            .map_err(st)?;
        record(
            &app,
            &ctx,
            &rid,
            json!({"action": "tenant.provider_key.remove", "provider": provider}),
        )
        .await?;
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"provider": provider, "removed": true})).into_response())
    }
    .await)
}

/// The change in the tenant's chain, naming the provider (the key never).
async fn record(
    app: &AppState,
    ctx: &crate::identity::TenantContext,
    rid: &RequestId,
    detail: Value,
) -> Result<(), GatewayError> {
    crate::audit::event(
        app.recorder(),
        ctx,
        &format!("{}-change", rid.0),
        EventType::ConfigurationChange,
        200,
        detail,
    )
    .await
}
