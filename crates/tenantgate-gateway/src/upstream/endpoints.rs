//! A tenant's own provider endpoints (issue 17): for a configured provider, the tenant's own
//! base URL and API key, so its calls to that provider go only there, with only its key.
//!
//! They are sealed with the tenant's keys (`tenantgate_store::endpoints`) and opened on the
//! tenant's first call that needs one, under the caller's own scope, then kept per tenant in
//! [`EndpointCache`] keyed by the snapshot's (provider, revision) list of the tenant: a warm
//! call reads no row, and a change (set, replace, remove) moves the list, so the next call
//! after the snapshot reload opens afresh. The snapshot reload drops what a new snapshot no
//! longer lists, a deleted tenant's endpoints with it ([`EndpointCache::retain_current`]).

use crate::config::{Config, ProviderKind};
use crate::error::GatewayError;
use crate::identity::auth::AuthIndex;
use crate::identity::TenantContext;
use crate::upstream::{Provider, Route};
use arc_swap::ArcSwap;
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tenantgate_core::TenantId;
use tenantgate_store::endpoints::EndpointSecret;
use tenantgate_store::KeyringError;

/// One tenant's endpoints as opened at one (provider, revision) list. Replaced, never
/// changed in place, when a call opens one more.
#[derive(Default, Clone)]
struct Opened {
    key: Vec<(String, i64)>,
    /// By provider name.
    providers: HashMap<String, Arc<Provider>>,
    /// By (tenant-facing model name, provider): the catalog's route on the tenant's
    /// provider (a model with several targets has one per provider).
    routes: HashMap<(String, String), Arc<Route>>,
}

/// The tenants' opened endpoints in this process.
#[derive(Default)]
pub struct EndpointCache {
    map: Mutex<HashMap<TenantId, Arc<Opened>>>,
}

impl EndpointCache {
    fn get(&self, tenant: &TenantId, key: &[(String, i64)]) -> Option<Arc<Opened>> {
        let m = self.map.lock().ok()?;
        m.get(tenant).filter(|o| o.key == key).cloned()
    }

    /// Keeps only what `index` still lists: a tenant deleted (or gone) loses its opened
    /// endpoints, keys included, and a changed list is opened afresh on the next call.
    pub fn retain_current(&self, index: &AuthIndex) {
        if let Ok(mut m) = self.map.lock() {
            m.retain(|t, o| index.is_live(t) && index.own_endpoints(t) == o.key.as_slice());
        }
    }

    /// How many tenants have endpoints open here.
    pub fn tenants(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }
}

/// What resolving a tenant's own endpoint reads: the opened ones, the current snapshot (so
/// nothing is kept for a list the snapshot already replaced), and the keyring the sealed
/// endpoints are opened with.
pub struct Endpoints<'a> {
    pub cache: &'a EndpointCache,
    pub auth: &'a ArcSwap<AuthIndex>,
    pub keyring: &'a tenantgate_store::Keyring,
}

impl Endpoints<'_> {
    /// `shared` (a catalog route the tenant may use) on the tenant's own endpoint for its
    /// provider. The caller decided the tenant has one (`authorize::reach`).
    pub async fn route(
        &self,
        ctx: &TenantContext,
        shared: &Arc<Route>,
    ) -> Result<Arc<Route>, GatewayError> {
        let tenant = ctx.principal.scope.tenant_id();
        let key = ctx.view.own_endpoints(tenant);
        let opened = self.cache.get(tenant, key);
        let route_key = (shared.name.clone(), shared.provider.name.clone());
        if let Some(r) = opened.as_ref().and_then(|o| o.routes.get(&route_key)) {
            return Ok(r.clone());
        }
        let provider = match opened
            .as_ref()
            .and_then(|o| o.providers.get(&shared.provider.name))
        {
            Some(p) => p.clone(),
            None => Arc::new(self.open(ctx, &shared.provider, key).await?),
        };
        let route = Arc::new(Route {
            name: shared.name.clone(),
            provider: provider.clone(),
            upstream_model: shared.upstream_model.clone(),
            default_max_tokens: shared.default_max_tokens,
            pricing: shared.pricing,
        });
        self.keep(tenant, key, provider, route.clone());
        Ok(route)
    }

    /// `platform` (a configured provider) on the tenant's own endpoint for it: what calls
    /// that are not model calls (fine-tuning's files and jobs) go to when the tenant has its
    /// own endpoint for the provider. The caller decided it has one (`authorize::reach`).
    pub async fn provider(
        &self,
        ctx: &TenantContext,
        platform: &Arc<Provider>,
    ) -> Result<Arc<Provider>, GatewayError> {
        let tenant = ctx.principal.scope.tenant_id();
        let key = ctx.view.own_endpoints(tenant);
        let opened = self.cache.get(tenant, key);
        if let Some(p) = opened
            .as_ref()
            .and_then(|o| o.providers.get(&platform.name))
        {
            return Ok(p.clone());
        }
        Ok(Arc::new(self.open(ctx, platform, key).await?))
    }

    /// Opens the tenant's sealed endpoint for `platform`'s provider. Any failure is the call's
    /// 503: the platform's endpoint is never the fallback for a tenant that has its own.
    async fn open(
        &self,
        ctx: &TenantContext,
        platform: &Provider,
        key: &[(String, i64)],
    ) -> Result<Provider, GatewayError> {
        let tenant = ctx.principal.scope.tenant_id();
        let revision = key
            .iter()
            .find(|(p, _)| *p == platform.name)
            .map(|(_, r)| *r)
            .ok_or(GatewayError::Internal)?;
        let unavailable = || {
            GatewayError::Unavailable(format!(
                "this tenant's own endpoint for provider {:?} cannot be used right now",
                platform.name
            ))
        };
        let secret = self
            .keyring
            .open_endpoint(&ctx.principal.scope, &platform.name)
            .await
            .map_err(|e| {
                // The error's kind only: nothing of the endpoint is logged.
                let why = match e {
                    KeyringError::NotFound => "removed since the snapshot",
                    KeyringError::Undecryptable => "cannot be decrypted",
                    KeyringError::Kms(_) => "the key service failed",
                    KeyringError::Store(_) => "the store failed",
                    KeyringError::KeyUnavailable(_) => "the tenant's own key is unavailable",
                };
                tracing::warn!(tenant = %tenant, provider = %platform.name, why, "tenant endpoint not opened");
                unavailable()
            })?;
        // The same checks as when it was set: a row edited in the database, or written by
        // another version, is refused rather than sent to.
        let url = checked_base_url(&secret.base_url).map_err(|_| unavailable())?;
        let EndpointSecret {
            api_key,
            api_version,
            ..
        } = &secret;
        Ok(platform.at_tenant_endpoint(
            revision,
            &url,
            SecretString::from(api_key.clone()),
            api_version.clone(),
        ))
    }

    /// Keeps what was opened, if the snapshot still lists the tenant's endpoints as they were
    /// when the call started (a reload in between replaced them: the next call opens anew).
    fn keep(&self, tenant: &TenantId, key: &[(String, i64)], p: Arc<Provider>, r: Arc<Route>) {
        let current = self.auth.load();
        if !current.is_live(tenant) || current.own_endpoints(tenant) != key {
            return;
        }
        if let Ok(mut m) = self.cache.map.lock() {
            let mut o = match m.get(tenant) {
                Some(o) if o.key == key => Opened::clone(o),
                _ => Opened {
                    key: key.to_vec(),
                    ..Opened::default()
                },
            };
            o.providers.insert(p.name.clone(), p);
            o.routes
                .insert((r.name.clone(), r.provider.name.clone()), r);
            m.insert(tenant.clone(), Arc::new(o));
        }
    }
}

