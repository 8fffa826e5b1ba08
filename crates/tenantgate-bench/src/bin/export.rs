//! Export-bundle benchmark (issue 18): a tenant with `--mb` MB of documents (4 MiB each, stored
//! with their sealed sources and one chunk, as an upload stores them), exported through
//! `GET /tenant/v1/export` of an in-process gateway; reports throughput (MB/s of bundle) and
//! the process's resident-memory growth while exporting (sampled every 2 ms) and VmHWM.
//!
//! `cargo run --release -p tenantgate-bench --bin export [-- --mb 64]` (`--mb 1024`: 1 GB)

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, PlatformAdmin, Role, TenantScope};
use tenantgate_gateway::control::{create_key, KeySpec};
use tenantgate_gateway::identity::keys::ServerSecret;
use tenantgate_gateway::{Config, Server};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Megabytes of documents.
    #[arg(long, default_value_t = 64)]
    mb: usize,
}

const DOC_BYTES: usize = 4 << 20;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
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
    reason = "the benchmark writes the tenant's documents as the upload handler would"
)]
fn scope(t: tenantgate_core::TenantId) -> TenantScope {
    TenantScope::from_verified_credential(t)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse()?;
    c.server.secret_file = dir.path().join("secret");
    c.encryption.master_key_file = dir.path().join("master.key");
    c.audit.signing_key_file = dir.path().join("audit.key");
    c.audit.witness_dir = dir.path().join("audit-witness");
    c.database.url = format!("sqlite:{}", dir.path().join("export.db").display());
    c.rag.index_dir = dir.path().join("indexes");
    c.demo.bootstrap_tenant = false;
    let server = Server::bind(c.clone()).await?;
    let url = format!("http://{}", server.local_addr());
    let state = server.state();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    #[expect(
        clippy::disallowed_methods,
        reason = "the benchmark runs the server it measures; not server background work"
    )]
    let serving = tokio::spawn(server.serve(async {
        let _ = stop_rx.await;
    }));
    let admin = operator();
    let t = state
        .store()
        .platform(&admin)
        .create_tenant(&NewTenant {
            slug: "bulk".into(),
            display_name: "bulk".into(),
            plan: PlanTier::Pro,
            isolation: IsolationTier::Namespace,
            allowed_models: vec!["*".into()],
            max_tokens_per_request: None,
        })
        .await?;
    let scope = scope(t.id.clone());
    let secret = ServerSecret::load_or_create(&c.server.secret_file)?;
    let spec = KeySpec {
        role: Role::TenantAdmin,
        name: None,
        end_user: None,
        expires_at_ms: None,
    };
    let (_, key) = create_key(state.store(), &admin, &secret, &t.id, spec).await?;
    let h = state.store().tenant(&scope);
    let kb = h
        .create_knowledge_base("bulk", "demo", 8, 400, false)
        .await?;
    let docs = (args.mb << 20).div_ceil(DOC_BYTES);
    let t0 = Instant::now();
    for i in 0..docs {
        let bytes: Vec<u8> = (0..DOC_BYTES)
            .map(|j| {
                (j as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(i as u32) as u8
            })
            .collect();
        let doc = format!("doc_bench{i:05}");
        let source = tenantgate_gateway::lifecycle::export::seal_source(
            state.keyring(),
            &scope,
            &doc,
            &bytes,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let chunk = tenantgate_rag::Chunk {
            text: format!("chunk {i}"),
            offset: 0,
            tokens: 2,
        };
        let sealed = tenantgate_gateway::knowledge::seal_chunks(
            state.keyring(),
            &scope,
            &doc,
            &[chunk],
            &[vec![0.5; 8]],
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let sha = tenantgate_audit::sha256_hex(&bytes);
        h.add_document_with_source(
            &kb.id,
            &doc,
            "bulk.bin",
            "application/octet-stream",
            bytes.len() as i64,
            &sha,
            &sealed,
            &source,
        )
        .await?;
    }
    println!(
        "stored {docs} documents ({} MB) in {:.1} s",
        (docs * DOC_BYTES) >> 20,
        t0.elapsed().as_secs_f64()
    );

    let base = status_kib("VmRSS:");
    let peak = Arc::new(AtomicU64::new(base));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(status_kib("VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::get(format!("{url}/tenant/v1/export"))
        .header("authorization", format!("Bearer {key}"))
        .body(Empty::new())?;
    let started = Instant::now();
    let resp = client.request(req).await?;
    anyhow::ensure!(resp.status().is_success(), "export: {}", resp.status());
    let mut body = resp.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.context("the export stream failed")?.into_data() {
            total += data.len() as u64;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let growth = peak.load(Ordering::Relaxed).saturating_sub(base);
    println!(
        "export: {:.1} MB bundle in {secs:.2} s = {:.1} MB/s; RSS before {:.1} MiB, growth while exporting {:.1} MiB; VmHWM {:.1} MiB",
        total as f64 / 1e6,
        total as f64 / 1e6 / secs,
        base as f64 / 1024.0,
        growth as f64 / 1024.0,
        status_kib("VmHWM:") as f64 / 1024.0
    );
    let _ = stop_tx.send(());
    let _ = serving.await;
    Ok(())
}
