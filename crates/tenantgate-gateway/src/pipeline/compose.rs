//! Stage `compose`: the tenant's system prompt, rendered and placed server-side, so an end user
//! can neither read nor replace it. Templates are minijinja in strict mode (an undefined
//! variable is a 400, never an empty string). Compiled templates are cached per tenant and
//! dropped when the control-plane revision moves, so the request path reads the store only on
//! the first request after a change.

use crate::error::GatewayError;
use crate::pipeline::TenantContext;
use minijinja::{context, Environment, UndefinedBehavior};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tenantgate_core::TenantId;
use tenantgate_store::prompts::{ClientSystem, PromptSettings};
use tenantgate_store::KeyringError;

/// The request's `tenantgate` extension field (OpenAI SDK: `extra_body={"tenantgate": {...}}`).
#[derive(Debug, Default)]
pub struct PromptRequest {
    pub prompt: Option<String>,
    pub version: Option<u32>,
    pub variables: Value,
    /// Knowledge bases to retrieve from (names or ids); `None`: the tenant's defaults, `[]`:
    /// none.
    pub knowledge_bases: Option<Vec<String>>,
    pub top_k: Option<usize>,
}

/// Removes the `tenantgate` extension field from the body (it never goes upstream).
pub fn take_extension(body: &mut Map<String, Value>) -> Result<PromptRequest, GatewayError> {
    let bad = |m: &str, p: &str| GatewayError::InvalidRequest {
        message: m.to_owned(),
        param: Some(p.to_owned()),
    };
    let Some(ext) = body.remove("tenantgate") else {
        return Ok(PromptRequest {
            variables: Value::Object(Map::new()),
            ..Default::default()
        });
    };
    let Value::Object(mut ext) = ext else {
        return Err(bad("'tenantgate' must be an object", "tenantgate"));
    };
    let prompt = match ext.remove("prompt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            return Err(bad(
                "'tenantgate.prompt' must be a string",
                "tenantgate.prompt",
            ))
        }
    };
    let version = match ext.remove("prompt_version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    bad(
                        "'tenantgate.prompt_version' must be a positive integer",
                        "tenantgate.prompt_version",
                    )
                })?,
        ),
    };
    if version.is_some() && prompt.is_none() {
        return Err(bad(
            "'tenantgate.prompt_version' needs 'tenantgate.prompt'",
            "tenantgate.prompt_version",
        ));
    }
    let variables = match ext.remove("variables") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(bad(
                "'tenantgate.variables' must be an object",
                "tenantgate.variables",
            ))
        }
    };
    let knowledge_bases = match ext.remove("knowledge_bases") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(bad(
                        "'tenantgate.knowledge_bases' must be an array of names",
                        "tenantgate.knowledge_bases",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(bad(
                "'tenantgate.knowledge_bases' must be an array of names",
                "tenantgate.knowledge_bases",
            ))
        }
    };
    let top_k = match ext.remove("top_k") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    bad(
                        "'tenantgate.top_k' must be an integer from 1 to 100",
                        "tenantgate.top_k",
                    )
                })? as usize,
        ),
    };
    if let Some(k) = ext.keys().next() {
        return Err(bad(
            &format!("unknown field 'tenantgate.{k}'"),
            &format!("tenantgate.{k}"),
        ));
    }
    Ok(PromptRequest {
        prompt,
        version,
        variables,
        knowledge_bases,
        top_k,
    })
}

/// A template checked for syntax, ready to render.
pub struct Compiled {
    source: String,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

impl Compiled {
    /// Parses the template; a syntax error names the line.
    pub fn new(source: String) -> Result<Self, String> {
        environment()
            .template_from_str(&source)
            .map_err(|e| e.to_string())?;
        Ok(Self { source })
    }

