//! The model catalog (tenant-facing names -> provider routes) and the one HTTP transport to
//! providers: pooled connections per provider, timeouts from config, credentials attached here
//! and nowhere else.

pub mod breaker;
pub mod cache;
pub mod endpoints;
pub mod failover;
pub mod finetune;
pub mod transport;

use crate::config::{Config, ConfigError, ProviderKind};
use crate::error::GatewayError;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Requests carry a tenant-derived `cache_salt` (`ProviderConfig::sends_cache_salt`).
    pub cache_salt: bool,
    /// The platform's endpoint, or a tenant's own (`endpoints.rs`).
    pub owner: Owner,
    base_url: String,
    api_key: Option<SecretString>,
    api_version: Option<String>,
    client: reqwest::Client,
}

/// Whose endpoint and credential a [`Provider`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The platform's, from the configuration: shared by every tenant that has none of its own.
    Platform,
    /// One tenant's own, at this revision of it (`tenant_endpoints.revision`).
    Tenant { revision: i64 },
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("owner", &self.owner)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Where one tenant-facing model name goes.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub provider: Arc<Provider>,
    pub upstream_model: String,
    pub default_max_tokens: u32,
    pub pricing: crate::config::Pricing,
}

/// Where one model can be served from: its targets in configuration order (the model's own
/// `provider` first) with their weights, how a call orders them, and the model tried when
/// every one failed.
#[derive(Debug)]
pub struct Plan {
    pub targets: Vec<(Arc<Route>, u32)>,
    pub strategy: crate::config::Strategy,
    pub fallback: Option<String>,
}

#[derive(Debug, Default)]
pub struct Catalog {
    /// Each model's first target (what a model's name, prices and defaults are read from).
    routes: BTreeMap<String, Arc<Route>>,
    /// Each model's targets (the first one included).
    plans: BTreeMap<String, Plan>,
    /// The configured providers by name (the demo model's included when it is enabled).
    providers: BTreeMap<String, Arc<Provider>>,
}

#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    Chat,
    Embeddings,
    Messages,
}

impl Catalog {
    pub fn build(cfg: &Config) -> Result<Catalog, ConfigError> {
        let mut providers: BTreeMap<&str, Arc<Provider>> = BTreeMap::new();
        let mut routes = BTreeMap::new();
        let mut plans = BTreeMap::new();
        for (i, p) in cfg.providers.iter().enumerate() {
            let client = reqwest::Client::builder()
                .connect_timeout(p.connect_timeout())
                .timeout(Duration::from_millis(p.request_timeout_ms))
                .read_timeout(Duration::from_millis(p.read_timeout_ms))
                .pool_max_idle_per_host(p.pool_max_idle_per_host)
                .tcp_nodelay(true)
                .build()
                .map_err(|e| ConfigError::Invalid {
                    key: format!("providers[{i}]"),
                    message: e.to_string(),
                })?;
            let base_url = p
                .base_url
                .clone()
                .unwrap_or_else(|| match p.kind {
                    ProviderKind::Anthropic => "https://api.anthropic.com".to_owned(),
                    _ => "https://api.openai.com/v1".to_owned(),
                })
                .trim_end_matches('/')
                .to_owned();
            providers.insert(
                &p.name,
                Arc::new(Provider {
                    name: p.name.clone(),
                    kind: p.kind,
                    cache_salt: p.sends_cache_salt(),
                    owner: Owner::Platform,
                    base_url,
                    api_key: p.api_key(i)?,
                    api_version: p.api_version.clone(),
                    client,
                }),
            );
        }
        if cfg.demo.enabled {
            let demo = Arc::new(Provider {
                name: "demo".into(),
                kind: ProviderKind::Demo,
                cache_salt: false,
                owner: Owner::Platform,
                base_url: String::new(),
                api_key: None,
                api_version: None,
                client: reqwest::Client::new(),
            });
            routes.insert(
                "demo".to_owned(),
                Arc::new(Route {
                    name: "demo".into(),
                    provider: demo,
                    upstream_model: "demo".into(),
                    default_max_tokens: 1024,
                    // The offline demo model is free.
                    pricing: crate::config::Pricing::default(),
                }),
            );
        }
        for m in &cfg.models {
            let target = |provider: &str, upstream: &Option<String>, pricing: Option<_>| {
                let provider =
                    providers
                        .get(provider)
                        .cloned()
                        .ok_or_else(|| ConfigError::Invalid {
                            key: "models".into(),
                            message: format!("unknown provider {provider:?}"),
                        })?;
                Ok::<_, ConfigError>(Arc::new(Route {
                    name: m.name.clone(),
                    provider,
                    upstream_model: upstream.clone().unwrap_or_else(|| m.name.clone()),
                    default_max_tokens: m.default_max_tokens,
                    pricing: pricing.or(m.pricing).unwrap_or_default(),
                }))
            };
            let first = target(&m.provider, &m.upstream_model, m.pricing)?;
            let mut targets = vec![(first.clone(), m.weight)];
            for t in &m.targets {
                let upstream = t
                    .upstream_model
                    .clone()
                    .or_else(|| m.upstream_model.clone());
                targets.push((target(&t.provider, &upstream, t.pricing)?, t.weight));
            }
            routes.insert(m.name.clone(), first);
            plans.insert(
                m.name.clone(),
                Plan {
                    targets,
                    strategy: m.strategy,
                    fallback: m.fallback.clone(),
                },
            );
        }
        // A model with no plan of its own (the demo model) is its one route.
        for (name, r) in &routes {
            plans.entry(name.clone()).or_insert_with(|| Plan {
                targets: vec![(r.clone(), 1)],
                strategy: crate::config::Strategy::Ordered,
                fallback: None,
            });
        }
        let providers = providers
            .into_iter()
            .map(|(name, p)| (name.to_owned(), p))
            .collect();
        Ok(Catalog {
            routes,
            plans,
            providers,
        })
    }

