//! Knowledge bases at run time: ingest (extract, chunk, embed, seal, store), the per-knowledge-
//! base index (loaded lazily, rebuilt when stale, evicted under a memory bound), search, and
//! the retrieval step of chat composition.
//!
//! Isolation is physical: every index holds one knowledge base of one tenant, is found by
//! (tenant from the scope, knowledge base the tenant's store handle resolved), and is persisted
//! sealed with that tenant's key under that tenant's directory. There is no shared index to
//! search, so no query can reach another tenant's chunks; a name of another tenant's knowledge
//! base resolves to `NotFound` in the tenant's own store handle.
//!
//! Every embedding call (ingest and query) goes through the provider layer as a model call of
//! the tenant: authorized against its allow-list, admitted against its limits and budgets, and
//! recorded in its audit chain.
//!
//! A warm retrieval makes no database query: knowledge bases' metadata and revisions come from
//! the auth snapshot (every change to a knowledge base or its documents moves the control-plane
//! revision, so every replica reloads it: PostgreSQL NOTIFY, or the poll on SQLite; the replica
//! that made the change reloads at once), and a resident index carries each of its chunks'
//! sealed payload and document name (read with the chunks when it is built, and sealed into its
//! file), opened per hit with the tenant's cached data key (`tests/queries.rs`).

use crate::audit::CallAudit;
use crate::error::GatewayError;
use crate::pipeline::compose::st;
use crate::pipeline::TenantContext;
use crate::state::AppState;
use crate::upstream::Endpoint;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tenantgate_core::{TenantId, TenantScope};
use tenantgate_rag::{Index, IndexParams};
use tenantgate_store::knowledge::{KnowledgeBase, NewChunk};

mod resident;
pub use resident::Resident;
use resident::ResidentChunk;

/// Sealing kinds (part of the AAD): a chunk's text and embedding, and an index file.
const CHUNK_KIND: &str = "kb_chunk";
const INDEX_KIND: &str = "kb_index";

/// Loaded indexes, least recently used first out.
pub struct Knowledge {
    dir: PathBuf,
    max_bytes: usize,
    params: IndexParams,
    cache: Mutex<Cache>,
    pub stats: KnowledgeStats,
}

struct Cache {
    lru: lru::LruCache<(TenantId, String), Arc<Resident>>,
    bytes: usize,
}

#[derive(Default)]
pub struct KnowledgeStats {
    pub loads: AtomicU64,
    pub builds: AtomicU64,
    pub evictions: AtomicU64,
    pub resident_bytes: AtomicU64,
}

impl KnowledgeStats {
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# TYPE tenantgate_rag_index_loads_total counter\ntenantgate_rag_index_loads_total {}\n\
             # TYPE tenantgate_rag_index_builds_total counter\ntenantgate_rag_index_builds_total {}\n\
             # TYPE tenantgate_rag_index_evictions_total counter\ntenantgate_rag_index_evictions_total {}\n\
             # TYPE tenantgate_rag_resident_bytes gauge\ntenantgate_rag_resident_bytes {}\n",
            g(&self.loads),
            g(&self.builds),
            g(&self.evictions),
            g(&self.resident_bytes)
        )
    }
}

/// A chunk's sealed payload: `u32 LE text length | text | f32 LE embedding`.
fn encode_chunk(text: &str, embedding: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + text.len() + embedding.len() * 4);
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    for x in embedding {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn decode_chunk(bytes: &[u8]) -> Option<(String, Vec<f32>)> {
    let n = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let text = std::str::from_utf8(bytes.get(4..4 + n)?).ok()?.to_owned();
    let rest = bytes.get(4 + n..)?;
    if rest.len() % 4 != 0 {
        return None;
    }
    let v = rest
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Some((text, v))
}

fn chunk_aad(doc_id: &str, ord: u32) -> String {
    format!("{doc_id}:{ord}")
}

fn internal(e: impl std::fmt::Display) -> GatewayError {
    tracing::error!(error = %e, "knowledge base failure");
    GatewayError::Internal
}

/// One retrieved chunk with its provenance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Retrieved {
    pub knowledge_base: String,
    pub document_id: String,
    pub document: String,
    pub chunk: u32,
    pub score: f32,
    #[serde(skip)]
    pub text: String,
}