    fn render(
        &self,
        ctx: &TenantContext,
        settings: &PromptSettings,
        vars: &Value,
    ) -> Result<String, GatewayError> {
        let t = &ctx.tenant;
        environment()
            .render_str(
                &self.source,
                context! {
                    tenant => context! { name => t.display_name, slug => t.slug, plan => t.plan.as_str() },
                    custom_instructions => settings.custom_instructions,
                    vars => minijinja::Value::from_serialize(vars),
                },
            )
            .map_err(|e| GatewayError::PromptRender(e.to_string()))
    }
}

struct TenantPrompts {
    revision: i64,
    settings: Option<PromptSettings>,
    active: HashMap<String, Arc<Compiled>>,
    /// Versions named by requests; versions are immutable, so these never go stale.
    pinned: Mutex<HashMap<(String, u32), Arc<Compiled>>>,
}

#[derive(Default)]
pub struct PromptCache {
    map: Mutex<HashMap<TenantId, Arc<TenantPrompts>>>,
}

pub(crate) use crate::error::{st, store_err};

/// What composition reads: the tenant prompts loaded in this process, and the store and
/// keyring they are loaded (and opened) from.
pub struct Prompts<'a> {
    pub cache: &'a PromptCache,
    pub store: &'a tenantgate_store::Store,
    pub keyring: &'a tenantgate_store::Keyring,
}

impl Prompts<'_> {
    async fn tenant_prompts(
        &self,
        ctx: &TenantContext,
    ) -> Result<Arc<TenantPrompts>, GatewayError> {
        let tenant = ctx.principal.scope.tenant_id();
        // The tenant's own prompt revision, from the snapshot: other tenants' changes never
        // invalidate this tenant's cache, and a tenant without prompts never reads the store.
        let Some(revision) = ctx.view.prompt_revision(tenant) else {
            return Ok(Arc::new(TenantPrompts {
                revision: 0,
                settings: None,
                active: HashMap::new(),
                pinned: Mutex::new(HashMap::new()),
            }));
        };
        if let Some(p) = self
            .cache
            .map
            .lock()
            .ok()
            .and_then(|m| m.get(tenant).cloned())
        {
            if p.revision == revision {
                return Ok(p);
            }
        }
        let prompts = self.keyring.prompts(self.store, &ctx.principal.scope);
        let settings = prompts.settings().await.map_err(store_err)?;
        let mut active = HashMap::new();
        if settings.is_some() {
            for info in prompts.list().await.map_err(store_err)? {
                if info.active_version.is_some() {
                    let v = prompts.get(&info.name, None).await.map_err(store_err)?;
                    if let Ok(c) = Compiled::new(v.template) {
                        active.insert(info.name, Arc::new(c));
                    }
                }
            }
        }
        let loaded = Arc::new(TenantPrompts {
            revision,
            settings,
            active,
            pinned: Mutex::new(HashMap::new()),
        });
        if let Ok(mut m) = self.cache.map.lock() {
            m.insert(tenant.clone(), loaded.clone());
        }
        Ok(loaded)
    }

    /// The rendered system prompt for this request (with the tenant's canary) and the tenant's
    /// client-system policy, or `None` when the tenant composes nothing.
    pub async fn system_prompt(
        &self,
        ctx: &TenantContext,
        req: &PromptRequest,
    ) -> Result<Option<(String, ClientSystem)>, GatewayError> {
        let tp = self.tenant_prompts(ctx).await?;
        let Some(settings) = &tp.settings else {
            return match &req.prompt {
                Some(p) => Err(GatewayError::PromptNotFound(p.clone())),
                None => Ok(None),
            };
        };
        let Some(name) = req.prompt.as_ref().or(settings.default_prompt.as_ref()) else {
            return Ok(None);
        };
        let compiled = match req.version {
            None => tp
                .active
                .get(name)
                .cloned()
                .ok_or_else(|| GatewayError::PromptNotFound(name.clone()))?,
            Some(v) => {
                let hit = tp
                    .pinned
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&(name.clone(), v)).cloned());
                match hit {
                    Some(c) => c,
                    None => {
                        let pv = self
                            .keyring
                            .prompts(self.store, &ctx.principal.scope)
                            .get(name, Some(v))
                            .await
                            .map_err(|e| match e {
                                KeyringError::NotFound => {
                                    GatewayError::PromptNotFound(format!("{name}@{v}"))
                                }
                                e => store_err(e),
                            })?;
                        let c = Arc::new(
                            Compiled::new(pv.template).map_err(GatewayError::PromptRender)?,
                        );
                        if let Ok(mut m) = tp.pinned.lock() {
                            m.insert((name.clone(), v), c.clone());
                        }
                        c
                    }
                }
            }
        };
        let mut text = compiled.render(ctx, settings, &req.variables)?;
        if settings.canary_enabled {
            text.push_str("\n\n<!-- ");
            text.push_str(&settings.canary);
            text.push_str(" -->");
        }
        Ok(Some((text, settings.client_system)))
    }
}

