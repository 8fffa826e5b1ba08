//! Tenant self-service API, `/tenant/v1`: the tenant is the caller's (from the credential),
//! never a path, header or body value. Prompt bodies are readable by tenant admins only;
//! members see names, versions and hashes.

use super::roles::{Member, TenantAdmin};
use crate::error::{GatewayError, Wire};
use crate::identity::TenantContext;
use crate::pipeline::compose::{st, store_err, Compiled};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::io::{Read, Write};
use tenantgate_store::prompts::{ImportSet, NewVersion, PromptSettings};

type Res = Result<Response, GatewayError>;

pub(super) fn ok(r: Res) -> Response {
    r.unwrap_or_else(|e| e.render(Wire::OpenAi))
}

fn author(ctx: &TenantContext) -> String {
    match &ctx.principal.user {
        Some(u) => u.clone(),
        None => format!("key:{}", ctx.principal.credential),
    }
}

pub(super) async fn json_body<T: serde::de::DeserializeOwned>(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, GatewayError> {
    super::require_json(headers)?;
    let bytes = super::read_body(body, app.0.config.server.max_body_bytes).await?;
    serde_json::from_slice(&bytes).map_err(|e| GatewayError::BadJson(e.to_string()))
}

pub(super) async fn list(State(app): State<AppState>, Member(ctx): Member) -> Response {
    ok(async {
        let list = app
            .keyring()
            .prompts(app.store(), &ctx.principal.scope)
            .list()
            .await
            .map_err(store_err)?;
        Ok(Json(json!({"object": "list", "data": list})).into_response())
    }
    .await)
}

pub(super) async fn versions(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Member(ctx): Member,
) -> Response {
    ok(async {
        let v = app
            .keyring()
            .prompts(app.store(), &ctx.principal.scope)
            .versions(&name)
            .await
            .map_err(store_err)?;
        Ok(Json(json!({"object": "list", "data": v})).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PushBody {
    template: String,
    #[serde(default)]
    activate: bool,
}

pub(super) async fn push(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        let b: PushBody = json_body(&app, &headers, body).await?;
        // Refuse what cannot render before it becomes a version.
        Compiled::new(b.template.clone()).map_err(|e| GatewayError::InvalidRequest {
            message: format!("template syntax: {e}"),
            param: Some("template".into()),
        })?;
        let v = app
            .keyring()
            .prompts(app.store(), &ctx.principal.scope)
            .push(&name, &b.template, &author(&ctx), b.activate)
            .await
            .map_err(store_err)?;
        app.reload_auth(false).await.ok();
        Ok((StatusCode::CREATED, Json(v)).into_response())
    }
    .await)
}

/// A version number from a path or query value; bad input is a 400 in the OpenAI shape (axum's
/// own extractor rejection would be plain text).
fn version_param(v: &str, param: &str) -> Result<u32, GatewayError> {
    v.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| GatewayError::InvalidRequest {
            message: format!("'{param}' must be a positive integer"),
            param: Some(param.to_owned()),
        })
}

pub(super) async fn get_version(
    State(app): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        let version = version_param(&version, "version")?;
        let v = app
            .keyring()
            .prompts(app.store(), &ctx.principal.scope)
            .get(&name, Some(version))
            .await
            .map_err(store_err)?;
        Ok(Json(v).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActivateBody {
    version: u32,
}

pub(super) async fn activate(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        let b: ActivateBody = json_body(&app, &headers, body).await?;
        app.keyring()
            .prompts(app.store(), &ctx.principal.scope)
            .activate(&name, b.version)
            .await
            .map_err(store_err)?;
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"name": name, "active_version": b.version})).into_response())
    }
    .await)
}

pub(super) async fn diff(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        let arg = |k: &str| version_param(q.get(k).map(String::as_str).unwrap_or_default(), k);
        let (from, to) = (arg("from")?, arg("to")?);
        let p = app.keyring().prompts(app.store(), &ctx.principal.scope);
        let a = p.get(&name, Some(from)).await.map_err(store_err)?;
        let b = p.get(&name, Some(to)).await.map_err(store_err)?;
        let text = similar::TextDiff::from_lines(&a.template, &b.template)
            .unified_diff()
            .header(&format!("{name}@{from}"), &format!("{name}@{to}"))
            .to_string();
        Ok(Json(json!({"name": name, "from": from, "to": to, "diff": text})).into_response())
    }
    .await)
}

