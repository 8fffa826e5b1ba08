//! Exact-match response cache, never shared across tenants.
//!
//! The key is SHA-256 over the tenant id, the resolved provider and upstream model, the wire
//! format and the request exactly as it goes upstream (after composition), in canonical JSON
//! (serde_json's map keeps keys sorted). No key shape lets two tenants meet in one entry, and a
//! fallback model can never fill the primary's entry. Only complete, successful, non-streaming
//! responses are stored; dedicated-tier tenants bypass the cache.

use bytes::Bytes;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tenantgate_core::TenantId;

pub type CacheKey = [u8; 32];

pub fn key(
    tenant: &TenantId,
    provider: &str,
    upstream_model: &str,
    wire: &str,
    body: &Map<String, Value>,
) -> CacheKey {
    let mut h = Sha256::new();
    #[cfg(all(feature = "bleed-switches", debug_assertions))]
    let tenant = &match crate::bleed_switch::disabled() {
        Some(crate::bleed_switch::Layer::CacheTenantKey) => TenantId::platform_chain(),
        Some(crate::bleed_switch::Layer::CrossTenantGuard) | None => tenant.clone(),
    };
    for part in [tenant.as_str(), provider, upstream_model, wire] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.update(serde_json::to_vec(body).unwrap_or_default());
    h.finalize().into()
}

pub struct ResponseCache {
    ttl: Duration,
    max_entry_bytes: usize,
    entries: Mutex<lru::LruCache<CacheKey, (Bytes, Instant)>>,
}

impl ResponseCache {
    pub fn new(max_entries: usize, ttl: Duration, max_entry_bytes: usize) -> Self {
        let cap = NonZeroUsize::new(max_entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            ttl,
            max_entry_bytes,
            entries: Mutex::new(lru::LruCache::new(cap)),
        }
    }

    pub fn get(&self, key: &CacheKey) -> Option<Bytes> {
        let mut g = self.entries.lock().ok()?;
        match g.get(key) {
            Some((b, at)) if at.elapsed() < self.ttl => Some(b.clone()),
            Some(_) => {
                g.pop(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: CacheKey, body: Bytes) {
        if body.len() > self.max_entry_bytes {
            return;
        }
        if let Ok(mut g) = self.entries.lock() {
            g.put(key, (body, Instant::now()));
        }
    }
}

/// Where entries live: this process (default) or Redis, shared by every replica. A Redis
/// failure after start-up is a miss: the cache is an optimisation and never a reason to fail
/// a call.
pub enum CacheBackend {
    Memory(ResponseCache),
    Redis(RedisCache),
}

impl CacheBackend {
    pub async fn get(&self, key: &CacheKey) -> Option<Bytes> {
        match self {
            CacheBackend::Memory(c) => c.get(key),
            CacheBackend::Redis(c) => c.get(key).await,
        }
    }

    pub async fn put(&self, key: CacheKey, body: Bytes) {
        match self {
            CacheBackend::Memory(c) => c.put(key, body),
            CacheBackend::Redis(c) => c.put(key, body).await,
        }
    }
}

pub struct RedisCache {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    ttl_secs: u64,
    max_entry_bytes: usize,
}

impl RedisCache {
    /// Connects now: a configured Redis that cannot be reached stops start-up.
    pub async fn connect(
        url: &str,
        prefix: &str,
        ttl: Duration,
        max_entry_bytes: usize,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let conn = client.get_connection_manager().await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            ttl_secs: ttl.as_secs().max(1),
            max_entry_bytes,
        })
    }

    fn redis_key(&self, key: &CacheKey) -> String {
        format!("{}{}", self.prefix, hex::encode(key))
    }

    async fn get(&self, key: &CacheKey) -> Option<Bytes> {
        let mut c = self.conn.clone();
        match redis::AsyncCommands::get::<_, Option<Vec<u8>>>(&mut c, self.redis_key(key)).await {
            Ok(v) => v.map(Bytes::from),
            Err(e) => {
                tracing::warn!(error = %e, "response cache (redis) read failed; treating as a miss");
                None
            }
        }
    }

    async fn put(&self, key: CacheKey, body: Bytes) {
        if body.len() > self.max_entry_bytes {
            return;
        }
        let mut c = self.conn.clone();
        let r: Result<(), _> = redis::AsyncCommands::set_ex(
            &mut c,
            self.redis_key(&key),
            body.to_vec(),
            self.ttl_secs,
        )
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "response cache (redis) write failed");
        }
    }
}

/// A provider-side prompt-cache key derived from the tenant (and the client's own key, if it
/// sent one), so a provider's prefix cache is never shared across tenants and a client cannot
/// name another tenant's cache.
pub fn prompt_cache_key(tenant: &TenantId, client: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(b"tenantgate/prompt-cache-key/v1");
    h.update(tenant.as_str().as_bytes());
    if let Some(c) = client {
        h.update([0]);
        h.update(c.as_bytes());
    }
    let d = h.finalize();
    format!("tg-{}", hex::encode(&d[..12]))
}

/// A self-hosted server's prefix-cache salt (vLLM's and SGLang's `cache_salt`) for the tenant
/// (and the client's own salt, if it sent one: it can only narrow the tenant's cache, never
/// reach another's). Keyed with the server secret, so it cannot be computed from a tenant id
/// (a client that could would aim its own requests at another tenant's salt on a server it
/// reaches directly); stable per tenant across restarts and across replicas, which share the
/// secret.
pub fn cache_salt(
    secret: &crate::identity::keys::ServerSecret,
    tenant: &TenantId,
    client: Option<&str>,
) -> String {
    let d = secret.derive(&[
        b"tenantgate/cache-salt/v1",
        tenant.as_str().as_bytes(),
        client.map_or(&[][..], str::as_bytes),
        &[u8::from(client.is_some())],
    ]);
    format!("tg-{}", hex::encode(&d[..16]))
}

