//! Knowledge bases at run time: the per-knowledge-base index (loaded lazily, rebuilt when
//! stale, evicted under a memory bound), search, and the sealing of chunks. Retrieval as a
//! stage of a chat call is `pipeline::retrieve`; embedding calls are `pipeline::embed`.
//!
//! Isolation is physical: every index holds one knowledge base of one tenant, is found by
//! (tenant from the scope, knowledge base the tenant's store handle resolved), and is persisted
//! sealed with that tenant's key under that tenant's directory. There is no shared index to
//! search, so no query can reach another tenant's chunks; a name of another tenant's knowledge
//! base resolves to `NotFound` in the tenant's own store handle.
//!
//! A warm retrieval makes no database query: knowledge bases' metadata and revisions come from
//! the auth snapshot (every change to a knowledge base or its documents moves the control-plane
//! revision, so every replica reloads it: PostgreSQL NOTIFY, or the poll on SQLite; the replica
//! that made the change reloads at once), and a resident index carries each of its chunks'
//! sealed payload and document name (read with the chunks when it is built, and sealed into its
//! file), opened per hit with the tenant's cached data key (`tests/queries.rs`).

//!
//! Changes are incremental (`resident.rs`): an upload or a deletion is applied to the resident
//! index by the replica that made it before it answers ([`Knowledge::refresh`]), and a replica
//! whose resident index is older than the snapshot's revision catches up on its next use, the
//! same way: the documents added since are read and exact-scanned, the deleted ones skipped.
//! No request rebuilds a graph that is already resident; a merge rebuilds it in the background
//! (one at a time, on bounded threads) once the changes pass `rag.merge_after_chunks`, and swaps
//! it in under the knowledge base's update lock. A search never sees a deleted document's
//! chunk once its revision is served: a resident index is used only at that revision or later.