impl Knowledge {
    pub fn new(cfg: &crate::config::RagConfig) -> Self {
        Self {
            dir: cfg.index_dir.clone(),
            max_bytes: cfg.max_resident_bytes as usize,
            params: IndexParams {
                ef_construction: cfg.ef_construction,
                ef_search: cfg.ef_search,
                ..IndexParams::default()
            },
            cache: Mutex::new(Cache {
                lru: lru::LruCache::unbounded(),
                bytes: 0,
            }),
            stats: KnowledgeStats::default(),
        }
    }

    fn file(&self, tenant: &TenantId, kb: &str) -> PathBuf {
        self.dir.join(tenant.as_str()).join(format!("{kb}.idx"))
    }

    /// The resident index, if it is at `kb`'s revision or later. Later happens when `kb` comes
    /// from a snapshot older than the rows the index was built from (another replica's change
    /// not reloaded yet); the revision only grows, so the index is the newer truth.
    fn cached(&self, tenant: &TenantId, kb: &KnowledgeBase) -> Option<Arc<Resident>> {
        let mut c = self.cache.lock().ok()?;
        let ix = c.lru.get(&(tenant.clone(), kb.id.clone()))?.clone();
        (ix.revision() >= kb.revision).then_some(ix)
    }

    /// The tenant's knowledge base `id_or_name` as of `snapshot` (no query); another tenant's
    /// is `KnowledgeBaseNotFound`, like a missing one.
    pub fn knowledge_base(
        &self,
        snapshot: &crate::identity::auth::AuthIndex,
        scope: &TenantScope,
        id_or_name: &str,
    ) -> Result<KnowledgeBase, GatewayError> {
        snapshot
            .knowledge_base(scope.tenant_id(), id_or_name)
            .cloned()
            .ok_or_else(|| GatewayError::KnowledgeBaseNotFound(id_or_name.to_owned()))
    }

