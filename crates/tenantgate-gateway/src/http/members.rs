//! Tenant self-service for identity and settings: the caller (`/me`), API keys, OIDC members,
//! the tenant's own model narrowing, its settings, and the break-glass grants made on it.
//! The tenant is always the caller's. Members see only what is theirs (their own keys);
//! tenant admins configure the tenant. Another tenant's key or member answers 404, exactly
//! like a missing one.

use super::roles::{Member, TenantAdmin};
use super::tenant::{json_body, ok};
use crate::error::GatewayError;
use crate::pipeline::compose::st;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tenantgate_core::{Credential, KeyId, NewApiKey, Role};

/// `GET /tenant/v1/me`: who the credential verified as.
pub(super) async fn me(Member(ctx): Member) -> Response {
    ok(async {
        let p = &ctx.principal;
        let (kind, issuer) = match &p.credential {
            Credential::ApiKey(_) => ("api_key", None),
            Credential::Token { issuer, .. } => ("oidc", Some(issuer.clone())),
        };
        Ok(Json(json!({
            "tenant": {"id": ctx.tenant.id, "slug": ctx.tenant.slug, "name": ctx.tenant.display_name},
            "role": p.role,
            "user": p.user,
            "credential": {"kind": kind, "id": p.credential.to_string(), "issuer": issuer},
        }))
        .into_response())
    }
    .await)
}

/// `GET /tenant/v1/keys`: the tenant's keys (never the secrets). A member sees only its own
/// key and the keys issued to its user.
pub(super) async fn list_keys(State(app): State<AppState>, Member(ctx): Member) -> Response {
    ok(async {
        let mut keys = app
            .store()
            .tenant(&ctx.principal.scope)
            .list_keys()
            .await
            .map_err(st)?;
        if ctx.principal.role == Role::Member {
            let own_key = match &ctx.principal.credential {
                Credential::ApiKey(k) => Some(k.clone()),
                Credential::Token { .. } => None,
            };
            keys.retain(|k| {
                Some(&k.id) == own_key.as_ref()
                    || (k.end_user.is_some() && k.end_user == ctx.principal.user)
            });
        }
        Ok(Json(json!({"object": "list", "data": keys})).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    name: Option<String>,
    #[serde(default = "member")]
    role: String,
    end_user: Option<String>,
    expires_at_ms: Option<i64>,
}

fn member() -> String {
    "member".into()
}

/// `POST /tenant/v1/keys`: a new key for this tenant, shown once.
pub(super) async fn create_key(
    State(app): State<AppState>,
    headers: HeaderMap,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        let b: NewKey = json_body(&app, &headers, body).await?;
        let role: Role = b
            .role
            .parse()
            .map_err(|e| GatewayError::invalid(e, "role"))?;
        if role == Role::PlatformAdmin {
            return Err(GatewayError::invalid(
                "keys carry tenant_admin or member",
                "role",
            ));
        }
        if b.name.as_ref().is_some_and(|n| n.len() > 200)
            || b.end_user
                .as_ref()
                .is_some_and(|u| u.is_empty() || u.len() > 256)
        {
            return Err(GatewayError::invalid(
                "name or end_user is too long or empty",
                "name",
            ));
        }
        if b.expires_at_ms.is_some_and(|e| e <= crate::clock::now_ms()) {
            return Err(GatewayError::invalid(
                "expires_at_ms must be in the future",
                "expires_at_ms",
            ));
        }
        let g = crate::identity::keys::generate(&app.0.secret);
        let rec = app
            .store()
            .tenant(&ctx.principal.scope)
            .create_key(&NewApiKey {
                prefix: g.prefix,
                hash: g.hash_hex,
                name: b.name,
                role,
                end_user: b.end_user,
                expires_at_ms: b.expires_at_ms,
            })
            .await
            .map_err(st)?;
        app.reload_auth(false).await.ok();
        Ok((
            StatusCode::CREATED,
            Json(json!({"key": g.plaintext, "record": rec})),
        )
            .into_response())
    }
    .await)
}

/// `DELETE /tenant/v1/keys/{key}`: revokes one of this tenant's keys, on every replica at its
/// next snapshot reload.
pub(super) async fn revoke_key(
    State(app): State<AppState>,
    Path(key): Path<String>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        let id = KeyId::parse(&key).map_err(|_| GatewayError::NotFound)?;
        app.store()
            .tenant(&ctx.principal.scope)
            .revoke_key(&id)
            .await
            .map_err(st)?;
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"id": key, "revoked": true})).into_response())
    }
    .await)
}

