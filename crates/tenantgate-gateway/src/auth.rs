//! Stage 1, authenticate: credential -> [`Principal`]. Lookups are served from an in-memory
//! snapshot (no database query per request), swapped atomically when the control plane changes.

use crate::error::GatewayError;
use crate::keys::ServerSecret;
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::sync::Arc;
use tenantgate_core::{ApiKeyRecord, Principal, Tenant, TenantId, TenantScope};
use tenantgate_store::AuthSnapshot;

/// Immutable index built from one [`AuthSnapshot`]: keys, tenants, and the leak guard's
/// scanner and per-tenant policies, swapped together.
pub struct AuthIndex {
    pub revision: i64,
    keys: HashMap<[u8; 32], ApiKeyRecord>,
    tenants: HashMap<TenantId, Arc<Tenant>>,
    pub scanner: tenantgate_guard::Scanner,
    policies: HashMap<TenantId, tenantgate_guard::Policy>,
    prompt_revisions: HashMap<TenantId, i64>,
    default_policy: tenantgate_guard::Policy,
    audit_policies: HashMap<TenantId, Arc<tenantgate_audit::AuditPolicy>>,
    default_audit: Arc<tenantgate_audit::AuditPolicy>,
    /// Limit overrides and kill switch per tenant (absent: plan defaults, switch off).
    limits: HashMap<TenantId, (crate::admission::LimitSet, bool)>,
}

impl Default for AuthIndex {
    fn default() -> Self {
        Self {
            revision: 0,
            keys: HashMap::new(),
            tenants: HashMap::new(),
            scanner: tenantgate_guard::Scanner::new(Vec::new(), &[]),
            policies: HashMap::new(),
            prompt_revisions: HashMap::new(),
            default_policy: tenantgate_guard::Policy::default(),
            audit_policies: HashMap::new(),
            default_audit: Arc::default(),
            limits: HashMap::new(),
        }
    }
}

impl AuthIndex {
    pub fn build(snap: AuthSnapshot) -> Self {
        let tenants: HashMap<TenantId, Arc<Tenant>> = snap
            .tenants
            .into_iter()
            .map(|t| (t.id.clone(), Arc::new(t)))
            .collect();
        let keys = snap
            .keys
            .into_iter()
            .filter_map(|k| {
                let mut h = [0u8; 32];
                hex::decode_to_slice(&k.hash, &mut h).ok()?;
                Some((h, k))
            })
            .collect();
        let identifiers = tenants
            .values()
            .map(|t: &Arc<Tenant>| tenantgate_guard::TenantIdentifiers {
                tenant: t.id.clone(),
                names: vec![t.slug.clone(), t.display_name.clone()],
                exact: vec![t.id.to_string()],
            })
            .collect();
        let scanner = tenantgate_guard::Scanner::new(identifiers, &snap.canaries);
        let policies = snap
            .guard_policies
            .into_iter()
            .filter_map(|(t, json)| serde_json::from_str(&json).ok().map(|p| (t, p)))
            .collect();
        let audit_policies = snap
            .audit_policies
            .into_iter()
            .filter_map(|(t, json)| serde_json::from_str(&json).ok().map(|p| (t, Arc::new(p))))
            .collect();
        let limits = snap
            .limits
            .into_iter()
            .map(|(t, json, kill)| {
                // Written validated; an unreadable row keeps the plan's limits, switch honoured.
                (t, (serde_json::from_str(&json).unwrap_or_default(), kill))
            })
            .collect();
        Self {
            limits,
            audit_policies,
            default_audit: Arc::default(),
            revision: snap.revision,
            keys,
            tenants,
            scanner,
            policies,
            prompt_revisions: snap.prompt_revisions.into_iter().collect(),
            default_policy: tenantgate_guard::Policy::default(),
        }
    }

    /// The tenant's prompt revision; `None` if it never configured prompts.
    pub fn prompt_revision(&self, tenant: &TenantId) -> Option<i64> {
        self.prompt_revisions.get(tenant).copied()
    }

    /// The tenant's leak-prevention policy (defaults if it set none).
    pub fn guard_policy(&self, tenant: &TenantId) -> &tenantgate_guard::Policy {
        self.policies.get(tenant).unwrap_or(&self.default_policy)
    }

    /// The tenant's audit policy (defaults if it set none).
    pub fn audit_policy(&self, tenant: &TenantId) -> Arc<tenantgate_audit::AuditPolicy> {
        self.audit_policies
            .get(tenant)
            .unwrap_or(&self.default_audit)
            .clone()
    }