pub(super) async fn get_settings(
    State(app): State<AppState>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        let s = app
            .keyring()
            .prompts(app.store(), &ctx.principal.scope)
            .settings_or_init()
            .await
            .map_err(store_err)?;
        Ok(Json(s).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingsBody {
    client_system: tenantgate_store::prompts::ClientSystem,
    #[serde(default)]
    default_prompt: Option<String>,
    #[serde(default)]
    custom_instructions: String,
    #[serde(default = "yes")]
    canary_enabled: bool,
}

fn yes() -> bool {
    true
}

pub(super) async fn put_settings(
    State(app): State<AppState>,
    headers: HeaderMap,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        let b: SettingsBody = json_body(&app, &headers, body).await?;
        let p = app.keyring().prompts(app.store(), &ctx.principal.scope);
        let current = p.settings_or_init().await.map_err(store_err)?;
        let s = PromptSettings {
            client_system: b.client_system,
            default_prompt: b.default_prompt,
            custom_instructions: b.custom_instructions,
            canary_enabled: b.canary_enabled,
            canary: current.canary,
        };
        p.set_settings(&s).await.map_err(store_err)?;
        app.reload_auth(false).await.ok();
        Ok(Json(s).into_response())
    }
    .await)
}

const MANIFEST: &str = "manifest.json";
const FORMAT: &str = "tenantgate-prompts/v1";

fn zip_err(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::InvalidRequest {
        message: format!("archive: {e}"),
        param: None,
    }
}

/// Every prompt, every version, and the settings, as a zip with a JSON manifest.
pub(super) async fn export(State(app): State<AppState>, TenantAdmin(ctx): TenantAdmin) -> Response {
    ok(async {
        let p = app.keyring().prompts(app.store(), &ctx.principal.scope);
        let mut prompts = Vec::new();
        let mut files: Vec<(String, String)> = Vec::new();
        for info in p.list().await.map_err(store_err)? {
            let mut versions = Vec::new();
            for v in p.versions(&info.name).await.map_err(store_err)?.into_iter().rev() {
                let full = p.get(&info.name, Some(v.version)).await.map_err(store_err)?;
                let file = format!("prompts/{}/v{}.j2", info.name, v.version);
                versions.push(json!({"version": v.version, "author": v.author, "created_at_ms": v.created_at_ms, "sha256": v.sha256, "file": file}));
                files.push((file, full.template));
            }
            prompts.push(json!({"name": info.name, "active_version": info.active_version, "versions": versions}));
        }
        let settings = p.settings().await.map_err(store_err)?;
        let manifest = json!({"format": FORMAT, "tenant": ctx.tenant.slug, "exported_at_ms": crate::clock::now_ms(), "settings": settings, "prompts": prompts});
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            z.start_file(MANIFEST, opts).map_err(zip_err)?;
            z.write_all(serde_json::to_string_pretty(&manifest).unwrap_or_default().as_bytes()).map_err(zip_err)?;
            for (name, text) in &files {
                z.start_file(name.as_str(), opts).map_err(zip_err)?;
                z.write_all(text.as_bytes()).map_err(zip_err)?;
            }
            z.finish().map_err(zip_err)?;
        }
        Ok((
            [("content-type", "application/zip"), ("content-disposition", "attachment; filename=\"prompts.zip\"")],
            buf.into_inner(),
        )
            .into_response())
    }
    .await)
}

