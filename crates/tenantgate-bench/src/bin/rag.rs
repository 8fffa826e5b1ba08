//! Knowledge-base benchmark.
//!
//! 1. One tenant, 100,000 chunks x 384 dimensions (synthetic text embedded with the built-in
//!    embedder): index build (ingest) rate, top-10 search latency p50/p99, recall@10 against
//!    exact search, resident memory, serialised size and load time.
//! 2. Many tenants (default 1,000 x 1,000 chunks) through the gateway's own `Knowledge`:
//!    chunks sealed with each tenant's key in the store, one index per tenant built and
//!    persisted sealed; then a fresh process serves searches for random tenants, loading
//!    indexes lazily under the memory bound, and reports its resident memory.
//!
//! 3. With `--upload N` (e.g. 10,000): one knowledge base of `--chunks` chunks through the
//!    gateway's `Knowledge` (sealed in the store, index built once), searched without pause by
//!    another thread while N more chunks are uploaded (sealed, stored, applied to the resident
//!    index as the upload handler does); reports the time until the upload is searchable, the
//!    search p50/p99 before, during (until the background merge swapped in) and after, and
//!    recall@10 against exact search on the segmented and the merged index. Runs instead of
//!    1 and 2.
//!
//! `cargo run --release -p tenantgate-bench --bin rag [-- --chunks 100000 --tenants 1000 --per-tenant 1000]`
//! `cargo run --release -p tenantgate-bench --bin rag -- --chunks 100000 --upload 10000`

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use std::time::Instant;
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, PlatformAdmin, TenantScope};
use tenantgate_gateway::{Config, Server};
use tenantgate_providers::embed::{embed, DEMO_DIMS};
use tenantgate_rag::{exact_search, Index, IndexParams};

