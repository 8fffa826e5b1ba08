//! The control-plane API as data: every `/tenant/v1` and `/admin/v1` route is declared once
//! in [`API_ROUTES`], with who may call it. The router is built from that table, the OpenAPI
//! description (`/openapi.json`) is generated from it, and the authorization matrix test walks
//! it, so a route cannot be added without appearing in all three.

use super::{
    admin, audit, bundle, incident, knowledge, lifecycle, members, provider_keys, routing, tenant,
    usage,
};
use crate::state::AppState;
use axum::routing::{delete, get, patch, post, put};
use axum::Router;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Who may call a route. Each handler enforces it with the matching extractor of
/// `http/roles.rs`, which the table checks at compile time; the matrix test checks the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Any principal of the tenant (`member` or `tenant_admin`); members see their own data.
    Member,
    /// The tenant's `tenant_admin`s.
    TenantAdmin,
    /// Platform admins (no tenant data).
    PlatformAdmin,
    /// Platform admins holding an active break-glass grant on the path's tenant.
    BreakGlass,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ApiRoute {
    /// Upper-case HTTP method.
    pub method: &'static str,
    /// axum path template (`/tenant/v1/keys/{key}`), which is also the OpenAPI form.
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
}

macro_rules! api_routes {
    ($($method:ident $path:literal => $handler:path, $access:ident, $summary:literal;)+) => {
        /// Every route of the tenant and platform APIs.
        pub const API_ROUTES: &[ApiRoute] = &[$(ApiRoute {
            method: const_upper(stringify!($method)),
            path: $path,
            access: Access::$access,
            summary: $summary,
        }),+];

        /// The routes of [`API_ROUTES`], wired to their handlers.
        pub(super) fn routes() -> Router<AppState> {
            Router::new()$(.route($path, $method($handler)))+
        }

        // Each handler's role extractor is the access its row declares: the table cannot
        // promise one role while the handler admits another.
        $(const _: () = assert!(
            super::roles::enforces(&$handler, Access::$access),
            concat!(stringify!($handler), ": its one role extractor (roles.rs) must be the row's ", stringify!($access)),
        );)+
    };
}

/// The route template a concrete path matches (`/tenant/v1/prompts/{name}/versions`): the
/// request log line names the route, never the names a tenant chose (prompt, knowledge base,
/// member subject), which would outlive the tenant's offboarding in the logs.
pub(crate) fn template_of(path: &str) -> Option<&'static str> {
    API_ROUTES.iter().map(|r| r.path).find(|t| {
        let (mut a, mut b) = (t.split('/'), path.split('/'));
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some(x), Some(y)) if x.starts_with('{') || x == y => continue,
                _ => return false,
            }
        }
    })
}