use crate::error::st;
use crate::error::GatewayError;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tenantgate_core::{TenantId, TenantScope};
use tenantgate_rag::{Index, IndexParams};
use tenantgate_store::knowledge::{KnowledgeBase, NewChunk};
use tenantgate_store::{Keyring, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod resident;
pub use resident::Resident;
use resident::{Base, ResidentChunk, Segment};

/// Sealing kinds (part of the AAD): a chunk's text and embedding, and an index file.
pub(crate) const CHUNK_KIND: &str = "kb_chunk";
const INDEX_KIND: &str = "kb_index";

/// Threads a background merge builds with: the others stay with requests.
const MERGE_THREADS: usize = 1;

type Key = (TenantId, String);

/// Loaded indexes, least recently used first out.
pub struct Knowledge {
    shared: Arc<Shared>,
    /// The server's: merges run on it, so shutdown stops and waits for them.
    tasks: TaskTracker,
    keyring: Arc<Keyring>,
    stop: CancellationToken,
    /// Shared with `/metrics` (`crate::metrics`).
    pub stats: Arc<KnowledgeStats>,
}

struct Shared {
    dir: PathBuf,
    max_bytes: usize,
    params: IndexParams,
    merge_after: usize,
    cache: Mutex<Cache>,
    /// One merge at a time in this process.
    merges: tokio::sync::Semaphore,
    stats: Arc<KnowledgeStats>,
}

struct Cache {
    lru: lru::LruCache<Key, Arc<Resident>>,
    bytes: usize,
    /// Per knowledge base, held by whoever changes its resident index (load, build, catch-up,
    /// a merge's swap), so no change is lost to another.
    gates: HashMap<Key, Arc<tokio::sync::Mutex<()>>>,
    merging: HashSet<Key>,
    /// Per tenant, moves with every `forget` of it (never removed, so it never goes back).
    /// Whatever reads the store or a file to make a resident index takes it first
    /// ([`Shared::generation`]); `insert` and `persist` do nothing once it moved, so an index read
    /// before a deletion is never put back into memory or onto disk after it.
    forgets: HashMap<TenantId, u64>,
}

#[derive(Default)]
pub struct KnowledgeStats {
    pub loads: AtomicU64,
    pub builds: AtomicU64,
    pub evictions: AtomicU64,
    pub resident_bytes: AtomicU64,
    /// Chunks added to resident indexes incrementally (no rebuild).
    pub inserts: AtomicU64,
    /// Documents removed from resident indexes incrementally.
    pub deletes: AtomicU64,
    /// Background merges swapped in.
    pub merges: AtomicU64,
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

pub(crate) fn decode_chunk(bytes: &[u8]) -> Option<(String, Vec<f32>)> {
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

pub(crate) fn chunk_aad(doc_id: &str, ord: u32) -> String {
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

/// Stored chunks opened: what a resident index keeps of each, and its embedding.
async fn open_chunks(
    keyring: &Keyring,
    scope: &TenantScope,
    chunks: Vec<tenantgate_store::knowledge::StoredChunk>,
) -> Result<Vec<(ResidentChunk, Vec<f32>)>, GatewayError> {
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        let plain = keyring
            .open(scope, CHUNK_KIND, &chunk_aad(&c.doc_id, c.ord), &c.sealed)
            .await
            .map_err(internal)?;
        let (_, v) = decode_chunk(&plain).ok_or_else(|| internal("undecodable chunk"))?;
        out.push((
            ResidentChunk {
                id: c.id,
                doc_id: c.doc_id,
                ord: c.ord,
                document: c.document,
                sealed: c.sealed,
            },
            v,
        ));
    }
    Ok(out)
}

impl Shared {
    fn file(&self, tenant: &TenantId, kb: &str) -> PathBuf {
        self.dir.join(tenant.as_str()).join(format!("{kb}.idx"))
    }

    /// The resident index of `kb`, at whatever revision.
    fn resident(&self, tenant: &TenantId, kb: &str) -> Option<Arc<Resident>> {
        let mut c = self.cache.lock().ok()?;
        c.lru.get(&(tenant.clone(), kb.to_owned())).cloned()
    }

    fn gate(&self, tenant: &TenantId, kb: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.cache.lock() {
            Ok(mut c) => c
                .gates
                .entry((tenant.clone(), kb.to_owned()))
                .or_default()
                .clone(),
            // Poisoned: only a panic elsewhere; serialise nothing rather than fail requests.
            Err(_) => Arc::default(),
        }
    }

    /// The tenant's forget generation: taken before reading what a resident index is made of.
    fn generation(&self, tenant: &TenantId) -> u64 {
        self.cache
            .lock()
            .map_or(0, |c| c.forgets.get(tenant).copied().unwrap_or(0))
    }

    /// Makes `ix` resident, unless the tenant was forgotten (a knowledge base of it, or itself,
    /// deleted) since `generation` was taken: `ix` may then be a deleted one's. Whether it did.
    fn insert(&self, tenant: &TenantId, kb: &str, ix: Arc<Resident>, generation: u64) -> bool {
        let Ok(mut c) = self.cache.lock() else {
            return false;
        };
        if c.forgets.get(tenant).copied().unwrap_or(0) != generation {
            return false;
        }
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
        true
    }

    /// Writes `ix` sealed as the knowledge base's file (best effort: the file is a cache of the
    /// store); nothing if the tenant was forgotten since `generation` (taken before `ix` was
    /// read). A file that a `forget` may have missed (it ran while this one was written) is
    /// removed again.
    async fn persist(
        &self,
        keyring: &Keyring,
        scope: &TenantScope,
        kb: &str,
        ix: Arc<Resident>,
        generation: u64,
    ) {
        let tenant = scope.tenant_id();
        if self.generation(tenant) != generation {
            return;
        }
        let path = self.file(tenant, kb);
        let write = async {
            let bytes = tokio::task::spawn_blocking(move || ix.to_file())
                .await
                .map_err(std::io::Error::other)?
                .map_err(|_| std::io::Error::other("index not serialisable"))?;
            let sealed = keyring
                .seal(scope, INDEX_KIND, kb, &bytes)
                .await
                .map_err(std::io::Error::other)?;
            let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::write(&tmp, &sealed).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            tracing::warn!(error = %e, "index file not written; it will be rebuilt on next load");
        }
        if self.generation(tenant) != generation {
            let _ = tokio::fs::remove_file(&path).await;
            if let Some(parent) = path.parent() {
                // Only if empty: the tenant's directory, recreated above.
                let _ = tokio::fs::remove_dir(parent).await;
            }
        }
    }

    /// Rebuilds the resident index's base with its changes (on a thread of its own, so
    /// shutdown need not wait for the build) and swaps it into whatever is resident by then.
    /// Queued for its turn with the key alone: the index is taken when the turn comes (none if
    /// evicted meanwhile), so waiting merges hold no memory outside `rag.max_resident_bytes`.
    async fn merge(
        self: Arc<Self>,
        keyring: Arc<Keyring>,
        scope: TenantScope,
        kb: String,
        stop: CancellationToken,
    ) {
        let tenant = scope.tenant_id().clone();
        let key = (tenant.clone(), kb.clone());
        let _merging = Merging(self.clone(), key.clone());
        let _one = tokio::select! {
            one = self.merges.acquire() => match one {
                Ok(one) => one,
                Err(_) => return,
            },
            () = stop.cancelled() => return,
        };
        let (snapshot, generation) = {
            let Ok(c) = self.cache.lock() else { return };
            let Some(ix) = c.lru.peek(&key).cloned() else {
                return;
            };
            (ix, c.forgets.get(&tenant).copied().unwrap_or(0))
        };
        if stop.is_cancelled() || !snapshot.needs_merge(self.merge_after) {
            return;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (params, snap) = (self.params, snapshot.clone());
        let started = std::thread::Builder::new()
            .name("kb-merge".into())
            .spawn(move || {
                let _ = tx.send(snap.merged_base(IndexParams {
                    threads: MERGE_THREADS,
                    ..params
                }));
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "knowledge-base merge not started");
            return;
        }
        let base = tokio::select! {
            r = rx => r,
            () = stop.cancelled() => return,
        };
        let base = match base {
            Ok(Ok(base)) => base,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "knowledge-base merge failed");
                return;
            }
            Err(_) => return,
        };
        let gate = self.gate(&tenant, &kb);
        let _turn = gate.lock().await;
        // Evicted or forgotten meanwhile: nothing to swap into.
        let Some(now) = self.resident(&tenant, &kb) else {
            return;
        };
        let Some(merged) = now.rebase(&snapshot, base) else {
            return;
        };
        let merged = Arc::new(merged);
        if !self.insert(&tenant, &kb, merged.clone(), generation) {
            return;
        }
        self.stats.merges.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(tenant = %tenant, kb = %kb, "knowledge-base merge swapped in");
        // Under the gate, like every writer of the file: a catch-up's file (a deletion left
        // out) is never overwritten by an older one.
        self.persist(&keyring, &scope, &kb, merged, generation)
            .await;
    }
}

/// A merge in flight for a knowledge base, cleared however the merge ends.
struct Merging(Arc<Shared>, Key);

impl Drop for Merging {
    fn drop(&mut self) {
        if let Ok(mut c) = self.0.cache.lock() {
            c.merging.remove(&self.1);
        }
    }
}

impl Knowledge {
    pub fn new(cfg: &crate::config::RagConfig, tasks: TaskTracker, keyring: Arc<Keyring>) -> Self {
        let stats: Arc<KnowledgeStats> = Arc::default();
        Self {
            shared: Arc::new(Shared {
                dir: cfg.index_dir.clone(),
                max_bytes: cfg.max_resident_bytes as usize,
                params: IndexParams {
                    ef_construction: cfg.ef_construction,
                    ef_search: cfg.ef_search,
                    ..IndexParams::default()
                },
                merge_after: cfg.merge_after_chunks,
                cache: Mutex::new(Cache {
                    lru: lru::LruCache::unbounded(),
                    bytes: 0,
                    gates: HashMap::new(),
                    merging: HashSet::new(),
                    forgets: HashMap::new(),
                }),
                merges: tokio::sync::Semaphore::new(1),
                stats: stats.clone(),
            }),
            tasks,
            keyring,
            stop: CancellationToken::new(),
            stats,
        }
    }

    /// Stops waiting for background merges (shutdown): a build still running is abandoned.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// The resident index, if it is at `kb`'s revision or later. Later happens when `kb` comes
    /// from a snapshot older than the rows the index was built from (another replica's change
    /// not reloaded yet); the revision only grows, so the index is the newer truth.
    fn cached(&self, tenant: &TenantId, kb: &KnowledgeBase) -> Option<Arc<Resident>> {
        let ix = self.shared.resident(tenant, &kb.id)?;
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

    /// Drops a knowledge base's loaded index and file (deleted, or all of a tenant's with
    /// `kb = None`).
    pub fn forget(&self, tenant: &TenantId, kb: Option<&str>) {
        if let Ok(mut c) = self.shared.cache.lock() {
            *c.forgets.entry(tenant.clone()).or_default() += 1;
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
            c.gates
                .retain(|(t, k), _| !(t == tenant && kb.is_none_or(|kb| kb == k)));
            self.stats
                .resident_bytes
                .store(c.bytes as u64, Ordering::Relaxed);
        }
        let _ = match kb {
            Some(kb) => std::fs::remove_file(self.shared.file(tenant, kb)),
            None => std::fs::remove_dir_all(self.shared.dir.join(tenant.as_str())),
        };
    }

    /// Start-up sweep: removes the index directory of every tenant that is not `live` (deleted
    /// while this replica was down, or gone from the store). Entries that are not a tenant's
    /// directory are left alone. Returns the directories removed.
    pub fn sweep(&self, live: impl Fn(&TenantId) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.shared.dir) else {
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
        self.shared
            .cache
            .lock()
            .map(|c| c.lru.iter().filter(|((t, _), _)| t == tenant).count())
            .unwrap_or(0)
    }

    /// The resident index of the tenant's knowledge base `kb` (id), whatever its revision.
    pub fn resident_index(&self, tenant: &TenantId, kb: &str) -> Option<Arc<Resident>> {
        self.shared.resident(tenant, kb)
    }

    /// The knowledge base's index at its current revision (or later): from memory, caught up
    /// with the documents changed since if it is older; else from its sealed file (caught up
    /// the same way); else built from the stored chunks (and the file written).
    pub async fn index(
        &self,
        store: &Store,
        keyring: &Keyring,
        scope: &TenantScope,
        kb: &KnowledgeBase,
    ) -> Result<Arc<Resident>, GatewayError> {
        let tenant = scope.tenant_id();
        if let Some(ix) = self.cached(tenant, kb) {
            return Ok(ix);
        }
        let gate = self.shared.gate(tenant, &kb.id);
        let generation = self.shared.generation(tenant);
        let _turn = gate.lock().await;
        // Whoever held the gate before may have brought it up to date.
        if let Some(ix) = self.cached(tenant, kb) {
            return Ok(ix);
        }
        let found = match self.shared.resident(tenant, &kb.id) {
            Some(ix) => Some(ix),
            None => self.load(keyring, scope, kb, generation).await?,
        };
        let ix = match found {
            Some(ix) if ix.revision() >= kb.revision => ix,
            Some(ix) => {
                self.catch_up(store, keyring, scope, kb, &ix, generation)
                    .await?
            }
            None => {
                let ix = Arc::new(self.build(store, keyring, scope, kb).await?);
                self.shared.insert(tenant, &kb.id, ix.clone(), generation);
                self.shared
                    .persist(keyring, scope, &kb.id, ix.clone(), generation)
                    .await;
                ix
            }
        };
        self.merge_if_due(scope, &kb.id, &ix);
        Ok(ix)
    }

    /// Brings a resident index up to the store now (the replica that uploaded or deleted a
    /// document, before it answers): the next search finds it current. Nothing if the index is
    /// not resident (its next load catches up). A failure is logged; the next search retries.
    pub async fn refresh(
        &self,
        store: &Store,
        keyring: &Keyring,
        scope: &TenantScope,
        kb: &KnowledgeBase,
    ) {
        let tenant = scope.tenant_id();
        if self.shared.resident(tenant, &kb.id).is_none() {
            return;
        }
        let gate = self.shared.gate(tenant, &kb.id);
        let generation = self.shared.generation(tenant);
        let _turn = gate.lock().await;
        let Some(ix) = self.shared.resident(tenant, &kb.id) else {
            return;
        };
        if let Ok(ix) = self
            .catch_up(store, keyring, scope, kb, &ix, generation)
            .await
        {
            self.merge_if_due(scope, &kb.id, &ix);
        }
    }

    /// The index file, if it opens (any revision: an older one catches up).
    async fn load(
        &self,
        keyring: &Keyring,
        scope: &TenantScope,
        kb: &KnowledgeBase,
        generation: u64,
    ) -> Result<Option<Arc<Resident>>, GatewayError> {
        let tenant = scope.tenant_id();
        let Ok(sealed) = tokio::fs::read(self.shared.file(tenant, &kb.id)).await else {
            return Ok(None);
        };
        let Ok(plain) = keyring.open(scope, INDEX_KIND, &kb.id, &sealed).await else {
            return Ok(None);
        };
        // A file in an older format is rebuilt.
        let Some(ix) = tokio::task::spawn_blocking(move || Resident::from_file(&plain))
            .await
            .map_err(internal)?
        else {
            return Ok(None);
        };
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        let ix = Arc::new(ix);
        self.shared.insert(tenant, &kb.id, ix.clone(), generation);
        Ok(Some(ix))
    }

    /// `ix` brought to the store's revision by the documents added and deleted since: two
    /// queries (the document ids, then the new documents' chunks), no graph built. Held under
    /// the knowledge base's gate.
    async fn catch_up(
        &self,
        store: &Store,
        keyring: &Keyring,
        scope: &TenantScope,
        kb: &KnowledgeBase,
        ix: &Arc<Resident>,
        generation: u64,
    ) -> Result<Arc<Resident>, GatewayError> {
        let handle = store.tenant(scope);
        let (revision, ids) = handle.document_ids(&kb.id).await.map_err(st)?;
        if revision <= ix.revision() {
            return Ok(ix.clone());
        }
        let (added, removed) = {
            let have = ix.documents();
            let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
            let added: Vec<String> = ids
                .iter()
                .filter(|d| !have.contains(d.as_str()))
                .cloned()
                .collect();
            let removed: HashSet<String> = have
                .iter()
                .filter(|d| !want.contains(**d))
                .map(|d| (*d).to_owned())
                .collect();
            (added, removed)
        };
        let chunks = handle
            .chunks_of_documents(&kb.id, &added)
            .await
            .map_err(st)?;
        let inserted = chunks.len();
        let mut by_doc: HashMap<String, Vec<(ResidentChunk, Vec<f32>)>> = HashMap::new();
        for (c, v) in open_chunks(keyring, scope, chunks).await? {
            by_doc.entry(c.doc_id.clone()).or_default().push((c, v));
        }
        let dims = kb.dims as usize;
        let segments = by_doc
            .into_iter()
            .map(|(doc, chunks)| Segment::new(dims, doc, chunks))
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?;
        let next = Arc::new(ix.updated(revision, segments, &removed));
        self.shared
            .insert(scope.tenant_id(), &kb.id, next.clone(), generation);
        if !removed.is_empty() {
            // The file leaves the deleted documents' chunks out: rewritten now, a deletion
            // leaves the disk before the next merge.
            self.shared
                .persist(keyring, scope, &kb.id, next.clone(), generation)
                .await;
        }
        self.stats
            .inserts
            .fetch_add(inserted as u64, Ordering::Relaxed);
        self.stats
            .deletes
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        Ok(next)
    }

    /// Starts a background merge of `ix` if its changes passed the threshold and none runs
    /// for this knowledge base.
    fn merge_if_due(&self, scope: &TenantScope, kb: &str, ix: &Resident) {
        if !ix.needs_merge(self.shared.merge_after) {
            return;
        }
        let key = (scope.tenant_id().clone(), kb.to_owned());
        let started = self
            .shared
            .cache
            .lock()
            .is_ok_and(|mut c| c.merging.insert(key));
        if !started {
            return;
        }
        self.tasks.spawn(self.shared.clone().merge(
            self.keyring.clone(),
            scope.clone(),
            kb.to_owned(),
            self.stop.clone(),
        ));
    }

    async fn build(
        &self,
        store: &Store,
        keyring: &Keyring,
        scope: &TenantScope,
        kb: &KnowledgeBase,
    ) -> Result<Resident, GatewayError> {
        let (revision, chunks) = store.tenant(scope).chunks(&kb.id).await.map_err(st)?;
        let mut points = Vec::with_capacity(chunks.len());
        let mut resident = Vec::with_capacity(chunks.len());
        for (c, v) in open_chunks(keyring, scope, chunks).await? {
            points.push((c.id, v));
            resident.push(Arc::new(c));
        }
        let (dims, params) = (kb.dims as usize, self.shared.params);
        let ix = tokio::task::spawn_blocking(move || Index::build(dims, revision, points, params))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        self.stats.builds.fetch_add(1, Ordering::Relaxed);
        Ok(Resident::new(Base::new(ix, resident), revision))
    }

    /// Searches one knowledge base: the `k` nearest chunks to `query`, opened. A warm search
    /// (index resident) makes no query: the hits' payloads are in the resident index.
    pub async fn search(
        &self,
        store: &Store,
        keyring: &Keyring,
        scope: &TenantScope,
        kb: &KnowledgeBase,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<Retrieved>, GatewayError> {
        let ix = self.index(store, keyring, scope, kb).await?;
        let hits = ix.search(query, k).map_err(|e| match e {
            e @ tenantgate_rag::RagError::Dimensions { .. } => GatewayError::InvalidRequest {
                message: e.to_string(),
                param: None,
            },
            e => internal(e),
        })?;
        let mut out = Vec::with_capacity(hits.len());
        for (h, c) in hits {
            let plain = keyring
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
    keyring: &Keyring,
    scope: &TenantScope,
    doc_id: &str,
    chunks: &[tenantgate_rag::Chunk],
    embeddings: &[Vec<f32>],
) -> Result<Vec<NewChunk>, GatewayError> {
    let mut out = Vec::with_capacity(chunks.len());
    for (i, (c, v)) in chunks.iter().zip(embeddings).enumerate() {
        let ord = i as u32;
        let sealed = keyring
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

#[cfg(test)]
mod tests;