/// `GET /tenant/v1/members`: OIDC users given a role in this tenant.
pub(super) async fn list_members(
    State(app): State<AppState>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        let m = app
            .store()
            .tenant(&ctx.principal.scope)
            .members()
            .await
            .map_err(st)?;
        Ok(Json(json!({"object": "list", "data": m})).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MemberRole {
    role: String,
}

/// `PUT /tenant/v1/members/{subject} {"role": "tenant_admin"|"member"}`.
pub(super) async fn put_member(
    State(app): State<AppState>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        let b: MemberRole = json_body(&app, &headers, body).await?;
        crate::bounds::check("subject", &subject, crate::bounds::MAX_USER_BYTES)?;
        let role: Role = b
            .role
            .parse()
            .map_err(|e| GatewayError::invalid(e, "role"))?;
        let m = app
            .store()
            .tenant(&ctx.principal.scope)
            .set_member(&subject, role)
            .await
            .map_err(st)?;
        app.reload_auth(false).await.ok();
        Ok(Json(m).into_response())
    }
    .await)
}

/// `DELETE /tenant/v1/members/{subject}`.
pub(super) async fn delete_member(
    State(app): State<AppState>,
    Path(subject): Path<String>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        app.store()
            .tenant(&ctx.principal.scope)
            .remove_member(&subject)
            .await
            .map_err(st)?;
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"subject": subject, "removed": true})).into_response())
    }
    .await)
}

/// `GET /tenant/v1/models`: what the platform allows this tenant, what the tenant narrowed it
/// to, and the models callable now (exactly what `/v1/models` lists).
pub(super) async fn get_models(State(app): State<AppState>, Member(ctx): Member) -> Response {
    ok(async {
        Ok(Json(json!({
            "platform_allowed": ctx.tenant.allowed_models,
            "enabled": ctx.tenant.enabled_models,
            "callable": app.visible_models(&ctx),
        }))
        .into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnabledModels {
    enabled: Option<Vec<String>>,
}

/// `PUT /tenant/v1/models {"enabled": [...] | null}`: narrows the platform's allow-list. A
/// model the platform does not allow cannot be enabled.
pub(super) async fn put_models(
    State(app): State<AppState>,
    headers: HeaderMap,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        let b: EnabledModels = json_body(&app, &headers, body).await?;
        if let Some(list) = &b.enabled {
            for m in list {
                crate::bounds::check("enabled", m, crate::bounds::MAX_MODEL_BYTES)?;
            }
            let ceiling = &ctx.tenant.allowed_models;
            if let Some(m) = list
                .iter()
                .find(|m| !ceiling.iter().any(|c| c == "*" || c == *m))
            {
                return Err(GatewayError::invalid(
                    format!("the platform does not allow model {m:?} for this tenant"),
                    "enabled",
                ));
            }
        }
        app.store()
            .tenant(&ctx.principal.scope)
            .set_enabled_models(b.enabled.as_deref())
            .await
            .map_err(st)?;
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"enabled": b.enabled})).into_response())
    }
    .await)
}

/// `GET /tenant/v1/settings`: the tenant's own record.
pub(super) async fn get_settings(
    State(app): State<AppState>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        let t = app
            .store()
            .tenant(&ctx.principal.scope)
            .get()
            .await
            .map_err(st)?;
        Ok(Json(t).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Settings {
    display_name: Option<String>,
}

/// `PATCH /tenant/v1/settings {"display_name"}`.
pub(super) async fn patch_settings(
    State(app): State<AppState>,
    headers: HeaderMap,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        let b: Settings = json_body(&app, &headers, body).await?;
        let store = app.store();
        let t = store.tenant(&ctx.principal.scope);
        if let Some(name) = &b.display_name {
            t.set_display_name(name).await.map_err(st)?;
        }
        app.reload_auth(false).await.ok();
        Ok(Json(t.get().await.map_err(st)?).into_response())
    }
    .await)
}

/// `GET /tenant/v1/break-glass`: every break-glass grant platform admins took on this tenant.
pub(super) async fn grants(State(app): State<AppState>, TenantAdmin(ctx): TenantAdmin) -> Response {
    ok(async {
        let g = app
            .store()
            .tenant(&ctx.principal.scope)
            .break_glass_grants()
            .await
            .map_err(st)?;
        Ok(Json(json!({"object": "list", "data": g})).into_response())
    }
    .await)
}