    /// The tenant's limit overrides and kill switch.
    pub fn limits(&self, tenant: &TenantId) -> (crate::admission::LimitSet, bool) {
        self.limits.get(tenant).copied().unwrap_or_default()
    }

    pub fn tenant_ids(&self) -> impl Iterator<Item = &TenantId> {
        self.tenants.keys()
    }

    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }
}

/// The credential a request presents: `Authorization: Bearer` (OpenAI SDK), `x-api-key`
/// (Anthropic SDK) or `api-key` (Azure SDK).
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))?;
        return Some(token.trim());
    }
    headers
        .get("x-api-key")
        .or_else(|| headers.get("api-key"))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The tenant of a verified principal, as the snapshot knows it.
pub struct Authenticated {
    pub principal: Principal,
    pub tenant: Arc<Tenant>,
}

pub fn authenticate(
    index: &AuthIndex,
    secret: &ServerSecret,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<Authenticated, GatewayError> {
    let key = presented_key(headers)
        .filter(|k| !k.is_empty())
        .ok_or(GatewayError::MissingKey)?;
    let rec = index
        .keys
        .get(&secret.hash_key(key))
        .ok_or(GatewayError::InvalidKey)?;
    if !rec.is_usable_at(now_ms) {
        return Err(GatewayError::InvalidKey);
    }
    // A key whose tenant is gone from the snapshot authenticates nobody.
    let tenant = index
        .tenants
        .get(&rec.tenant_id)
        .ok_or(GatewayError::InvalidKey)?
        .clone();
    #[expect(
        clippy::disallowed_methods,
        reason = "authentication stage: the credential was just verified against the key index"
    )]
    let scope = TenantScope::from_verified_credential(rec.tenant_id.clone());
    Ok(Authenticated {
        principal: Principal {
            scope,
            key_id: rec.id.clone(),
            role: rec.role,
            user: rec.end_user.clone(),
        },
        tenant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use tenantgate_core::{IsolationTier, KeyId, PlanTier, Role, TenantStatus};

    fn index_with(secret: &ServerSecret, key: &str, expires: Option<i64>) -> AuthIndex {
        let tid = TenantId::parse("t1").unwrap();
        AuthIndex::build(AuthSnapshot {
            revision: 1,
            tenants: vec![Tenant {
                id: tid.clone(),
                slug: "acme".into(),
                display_name: "Acme".into(),
                plan: PlanTier::Pro,
                isolation: IsolationTier::Namespace,
                status: TenantStatus::Active,
                allowed_models: vec![],
                max_tokens_per_request: None,
                created_at_ms: 0,
            }],
            keys: vec![ApiKeyRecord {
                id: KeyId::parse("k1").unwrap(),
                tenant_id: tid,
                prefix: key[..12].into(),
                hash: hex::encode(secret.hash_key(key)),
                name: None,
                role: Role::Member,
                end_user: Some("u-7".into()),
                created_at_ms: 0,
                expires_at_ms: expires,
                revoked_at_ms: None,
            }],
            ..Default::default()
        })
    }

    fn headers(name: &'static str, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn bearer_x_api_key_and_azure_header_all_authenticate() {
        let s = ServerSecret::from_bytes([9; 32]);
        let key = "tgk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let idx = index_with(&s, key, None);
        for h in [
            headers("authorization", &format!("Bearer {key}")),
            headers("x-api-key", key),
            headers("api-key", key),
        ] {
            let a = authenticate(&idx, &s, &h, 0).unwrap();
            assert_eq!(a.principal.scope.tenant_id().as_str(), "t1");
            assert_eq!(a.principal.user.as_deref(), Some("u-7"));
        }
    }

    #[test]
    fn absent_wrong_and_expired_keys_are_refused() {
        let s = ServerSecret::from_bytes([9; 32]);
        let key = "tgk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let idx = index_with(&s, key, Some(1000));
        assert_eq!(
            authenticate(&idx, &s, &HeaderMap::new(), 0).err(),
            Some(GatewayError::MissingKey)
        );
        let wrong = headers("authorization", "Bearer tgk_wrong");
        assert_eq!(
            authenticate(&idx, &s, &wrong, 0).err(),
            Some(GatewayError::InvalidKey)
        );
        let ok = headers("authorization", &format!("Bearer {key}"));
        assert!(authenticate(&idx, &s, &ok, 999).is_ok());
        assert_eq!(
            authenticate(&idx, &s, &ok, 1000).err(),
            Some(GatewayError::InvalidKey)
        );
        // the same key under another server secret is not valid
        let other = ServerSecret::from_bytes([8; 32]);
        assert_eq!(
            authenticate(&idx, &other, &ok, 0).err(),
            Some(GatewayError::InvalidKey)
        );
    }
}
