//! Audit log benchmark: durable records per second through the group-commit writer (each
//! append awaited until its transaction committed), and the latency one append adds, at
//! several numbers of concurrent callers; SQLite by default, PostgreSQL with `--postgres URL`.
//!
//! `cargo run --release -p tenantgate-bench --bin audit [-- --postgres URL]`

use anyhow::Result;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, PlatformAdmin, TenantScope};
use tenantgate_gateway::audit::{event_record, AuditLog};
use tenantgate_gateway::config::AuditConfig;
use tenantgate_store::{Store, StoreOptions};

fn hist() -> Histogram<u64> {
    #[expect(clippy::expect_used, reason = "constant, valid bounds")]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let pg = args
        .iter()
        .position(|a| a == "--postgres")
        .and_then(|i| args.get(i + 1).cloned());
    let dir = tempfile::tempdir()?;
    let mut opts = match &pg {
        Some(url) => {
            let mut o = StoreOptions::new(url.clone());
            o.pg_schema = format!("tg_bench_{}", std::process::id());
            o
        }
        None => StoreOptions::new(format!("sqlite:{}", dir.path().join("a.db").display())),
    };
    opts.max_connections = 8;
    let store = Store::open(&opts).await?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the benchmark plays the operator"
    )]
    let admin = PlatformAdmin::local_operator("bench");
    let mut scopes = Vec::new();
    for i in 0..50 {
        let t = store
            .platform(&admin)
            .create_tenant(&NewTenant {
                slug: format!("bench-{i}"),
                display_name: format!("Bench {i}"),
                plan: PlanTier::Pro,
                isolation: IsolationTier::Namespace,
                allowed_models: vec!["m".into()],
                max_tokens_per_request: None,
            })
            .await?;
        #[expect(
            clippy::disallowed_methods,
            reason = "the benchmark plays the authentication stage"
        )]
        scopes.push(TenantScope::from_verified_credential(t.id));
    }
    let cfg = AuditConfig {
        signing_key_file: dir.path().join("sign.key"),
        witness_dir: dir.path().join("witness"),
        ..Default::default()
    };
    let (log, writer) = AuditLog::start(store.clone(), &cfg, tokio_util::task::TaskTracker::new())?;
    let log = Arc::new(log);
    let scopes = Arc::new(scopes);
    println!(
        "audit append, durable ({}; {} tenants, records ~500 bytes, batch <= {})",
        store.backend_name(),
        scopes.len(),
        cfg.max_batch
    );
    for callers in [1usize, 16, 256, 2048] {
        let stop = Arc::new(AtomicBool::new(false));
        let lat = Arc::new(Mutex::new(hist()));
        let mut tasks = Vec::new();
        let started = Instant::now();
        for c in 0..callers {
            let (log, scopes, stop, lat) = (log.clone(), scopes.clone(), stop.clone(), lat.clone());
            #[expect(
                clippy::disallowed_methods,
                reason = "the benchmark drives the server from outside; its tasks are not server background work"
            )]
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                let mut h = hist();
                while !stop.load(Ordering::Relaxed) {
                    let scope = &scopes[(c + n as usize) % scopes.len()];
                    let entry = event_record(
                        &format!("req_{c}_{n}"),
                        tenantgate_audit::EventType::ApiCall,
                        tenantgate_audit::Actor {
                            kind: "api_key".into(),
                            key_id: Some("01a206c5-7d5e-7087-8b3e-6ade02d09689".into()),
                            user: Some("end-user-1".into()),
                            role: Some("member".into()),
                        },
                        serde_json::json!({"outcome": "completed", "stream": false}),
                    );
                    let t = Instant::now();
                    if log.append(scope, entry).await.is_ok() {
                        let _ = h.record(t.elapsed().as_micros() as u64);
                        n += 1;
                    }
                }
                if let Ok(mut g) = lat.lock() {
                    let _ = g.add(&h);
                }
                n
            }));
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for t in tasks {
            total += t.await?;
        }
        let secs = started.elapsed().as_secs_f64();
        let h = lat.lock().map(|h| h.clone()).unwrap_or_else(|_| hist());
        println!(
            "  {callers:>5} concurrent callers: {:>8.0} durable records/s   append latency p50 {:>7.3} ms  p99 {:>7.3} ms",
            total as f64 / secs,
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
        );
    }
    println!(
        "  commits: {}, largest batch: {}",
        log.stats.batches.load(Ordering::Relaxed),
        log.stats.largest_batch.load(Ordering::Relaxed)
    );
    drop(log);
    writer.stop().await;
    store.close().await;
    if pg.is_some() {
        // No SQL outside the store crate: dropping the schema is left to the operator.
        println!(
            "  (drop the benchmark schema with: DROP SCHEMA {} CASCADE)",
            opts.pg_schema
        );
    }
    Ok(())
}
