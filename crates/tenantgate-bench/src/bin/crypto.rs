//! Envelope encryption benchmark: seal and open latency and throughput for 1 KiB and 64 KiB
//! records, with the data-key cache on (steady state) and off (every seal makes a data key,
//! every open asks the KMS), on the embedded SQLite store with the local KMS.
//!
//! `cargo run --release -p tenantgate-bench --bin crypto`

use anyhow::Result;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, PlatformAdmin, TenantScope};
use tenantgate_crypto::{Key, MasterKey};
use tenantgate_store::{Keyring, KeyringOptions, LocalKms, Store, StoreOptions};

fn keyring(store: &Store, master: &Key, cache: bool) -> Keyring {
    let kms = LocalKms::new(
        store.clone(),
        MasterKey::from_key(master.clone()),
        Duration::from_secs(300),
    );
    Keyring::new(
        store.clone(),
        Arc::new(kms),
        KeyringOptions {
            cache,
            ..Default::default()
        },
    )
}

fn hist() -> Histogram<u64> {
    #[expect(clippy::expect_used, reason = "constant, valid bounds")]
    Histogram::new_with_bounds(1, 10_000_000, 3).expect("histogram bounds")
}

fn line(what: &str, h: &Histogram<u64>, n: usize, elapsed: Duration, bytes: usize) {
    let ops = n as f64 / elapsed.as_secs_f64();
    println!(
        "  {what:<28} p50 {:>8.1} us  p99 {:>8.1} us  {:>9.0} ops/s  {:>7.1} MiB/s",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        ops,
        ops * bytes as f64 / (1024.0 * 1024.0)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&StoreOptions::new(format!(
        "sqlite:{}",
        dir.path().join("c.db").display()
    )))
    .await?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the benchmark plays the operator"
    )]
    let admin = PlatformAdmin::local_operator("bench");
    let t = store
        .platform(&admin)
        .create_tenant(&NewTenant {
            slug: "bench".into(),
            display_name: "bench".into(),
            plan: PlanTier::Pro,
            isolation: IsolationTier::Namespace,
            allowed_models: vec![],
            max_tokens_per_request: None,
        })
        .await?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the benchmark stands in for the authentication stage"
    )]
    let scope = TenantScope::from_verified_credential(t.id.clone());
    let master = Key::generate();
    println!("envelope encryption (AES-256-GCM, local KMS, SQLite store)");
    for &size in &[1024usize, 64 * 1024] {
        let payload = vec![0x5au8; size];
        for cache in [true, false] {
            let kr = keyring(&store, &master, cache);
            let n = if cache { 20_000 } else { 500 };
            let mut sealed = Vec::with_capacity(n);
            let (mut hs, mut ho) = (hist(), hist());
            let started = Instant::now();
            for i in 0..n {
                let t0 = Instant::now();
                sealed.push(kr.seal(&scope, "bench", &i.to_string(), &payload).await?);
                let _ = hs.record(t0.elapsed().as_nanos().max(1) as u64);
            }
            let seal_time = started.elapsed();
            let kr = keyring(&store, &master, cache); // cold open cache, as after a restart
            let started = Instant::now();
            for (i, s) in sealed.iter().enumerate() {
                let t0 = Instant::now();
                let p = kr.open(&scope, "bench", &i.to_string(), s).await?;
                let _ = ho.record(t0.elapsed().as_nanos().max(1) as u64);
                anyhow::ensure!(p.len() == size);
            }
            let open_time = started.elapsed();
            let label = if cache { "cache on" } else { "cache off" };
            println!("{} KiB, data-key {label} ({n} records):", size / 1024);
            line("seal", &hs, n, seal_time, size);
            line("open", &ho, n, open_time, size);
        }
    }
    store.close().await;
    Ok(())
}
