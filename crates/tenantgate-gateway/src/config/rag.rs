//! `[rag]`: knowledge bases, their index files, chunking and retrieval.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Knowledge bases and retrieval.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RagConfig {
    /// Where index files live, one directory per tenant, each file sealed with the tenant's
    /// key. They are caches: the store holds the chunks, and a missing or stale file is
    /// rebuilt from them.
    pub index_dir: PathBuf,
    /// Memory bound for loaded indexes; the least recently used are evicted past it.
    pub max_resident_bytes: u64,
    /// Embedding model of knowledge bases that do not name one (must be in `models`).
    pub default_embedding_model: String,
    /// Chunk size and overlap in tokens (o200k).
    pub chunk_tokens: u32,
    pub chunk_overlap: u32,
    /// Largest document accepted.
    pub max_document_bytes: usize,
    /// Chunks retrieved for a chat request when it does not say (`tenantgate.top_k`).
    pub default_top_k: usize,
    pub max_top_k: usize,
    /// HNSW search breadth (higher: better recall, slower search).
    pub ef_search: usize,
    pub ef_construction: usize,
    /// Chunks a knowledge base's index takes incrementally (added documents, scanned exactly;
    /// deleted ones, skipped) before a background merge rebuilds its graph with them. Higher:
    /// fewer rebuilds, slower searches meanwhile (about 1 ms per 10,000 x 384 scanned).
    pub merge_after_chunks: usize,
}

impl Default for RagConfig {
    fn default() -> Self {
        Self {
            index_dir: PathBuf::from("data/indexes"),
            max_resident_bytes: 256 << 20,
            default_embedding_model: "demo".into(),
            chunk_tokens: 400,
            chunk_overlap: 40,
            max_document_bytes: 20 << 20,
            default_top_k: 4,
            max_top_k: 20,
            ef_search: 100,
            ef_construction: 100,
            merge_after_chunks: 10_000,
        }
    }
}

impl RagConfig {
    /// Chunks larger than their overlap; `1 <= default_top_k <= max_top_k <= ef_search`.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let r = self;
        if r.chunk_tokens < 16 || r.chunk_overlap >= r.chunk_tokens {
            return Err(invalid(
                "rag.chunk_tokens",
                "chunk_tokens must be at least 16 and larger than chunk_overlap",
            ));
        }
        if r.default_top_k == 0 || r.max_top_k < r.default_top_k || r.ef_search < r.max_top_k {
            return Err(invalid(
                "rag.max_top_k",
                "need 1 <= default_top_k <= max_top_k <= ef_search",
            ));
        }
        Ok(())
    }
}