fn hist() -> Histogram<u64> {
    #[expect(clippy::expect_used, reason = "constant, valid bounds")]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A deterministic generator of English-like chunks: words from a Zipf-ish vocabulary.
struct Corpus {
    words: Vec<String>,
    state: u64,
    /// Percent of words drawn from the chunk's topic.
    topic_share: u64,
}

impl Corpus {
    fn new(seed: u64) -> Self {
        let syll = [
            "ka", "ro", "mi", "te", "lu", "sa", "no", "ve", "di", "po", "re", "an", "ul", "es",
            "ti",
        ];
        let mut words = Vec::new();
        for a in syll {
            for b in syll {
                for c in ["", "n", "s", "ra", "to", "mel", "dor", "ix"] {
                    words.push(format!("{a}{b}{c}"));
                }
            }
        }
        let topic_share = std::env::var("TENANTGATE_BENCH_TOPIC_SHARE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60);
        Self {
            words,
            state: seed,
            topic_share,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A chunk about one of `TOPICS` topics: most words from the topic's own small vocabulary,
    /// the rest common words (as real documents are: a subject, in ordinary language). With
    /// `TOPIC_SHARE` 0 the text has no structure at all (the adversarial case for HNSW).
    fn chunk(&mut self, words: usize) -> String {
        const TOPICS: u64 = 2000;
        let n = self.words.len();
        let topic = self.next() % TOPICS;
        let share = self.topic_share;
        let picks: Vec<usize> = (0..words)
            .map(|_| {
                if (self.next() % 100) < share {
                    // one of the topic's 24 words
                    let k = self.next() % 24;
                    ((topic * 7919 + k * 104_729) % n as u64) as usize
                } else {
                    // square of a uniform: frequent words are much more frequent
                    let u = (self.next() % 10_000) as f64 / 10_000.0;
                    (((u * u) * n as f64) as usize).min(n - 1)
                }
            })
            .collect();
        picks
            .iter()
            .map(|i| self.words[*i].as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve-lazily") {
        let dir = args.get(i + 1).context("--serve-lazily DIR")?;
        return serve_lazily(std::path::Path::new(dir), arg(&args, "--tenants", 1000)).await;
    }
    let chunks = arg(&args, "--chunks", 100_000);
    let upload = arg(&args, "--upload", 0);
    if upload > 0 {
        return upload_while_searching(chunks, upload).await;
    }
    let d = IndexParams::default();
    let params = IndexParams {
        ef_construction: arg(&args, "--ef-construction", d.ef_construction),
        ef_search: arg(&args, "--ef-search", d.ef_search),
        heuristic: arg(&args, "--heuristic", usize::from(d.heuristic)) == 1,
        ..d
    };
    if chunks > 0 {
        one_tenant(chunks, params)?;
    }
    let tenants = arg(&args, "--tenants", 1000);
    if tenants > 0 {
        many_tenants(tenants, arg(&args, "--per-tenant", 1000)).await?;
    }
    Ok(())
}

fn one_tenant(n: usize, params: IndexParams) -> Result<()> {
    println!(
        "== one tenant: {n} chunks x {DEMO_DIMS} dims (ef_construction {}, ef_search {}, heuristic {})",
        params.ef_construction, params.ef_search, params.heuristic
    );
    let mut corpus = Corpus::new(7);
    let texts: Vec<String> = (0..n).map(|_| corpus.chunk(40)).collect();
    let t = Instant::now();
    let points: Vec<(i64, Vec<f32>)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (i as i64, embed(t, DEMO_DIMS)))
        .collect();
    let embed_s = t.elapsed().as_secs_f64();
    drop(texts);
    let rss0 = rss_mib();
    let t = Instant::now();
    let ix = Index::build(DEMO_DIMS, 1, points.clone(), params)?;
    let build_s = t.elapsed().as_secs_f64();
    let rss1 = rss_mib();
    println!(
        "embed (built-in embedder): {:.1} s; index build: {:.1} s = {:.0} chunks/s (2 cores)",
        embed_s,
        build_s,
        n as f64 / build_s
    );
    println!(
        "resident: {:.0} MiB before the index, {:.0} MiB with it (+{:.0} MiB; estimate {:.0} MiB)",
        rss0,
        rss1,
        rss1 - rss0,
        ix.memory_bytes() as f64 / 1048576.0
    );
    // queries: fresh text from the same distribution, not copies of chunks
    let mut qc = Corpus::new(99);
    let queries: Vec<Vec<f32>> = (0..1000).map(|_| embed(&qc.chunk(12), DEMO_DIMS)).collect();
    let mut lat = hist();
    for q in &queries {
        let t = Instant::now();
        let hits = ix.search(q, 10)?;
        lat.record(t.elapsed().as_micros() as u64)?;
        std::hint::black_box(hits);
    }
    println!(
        "top-10 search, 1 thread: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        lat.value_at_quantile(0.5) as f64 / 1000.0,
        lat.value_at_quantile(0.99) as f64 / 1000.0,
        lat.max() as f64 / 1000.0
    );
    let sample = 300;
    let mut found = 0;
    for q in queries.iter().take(sample) {
        let exact: Vec<i64> = exact_search(&points, q, 10).iter().map(|h| h.id).collect();
        found += ix
            .search(q, 10)?
            .iter()
            .filter(|h| exact.contains(&h.id))
            .count();
    }
    println!(
        "recall@10 vs exact search ({sample} queries): {:.4}",
        found as f64 / (sample * 10) as f64
    );
    let t = Instant::now();
    let bytes = ix.to_bytes()?;
    let ser = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let back = Index::from_bytes(&bytes)?;
    let load = t.elapsed().as_secs_f64();
    println!(
        "serialised: {:.0} MiB in {:.2} s; loaded back in {:.2} s ({} chunks)",
        bytes.len() as f64 / 1048576.0,
        ser,
        load,
        back.len()
    );
    Ok(())
}

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap_or(c.server.listen);
    c.server.secret_file = dir.join("secret");
    c.encryption.master_key_file = dir.join("master.key");
    c.audit.signing_key_file = dir.join("audit.key");
    c.audit.witness_dir = dir.join("audit-witness");
    c.database.url = format!("sqlite:{}", dir.join("rag.db").display());
    c.rag.index_dir = dir.join("indexes");
    c.rag.max_resident_bytes = 64 << 20;
    c.demo.bootstrap_tenant = false;
    c
}

#[expect(
    clippy::disallowed_methods,
    reason = "the benchmark plays the operator and the authentication stage"
)]
fn operator() -> PlatformAdmin {
    PlatformAdmin::local_operator("bench")
}

#[expect(
    clippy::disallowed_methods,
    reason = "the benchmark plays the authentication stage"
)]
fn scope(t: tenantgate_core::TenantId) -> TenantScope {
    TenantScope::from_verified_credential(t)
}