    /// A configured provider by name.
    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.get(name)
    }

    pub fn get(&self, model: &str) -> Option<&Arc<Route>> {
        self.routes.get(model)
    }

    /// A model's targets, ordering and fallback.
    pub fn plan(&self, model: &str) -> Option<&Plan> {
        self.plans.get(model)
    }

    /// The configured providers, by name.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.values()
    }

    /// Every route, by tenant-facing name.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.values()
    }
}

impl Provider {
    /// This provider (kind, timeouts, connection pool) at a tenant's own endpoint with the
    /// tenant's own credential. The platform's key is not carried over: a tenant endpoint
    /// without a key sends none. reqwest pools connections per host inside one client, so the
    /// tenant's host gets its own connections without a client per tenant.
    pub(crate) fn at_tenant_endpoint(
        &self,
        revision: i64,
        base_url: &str,
        api_key: SecretString,
        api_version: Option<String>,
    ) -> Provider {
        Provider {
            name: self.name.clone(),
            kind: self.kind,
            cache_salt: self.cache_salt,
            owner: Owner::Tenant { revision },
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: Some(api_key),
            // Azure's api_version is the API's, not a secret: the platform's applies when the
            // tenant named none.
            api_version: api_version.or_else(|| self.api_version.clone()),
            client: self.client.clone(),
        }
    }

    /// Where its requests go (without a trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The provider as a cache key names it: a tenant's own endpoint is another upstream
    /// than the platform's, and each of its revisions another again, so an answer cached from
    /// one is never served as the other's.
    pub fn cache_label(&self) -> std::borrow::Cow<'_, str> {
        match self.owner {
            Owner::Platform => std::borrow::Cow::Borrowed(&self.name),
            Owner::Tenant { revision } => {
                std::borrow::Cow::Owned(format!("{}@tenant-endpoint-{revision}", self.name))
            }
        }
    }

    fn url(&self, ep: Endpoint, upstream_model: &str) -> String {
        match (self.kind, ep) {
            (ProviderKind::Azure, Endpoint::Chat) => format!(
                "{}/openai/deployments/{upstream_model}/chat/completions?api-version={}",
                self.base_url,
                self.api_version.as_deref().unwrap_or_default()
            ),
            (ProviderKind::Azure, Endpoint::Embeddings) => format!(
                "{}/openai/deployments/{upstream_model}/embeddings?api-version={}",
                self.base_url,
                self.api_version.as_deref().unwrap_or_default()
            ),
            (_, Endpoint::Chat) => format!("{}/chat/completions", self.base_url),
            (_, Endpoint::Embeddings) => format!("{}/embeddings", self.base_url),
            (_, Endpoint::Messages) => format!("{}/v1/messages", self.base_url),
        }
    }

    /// Sends one request; returns once the response headers arrived.
    pub async fn send(
        &self,
        ep: Endpoint,
        upstream_model: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, GatewayError> {
        let mut rb = self
            .client
            .post(self.url(ep, upstream_model))
            .header("content-type", "application/json")
            .body(body);
        let key = self.api_key.as_ref().map(|k| k.expose_secret());
        rb = match (self.kind, key) {
            (ProviderKind::Anthropic, k) => {
                let rb = rb.header(
                    "anthropic-version",
                    tenantgate_providers::anthropic::API_VERSION,
                );
                match k {
                    Some(k) => rb.header("x-api-key", k),
                    None => rb,
                }
            }
            (ProviderKind::Azure, Some(k)) => rb.header("api-key", k),
            (_, Some(k)) => rb.bearer_auth(k),
            (_, None) => rb,
        };
        // The caller's trace continues at the provider (W3C `traceparent`, while tracing is on).
        let mut trace = reqwest::header::HeaderMap::new();
        crate::telemetry::inject(&mut trace);
        rb.headers(trace)
            .send()
            .await
            .map_err(|e| transport_error(&self.name, &e))
    }
}

pub fn transport_error(provider: &str, e: &reqwest::Error) -> GatewayError {
    if e.is_timeout() {
        GatewayError::UpstreamTimeout
    } else if e.is_connect() {
        GatewayError::UpstreamFailed(format!("cannot connect to provider {provider:?}"))
    } else {
        GatewayError::UpstreamFailed(format!("provider {provider:?}: transport error"))
    }
}

/// Maps a provider's non-2xx answer to what the caller sees. Client-caused 4xx pass through
/// with the provider's message; credential and server failures are the gateway's 502.
pub fn status_error(
    provider: &str,
    status: u16,
    retry_after: Option<String>,
    body: &[u8],
) -> GatewayError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let message = v["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("status {status}"));
    match status {
        429 => GatewayError::UpstreamRateLimited {
            message,
            retry_after,
        },
        400 | 413 | 422 => GatewayError::UpstreamRejected { status, message },
        401 | 403 => GatewayError::UpstreamFailed(format!(
            "provider {provider:?} rejected the gateway's credentials (status {status})"
        )),
        _ => GatewayError::UpstreamFailed(format!(
            "provider {provider:?} answered {status}: {message}"
        )),
    }
}
