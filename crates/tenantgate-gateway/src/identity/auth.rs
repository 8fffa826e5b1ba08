//! Stage 1, authenticate: credential -> [`Principal`]. Lookups are served from an in-memory
//! snapshot (no database query per request), swapped atomically when the control plane changes.

use crate::config::OidcConfig;
use crate::error::GatewayError;
use crate::identity::keys::ServerSecret;
use crate::identity::oidc::VerifiedToken;
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::sync::Arc;
use tenantgate_core::{
    ApiKeyRecord, Credential, PlatformAdmin, Principal, Role, Tenant, TenantId, TenantScope,
};
use tenantgate_store::knowledge::KnowledgeBase;
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
    limits: HashMap<TenantId, (crate::limits::LimitSet, bool)>,
    by_slug: HashMap<String, TenantId>,
    /// OIDC members' roles, by (tenant, subject).
    members: HashMap<(TenantId, String), Role>,
    default_kbs: HashMap<TenantId, Vec<String>>,
    /// Every knowledge base per tenant (metadata and revision, never contents): retrieval
    /// resolves names and checks its resident indexes against these without a query.
    knowledge_bases: HashMap<TenantId, Vec<KnowledgeBase>>,
    /// Tenants with a stored policy this version cannot parse (written by a newer version,
    /// or damaged), and which: refused until it is readable, never run on defaults.
    unreadable: HashMap<TenantId, Vec<PolicyKind>>,
    /// Each tenant's own provider endpoints: (provider, revision), by provider name. What
    /// the request path opens and caches per tenant (`upstream::endpoints`) is keyed by these.
    endpoints: HashMap<TenantId, Vec<(String, i64)>>,
    /// Providers a platform operator drained: no target on them is tried (`pipeline::route`).
    drains: std::collections::BTreeSet<String>,
    /// Platform holds (`incident freeze`), by what they hold: a call matching one is refused
    /// (`pipeline::authorize::not_frozen`). A tenant admin has no way to lift one.
    freezes: HashMap<(tenantgate_store::incident::FreezeKind, String), String>,
    /// Tenants whose keys are wrapped by a key in their own KMS: their calls check it answers
    /// (`pipeline::authorize::tenant_key`); every other tenant's pass without a look.
    customer_keys: HashMap<TenantId, tenantgate_crypto::CustomerKey>,
    /// Each tenant's private (fine-tuned) models: callable by that tenant only
    /// (`pipeline::authorize::model`), with no query on a warm call.
    private_models: HashMap<TenantId, Vec<tenantgate_store::finetune::PrivateModel>>,
}

/// The stored per-tenant policies the snapshot parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    Guard,
    Audit,
    Limits,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Guard => "guard",
            PolicyKind::Audit => "audit",
            PolicyKind::Limits => "limits",
        }
    }
}