/// Imports an export (from this or another deployment) into the caller's tenant, all or
/// nothing; names that already exist make it a 409.
pub(super) async fn import(
    State(app): State<AppState>,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        let bytes = super::read_body(body, app.0.config.server.max_body_bytes).await?;
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).map_err(zip_err)?;
        let mut read = |name: &str| -> Result<String, GatewayError> {
            let mut f = z
                .by_name(name)
                .map_err(|_| zip_err(format!("missing {name}")))?;
            let mut s = String::new();
            f.by_ref()
                .take(tenantgate_store::prompts::MAX_TEMPLATE_BYTES as u64 * 4)
                .read_to_string(&mut s)
                .map_err(zip_err)?;
            Ok(s)
        };
        let manifest: serde_json::Value =
            serde_json::from_str(&read(MANIFEST)?).map_err(zip_err)?;
        if manifest["format"] != FORMAT {
            return Err(zip_err(format!("not a {FORMAT} archive")));
        }
        let mut set = ImportSet {
            versions: vec![],
            active: vec![],
            settings: None,
        };
        for p in manifest["prompts"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let name = p["name"]
                .as_str()
                .ok_or_else(|| zip_err("prompt without a name"))?
                .to_owned();
            for v in p["versions"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let file = v["file"]
                    .as_str()
                    .ok_or_else(|| zip_err("version without a file"))?;
                let template = read(file)?;
                let sha: String = <sha2::Sha256 as sha2::Digest>::digest(template.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if Some(sha.as_str()) != v["sha256"].as_str() {
                    return Err(zip_err(format!(
                        "{file}: content does not match its sha256"
                    )));
                }
                set.versions.push(NewVersion {
                    name: name.clone(),
                    template,
                    author: v["author"].as_str().unwrap_or("import").to_owned(),
                    created_at_ms: v["created_at_ms"].as_i64(),
                });
            }
            if let Some(a) = p["active_version"]
                .as_u64()
                .and_then(|a| u32::try_from(a).ok())
            {
                set.active.push((name, a));
            }
        }
        if !manifest["settings"].is_null() {
            let mut s: PromptSettings =
                serde_json::from_value(manifest["settings"].clone()).map_err(zip_err)?;
            // The canary belongs to the receiving tenant, not to the archive.
            let current = app
                .keyring()
                .prompts(app.store(), &ctx.principal.scope)
                .settings_or_init()
                .await
                .map_err(store_err)?;
            s.canary = current.canary;
            set.settings = Some(s);
        }
        let written = app
            .keyring()
            .prompts(app.store(), &ctx.principal.scope)
            .import(&set)
            .await
            .map_err(store_err)?;
        app.reload_auth(false).await.ok();
        Ok((
            StatusCode::CREATED,
            Json(json!({"imported_versions": written.len()})),
        )
            .into_response())
    }
    .await)
}

/// The tenant's leak-prevention policy: detector -> block | redact | flag | off.
pub(super) async fn get_guard_policy(
    State(app): State<AppState>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        let stored = app
            .store()
            .tenant(&ctx.principal.scope)
            .guard_policy()
            .await
            .map_err(st)?;
        let policy: tenantgate_guard::Policy = stored
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        Ok(Json(policy).into_response())
    }
    .await)
}

pub(super) async fn put_guard_policy(
    State(app): State<AppState>,
    headers: HeaderMap,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        let policy: tenantgate_guard::Policy = json_body(&app, &headers, body).await?;
        // Another tenant's identifiers in this tenant's traffic are not this tenant's to let
        // through (`identity::guard_policy`): block or redact only.
        if crate::identity::guard_policy::floor(policy.cross_tenant) != policy.cross_tenant {
            return Err(GatewayError::InvalidRequest {
                message: "cross_tenant must be block or redact: it protects other tenants' data"
                    .into(),
                param: Some("cross_tenant".into()),
            });
        }
        if let Some(url) = &policy.webhook_url {
            let https = url.starts_with("https://");
            let http_ok = app.0.config.guard.allow_http_webhooks && url.starts_with("http://");
            if !(https || http_ok) {
                return Err(GatewayError::InvalidRequest {
                    message: "webhook_url must be an https:// URL".into(),
                    param: Some("webhook_url".into()),
                });
            }
        }
        let json = serde_json::to_string(&policy).map_err(|_| GatewayError::Internal)?;
        app.store()
            .tenant(&ctx.principal.scope)
            .set_guard_policy(&json)
            .await
            .map_err(st)?;
        app.reload_auth(false).await.ok();
        Ok(Json(policy).into_response())
    }
    .await)
}