async fn many_tenants(tenants: usize, per: usize) -> Result<()> {
    println!("== {tenants} tenants x {per} chunks, through the gateway's Knowledge");
    let dir = tempfile::tempdir()?;
    let server = Server::bind(config(dir.path())).await?;
    let app = server.state();
    let admin = operator();
    let mut corpus = Corpus::new(3);
    let (mut seal_s, mut build_s) = (0.0, 0.0);
    let started = Instant::now();
    for i in 0..tenants {
        let t = app
            .store()
            .platform(&admin)
            .create_tenant(&NewTenant {
                slug: format!("t{i:05}"),
                display_name: format!("Tenant {i}"),
                plan: PlanTier::Pro,
                isolation: IsolationTier::Namespace,
                allowed_models: vec!["*".into()],
                max_tokens_per_request: None,
            })
            .await?;
        let scope = scope(t.id);
        let store = app.store().tenant(&scope);
        let kb = store
            .create_knowledge_base("docs", "demo", DEMO_DIMS as u32, 400, false)
            .await?;
        let chunks: Vec<tenantgate_rag::Chunk> = (0..per)
            .map(|_| {
                let text = corpus.chunk(40);
                tenantgate_rag::Chunk {
                    tokens: 60,
                    offset: 0,
                    text,
                }
            })
            .collect();
        let emb: Vec<Vec<f32>> = chunks.iter().map(|c| embed(&c.text, DEMO_DIMS)).collect();
        let t0 = Instant::now();
        let doc = format!("doc_bench_{i}");
        let sealed =
            tenantgate_gateway::knowledge::seal_chunks(app.keyring(), &scope, &doc, &chunks, &emb)
                .await?;
        store
            .add_document(&kb.id, &doc, "d.txt", "text/plain", 1, "x", &sealed)
            .await?;
        seal_s += t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let kb = store.knowledge_base(&kb.id).await?;
        app.knowledge()
            .index(app.store(), app.keyring(), &scope, &kb)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        build_s += t0.elapsed().as_secs_f64();
        if (i + 1) % 100 == 0 {
            eprintln!(
                "  {} tenants ingested ({:.0} s)",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "ingest: seal + store {:.0} chunks/s; index build + sealed file {:.0} chunks/s",
        (tenants * per) as f64 / seal_s,
        (tenants * per) as f64 / build_s
    );
    drop(app);
    drop(server);
    // A fresh process: nothing loaded until asked.
    let status = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--serve-lazily",
            &dir.path().display().to_string(),
            "--tenants",
            &tenants.to_string(),
        ])
        .status()?;
    anyhow::ensure!(status.success(), "lazy phase failed");
    Ok(())
}

async fn serve_lazily(dir: &std::path::Path, tenants: usize) -> Result<()> {
    let server = Server::bind(config(dir)).await?;
    let app = server.state();
    let admin = operator();
    let all = app.store().platform(&admin).list_tenants().await?;
    anyhow::ensure!(all.len() == tenants, "expected {tenants} tenants");
    let rss_idle = rss_mib();
    println!(
        "fresh gateway process with {} tenants, no index loaded: {:.0} MiB resident",
        all.len(),
        rss_idle
    );
    let mut q = Corpus::new(11);
    let (mut cold, mut hot) = (hist(), hist());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..2 {
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let t = &all[(state % all.len() as u64) as usize];
            let scope = scope(t.id.clone());
            let kb = app.store().tenant(&scope).knowledge_base("docs").await?;
            let query = embed(&q.chunk(10), DEMO_DIMS);
            let t0 = Instant::now();
            let hits = app
                .knowledge()
                .search(app.store(), app.keyring(), &scope, &kb, &query, 10)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let us = t0.elapsed().as_micros() as u64;
            anyhow::ensure!(hits.len() == 10, "short result");
            if round == 0 {
                cold.record(us)?;
            } else {
                hot.record(us)?;
            }
        }
    }
    use std::sync::atomic::Ordering::Relaxed;
    let s = &app.knowledge().stats;
    println!(
        "4000 searches over random tenants (64 MiB bound): {} index loads from sealed files, {} evictions, {:.1} MiB of indexes resident",
        s.loads.load(Relaxed),
        s.evictions.load(Relaxed),
        s.resident_bytes.load(Relaxed) as f64 / 1048576.0
    );
    println!(
        "search incl. chunk fetch + open: first pass p50 {:.2} ms p99 {:.2} ms; second pass p50 {:.2} ms p99 {:.2} ms",
        cold.value_at_quantile(0.5) as f64 / 1000.0,
        cold.value_at_quantile(0.99) as f64 / 1000.0,
        hot.value_at_quantile(0.5) as f64 / 1000.0,
        hot.value_at_quantile(0.99) as f64 / 1000.0
    );
    println!("resident after the searches: {:.0} MiB", rss_mib());
    Ok(())
}