    fn insert(&self, tenant: &TenantId, kb: &str, ix: Arc<Resident>) {
        let Ok(mut c) = self.cache.lock() else { return };
        if let Some(old) = c.lru.put((tenant.clone(), kb.to_owned()), ix.clone()) {
            c.bytes -= old.memory_bytes();
        }
        c.bytes += ix.memory_bytes();
        while c.bytes > self.max_bytes && c.lru.len() > 1 {
            if let Some((_, old)) = c.lru.pop_lru() {
                c.bytes -= old.memory_bytes();
                self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.stats
            .resident_bytes
            .store(c.bytes as u64, Ordering::Relaxed);
    }

    /// Drops a knowledge base's loaded index and file (deleted, or all of a tenant's with
    /// `kb = None`).
    pub fn forget(&self, tenant: &TenantId, kb: Option<&str>) {
        if let Ok(mut c) = self.cache.lock() {
            let keys: Vec<_> = c
                .lru
                .iter()
                .filter(|((t, k), _)| t == tenant && kb.is_none_or(|kb| kb == k))
                .map(|(key, _)| key.clone())
                .collect();
            for key in keys {
                if let Some(old) = c.lru.pop(&key) {
                    c.bytes -= old.memory_bytes();
                }
            }
            self.stats
                .resident_bytes
                .store(c.bytes as u64, Ordering::Relaxed);
        }
        let _ = match kb {
            Some(kb) => std::fs::remove_file(self.file(tenant, kb)),
            None => std::fs::remove_dir_all(self.dir.join(tenant.as_str())),
        };
    }

    /// Start-up sweep: removes the index directory of every tenant that is not `live` (deleted
    /// while this replica was down, or gone from the store). Entries that are not a tenant's
    /// directory are left alone. Returns the directories removed.
    pub fn sweep(&self, live: impl Fn(&TenantId) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let name = e.file_name();
            let Some(tenant) = name.to_str().and_then(|n| TenantId::parse(n).ok()) else {
                continue;
            };
            if is_dir && !live(&tenant) {
                self.forget(&tenant, None);
                removed += 1;
            }
        }
        removed
    }

    /// How many of the tenant's indexes are loaded in this process.
    pub fn resident(&self, tenant: &TenantId) -> usize {
        self.cache
            .lock()
            .map(|c| c.lru.iter().filter(|((t, _), _)| t == tenant).count())
            .unwrap_or(0)
    }

    /// The knowledge base's index at its current revision (or later): from memory, else from
    /// its sealed file, else rebuilt from the stored chunks (and the file rewritten).
    pub async fn index(
        &self,
        app: &AppState,
        scope: &TenantScope,
        kb: &KnowledgeBase,
    ) -> Result<Arc<Resident>, GatewayError> {
        let tenant = scope.tenant_id();
        if let Some(ix) = self.cached(tenant, kb) {
            return Ok(ix);
        }
        let path = self.file(tenant, &kb.id);
        if let Ok(sealed) = tokio::fs::read(&path).await {
            if let Ok(plain) = app.keyring().open(scope, INDEX_KIND, &kb.id, &sealed).await {
                let ix = tokio::task::spawn_blocking(move || Resident::from_file(&plain))
                    .await
                    .map_err(internal)?;
                // A file from an earlier revision (or an older format) is stale: rebuild below.
                match ix {
                    Some(ix) if ix.revision() >= kb.revision => {
                        self.stats.loads.fetch_add(1, Ordering::Relaxed);
                        let ix = Arc::new(ix);
                        self.insert(tenant, &kb.id, ix.clone());
                        return Ok(ix);
                    }
                    _ => {}
                }
            }
        }
        let ix = Arc::new(self.build(app, scope, kb).await?);
        self.insert(tenant, &kb.id, ix.clone());
        Ok(ix)
    }

    async fn build(
        &self,
        app: &AppState,
        scope: &TenantScope,
        kb: &KnowledgeBase,
    ) -> Result<Resident, GatewayError> {
        let (revision, chunks) = app.store().tenant(scope).chunks(&kb.id).await.map_err(st)?;
        let mut points = Vec::with_capacity(chunks.len());
        let mut resident = Vec::with_capacity(chunks.len());
        for c in chunks {
            let plain = app
                .keyring()
                .open(scope, CHUNK_KIND, &chunk_aad(&c.doc_id, c.ord), &c.sealed)
                .await
                .map_err(internal)?;
            let (_, v) = decode_chunk(&plain).ok_or_else(|| internal("undecodable chunk"))?;
            points.push((c.id, v));
            resident.push(ResidentChunk {
                id: c.id,
                doc_id: c.doc_id,
                ord: c.ord,
                document: c.document,
                sealed: c.sealed,
            });
        }
        let (dims, params) = (kb.dims as usize, self.params);
        let ix = tokio::task::spawn_blocking(move || Index::build(dims, revision, points, params))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        self.stats.builds.fetch_add(1, Ordering::Relaxed);
        let ix = Resident::new(ix, resident);
        // Persist sealed (best effort: the file is a cache of the store).
        let bytes = ix.to_file()?;
        let sealed = app
            .keyring()
            .seal(scope, INDEX_KIND, &kb.id, &bytes)
            .await
            .map_err(internal)?;
        let path = self.file(scope.tenant_id(), &kb.id);
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        let write = async {
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::write(&tmp, &sealed).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            tracing::warn!(error = %e, "index file not written; it will be rebuilt on next load");
        }
        Ok(ix)
    }

    /// Searches one knowledge base: the `k` nearest chunks to `query`, opened. A warm search
    /// (index resident) makes no query: the hits' payloads are in the resident index.
    pub async fn search(
        &self,
        app: &AppState,
        scope: &TenantScope,
        kb: &KnowledgeBase,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<Retrieved>, GatewayError> {
        let ix = self.index(app, scope, kb).await?;
        let hits = ix
            .index
            .search(query, k)
            .map_err(|e| GatewayError::InvalidRequest {
                message: e.to_string(),
                param: None,
            })?;
        let mut out = Vec::with_capacity(hits.len());
        for h in hits {
            // The index and its chunks were built together; a hit without one is a bug.
            let c = ix
                .chunks
                .get(&h.id)
                .ok_or_else(|| internal("index hit without its chunk"))?;
            let plain = app
                .keyring()
                .open(scope, CHUNK_KIND, &chunk_aad(&c.doc_id, c.ord), &c.sealed)
                .await
                .map_err(internal)?;
            let (text, _) = decode_chunk(&plain).ok_or_else(|| internal("undecodable chunk"))?;
            out.push(Retrieved {
                knowledge_base: kb.name.clone(),
                document_id: c.doc_id.clone(),
                document: c.document.clone(),
                chunk: c.ord,
                score: h.score,
                text,
            });
        }
        Ok(out)
    }
}

/// Seals chunks for storage under `doc_id`.
pub async fn seal_chunks(
    app: &AppState,
    scope: &TenantScope,
    doc_id: &str,
    chunks: &[tenantgate_rag::Chunk],
    embeddings: &[Vec<f32>],
) -> Result<Vec<NewChunk>, GatewayError> {
    let mut out = Vec::with_capacity(chunks.len());
    for (i, (c, v)) in chunks.iter().zip(embeddings).enumerate() {
        let ord = i as u32;
        let sealed = app
            .keyring()
            .seal(
                scope,
                CHUNK_KIND,
                &chunk_aad(doc_id, ord),
                &encode_chunk(&c.text, v),
            )
            .await
            .map_err(internal)?;
        out.push(NewChunk {
            ord,
            tokens: c.tokens,
            sealed,
        });
    }
    Ok(out)
}

/// Embeds `texts` with `model` as a model call of the tenant: authorized, admitted, audited
/// (one `api_call` record with `purpose`), settled at the tokens used.
pub async fn embed(
    app: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    purpose: &'static str,
    model: &str,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, GatewayError> {
    let id = format!("{request_id}_{purpose}");
    let mut audit = CallAudit::new(id.clone(), &axum::http::HeaderMap::new(), None);
    audit.bind(app, ctx);
    audit.set_requested_model(model);
    audit.note("endpoint", "embeddings");
    audit.note("purpose", purpose);
    let req: serde_json::Map<String, Value> = match json!({"model": model, "input": texts}) {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let result = async {
        let call = app.authorize(
            TenantContext {
                principal: ctx.principal.clone(),
                tenant: ctx.tenant.clone(),
            },
            model,
        )?;
        audit.set_model(model, &call.route);
        audit.set_prompt(&req);
        let admitted = app.admit(&call, &id, &req, 0).await?;
        audit.admitted(admitted, call.route.pricing);
        // The knowledge base's texts go through the provider's prefix cache too: salted per
        // tenant where the provider takes a salt.
        let salt = call.route.provider.cache_salt.then(|| {
            crate::upstream::cache::cache_salt(&app.0.secret, ctx.principal.scope.tenant_id(), None)
        });
        embed_with(&call.route, model, texts, salt).await
    }
    .await;
    let (status, err, tokens) = match &result {
        Ok((_, used)) => (
            200,
            None,
            Some(tenantgate_audit::Tokens {
                input: *used,
                output: 0,
            }),
        ),
        Err(e) => (e.status().as_u16(), Some(e), None),
    };
    let event = err.map_or(tenantgate_audit::EventType::ApiCall, |e| e.audit_event());
    if let Some((scope, policy, entry)) = audit.entry(app, event, status, err, None, tokens).await {
        crate::audit::write(app, &scope, &policy, entry).await?;
    }
    result.map(|(v, _)| v)
}

/// The embeddings of `texts` from the route's provider, and the tokens it reported.
async fn embed_with(
    route: &crate::upstream::Route,
    model: &str,
    texts: &[String],
    cache_salt: Option<String>,
) -> Result<(Vec<Vec<f32>>, u64), GatewayError> {
    use crate::config::ProviderKind;
    let provider = &route.provider;
    match provider.kind {
        ProviderKind::Demo => {
            let used = texts
                .iter()
                .map(|t| tenantgate_providers::tokens::count(t))
                .sum();
            Ok((
                texts
                    .iter()
                    .map(|t| {
                        tenantgate_providers::embed::embed(
                            t,
                            tenantgate_providers::embed::DEMO_DIMS,
                        )
                    })
                    .collect(),
                used,
            ))
        }
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::OpenaiCompatible => {
            let mut out = Vec::with_capacity(texts.len());
            let mut used = 0;
            // Providers cap inputs per request; 256 is within every OpenAI-compatible limit.
            for batch in texts.chunks(256) {
                let body = json!({"model": route.upstream_model, "input": batch, "encoding_format": "float"});
                let Value::Object(mut body) = body else {
                    return Err(GatewayError::Internal);
                };
                if let Some(s) = &cache_salt {
                    body.insert("cache_salt".into(), Value::String(s.clone()));
                }
                let resp = crate::http::send_ok(
                    provider,
                    Endpoint::Embeddings,
                    &route.upstream_model,
                    &body,
                )
                .await?;
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| GatewayError::UpstreamFailed(e.to_string()))?;
                let v: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| GatewayError::UpstreamFailed(e.to_string()))?;
                let data = v["data"].as_array().ok_or_else(|| {
                    GatewayError::UpstreamFailed("embeddings response without data".into())
                })?;
                let mut batch_out = vec![Vec::new(); batch.len()];
                for d in data {
                    let i = d["index"].as_u64().unwrap_or(u64::MAX) as usize;
                    let e: Vec<f32> = d["embedding"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_f64().map(|x| x as f32))
                                .collect()
                        })
                        .unwrap_or_default();
                    if let Some(slot) = batch_out.get_mut(i) {
                        *slot = e;
                    }
                }
                if batch_out.iter().any(Vec::is_empty) {
                    return Err(GatewayError::UpstreamFailed(
                        "embeddings response is missing inputs".into(),
                    ));
                }
                used += v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
                out.extend(batch_out);
            }
            Ok((out, used))
        }
        ProviderKind::Anthropic => Err(GatewayError::UnsupportedForModel {
            message: format!("the model `{model}` does not support embeddings"),
            param: Some("embedding_model".into()),
        }),
    }
}