pub(crate) fn text_of(content: &Value) -> String {
    tenantgate_providers::openai::content_text(content)
}

/// Places the tenant's system prompt first in an OpenAI chat request, applying the policy to
/// the client's own system and developer messages.
pub fn apply_openai(
    body: &mut Map<String, Value>,
    system: String,
    policy: ClientSystem,
) -> Result<(), GatewayError> {
    let Some(Value::Array(messages)) = body.get_mut("messages") else {
        return Ok(());
    };
    let is_system = |m: &Value| matches!(m["role"].as_str(), Some("system") | Some("developer"));
    let client: Vec<Value> = messages.iter().filter(|m| is_system(m)).cloned().collect();
    let system = match policy {
        ClientSystem::Refuse if !client.is_empty() => {
            return Err(GatewayError::ClientSystemRefused)
        }
        ClientSystem::Refuse | ClientSystem::Allow => system,
        ClientSystem::Append => {
            messages.retain(|m| !is_system(m));
            let extra: Vec<String> = client
                .iter()
                .map(|m| text_of(&m["content"]))
                .filter(|t| !t.is_empty())
                .collect();
            if extra.is_empty() {
                system
            } else {
                format!("{system}\n\n{}", extra.join("\n\n"))
            }
        }
    };
    messages.insert(0, serde_json::json!({"role": "system", "content": system}));
    Ok(())
}

/// The same for an Anthropic messages request, whose system prompt is one top-level field:
/// `allow` and `append` both keep the client's text after the tenant's.
pub fn apply_anthropic(
    body: &mut Map<String, Value>,
    system: String,
    policy: ClientSystem,
) -> Result<(), GatewayError> {
    let client = body.get("system").map(text_of).unwrap_or_default();
    if policy == ClientSystem::Refuse && !client.is_empty() {
        return Err(GatewayError::ClientSystemRefused);
    }
    let system = if client.is_empty() {
        system
    } else {
        format!("{system}\n\n{client}")
    };
    body.insert("system".into(), Value::String(system));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn policies_on_openai_messages() {
        let body = obj(
            json!({"messages":[{"role":"system","content":"client rules"},{"role":"user","content":"hi"}]}),
        );
        let mut b = body.clone();
        assert_eq!(
            apply_openai(&mut b, "T".into(), ClientSystem::Refuse),
            Err(GatewayError::ClientSystemRefused)
        );
        let mut b = body.clone();
        apply_openai(&mut b, "T".into(), ClientSystem::Append).unwrap();
        assert_eq!(
            b["messages"],
            json!([{"role":"system","content":"T\n\nclient rules"},{"role":"user","content":"hi"}])
        );
        let mut b = body.clone();
        apply_openai(&mut b, "T".into(), ClientSystem::Allow).unwrap();
        assert_eq!(b["messages"][0], json!({"role":"system","content":"T"}));
        assert_eq!(b["messages"][1]["content"], "client rules");
    }

    #[test]
    fn extension_is_removed_and_validated() {
        let mut b = obj(
            json!({"model":"m","tenantgate":{"prompt":"support","prompt_version":2,"variables":{"x":1}}}),
        );
        let r = take_extension(&mut b).unwrap();
        assert!(!b.contains_key("tenantgate"));
        assert_eq!((r.prompt.as_deref(), r.version), (Some("support"), Some(2)));
        let mut b = obj(json!({"tenantgate":{"prompt":"p","bogus":1}}));
        assert!(take_extension(&mut b).is_err());
    }

    #[test]
    fn strict_mode_and_syntax_errors() {
        assert!(Compiled::new("{% if %}".into()).is_err());
        assert!(Compiled::new("Hello {{ vars.name }}".into()).is_ok());
    }
}