/// A knowledge base's chunks (text, embedding) in documents of `per_doc`, sealed and stored
/// through the tenant's handle; returns the document ids.
async fn store_documents(
    app: &tenantgate_gateway::AppState,
    scope: &TenantScope,
    kb: &str,
    prefix: &str,
    chunks: &[(String, Vec<f32>)],
    per_doc: usize,
) -> Result<Vec<String>> {
    let mut docs = Vec::new();
    for (i, part) in chunks.chunks(per_doc).enumerate() {
        let doc = format!("doc_{prefix}_{i}");
        let c: Vec<tenantgate_rag::Chunk> = part
            .iter()
            .map(|(text, _)| tenantgate_rag::Chunk {
                tokens: 60,
                offset: 0,
                text: text.clone(),
            })
            .collect();
        let emb: Vec<Vec<f32>> = part.iter().map(|(_, v)| v.clone()).collect();
        let sealed =
            tenantgate_gateway::knowledge::seal_chunks(app.keyring(), scope, &doc, &c, &emb)
                .await?;
        app.store()
            .tenant(scope)
            .add_document(kb, &doc, "d.txt", "text/plain", 1, "x", &sealed)
            .await?;
        docs.push(doc);
    }
    Ok(docs)
}

/// Searches the knowledge base without pause on its own thread (a request worker of its
/// own) until `stop`, recording each search's latency in the histogram of the phase it
/// started in (0 before the upload, 1 until the merge swapped in, 2 after).
fn searcher(
    app: tenantgate_gateway::AppState,
    scope: TenantScope,
    kb_id: String,
    phase: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Result<[Histogram<u64>; 3]>> {
    use std::sync::atomic::Ordering::Relaxed;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut lat = [hist(), hist(), hist()];
            let mut qc = Corpus::new(99);
            let queries: Vec<Vec<f32>> =
                (0..500).map(|_| embed(&qc.chunk(12), DEMO_DIMS)).collect();
            // As of the start, like a replica's snapshot that has not reloaded yet: a
            // resident index at that revision or later serves it, so no search waits on
            // the store.
            let kb = app.store().tenant(&scope).knowledge_base(&kb_id).await?;
            let mut i = 0;
            while !stop.load(Relaxed) {
                let p = phase.load(Relaxed);
                let t0 = Instant::now();
                let hits = app
                    .knowledge()
                    .search(
                        app.store(),
                        app.keyring(),
                        &scope,
                        &kb,
                        &queries[i % queries.len()],
                        10,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                lat[p.min(2)].record(t0.elapsed().as_micros() as u64)?;
                anyhow::ensure!(hits.len() == 10, "short result");
                i += 1;
            }
            Ok(lat)
        })
    })
}

