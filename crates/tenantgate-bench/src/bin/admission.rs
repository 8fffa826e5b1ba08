//! Admission benchmark: the latency one call's reserve + settle adds, in-process and on Redis
//! (one Lua script each), with one caller and with 64 concurrent callers of 100 tenants.
//!
//! `cargo run --release -p tenantgate-bench --bin admission [-- --redis redis://127.0.0.1:6379]`

use anyhow::Result;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenantgate_core::TenantId;
use tenantgate_gateway::limits::{Admission, Ask, LimitSet, LimitsBackend, LimitsConfig};

fn hist() -> Histogram<u64> {
    #[expect(clippy::expect_used, reason = "constant, valid bounds")]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn run(adm: Arc<Admission>, label: &str) -> Result<()> {
    let tenants: Arc<Vec<TenantId>> = Arc::new(
        (0..100)
            .map(|i| TenantId::parse(&format!("01a206c5-7d5b-7763-abd8-{i:012x}")))
            .collect::<Result<_, _>>()?,
    );
    // Every kind of limit on, none reached: the full check list on each call.
    let limits = LimitSet {
        requests_per_minute: Some(1 << 40),
        tokens_per_minute: Some(1 << 40),
        concurrent_requests: Some(1 << 20),
        daily_tokens: Some(1 << 50),
        monthly_tokens: Some(1 << 50),
        monthly_spend_micros: Some(1 << 50),
        key_requests_per_minute: Some(1 << 40),
        key_tokens_per_minute: Some(1 << 40),
        key_concurrent_requests: Some(1 << 20),
        user_requests_per_minute: Some(1 << 40),
        user_tokens_per_minute: Some(1 << 40),
        user_concurrent_requests: Some(1 << 20),
        fine_tuning: None,
    };
    for callers in [1usize, 64] {
        let stop = Arc::new(AtomicBool::new(false));
        let all = Arc::new(Mutex::new(hist()));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..callers {
            let (adm, tenants, stop, all) =
                (adm.clone(), tenants.clone(), stop.clone(), all.clone());
            #[expect(
                clippy::disallowed_methods,
                reason = "the benchmark drives the server from outside; its tasks are not server background work"
            )]
            tasks.push(tokio::spawn(async move {
                let mut h = hist();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = &tenants[(c + n as usize) % tenants.len()];
                    let rid = format!("req_{c}_{n}");
                    let t0 = Instant::now();
                    let r = adm
                        .reserve(Ask {
                            tenant: t,
                            key: "01a206c5-7d5e-7087-8b3e-6ade02d09689",
                            user: Some("end-user-1"),
                            request_id: &rid,
                            limits: &limits,
                            tokens: 600,
                            prompt_tokens: 100,
                            cost: 900,
                            now_ms: now_ms(),
                        })
                        .await;
                    if let Ok(r) = r {
                        adm.settle(&r, 450, 700).await;
                    }
                    let _ = h.record(t0.elapsed().as_micros() as u64);
                    n += 1;
                    // The in-process backend never waits: let the timer and the other callers run.
                    tokio::task::yield_now().await;
                }
                if let Ok(mut g) = all.lock() {
                    let _ = g.add(&h);
                }
                n
            }));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for t in tasks {
            total += t.await?;
        }
        let h = all.lock().map(|h| h.clone()).unwrap_or_else(|_| hist());
        println!(
            "  {label:<10} {callers:>3} callers: reserve+settle p50 {:>7.3} ms  p99 {:>7.3} ms  {:>8.0} calls/s",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            total as f64 / started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let redis = args
        .iter()
        .position(|a| a == "--redis")
        .and_then(|i| args.get(i + 1).cloned());
    println!("admission: 12 counters checked and added per call (tenant, key, user, budgets)");
    let local = Admission::start(LimitsConfig::default())
        .await
        .map_err(anyhow::Error::msg)?;
    run(Arc::new(local), "in-process").await?;
    if let Some(url) = redis {
        let cfg = LimitsConfig {
            backend: LimitsBackend::Redis,
            redis_url: Some(url),
            redis_prefix: format!("tgbench:{}:", std::process::id()),
            ..Default::default()
        };
        let r = Admission::start(cfg).await.map_err(anyhow::Error::msg)?;
        run(Arc::new(r), "redis").await?;
    }
    Ok(())
}
