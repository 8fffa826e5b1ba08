//! Stage retrieve: the chunks of the tenant's knowledge bases nearest to the request's last
//! user message, as one context block scanned by the leak guard as data. Names resolve in the
//! tenant's own store handle only (another tenant's knowledge base is 404, like a missing
//! one), and every index holds one knowledge base of one tenant (`crate::knowledge`).

use crate::error::GatewayError;
use crate::guard::{Guard, Verdict};
use crate::knowledge::Retrieved;
use crate::pipeline::request::ChatRequest;
use crate::pipeline::{embed, Deps, TenantContext};
use serde_json::{json, Value};

/// What retrieval reads.
pub struct Knowledge<'a> {
    pub indexes: &'a crate::knowledge::Knowledge,
    pub store: &'a tenantgate_store::Store,
    pub keyring: &'a tenantgate_store::Keyring,
    pub config: &'a crate::config::RagConfig,
}

/// What retrieval adds to a chat: the context block, already through the inbound guard, and
/// the chunks it was made from (for provenance).
pub struct RetrievedContext {
    pub block: String,
    pub sources: Vec<Retrieved>,
}

impl Knowledge<'_> {
    /// The knowledge bases a request searches: the ones it names, else the tenant's defaults.
    fn names(&self, ctx: &TenantContext, req: &ChatRequest) -> Vec<String> {
        match &req.ext.knowledge_bases {
            Some(n) => n.clone(),
            None => ctx
                .view
                .default_knowledge_bases(ctx.principal.scope.tenant_id())
                .to_vec(),
        }
    }

    fn top_k(&self, req: &ChatRequest) -> usize {
        req.ext
            .top_k
            .unwrap_or(self.config.default_top_k)
            .min(self.config.max_top_k)
    }
}

/// What a request will search, resolved before admission (no embedding paid yet): its
/// knowledge bases in the tenant's own store handle, the query, and how many chunks.
pub struct Plan {
    kbs: Vec<tenantgate_store::knowledge::KnowledgeBase>,
    query: String,
    k: usize,
}

impl Plan {
    /// The most prompt tokens retrieval can add (admission reserves them before any
    /// embedding is paid for): `k` chunks of the largest chunk size, with their headers.
    pub fn allowance(&self) -> u64 {
        let largest = self.kbs.iter().map(|kb| kb.chunk_tokens).max().unwrap_or(0);
        self.k as u64 * (u64::from(largest) + 32) + 64
    }
}

/// Resolves what `req` searches; `None` when it searches nothing (no knowledge base named or
/// defaulted, or no user text to search with).
pub fn plan(
    kn: &Knowledge<'_>,
    ctx: &TenantContext,
    req: &ChatRequest,
) -> Result<Option<Plan>, GatewayError> {
    let names = kn.names(ctx, req);
    if names.is_empty() {
        return Ok(None);
    }
    let Some(query) = req.last_user_text() else {
        return Ok(None);
    };
    // From the call's view of the tenant (no query): a knowledge base, its documents and
    // revision move the control-plane revision, so every replica's snapshot follows them.
    let mut kbs = Vec::with_capacity(names.len());
    for n in &names {
        kbs.push(
            kn.indexes
                .knowledge_base(&ctx.view, &ctx.principal.scope, n)?,
        );
    }
    Ok(Some(Plan {
        kbs,
        query,
        k: kn.top_k(req),
    }))
}

/// The retrieved context for `req`, scanned by the leak guard as data (`InboundData`) under
/// the tenant's policy before it joins the request. A document is content the model reads
/// like a tool result (it may carry injection markers or another tenant's name), and the block
/// goes in as (or into) a system prompt, which the request guard deliberately leaves alone
/// (the tenant's own prompt carries its own canary); so it is scanned here, once, and only
/// what retrieval adds. `block` refuses the call with the guard's error, `redact` makes the
/// redacted block what goes upstream, `flag` records the incident. `None` when nothing was
/// retrieved.
pub async fn context(
    deps: &Deps<'_>,
    ctx: &TenantContext,
    guard: &Guard<'_>,
    request_id: &str,
    plan: Plan,
) -> Result<Option<RetrievedContext>, GatewayError> {
    let sources = search(deps, ctx, request_id, plan).await?;
    if sources.is_empty() {
        return Ok(None);
    }
    let block = context_block(&sources);
    let block = match guard.guard_text(&block, tenantgate_guard::Direction::InboundData)? {
        Verdict::Clean => block,
        Verdict::Redacted(r) => r,
    };
    Ok(Some(RetrievedContext { block, sources }))
}

/// The chunks nearest to the last user message across the request's knowledge bases; the
/// query is embedded once per embedding model (a model call of the tenant's).
async fn search(
    deps: &Deps<'_>,
    ctx: &TenantContext,
    request_id: &str,
    plan: Plan,
) -> Result<Vec<Retrieved>, GatewayError> {
    let kn = &deps.knowledge;
    let Plan { kbs, query, k } = plan;
    let mut all = Vec::new();
    let mut embedded: Vec<(String, Vec<f32>)> = Vec::new();
    for kb in &kbs {
        let q = match embedded.iter().find(|(m, _)| *m == kb.embedding_model) {
            Some((_, q)) => q.clone(),
            None => {
                let q = embed::texts(
                    deps,
                    ctx,
                    request_id,
                    embed::Purpose::RagQuery,
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
            kn.indexes
                .search(kn.store, kn.keyring, &ctx.principal.scope, kb, &q, k)
                .await?,
        );
    }
    all.sort_by(|a, b| b.score.total_cmp(&a.score));
    all.truncate(k);
    Ok(all)
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

impl RetrievedContext {
    /// Provenance for the call's audit record (the canonical form holds integers only, so the
    /// score is in millionths).
    pub fn audit_sources(&self) -> Value {
        self.sources
            .iter()
            .map(|r| {
                json!({"knowledge_base": r.knowledge_base, "document_id": r.document_id,
                    "chunk": r.chunk, "score_millionths": (f64::from(r.score) * 1e6).round() as i64})
            })
            .collect()
    }

    /// The `x-tenantgate-sources` header: provenance of what was retrieved (no text).
    pub fn header(&self) -> Option<String> {
        if self.sources.is_empty() {
            return None;
        }
        serde_json::to_string(&self.sources).ok()
    }
}