/// recall@10 of the gateway's search against exact search over `points`, keyed by
/// (document, ordinal).
async fn recall(
    app: &tenantgate_gateway::AppState,
    scope: &TenantScope,
    kb_id: &str,
    points: &[((String, u32), Vec<f32>)],
) -> Result<f64> {
    let flat: Vec<(i64, Vec<f32>)> = points
        .iter()
        .enumerate()
        .map(|(i, (_, v))| (i as i64, v.clone()))
        .collect();
    let mut qc = Corpus::new(1234);
    let (mut found, n) = (0, 100);
    for _ in 0..n {
        let q = embed(&qc.chunk(12), DEMO_DIMS);
        let exact: Vec<&(String, u32)> = exact_search(&flat, &q, 10)
            .iter()
            .map(|h| &points[h.id as usize].0)
            .collect();
        let kb = app.store().tenant(scope).knowledge_base(kb_id).await?;
        let got = app
            .knowledge()
            .search(app.store(), app.keyring(), scope, &kb, &q, 10)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        found += got
            .iter()
            .filter(|r| exact.contains(&&(r.document_id.clone(), r.chunk)))
            .count();
    }
    Ok(found as f64 / (n * 10) as f64)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

async fn upload_while_searching(n: usize, upload: usize) -> Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    const PER_DOC: usize = 1000;
    println!(
        "== upload {upload} chunks into a knowledge base of {n} x {DEMO_DIMS} while it is searched"
    );
    let dir = tempfile::tempdir()?;
    let server = Server::bind(config(dir.path())).await?;
    let app = server.state();
    let t = app
        .store()
        .platform(&operator())
        .create_tenant(&NewTenant {
            slug: "big".into(),
            display_name: "Big".into(),
            plan: PlanTier::Pro,
            isolation: IsolationTier::Namespace,
            allowed_models: vec!["*".into()],
            max_tokens_per_request: None,
        })
        .await?;
    let scope = scope(t.id);
    let kb = app
        .store()
        .tenant(&scope)
        .create_knowledge_base("docs", "demo", DEMO_DIMS as u32, 400, false)
        .await?;
    let mut corpus = Corpus::new(7);
    let mut make = |count: usize| -> Vec<(String, Vec<f32>)> {
        (0..count)
            .map(|_| {
                let text = corpus.chunk(40);
                let v = embed(&text, DEMO_DIMS);
                (text, v)
            })
            .collect()
    };
    let base = make(n);
    let added = make(upload);
    let base_docs = store_documents(&app, &scope, &kb.id, "base", &base, PER_DOC).await?;
    let mut points: Vec<((String, u32), Vec<f32>)> = Vec::with_capacity(n + upload);
    for (d, part) in base_docs.iter().zip(base.chunks(PER_DOC)) {
        for (o, (_, v)) in part.iter().enumerate() {
            points.push(((d.clone(), o as u32), v.clone()));
        }
    }
    let t0 = Instant::now();
    let kb_now = app.store().tenant(&scope).knowledge_base(&kb.id).await?;
    app.knowledge()
        .index(app.store(), app.keyring(), &scope, &kb_now)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let build_s = t0.elapsed().as_secs_f64();
    println!(
        "index of {n} chunks built (what a stale search paid before, inside the request): {build_s:.1} s"
    );
    let before_recall = recall(&app, &scope, &kb.id, &points).await?;

    let phase = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let search_thread = searcher(
        app.clone(),
        scope.clone(),
        kb.id.clone(),
        phase.clone(),
        stop.clone(),
    );
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    // The upload as its handler runs it, minus extraction and embedding: sealed, stored in
    // one transaction per document, applied to the resident index.
    let up = Instant::now();
    phase.store(1, Relaxed);
    let docs = store_documents(&app, &scope, &kb.id, "new", &added, upload).await?;
    let stored_s = up.elapsed().as_secs_f64();
    let kb_now = app.store().tenant(&scope).knowledge_base(&kb.id).await?;
    app.knowledge()
        .refresh(app.store(), app.keyring(), &scope, &kb_now)
        .await;
    let applied_s = up.elapsed().as_secs_f64();
    let probe = &added[upload / 2].1;
    let hits = app
        .knowledge()
        .search(app.store(), app.keyring(), &scope, &kb_now, probe, 10)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        hits.iter().any(|h| docs.contains(&h.document_id)),
        "the upload is not searchable"
    );
    let searchable_s = up.elapsed().as_secs_f64();
    let builds = app.knowledge().stats.builds.load(Relaxed);
    println!(
        "upload of {upload} chunks: sealed + stored {stored_s:.2} s; applied to the resident index at {applied_s:.2} s; searchable at {searchable_s:.2} s (index builds so far: {builds})"
    );
    for (d, part) in docs.iter().zip(added.chunks(upload)) {
        for (o, (_, v)) in part.iter().enumerate() {
            points.push(((d.clone(), o as u32), v.clone()));
        }
    }
    let delta_recall = recall(&app, &scope, &kb.id, &points).await?;
    // The merge: in the background, until it swaps in.
    let deadline = Instant::now() + std::time::Duration::from_secs(900);
    while app.knowledge().stats.merges.load(Relaxed) == 0 {
        anyhow::ensure!(Instant::now() < deadline, "no merge within 900 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let merged_s = up.elapsed().as_secs_f64();
    phase.store(2, Relaxed);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    stop.store(true, Relaxed);
    let lat = search_thread
        .join()
        .map_err(|_| anyhow::anyhow!("search thread panicked"))??;
    let merged_recall = recall(&app, &scope, &kb.id, &points).await?;
    println!(
        "background merge of {} chunks swapped in at {merged_s:.1} s (1 build thread); index builds inside requests: {}",
        n + upload,
        app.knowledge().stats.builds.load(Relaxed) - builds
    );
    for (name, h) in [
        "before the upload",
        "upload until merged",
        "after the merge",
    ]
    .iter()
    .zip(&lat)
    {
        println!(
            "search (1 thread, top-10, incl. opening hits) {name}: {} searches, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            h.len(),
            ms(h, 0.5),
            ms(h, 0.99),
            h.max() as f64 / 1000.0
        );
    }
    println!(
        "recall@10 vs exact (100 queries): graph only {before_recall:.4}; graph + {upload} exact-scanned {delta_recall:.4}; merged {merged_recall:.4}"
    );
    Ok(())
}
