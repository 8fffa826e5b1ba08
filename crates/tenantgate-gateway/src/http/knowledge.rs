//! Knowledge-base API, `/tenant/v1/knowledge-bases`: the tenant is the caller's. Tenant admins
//! create and delete knowledge bases and upload or delete documents; members list and search.
//! Another tenant's knowledge base or document answers 404, exactly like a missing one.

use super::roles::{Member, TenantAdmin};
use super::tenant::{json_body, ok};
use super::RequestId;
use crate::error::GatewayError;
use crate::identity::TenantContext;
use crate::pipeline::compose::st;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use sha2::Digest;
use tenantgate_store::knowledge::KnowledgeBase;
use tenantgate_store::StoreError;

async fn find(
    app: &AppState,
    ctx: &TenantContext,
    kb: &str,
) -> Result<KnowledgeBase, GatewayError> {
    app.store()
        .tenant(&ctx.principal.scope)
        .knowledge_base(kb)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => GatewayError::KnowledgeBaseNotFound(crate::bounds::echo(kb)),
            e => st(e),
        })
}

/// `GET /tenant/v1/knowledge-bases`.
pub(super) async fn list(State(app): State<AppState>, Member(ctx): Member) -> Response {
    ok(async {
        let kbs = app
            .store()
            .tenant(&ctx.principal.scope)
            .knowledge_bases()
            .await
            .map_err(st)?;
        Ok(Json(json!({"object": "list", "data": kbs})).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKb {
    name: String,
    embedding_model: Option<String>,
    chunk_tokens: Option<u32>,
    #[serde(default)]
    default: bool,
}

/// `POST /tenant/v1/knowledge-bases {"name", "embedding_model"?, "chunk_tokens"?, "default"?}`.
/// The embedding model must be one the tenant may call; its dimensions are measured once.
pub(super) async fn create(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        let b: NewKb = json_body(&app, &headers, body).await?;
        let cfg = &app.0.config.rag;
        let model = b
            .embedding_model
            .unwrap_or_else(|| cfg.default_embedding_model.clone());
        crate::bounds::check("name", &b.name, crate::bounds::MAX_NAME_BYTES)?;
        crate::bounds::check("embedding_model", &model, crate::bounds::MAX_MODEL_BYTES)?;
        let chunk_tokens = b.chunk_tokens.unwrap_or(cfg.chunk_tokens);
        if !(16..=8192).contains(&chunk_tokens) {
            return Err(GatewayError::invalid(
                "chunk_tokens must be 16..=8192",
                "chunk_tokens",
            ));
        }
        let probe = crate::pipeline::embed::texts(
            &app.deps(),
            &ctx,
            &rid.0,
            crate::pipeline::embed::Purpose::Probe,
            &model,
            &["dimensions".to_owned()],
        )
        .await?;
        let dims = probe.first().map_or(0, Vec::len) as u32;
        let kb = app
            .store()
            .tenant(&ctx.principal.scope)
            .create_knowledge_base(&b.name, &model, dims, chunk_tokens, b.default)
            .await
            .map_err(st)?;
        app.reload_auth(false).await.ok();
        Ok((StatusCode::CREATED, Json(kb)).into_response())
    }
    .await)
}

/// `GET /tenant/v1/knowledge-bases/{kb}`: the knowledge base and its documents.
pub(super) async fn get(
    State(app): State<AppState>,
    Path(kb): Path<String>,
    Member(ctx): Member,
) -> Response {
    ok(async {
        let kb = find(&app, &ctx, &kb).await?;
        let docs = app
            .store()
            .tenant(&ctx.principal.scope)
            .documents(&kb.id)
            .await
            .map_err(st)?;
        Ok(Json(json!({"knowledge_base": kb, "documents": docs})).into_response())
    }
    .await)
}

/// `DELETE /tenant/v1/knowledge-bases/{kb}`: the knowledge base, every chunk, its index.
pub(super) async fn delete(
    State(app): State<AppState>,
    Path(kb): Path<String>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        let kb = find(&app, &ctx, &kb).await?;
        app.store()
            .tenant(&ctx.principal.scope)
            .delete_knowledge_base(&kb.id)
            .await
            .map_err(st)?;
        app.0
            .knowledge
            .forget(ctx.principal.scope.tenant_id(), Some(&kb.id));
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"id": kb.id, "deleted": true})).into_response())
    }
    .await)
}

/// `DELETE /tenant/v1/knowledge`: every knowledge base of the tenant, chunks and indexes.
pub(super) async fn delete_all(
    State(app): State<AppState>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        let n = app
            .store()
            .tenant(&ctx.principal.scope)
            .delete_all_knowledge()
            .await
            .map_err(st)?;
        app.0
            .knowledge
            .forget(ctx.principal.scope.tenant_id(), None);
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"deleted_knowledge_bases": n})).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadQuery {
    name: Option<String>,
}