/// The retrieval query: the text of the last user message.
pub fn last_user_text(body: &serde_json::Map<String, Value>) -> Option<String> {
    let messages = body.get("messages")?.as_array()?;
    let m = messages.iter().rev().find(|m| m["role"] == "user")?;
    let text = crate::pipeline::compose::text_of(&m["content"]);
    (!text.trim().is_empty()).then_some(text)
}

/// The retrieved chunks as the context block the model sees, each with its provenance.
pub fn context_block(sources: &[Retrieved]) -> String {
    let mut out = String::from(
        "Answer using the following excerpts from the organisation's knowledge base when they are relevant. \
         Cite them by their [number].\n",
    );
    for (i, r) in sources.iter().enumerate() {
        out.push_str(&format!(
            "\n[{}] {} (knowledge base {}, chunk {})\n{}\n",
            i + 1,
            r.document,
            r.knowledge_base,
            r.chunk,
            r.text.trim()
        ));
    }
    out
}

/// Adds the context as a system message after the leading system messages (OpenAI format).
pub fn add_context_openai(body: &mut serde_json::Map<String, Value>, context: String) {
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        let at = messages
            .iter()
            .take_while(|m| matches!(m["role"].as_str(), Some("system") | Some("developer")))
            .count();
        messages.insert(at, json!({"role": "system", "content": context}));
    }
}