/// Parses one tenant's stored policy; a failure marks the tenant unreadable and is logged at
/// ERROR with the error's position only (a policy may hold a webhook URL with a token).
fn parse_policy<T: serde::de::DeserializeOwned>(
    tenant: &TenantId,
    kind: PolicyKind,
    json: &str,
    unreadable: &mut HashMap<TenantId, Vec<PolicyKind>>,
) -> Option<T> {
    match serde_json::from_str(json) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(target: "tenantgate::policy", tenant = %tenant, policy = kind.as_str(),
                line = e.line(), column = e.column(), category = ?e.classify(),
                "stored tenant policy is unreadable; the tenant's calls are refused with 503 until it is fixed");
            unreadable.entry(tenant.clone()).or_default().push(kind);
            None
        }
    }
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
            default_policy: crate::identity::guard_policy::enforced(
                tenantgate_guard::Policy::default(),
            ),
            audit_policies: HashMap::new(),
            default_audit: Arc::default(),
            limits: HashMap::new(),
            by_slug: HashMap::new(),
            members: HashMap::new(),
            default_kbs: HashMap::new(),
            knowledge_bases: HashMap::new(),
            unreadable: HashMap::new(),
            endpoints: HashMap::new(),
            drains: Default::default(),
            freezes: HashMap::new(),
            customer_keys: HashMap::new(),
            private_models: HashMap::new(),
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
        let mut unreadable = HashMap::new();
        let policies = snap
            .guard_policies
            .into_iter()
            .filter_map(|(t, json)| {
                let p = parse_policy(&t, PolicyKind::Guard, &json, &mut unreadable)?;
                Some((t, crate::identity::guard_policy::enforced(p)))
            })
            .collect();
        let audit_policies = snap
            .audit_policies
            .into_iter()
            .filter_map(|(t, json)| {
                let p = parse_policy(&t, PolicyKind::Audit, &json, &mut unreadable)?;
                Some((t, Arc::new(p)))
            })
            .collect();
        let limits = snap
            .limits
            .into_iter()
            .filter_map(|(t, json, kill)| {
                let l = parse_policy(&t, PolicyKind::Limits, &json, &mut unreadable)?;
                Some((t, (l, kill)))
            })
            .collect();
        let by_slug = tenants
            .values()
            .map(|t| (t.slug.clone(), t.id.clone()))
            .collect();
        let members = snap
            .members
            .into_iter()
            .map(|(t, subject, role)| ((t, subject), role))
            .collect();
        let mut default_kbs: HashMap<TenantId, Vec<String>> = HashMap::new();
        for (t, kb) in snap.default_knowledge_bases {
            default_kbs.entry(t).or_default().push(kb);
        }
        let mut knowledge_bases: HashMap<TenantId, Vec<KnowledgeBase>> = HashMap::new();
        for (t, kb) in snap.knowledge_bases {
            knowledge_bases.entry(t).or_default().push(kb);
        }
        let mut endpoints: HashMap<TenantId, Vec<(String, i64)>> = HashMap::new();
        for (t, provider, revision) in snap.endpoints {
            endpoints.entry(t).or_default().push((provider, revision));
        }
        let mut private_models: HashMap<TenantId, Vec<_>> = HashMap::new();
        for (t, m) in snap.private_models {
            private_models.entry(t).or_default().push(m);
        }
        Self {
            private_models,
            endpoints,
            drains: snap.drains.into_iter().collect(),
            freezes: snap
                .freezes
                .into_iter()
                .map(|f| ((f.kind, f.target), f.id))
                .collect(),
            customer_keys: HashMap::new(),
            unreadable,
            default_kbs,
            knowledge_bases,
            by_slug,
            members,
            limits,
            audit_policies,
            default_audit: Arc::default(),
            revision: snap.revision,
            keys,
            tenants,
            scanner,
            policies,
            prompt_revisions: snap.prompt_revisions.into_iter().collect(),
            default_policy: crate::identity::guard_policy::enforced(
                tenantgate_guard::Policy::default(),
            ),
        }
    }

    /// The policies of the tenant this snapshot could not parse (empty: all readable).
    pub fn unreadable_policies(&self, tenant: &TenantId) -> &[PolicyKind] {
        self.unreadable.get(tenant).map_or(&[], Vec::as_slice)
    }

    /// How many tenants have a policy this snapshot could not parse (a gauge at /metrics).
    pub fn unreadable_count(&self) -> usize {
        self.unreadable.len()
    }

    /// The tenant's prompt revision; `None` if it never configured prompts.
    pub fn prompt_revision(&self, tenant: &TenantId) -> Option<i64> {
        self.prompt_revisions.get(tenant).copied()
    }

    /// The tenant's own provider endpoints, (provider, revision) by provider name; empty for
    /// a tenant that reaches every provider through the platform's.
    pub fn own_endpoints(&self, tenant: &TenantId) -> &[(String, i64)] {
        self.endpoints.get(tenant).map_or(&[], Vec::as_slice)
    }

    /// Whether a platform operator drained `provider`.
    pub fn is_drained(&self, provider: &str) -> bool {
        self.drains.contains(provider)
    }

    /// The id of the freeze holding `target` (a tenant id, a route path, a model name), if any.
    pub fn frozen(
        &self,
        kind: tenantgate_store::incident::FreezeKind,
        target: &str,
    ) -> Option<&str> {
        if self.freezes.is_empty() {
            return None;
        }
        self.freezes
            .get(&(kind, target.to_owned()))
            .map(String::as_str)
    }

    /// The tenant's private (fine-tuned) models; empty for any other tenant's name.
    pub fn private_models(&self, tenant: &TenantId) -> &[tenantgate_store::finetune::PrivateModel] {
        self.private_models.get(tenant).map_or(&[], Vec::as_slice)
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
    pub fn limits(&self, tenant: &TenantId) -> (crate::limits::LimitSet, bool) {
        self.limits.get(tenant).copied().unwrap_or_default()
    }

    /// The tenant's default knowledge bases (ids), searched when a chat request names none.
    pub fn default_knowledge_bases(&self, tenant: &TenantId) -> &[String] {
        self.default_kbs.get(tenant).map_or(&[], Vec::as_slice)
    }

    /// One of the tenant's knowledge bases by id or name, as of this snapshot; `None` for a
    /// missing one and for another tenant's alike.
    pub fn knowledge_base(&self, tenant: &TenantId, id_or_name: &str) -> Option<&KnowledgeBase> {
        self.knowledge_bases
            .get(tenant)?
            .iter()
            .find(|kb| kb.id == id_or_name || kb.name == id_or_name)
    }

    /// A tenant by slug or id.
    pub fn tenant_by_name(&self, name: &str) -> Option<Arc<Tenant>> {
        let id = match self.by_slug.get(name) {
            Some(id) => id.clone(),
            None => TenantId::parse(name).ok()?,
        };
        self.tenants.get(&id).cloned()
    }

    fn same_tenant(&self, a: &str, b: &str) -> bool {
        match (self.tenant_by_name(a), self.tenant_by_name(b)) {
            (Some(x), Some(y)) => x.id == y.id,
            _ => false,
        }
    }

    fn member_role(&self, tenant: &TenantId, subject: &str) -> Option<Role> {
        self.members
            .get(&(tenant.clone(), subject.to_owned()))
            .copied()
    }

    /// The tenant exists and is not deleted (suspended tenants keep their data, and so do
    /// tenants pending deletion: a restore brings everything back).
    pub fn is_live(&self, tenant: &TenantId) -> bool {
        use tenantgate_core::TenantStatus;
        self.tenants.get(tenant).is_some_and(|t| match t.status {
            TenantStatus::Active | TenantStatus::Suspended | TenantStatus::PendingDeletion => true,
            TenantStatus::Deleted => false,
        })
    }

    pub fn tenant_ids(&self) -> impl Iterator<Item = &TenantId> {
        self.tenants.keys()
    }

    /// With the tenants on keys of their own (`Platform::customer_keys`), read with the
    /// snapshot.
    pub fn with_customer_keys(
        mut self,
        keys: Vec<(TenantId, tenantgate_crypto::CustomerKey)>,
    ) -> Self {
        self.customer_keys = keys.into_iter().collect();
        self
    }

    /// The tenant's own key, if its keys are wrapped by one.
    pub fn customer_key(&self, tenant: &TenantId) -> Option<&tenantgate_crypto::CustomerKey> {
        self.customer_keys.get(tenant)
    }

    /// Tenants whose own key is not the same in both snapshots (moved to one, off one, or to
    /// another): what this process remembers of their keys is stale.
    pub fn customer_keys_changed<'a>(&'a self, previous: &'a AuthIndex) -> Vec<TenantId> {
        let mut changed: Vec<TenantId> = self
            .customer_keys
            .iter()
            .filter(|(t, k)| previous.customer_keys.get(*t) != Some(*k))
            .map(|(t, _)| t.clone())
            .collect();
        changed.extend(
            previous
                .customer_keys
                .keys()
                .filter(|t| !self.customer_keys.contains_key(*t))
                .cloned(),
        );
        changed
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

/// Whoever a request's credential verified as: a tenant's principal, or a platform admin (who
/// has no tenant scope; it reaches tenant data only through break-glass).
pub enum Caller {
    Tenant(Authenticated),
    Platform(PlatformAdmin),
}

/// The bearer, `x-api-key` or `api-key` value of a request; `MissingKey` if none.
pub fn credential(headers: &HeaderMap) -> Result<&str, GatewayError> {
    presented_key(headers)
        .filter(|k| !k.is_empty())
        .ok_or(GatewayError::MissingKey)
}

/// The one place a tenant principal's scope is made, for either kind of credential.
fn principal(
    tenant: &TenantId,
    credential: Credential,
    role: Role,
    user: Option<String>,
) -> Principal {
    #[expect(
        clippy::disallowed_methods,
        reason = "authentication stage: the credential was just verified (API key hash or token signature)"
    )]
    let scope = TenantScope::from_verified_credential(tenant.clone());
    Principal {
        scope,
        credential,
        role,
        user,
    }
}