/// `stringify!(get)` -> `"GET"` at compile time.
const fn const_upper(m: &'static str) -> &'static str {
    match m.as_bytes() {
        b"get" => "GET",
        b"post" => "POST",
        b"put" => "PUT",
        b"patch" => "PATCH",
        b"delete" => "DELETE",
        _ => panic!("unsupported method"),
    }
}

api_routes! {
    get "/tenant/v1/me" => members::me, Member, "The caller: tenant, role, user, credential";
    get "/tenant/v1/keys" => members::list_keys, Member, "API keys (members: their own)";
    post "/tenant/v1/keys" => members::create_key, TenantAdmin, "Create an API key (shown once)";
    delete "/tenant/v1/keys/{key}" => members::revoke_key, TenantAdmin, "Revoke an API key";
    get "/tenant/v1/members" => members::list_members, TenantAdmin, "OIDC members and their roles";
    put "/tenant/v1/members/{subject}" => members::put_member, TenantAdmin, "Give an OIDC user a role";
    delete "/tenant/v1/members/{subject}" => members::delete_member, TenantAdmin, "Remove a member";
    get "/tenant/v1/models" => members::get_models, Member, "Allowed, enabled and callable models";
    put "/tenant/v1/models" => members::put_models, TenantAdmin, "Narrow the platform's model allow-list";
    get "/tenant/v1/settings" => members::get_settings, TenantAdmin, "The tenant's settings";
    patch "/tenant/v1/settings" => members::patch_settings, TenantAdmin, "Change the tenant's settings";
    get "/tenant/v1/break-glass" => members::grants, TenantAdmin, "Break-glass grants platform admins took on this tenant";
    get "/tenant/v1/prompts" => tenant::list, Member, "Prompt templates (names and versions)";
    get "/tenant/v1/prompts/{name}/versions" => tenant::versions, Member, "A prompt's versions (hashes, no text)";
    post "/tenant/v1/prompts/{name}/versions" => tenant::push, TenantAdmin, "Push a prompt version";
    get "/tenant/v1/prompts/{name}/versions/{version}" => tenant::get_version, TenantAdmin, "A prompt version's text";
    post "/tenant/v1/prompts/{name}/activate" => tenant::activate, TenantAdmin, "Activate a prompt version";
    get "/tenant/v1/prompts/{name}/diff" => tenant::diff, TenantAdmin, "Diff two prompt versions";
    get "/tenant/v1/prompt-settings" => tenant::get_settings, TenantAdmin, "Prompt settings";
    put "/tenant/v1/prompt-settings" => tenant::put_settings, TenantAdmin, "Change prompt settings";
    get "/tenant/v1/prompt-archive" => tenant::export, TenantAdmin, "Export every prompt (zip)";
    post "/tenant/v1/prompt-archive" => tenant::import, TenantAdmin, "Import prompts (zip)";
    get "/tenant/v1/guard-policy" => tenant::get_guard_policy, TenantAdmin, "Leak-prevention policy";
    put "/tenant/v1/guard-policy" => tenant::put_guard_policy, TenantAdmin, "Change the leak-prevention policy";
    get "/tenant/v1/audit/records" => audit::records, TenantAdmin, "Audit records, filtered";
    get "/tenant/v1/audit/export" => audit::export, TenantAdmin, "Audit export for a window (JSONL or CSV)";
    get "/tenant/v1/audit/public-key" => audit::public_key, Member, "Key that signs audit checkpoints";
    get "/tenant/v1/audit-policy" => audit::get_policy, TenantAdmin, "Audit body policy";
    put "/tenant/v1/audit-policy" => audit::put_policy, TenantAdmin, "Change the audit body policy";
    get "/tenant/v1/limits" => usage::get_limits, TenantAdmin, "Effective limits and counted usage";
    put "/tenant/v1/kill-switch" => usage::put_kill_switch, TenantAdmin, "Stop or resume model calls";
    get "/tenant/v1/usage" => usage::usage, Member, "Usage (members: their own)";
    get "/tenant/v1/knowledge-bases" => knowledge::list, Member, "Knowledge bases";
    post "/tenant/v1/knowledge-bases" => knowledge::create, TenantAdmin, "Create a knowledge base";
    get "/tenant/v1/knowledge-bases/{kb}" => knowledge::get, Member, "A knowledge base and its documents";
    delete "/tenant/v1/knowledge-bases/{kb}" => knowledge::delete, TenantAdmin, "Delete a knowledge base (index and every chunk)";
    post "/tenant/v1/knowledge-bases/{kb}/documents" => knowledge::upload, TenantAdmin, "Upload a document (text, Markdown, HTML, PDF)";
    delete "/tenant/v1/knowledge-bases/{kb}/documents/{doc}" => knowledge::delete_document, TenantAdmin, "Delete a document";
    post "/tenant/v1/knowledge-bases/{kb}/search" => knowledge::search, Member, "Search a knowledge base";
    delete "/tenant/v1/knowledge" => knowledge::delete_all, TenantAdmin, "Delete all of the tenant's knowledge";
    get "/tenant/v1/provider-keys" => provider_keys::list, TenantAdmin, "Providers the tenant brought its own key for (never the keys)";
    put "/tenant/v1/provider-keys/{provider}" => provider_keys::put, TenantAdmin, "Bring your own key: the tenant's calls to this provider use it";
    delete "/tenant/v1/provider-keys/{provider}" => provider_keys::delete, TenantAdmin, "Remove the tenant's own key for a provider";
    get "/tenant/v1/export" => bundle::export, TenantAdmin, "Export everything the tenant owns (tar bundle, signed manifest)";
    get "/admin/v1/health" => admin::health, PlatformAdmin, "Platform health";
    get "/admin/v1/plans" => admin::plans, PlatformAdmin, "Plans and their default limits";
    get "/admin/v1/tenants" => admin::list_tenants, PlatformAdmin, "Every tenant (metadata)";
    post "/admin/v1/tenants" => admin::create_tenant, PlatformAdmin, "Onboard a tenant";
    get "/admin/v1/tenants/{tenant}" => admin::get_tenant, PlatformAdmin, "One tenant (metadata)";
    patch "/admin/v1/tenants/{tenant}" => admin::patch_tenant, PlatformAdmin, "Suspend, resume, set models";
    delete "/admin/v1/tenants/{tenant}" => lifecycle::delete_tenant, PlatformAdmin, "Offboard a tenant: a deletion window (window_secs), then keys shredded, rows removed, a certificate";
    post "/admin/v1/tenants/{tenant}/restore" => lifecycle::restore_tenant, PlatformAdmin, "Cancel a tenant's pending deletion";
    get "/admin/v1/tenants/{tenant}/deletion-certificate" => lifecycle::deletion_certificate, PlatformAdmin, "A deleted tenant's deletion certificate, verifiable offline";
    get "/admin/v1/audit/export" => lifecycle::platform_audit_export, PlatformAdmin, "The platform's own audit chain (lifecycle steps, certificates)";
    get "/admin/v1/tenants/{tenant}/endpoints" => admin::list_endpoints, PlatformAdmin, "A tenant's own provider endpoints (never their keys)";
    put "/admin/v1/tenants/{tenant}/endpoints/{provider}" => admin::put_endpoint, PlatformAdmin, "Set a tenant's own endpoint and key for a provider";
    delete "/admin/v1/tenants/{tenant}/endpoints/{provider}" => admin::delete_endpoint, PlatformAdmin, "Remove a tenant's own endpoint for a provider";
    get "/admin/v1/routing" => routing::status, PlatformAdmin, "Models' targets, drained providers, this replica's circuit breakers";
    put "/admin/v1/routing/drains/{provider}" => routing::drain, PlatformAdmin, "Drain a provider: no call goes to it on any replica";
    delete "/admin/v1/routing/drains/{provider}" => routing::undrain, PlatformAdmin, "Put a drained provider back";
    post "/admin/v1/incidents/freezes" => incident::create_freeze, PlatformAdmin, "Freeze a tenant's, a route's or a model's calls on every replica (incident hold)";
    delete "/admin/v1/incidents/freezes/{freeze}" => incident::delete_freeze, PlatformAdmin, "Lift an incident freeze";
    get "/admin/v1/incidents/status" => incident::status, PlatformAdmin, "Freezes, drains, kill switches and this replica's circuit breakers";
    post "/admin/v1/incidents/scope" => incident::scope, PlatformAdmin, "Which tenants, calls and window an identifier or canary appeared in";
    get "/admin/v1/incidents/evidence/{tenant}" => incident::evidence, PlatformAdmin, "A tenant's signed evidence bundle for a window (tar), verifiable offline";
    post "/admin/v1/incidents/contain" => incident::contain, PlatformAdmin, "Contain a tenant: kill switch, freeze, every credential revoked, keys rotated";
    put "/admin/v1/incidents/drains/{provider}" => incident::drain, PlatformAdmin, "Drain a provider (incident command)";
    delete "/admin/v1/incidents/drains/{provider}" => incident::undrain, PlatformAdmin, "Put a drained provider back (incident command)";
    post "/admin/v1/break-glass" => admin::create_grant, PlatformAdmin, "Request break-glass access to one tenant (<= 1 h)";
    get "/admin/v1/break-glass" => admin::list_grants, PlatformAdmin, "Every break-glass grant";
    delete "/admin/v1/break-glass/{grant}" => admin::revoke_grant, PlatformAdmin, "End a break-glass grant";
    get "/admin/v1/tenants/{tenant}/prompts" => admin::bg_prompts, BreakGlass, "A tenant's prompts (break-glass)";
    get "/admin/v1/tenants/{tenant}/knowledge-bases" => admin::bg_knowledge, BreakGlass, "A tenant's knowledge bases and documents (break-glass)";
    get "/admin/v1/tenants/{tenant}/audit/export" => admin::bg_audit_export, BreakGlass, "A tenant's audit export with bodies (break-glass)";
}

/// The OpenAPI 3.1 description of [`API_ROUTES`].
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for r in API_ROUTES {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut responses = json!({
            "200": {"description": "Success"},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"},
            "403": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
        });
        if matches!(r.method, "POST") {
            responses["201"] = json!({"description": "Created"});
        }
        let op = json!({
            "operationId": operation_id(r),
            "summary": r.summary,
            "tags": [if r.path.starts_with("/admin/") { "platform" } else { "tenant" }],
            "security": [{"bearer": []}],
            "parameters": params,
            "x-tenantgate-access": r.access,
            "responses": responses,
        });
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[r.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tenantgate control plane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tenant self-service (/tenant/v1: the tenant is the caller's, from its credential) and platform administration (/admin/v1: platform_admin tokens; tenant data only under break-glass). x-tenantgate-access names who may call each operation.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                    "description": "A tenantgate API key or an OIDC access token (JWT)"}
            },
            "responses": {
                "Error": {"description": "OpenAI-shaped error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object",
                    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
            }
        }
    })
}

fn operation_id(r: &ApiRoute) -> String {
    let mut id = r.method.to_ascii_lowercase();
    for seg in r.path.split('/').skip(3) {
        let seg = seg.trim_start_matches('{').trim_end_matches('}');
        id.push('_');
        id.push_str(&seg.replace('-', "_"));
    }
    if r.path.starts_with("/admin/") {
        id.insert_str(0, "admin_");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_unique_and_operation_ids_too() {
        let mut seen = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for r in API_ROUTES {
            assert!(seen.insert((r.method, r.path)), "duplicate {r:?}");
            assert!(ids.insert(operation_id(r)), "duplicate id {r:?}");
            assert!(r.path.starts_with("/tenant/v1/") || r.path.starts_with("/admin/v1/"));
            // tenant routes never name a tenant: it comes from the credential
            assert!(
                !(r.path.starts_with("/tenant/") && r.path.contains("{tenant}")),
                "{r:?}"
            );
        }
    }
}