/// Scopes the provider-side caches of a provider-bound OpenAI-format request to the tenant,
/// whatever the client sent: a client's `prompt_cache_key` is replaced by one derived from it
/// and the tenant, and OpenAI-hosted providers always get one; a provider that takes a
/// `cache_salt` (`openai_compatible` by default) always gets the tenant's, and one that does
/// not gets none (a client's own would be an unscoped cache domain).
pub fn scope_provider_caches(
    body: &mut Map<String, Value>,
    tenant: &TenantId,
    provider: &crate::upstream::Provider,
    secret: &crate::identity::keys::ServerSecret,
) {
    use crate::config::ProviderKind;
    let openai_hosted = match provider.kind {
        ProviderKind::Openai | ProviderKind::Azure => true,
        ProviderKind::OpenaiCompatible | ProviderKind::Anthropic | ProviderKind::Demo => false,
    };
    let client = body
        .get("prompt_cache_key")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if client.is_some() || openai_hosted {
        body.insert(
            "prompt_cache_key".into(),
            Value::String(prompt_cache_key(tenant, client.as_deref())),
        );
    }
    let client_salt = body.remove("cache_salt");
    if provider.cache_salt {
        let client_salt = client_salt.as_ref().and_then(Value::as_str);
        body.insert(
            "cache_salt".into(),
            Value::String(cache_salt(secret, tenant, client_salt)),
        );
    }
}

/// The same for an embeddings request: no client-chosen cache domain goes upstream (OpenAI's
/// embeddings API takes no `prompt_cache_key`), and a provider that takes a `cache_salt` gets
/// the tenant's.
pub fn scope_embedding_caches(
    body: &mut Map<String, Value>,
    tenant: &TenantId,
    provider: &crate::upstream::Provider,
    secret: &crate::identity::keys::ServerSecret,
) {
    body.remove("prompt_cache_key");
    let client_salt = body.remove("cache_salt");
    if provider.cache_salt {
        let client_salt = client_salt.as_ref().and_then(Value::as_str);
        body.insert(
            "cache_salt".into(),
            Value::String(cache_salt(secret, tenant, client_salt)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_differ_by_tenant_provider_model_and_body() {
        let t1 = TenantId::parse("t1").unwrap();
        let t2 = TenantId::parse("t2").unwrap();
        let b = json!({"messages":[{"role":"user","content":"hi"}]})
            .as_object()
            .cloned()
            .unwrap();
        let k = key(&t1, "p", "m", "openai", &b);
        assert_eq!(k, key(&t1, "p", "m", "openai", &b));
        assert_ne!(k, key(&t2, "p", "m", "openai", &b));
        assert_ne!(k, key(&t1, "p2", "m", "openai", &b));
        assert_ne!(k, key(&t1, "p", "m2", "openai", &b));
        assert_ne!(k, key(&t1, "p", "m", "anthropic", &b));
        // field boundaries cannot be shifted
        assert_ne!(
            key(&t1, "pm", "", "openai", &b),
            key(&t1, "p", "m", "openai", &b)
        );
    }

    #[test]
    fn entries_expire_and_oversized_bodies_are_not_kept() {
        let c = ResponseCache::new(2, Duration::from_millis(30), 4);
        c.put([1; 32], Bytes::from_static(b"abc"));
        c.put([2; 32], Bytes::from_static(b"too large"));
        assert_eq!(c.get(&[1; 32]).as_deref(), Some(&b"abc"[..]));
        assert!(c.get(&[2; 32]).is_none());
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.get(&[1; 32]).is_none());
    }

    #[test]
    fn prompt_cache_keys_are_tenant_scoped() {
        let t1 = TenantId::parse("t1").unwrap();
        let t2 = TenantId::parse("t2").unwrap();
        assert_ne!(prompt_cache_key(&t1, None), prompt_cache_key(&t2, None));
        assert_ne!(
            prompt_cache_key(&t1, Some("x")),
            prompt_cache_key(&t2, Some("x"))
        );
        assert_ne!(
            prompt_cache_key(&t1, Some("x")),
            prompt_cache_key(&t1, None)
        );
    }

    #[test]
    fn cache_salts_are_tenant_scoped_and_keyed_with_the_secret() {
        let s1 = crate::identity::keys::ServerSecret::from_bytes([1; 32]);
        let s2 = crate::identity::keys::ServerSecret::from_bytes([2; 32]);
        let t1 = TenantId::parse("t1").unwrap();
        let t2 = TenantId::parse("t2").unwrap();
        assert_eq!(cache_salt(&s1, &t1, None), cache_salt(&s1, &t1, None));
        assert_ne!(cache_salt(&s1, &t1, None), cache_salt(&s1, &t2, None));
        assert_ne!(cache_salt(&s1, &t1, None), cache_salt(&s2, &t1, None));
        assert_ne!(
            cache_salt(&s1, &t1, Some("x")),
            cache_salt(&s1, &t2, Some("x"))
        );
        assert_ne!(cache_salt(&s1, &t1, Some("")), cache_salt(&s1, &t1, None));
    }
}
