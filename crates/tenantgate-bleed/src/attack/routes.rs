//! Every control-plane operation the deployment describes in `/openapi.json` (so a route added
//! later is attacked without a change here) x every role the run holds x the victim's ids in
//! the path. Function-level authorization is judged by status (who may call what, from the
//! operation's own `x-tenantgate-access`); object-level authorization by what comes back (no
//! victim canary, ever) and afterwards by the victim's state ([`super::integrity`]).

use super::Ctx;
use crate::report::{Family, Verdict};
use crate::target::{Cred, Extra};
use reqwest::Method;
use serde_json::{json, Value};

/// Who may call an operation, as the description says (`x-tenantgate-access`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Member,
    TenantAdmin,
    PlatformAdmin,
    BreakGlass,
}

impl Access {
    fn parse(v: &Value) -> Option<Access> {
        let s = v.as_str()?.to_ascii_lowercase().replace(['_', '-'], "");
        match s.as_str() {
            "member" => Some(Access::Member),
            "tenantadmin" => Some(Access::TenantAdmin),
            "platformadmin" => Some(Access::PlatformAdmin),
            "breakglass" => Some(Access::BreakGlass),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Role {
    Anonymous,
    AttackerMember,
    AttackerAdmin,
    /// A platform admin without a break-glass grant on the victim.
    Platform,
}

/// Whether `role` may succeed at an operation of `access` (on its own tenant, for tenant
/// roles; the object being the victim's is judged by content and integrity, not here).
fn allowed(access: Access, role: Role) -> bool {
    match (access, role) {
        (_, Role::Anonymous) => false,
        (Access::Member, Role::AttackerMember | Role::AttackerAdmin) => true,
        (Access::TenantAdmin, Role::AttackerAdmin) => true,
        (Access::TenantAdmin, Role::AttackerMember) => false,
        (
            Access::PlatformAdmin | Access::BreakGlass,
            Role::AttackerMember | Role::AttackerAdmin,
        ) => false,
        (Access::Member | Access::TenantAdmin | Access::BreakGlass, Role::Platform) => false,
        (Access::PlatformAdmin, Role::Platform) => true,
    }
}

pub async fn run(c: &mut Ctx<'_>, run_id: &str) -> anyhow::Result<usize> {
    let spec = c.t.get("/openapi.json", &Cred::None).await?;
    anyhow::ensure!(spec.ok(), "/openapi.json answered {}", spec.status);
    let spec = spec.json();
    let paths = spec["paths"].as_object().cloned().unwrap_or_default();
    let mut operations = 0;
    for (template, ops) in &paths {
        let Some(ops) = ops.as_object() else { continue };
        for (method, op) in ops {
            let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else {
                continue;
            };
            let Some(access) = Access::parse(&op["x-tenantgate-access"]) else {
                c.report.push(
                    Family::RouteMatrix,
                    format!("{method} {template}"),
                    Verdict::Fail(format!(
                        "the operation names no known access ({})",
                        op["x-tenantgate-access"]
                    )),
                );
                continue;
            };
            operations += 1;
            for path in fill(c, template) {
                for role in [
                    Role::Anonymous,
                    Role::AttackerMember,
                    Role::AttackerAdmin,
                    Role::Platform,
                ] {
                    // A platform admin's own operations: only its reads and the incident scope
                    // search (its writes could remove the canary tenants mid-run). Holding no
                    // grant, it may see the victim's metadata, never its content.
                    let reads = method == Method::GET || template.ends_with("/incidents/scope");
                    if matches!((access, role), (Access::PlatformAdmin, Role::Platform)) && !reads {
                        continue;
                    }
                    let cred = match role {
                        Role::Anonymous => Cred::None,
                        Role::AttackerMember => c.attacker.member.clone(),
                        Role::AttackerAdmin => c.attacker.admin.clone(),
                        Role::Platform => c.platform.clone(),
                    };
                    let (json_body, raw) = body_for(c, &method, template, run_id);
                    let a =
                        c.t.send(
                            method.clone(),
                            &path,
                            &cred,
                            Extra {
                                json: json_body.as_ref(),
                                raw,
                                ..Default::default()
                            },
                        )
                        .await?;
                    let id = format!("{method} {path} ({template}) as {role:?}");
                    let seen = match role {
                        Role::Platform => c.victim.content_in(&a.body),
                        Role::Anonymous | Role::AttackerMember | Role::AttackerAdmin => {
                            c.victim.secret_in(&a.body)
                        }
                    };
                    let scope_hit = template.ends_with("/incidents/scope")
                        && a.ok()
                        && a.body.contains(&c.victim.id);
                    let verdict = if scope_hit {
                        Verdict::Fail("a search for the victim's conversation text found it: the scope search opens bodies for any needle".into())
                    } else if let Some(l) = seen {
                        Verdict::Fail(format!("{l} in the answer ({})", a.status))
                    } else if a.status >= 500 {
                        Verdict::Fail(format!(
                            "answered {} (a server error on attacker input)",
                            a.status
                        ))
                    } else if matches!(role, Role::Anonymous) && a.status != 401 {
                        Verdict::Fail(format!(
                            "answered {} without a credential (expected 401)",
                            a.status
                        ))
                    } else if !allowed(access, role) && (200..300).contains(&a.status) {
                        Verdict::Fail(format!(
                            "answered {} to a role {access:?} operations refuse",
                            a.status
                        ))
                    } else {
                        Verdict::Pass
                    };
                    c.report.push(Family::RouteMatrix, id, verdict);
                }
            }
        }
    }
    Ok(operations)
}

/// The path with each parameter set to the victim's object: the tenant by slug and by id,
/// the knowledge base by name and by id (one path per form); names the run does not know get
/// the victim's tenant id. Providers and grants get names that exist nowhere, so a broken
/// check cannot touch the deployment's real ones.
fn fill(c: &Ctx<'_>, template: &str) -> Vec<String> {
    let v = c.victim;
    let mut paths = vec![String::new()];
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let end = start + len;
        let name = &rest[start + 1..end];
        let values: Vec<String> = match name {
            "tenant" => vec![v.slug.clone(), v.id.clone()],
            "kb" => vec![v.kb.clone(), v.kb_id.clone()],
            "key" => vec![v.member_key_id.clone()],
            "subject" => vec![v.subject.clone()],
            "name" => vec![v.prompt.clone()],
            "version" => vec!["1".into()],
            "doc" => vec![v.doc_id.clone()],
            "provider" => vec!["bleed-no-such-provider".into()],
            "grant" => vec!["bleed-no-such-grant".into()],
            _ => vec![v.id.clone()],
        };
        let lead = &rest[..start];
        paths = paths
            .iter()
            .flat_map(|p| values.iter().map(move |x| format!("{p}{lead}{x}")))
            .collect();
        paths.dedup();
        rest = &rest[end + 1..];
    }
    for p in &mut paths {
        p.push_str(rest);
    }
    paths
}

/// A body that would do harm if the call were allowed on the victim's object.
fn body_for(
    c: &Ctx<'_>,
    method: &Method,
    template: &str,
    run: &str,
) -> (Option<Value>, Option<(&'static str, String)>) {
    if matches!(*method, Method::GET | Method::DELETE) {
        return (None, None);
    }
    let v = c.victim;
    let j = if template.ends_with("/documents") {
        return (None, Some(("text/plain", "bleed overwrite".into())));
    } else if template.ends_with("/versions") {
        json!({"template": "bleed overwrite", "activate": true})
    } else if template.ends_with("/activate") {
        json!({"version": 1})
    } else if template.ends_with("/search") {
        json!({"query": "vault code for shipping", "top_k": 50})
    } else if template.contains("/members/") {
        json!({"role": "tenant_admin"})
    } else if template.ends_with("/kill-switch") {
        json!({"enabled": true})
    } else if template == "/admin/v1/tenants" {
        json!({"slug": format!("bleed-{run}-evil"), "admin_key": true})
    } else if template.starts_with("/admin/v1/tenants/{tenant}") && *method == Method::PATCH {
        json!({"status": "suspended"})
    } else if template.ends_with("/incidents/scope") {
        let chat = v
            .secrets
            .iter()
            .find(|(w, _)| *w == "chat message")
            .map(|(_, s)| s.clone());
        json!({"needle": chat.unwrap_or_default()})
    } else if template == "/admin/v1/break-glass" {
        json!({"tenant": v.slug, "reason": "bleed test", "duration_secs": 60})
    } else if template.contains("/endpoints/") || template.contains("/provider-keys/") {
        json!({"base_url": "http://127.0.0.1:9/v1", "api_key": "sk-bleed"})
    } else {
        json!({})
    };
    (Some(j), None)
}