/// Appends the context to the system prompt (Anthropic format).
pub fn add_context_anthropic(body: &mut serde_json::Map<String, Value>, context: String) {
    let system = body
        .get("system")
        .map(crate::pipeline::compose::text_of)
        .unwrap_or_default();
    let system = if system.is_empty() {
        context
    } else {
        format!("{system}\n\n{context}")
    };
    body.insert("system".into(), Value::String(system));
}

/// Provenance for the call's audit record (the canonical form holds integers only, so the
/// score is in millionths).
pub fn audit_sources(sources: &[Retrieved]) -> Value {
    sources
        .iter()
        .map(|r| {
            json!({"knowledge_base": r.knowledge_base, "document_id": r.document_id,
                "chunk": r.chunk, "score_millionths": (f64::from(r.score) * 1e6).round() as i64})
        })
        .collect()
}

/// The `x-tenantgate-sources` header: provenance of what was retrieved (no text).
pub fn sources_header(sources: &[Retrieved]) -> Option<axum::http::HeaderValue> {
    if sources.is_empty() {
        return None;
    }
    axum::http::HeaderValue::from_str(&serde_json::to_string(sources).ok()?).ok()
}

/// What retrieval adds to a chat: the context block, already through the inbound guard, and
/// the chunks it was made from (for provenance).
pub struct RetrievedContext {
    pub block: String,
    pub sources: Vec<Retrieved>,
}