/// An API key, looked up by its keyed hash.
pub fn authenticate_key(
    index: &AuthIndex,
    secret: &ServerSecret,
    key: &str,
    now_ms: i64,
) -> Result<Authenticated, GatewayError> {
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
    Ok(Authenticated {
        principal: principal(
            &rec.tenant_id,
            Credential::ApiKey(rec.id.clone()),
            rec.role,
            rec.end_user.clone(),
        ),
        tenant,
    })
}

/// A token whose signature and claims verified, mapped to a caller: a platform admin (only
/// from an issuer trusted for that), or a principal of the tenant the issuer is bound to or
/// the token's tenant claim names. The role is the tenant's member entry if there is one,
/// else the token's roles claim.
pub fn admit_token(
    index: &AuthIndex,
    cfg: &OidcConfig,
    token: VerifiedToken,
) -> Result<Caller, GatewayError> {
    let refuse = |why: &str| GatewayError::InvalidToken(why.to_owned());
    let has = |r: Role| token.roles.iter().any(|x| x == r.as_str());
    if cfg.platform_admins && has(Role::PlatformAdmin) {
        #[expect(
            clippy::disallowed_methods,
            reason = "authentication stage: a verified token with platform_admin from an issuer trusted to grant it"
        )]
        let admin = PlatformAdmin::from_verified_credential(token.subject);
        return Ok(Caller::Platform(admin));
    }
    let named = match (&cfg.tenant, &token.tenant) {
        // A bound issuer speaks for its tenant only; a token naming another is refused.
        (Some(bound), Some(claimed)) if !index.same_tenant(bound, claimed) => {
            return Err(refuse(
                "the token names a tenant its issuer cannot speak for",
            ))
        }
        (Some(bound), _) => bound,
        (None, Some(claimed)) => claimed,
        (None, None) => return Err(refuse("the token names no tenant")),
    };
    let tenant = index
        .tenant_by_name(named)
        .ok_or_else(|| refuse("the token's tenant is unknown"))?;
    let member = index.member_role(&tenant.id, &token.subject);
    let role = match member {
        Some(r) => r,
        None if cfg.require_membership => {
            return Err(refuse("the user is not a member of this tenant"))
        }
        None if has(Role::TenantAdmin) => Role::TenantAdmin,
        None => Role::Member,
    };
    Ok(Caller::Tenant(Authenticated {
        principal: principal(
            &tenant.id,
            Credential::Token {
                issuer: token.issuer,
                subject: token.subject.clone(),
            },
            role,
            Some(token.subject),
        ),
        tenant,
    }))
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
                enabled_models: None,
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
            let a = authenticate_key(&idx, &s, credential(&h).unwrap(), 0).unwrap();
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
            credential(&HeaderMap::new()).err(),
            Some(GatewayError::MissingKey)
        );
        let auth = |idx: &AuthIndex, s: &ServerSecret, k: &str, now| {
            authenticate_key(idx, s, k, now).err()
        };
        assert_eq!(
            auth(&idx, &s, "tgk_wrong", 0),
            Some(GatewayError::InvalidKey)
        );
        assert_eq!(auth(&idx, &s, key, 999), None);
        assert_eq!(auth(&idx, &s, key, 1000), Some(GatewayError::InvalidKey));
        // the same key under another server secret is not valid
        let other = ServerSecret::from_bytes([8; 32]);
        assert_eq!(auth(&idx, &other, key, 0), Some(GatewayError::InvalidKey));
    }
}