/// The longest base URL, API key and api_version accepted.
const MAX_URL: usize = 2048;
const MAX_KEY: usize = 4096;
const MAX_VERSION: usize = 64;

/// A base URL a tenant endpoint may have: http(s), a host, no credentials, query or fragment
/// (a key hidden in the URL would be listed and audited in clear). Returns it without a
/// trailing `/`.
fn checked_base_url(url: &str) -> Result<String, String> {
    if url.len() > MAX_URL {
        return Err(format!("longer than {MAX_URL} bytes"));
    }
    let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("must start with http:// or https://".into());
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry credentials: pass the key as the endpoint's API key".into());
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Checks an endpoint an operator sets for `provider` against the configuration, and
/// normalises it (the base URL without a trailing `/`). Errors name the field, never echo
/// the key.
pub fn validate(
    config: &Config,
    provider: &str,
    endpoint: &mut EndpointSecret,
) -> Result<(), GatewayError> {
    let p = config
        .providers
        .iter()
        .find(|p| p.name == provider)
        .ok_or_else(|| {
            GatewayError::invalid(
                format!("no provider {provider:?} is configured"),
                "provider",
            )
        })?;
    match p.kind {
        ProviderKind::Demo => {
            return Err(GatewayError::invalid(
                "the built-in demo model runs in process and takes no endpoint",
                "provider",
            ))
        }
        ProviderKind::Openai
        | ProviderKind::Azure
        | ProviderKind::OpenaiCompatible
        | ProviderKind::Anthropic => {}
    }
    endpoint.base_url = checked_base_url(endpoint.base_url.trim())
        .map_err(|m| GatewayError::invalid(format!("base_url {m}"), "base_url"))?;
    let key = endpoint.api_key.trim();
    if key.is_empty() || key.len() > MAX_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(GatewayError::invalid(
            format!("api_key must be 1 to {MAX_KEY} visible ASCII characters"),
            "api_key",
        ));
    }
    if key.len() != endpoint.api_key.len() {
        endpoint.api_key = key.to_owned();
    }
    match (p.kind, &endpoint.api_version) {
        (_, None) => {}
        (ProviderKind::Azure, Some(v)) => {
            let ok = !v.is_empty()
                && v.len() <= MAX_VERSION
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(GatewayError::invalid(
                    "api_version must look like 2024-10-21",
                    "api_version",
                ));
            }
        }
        (
            ProviderKind::Openai
            | ProviderKind::OpenaiCompatible
            | ProviderKind::Anthropic
            | ProviderKind::Demo,
            Some(_),
        ) => {
            return Err(GatewayError::invalid(
                "api_version applies to azure providers only",
                "api_version",
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::checked_base_url;

    #[test]
    fn base_urls_with_credentials_queries_or_other_schemes_are_refused() {
        assert_eq!(
            checked_base_url("https://acme.example.com/v1/").unwrap(),
            "https://acme.example.com/v1"
        );
        assert!(checked_base_url("http://127.0.0.1:8080").is_ok());
        for bad in [
            "https://user:sk-secret@acme.example.com/v1",
            "https://acme.example.com/v1?key=sk-secret",
            "https://acme.example.com/v1#frag",
            "ftp://acme.example.com",
            "acme.example.com/v1",
            "",
        ] {
            assert!(checked_base_url(bad).is_err(), "{bad}");
        }
    }
}