impl AppState {
    /// Stage compose, retrieval, as both chat surfaces use it: the chunks [`Self::retrieve`]
    /// finds, as one context block scanned by the leak guard as data (`InboundData`) under the
    /// tenant's policy before it joins the request. A document is content the model reads like
    /// a tool result (it may carry injection markers or another tenant's name), and the block
    /// goes in as (or into) a system prompt, which the request guard deliberately leaves alone
    /// (the tenant's own prompt carries its own canary); so it is scanned here, once, and only
    /// what retrieval adds. `block` refuses the call with the guard's error, `redact` makes the
    /// redacted block what goes upstream, `flag` records the incident; every finding is
    /// counted and audited like any other incident. `None` when nothing was retrieved.
    pub async fn retrieval_context(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        ext: &crate::pipeline::compose::PromptRequest,
        body: &serde_json::Map<String, Value>,
    ) -> Result<Option<RetrievedContext>, GatewayError> {
        let sources = self.retrieve(ctx, request_id, ext, body).await?;
        if sources.is_empty() {
            return Ok(None);
        }
        let block = context_block(&sources);
        let block = match self.guard_text(ctx, &block, tenantgate_guard::Direction::InboundData)? {
            crate::pipeline::guard::Verdict::Clean => block,
            crate::pipeline::guard::Verdict::Redacted(r) => r,
        };
        Ok(Some(RetrievedContext { block, sources }))
    }

    /// Stage compose, retrieval: the chunks of the knowledge bases the request names (or the
    /// tenant's defaults) nearest to its last user message. Names resolve in the tenant's own
    /// store handle only; another tenant's knowledge base is 404, like a missing one.
    pub async fn retrieve(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        ext: &crate::pipeline::compose::PromptRequest,
        body: &serde_json::Map<String, Value>,
    ) -> Result<Vec<Retrieved>, GatewayError> {
        let tenant = ctx.principal.scope.tenant_id();
        let names: Vec<String> = match &ext.knowledge_bases {
            Some(n) => n.clone(),
            None => self.0.auth.load().default_knowledge_bases(tenant).to_vec(),
        };
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let Some(query) = last_user_text(body) else {
            return Ok(Vec::new());
        };
        let cfg = &self.0.config.rag;
        let k = ext.top_k.unwrap_or(cfg.default_top_k).min(cfg.max_top_k);
        let snapshot = self.0.auth.load();
        let mut kbs = Vec::with_capacity(names.len());
        for n in &names {
            kbs.push(
                self.0
                    .knowledge
                    .knowledge_base(&snapshot, &ctx.principal.scope, n)?,
            );
        }
        drop(snapshot);
        let mut all = Vec::new();
        let mut embedded: Vec<(String, Vec<f32>)> = Vec::new();
        for kb in &kbs {
            let q = match embedded.iter().find(|(m, _)| *m == kb.embedding_model) {
                Some((_, q)) => q.clone(),
                None => {
                    let q = embed(
                        self,
                        ctx,
                        request_id,
                        "rag_query",
                        &kb.embedding_model,
                        std::slice::from_ref(&query),
                    )
                    .await?
                    .pop()
                    .unwrap_or_default();
                    embedded.push((kb.embedding_model.clone(), q.clone()));
                    q
                }
            };
            all.extend(
                self.0
                    .knowledge
                    .search(self, &ctx.principal.scope, kb, &q, k)
                    .await?,
            );
        }
        all.sort_by(|a, b| b.score.total_cmp(&a.score));
        all.truncate(k);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_payload_round_trips() {
        let (t, v) = decode_chunk(&encode_chunk("héllo", &[0.5, -1.0])).unwrap();
        assert_eq!((t.as_str(), v), ("héllo", vec![0.5, -1.0]));
        assert!(decode_chunk(&[9, 0, 0, 0, b'a']).is_none());
    }
}