/// `POST /tenant/v1/knowledge-bases/{kb}/documents?name=...` with the document as the body
/// and its `content-type` (text/plain, text/markdown, text/html, application/pdf).
pub(super) async fn upload(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(kb): Path<String>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    TenantAdmin(ctx): TenantAdmin,
    body: Body,
) -> Response {
    ok(async {
        if let Some(n) = &q.name {
            crate::bounds::check("name", n, crate::bounds::MAX_NAME_BYTES)?;
        }
        let kb = find(&app, &ctx, &kb).await?;
        let cfg = &app.0.config.rag;
        let bytes = super::read_body(body, cfg.max_document_bytes).await?;
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/plain")
            .to_owned();
        let (overlap, max_tokens) = (cfg.chunk_overlap as usize, kb.chunk_tokens as usize);
        let ct = content_type.clone();
        let raw = bytes.clone();
        // Extraction and tokenizing are CPU work: off the async workers.
        let chunks = tokio::task::spawn_blocking(move || {
            let e = tenantgate_rag::extract(&ct, &raw)?;
            Ok::<_, tenantgate_rag::RagError>(tenantgate_rag::chunk(&e.text, e.kind, max_tokens, overlap))
        })
        .await
        .map_err(|_| GatewayError::Internal)?
        .map_err(|e| match e {
            tenantgate_rag::RagError::UnsupportedType(_) => GatewayError::InvalidRequest {
                message: e.to_string(),
                param: Some("content-type".into()),
            },
            e => GatewayError::invalid(e.to_string(), "body"),
        })?;
        let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
        let embeddings = crate::pipeline::embed::texts(&app.deps(), &ctx, &rid.0, crate::pipeline::embed::Purpose::Ingest, &kb.embedding_model, &texts).await?;
        if embeddings.iter().any(|e| e.len() != kb.dims as usize) {
            return Err(GatewayError::UpstreamFailed(format!(
                "the embedding model returned vectors of another size than this knowledge base's {}",
                kb.dims
            )));
        }
        let doc_id = format!("doc_{}", uuid::Uuid::now_v7().simple());
        let sealed = crate::knowledge::seal_chunks(app.keyring(), &ctx.principal.scope, &doc_id, &chunks, &embeddings).await?;
        // The document as uploaded, for the tenant's export bundle, in the same transaction.
        let source = crate::lifecycle::export::seal_source(app.keyring(), &ctx.principal.scope, &doc_id, &bytes)
            .await
            .map_err(|_| GatewayError::Internal)?;
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        let name = q.name.unwrap_or_else(|| "document".into());
        let doc = app
            .store()
            .tenant(&ctx.principal.scope)
            .add_document_with_source(&kb.id, &doc_id, &name, &content_type, bytes.len() as i64, &sha, &sealed, &source)
            .await
            .map_err(st)?;
        // A resident index takes the document now (no rebuild), before the snapshot serves its
        // revision: retrieval reads revisions from the snapshot, and this replica serves the
        // new one at once (the others reload on the revision it moved, and catch up).
        app.0
            .knowledge
            .refresh(app.store(), app.keyring(), &ctx.principal.scope, &kb)
            .await;
        app.reload_auth(false).await.ok();
        Ok((StatusCode::CREATED, Json(doc)).into_response())
    }
    .await)
}

/// `DELETE /tenant/v1/knowledge-bases/{kb}/documents/{doc}`.
pub(super) async fn delete_document(
    State(app): State<AppState>,
    Path((kb, doc)): Path<(String, String)>,
    TenantAdmin(ctx): TenantAdmin,
) -> Response {
    ok(async {
        let kb = find(&app, &ctx, &kb).await?;
        app.store()
            .tenant(&ctx.principal.scope)
            .delete_document(&kb.id, &doc)
            .await
            .map_err(st)?;
        // Skipped by the resident index before the answer (and by any index that is not at
        // this revision yet: it catches up before it is searched).
        app.0
            .knowledge
            .refresh(app.store(), app.keyring(), &ctx.principal.scope, &kb)
            .await;
        app.reload_auth(false).await.ok();
        Ok(Json(json!({"id": doc, "deleted": true})).into_response())
    }
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SearchBody {
    query: String,
    top_k: Option<usize>,
}

/// `POST /tenant/v1/knowledge-bases/{kb}/search {"query", "top_k"?}`: the nearest chunks, with
/// their text and provenance.
pub(super) async fn search(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(kb): Path<String>,
    headers: HeaderMap,
    Member(ctx): Member,
    body: Body,
) -> Response {
    ok(async {
        let b: SearchBody = json_body(&app, &headers, body).await?;
        if b.query.trim().is_empty() {
            return Err(GatewayError::invalid("query must not be empty", "query"));
        }
        let cfg = &app.0.config.rag;
        let k = b.top_k.unwrap_or(cfg.default_top_k);
        if k == 0 || k > cfg.max_top_k {
            return Err(GatewayError::invalid(
                format!("top_k must be 1..={}", cfg.max_top_k),
                "top_k",
            ));
        }
        let kb = find(&app, &ctx, &kb).await?;
        let q = crate::pipeline::embed::texts(
            &app.deps(),
            &ctx,
            &rid.0,
            crate::pipeline::embed::Purpose::Search,
            &kb.embedding_model,
            &[b.query],
        )
        .await?
        .pop()
        .unwrap_or_default();
        let hits = app
            .0
            .knowledge
            .search(app.store(), app.keyring(), &ctx.principal.scope, &kb, &q, k)
            .await?;
        let data: Vec<_> = hits
            .iter()
            .map(|h| json!({"text": h.text, "source": h}))
            .collect();
        Ok(Json(json!({"object": "list", "data": data})).into_response())
    }
    .await)
}
