//! Memory and cold start with many tenants (issue 16, "Memory" and "Cold start").
//!
//! For each tenant count N: seeds N tenants (as the CLI would, so each has an audit head the
//! gateway signs at start) and keys for every `--key-every`th tenant, starts `tenantgate serve`
//! as its own process, and reports the time from spawn to the first `/readyz` 200, the
//! process's resident memory idle (at ready, and after a second), after `--calls` calls spread
//! round-robin over the keyed tenants (C connections, closed loop), and its peak (VmHWM).
//! Then the idle slope between the two smallest and largest N: resident bytes per configured
//! tenant.
//!
//! `cargo build --release -p tenantgate -p tenantgate-bench &&
//!  target/release/memory --tenants 1000,10000`

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, PlatformAdmin, Role};
use tenantgate_gateway::config::{ModelConfig, ProviderConfig, ProviderKind};
use tenantgate_gateway::control::{create_key, KeySpec};
use tenantgate_gateway::identity::keys::ServerSecret;
use tenantgate_gateway::Config;

#[derive(Parser, Debug)]
struct Args {
    /// Tenant counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    tenants: Vec<usize>,
    /// The `tenantgate` binary (default: next to this one).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// One key for every this many tenants; calls go round-robin over the keyed tenants.
    #[arg(long, default_value_t = 10)]
    key_every: usize,
    /// Calls made after the idle measure.
    #[arg(long, default_value_t = 20_000)]
    calls: u64,
    /// Concurrent callers for the load.
    #[arg(long, default_value_t = 64)]
    connections: usize,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

struct Gateway {
    child: std::process::Child,
    url: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// The process's `/proc/PID/status` field in KiB (VmRSS, VmHWM).
    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .unwrap_or(0)
    }
}

fn config(dir: &Path, mock_url: &str) -> Config {
    let mut config = Config::default();
    config.server.secret_file = dir.join("secret");
    config.database.url = format!("sqlite:{}", dir.join("bench.db").display());
    config.providers = vec![ProviderConfig {
        name: "mock".into(),
        kind: ProviderKind::OpenaiCompatible,
        base_url: Some(format!("{mock_url}/v1")),
        api_key_env: None,
        api_key_file: None,
        api_version: None,
        connect_timeout_ms: 5_000,
        request_timeout_ms: 60_000,
        read_timeout_ms: 60_000,
        pool_max_idle_per_host: 512,
        cache_salt: None,
    }];
    config.models = vec![ModelConfig {
        name: "bench-model".into(),
        provider: "mock".into(),
        upstream_model: Some("bench-upstream".into()),
        default_max_tokens: 256,
        pricing: None,
        ..Default::default()
    }];
    config
}

/// Tenants and keys written through the store, as the CLI does, before the gateway starts.
async fn seed(config: &Config, tenants: usize, key_every: usize) -> Result<Vec<String>> {
    let store = tenantgate_gateway::server::open_store(config).await?;
    let secret = ServerSecret::load_or_create(&config.server.secret_file)?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the benchmark plays the CLI operator"
    )]
    let admin = PlatformAdmin::local_operator("bench");
    let mut keys = Vec::new();
    for i in 0..tenants {
        let t = store
            .platform(&admin)
            .create_tenant(&NewTenant {
                slug: format!("tenant-{i:06}"),
                display_name: format!("Tenant {i}"),
                plan: PlanTier::Pro,
                isolation: IsolationTier::Namespace,
                allowed_models: vec!["bench-model".into()],
                max_tokens_per_request: Some(1024),
            })
            .await?;
        if i % key_every.max(1) == 0 {
            let spec = KeySpec {
                role: Role::Member,
                name: None,
                end_user: None,
                expires_at_ms: None,
            };
            keys.push(create_key(&store, &admin, &secret, &t.id, spec).await?.1);
        }
    }
    store.close().await;
    Ok(keys)
}

/// Spawns `tenantgate serve` on the seeded directory; returns once it logged its address.
fn spawn(bin: &Path, dir: &Path, config: &Config) -> Result<Gateway> {
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nsecret_file = {:?}\n[database]\nurl = {:?}\n[demo]\nenabled = false\nbootstrap_tenant = false\n[encryption]\nmaster_key_file = {:?}\n[audit]\nsigning_key_file = {:?}\nwitness_dir = {:?}\n[[providers]]\nname = \"mock\"\nkind = \"openai_compatible\"\nbase_url = {:?}\npool_max_idle_per_host = 512\n[[models]]\nname = \"bench-model\"\nprovider = \"mock\"\nupstream_model = \"bench-upstream\"\n",
        config.server.secret_file.display().to_string(),
        config.database.url,
        dir.join("master.key").display().to_string(),
        dir.join("audit-signing.key").display().to_string(),
        dir.join("audit-witness").display().to_string(),
        config.providers[0].base_url.clone().unwrap_or_default(),
    );
    let cfg_path = dir.join("bench.toml");
    std::fs::write(&cfg_path, toml)?;
    let mut child = std::process::Command::new(bin)
        .args(["--config", &cfg_path.display().to_string(), "serve"])
        .env("TENANTGATE_LOG_FORMAT", "json")
        .env("TENANTGATE_LOG", "warn,tenantgate=info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let stderr = child.stderr.take().context("child stderr")?;
    let mut gw = Gateway {
        child,
        url: String::new(),
    };
    let mut lines = BufReader::new(stderr).lines();
    gw.url = loop {
        let line = lines.next().context("gateway exited before listening")??;
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "tenantgate listening" {
            break format!(
                "http://{}",
                v["fields"]["addr"].as_str().unwrap_or_default()
            );
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(gw)
}

async fn ready(client: &HttpClient, url: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let req = hyper::Request::get(format!("{url}/readyz")).body(Full::new(Bytes::new()))?;
        if let Ok(r) = client.request(req).await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "not ready within 120 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `calls` chat calls over `keys` round-robin from `conns` callers; returns the errors.
async fn load(
    client: &HttpClient,
    url: &str,
    keys: Arc<Vec<String>>,
    calls: u64,
    conns: usize,
) -> u64 {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let payload = Bytes::from(
        serde_json::json!({"model":"bench-model","messages":[{"role":"user","content":"hello memory"}]})
            .to_string(),
    );
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url, keys, next, errors, payload) = (
            client.clone(),
            url.to_owned(),
            keys.clone(),
            next.clone(),
            errors.clone(),
            payload.clone(),
        );
        #[expect(
            clippy::disallowed_methods,
            reason = "the benchmark drives the server from outside; its tasks are not server background work"
        )]
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    return;
                }
                let key = &keys[i as usize % keys.len()];
                let ok = async {
                    let req = hyper::Request::post(format!("{url}/v1/chat/completions"))
                        .header("content-type", "application/json")
                        .header("authorization", format!("Bearer {key}"))
                        .body(Full::new(payload.clone()))?;
                    let resp = client.request(req).await?;
                    let ok = resp.status().is_success();
                    resp.into_body().collect().await?;
                    anyhow::Ok(ok)
                }
                .await;
                if !matches!(ok, Ok(true)) {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    errors.load(Ordering::Relaxed)
}

/// This process's resident KiB.
fn own_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// Where a tenant's idle bytes go, in this process (resident growth, so approximate): the
/// control-plane snapshot as loaded, and the `AuthIndex` built from another copy of it (the
/// index is what the gateway keeps; the snapshot is consumed by the build).
async fn breakdown(config: &Config, tenants: usize) -> Result<()> {
    let store = tenantgate_gateway::server::open_store(config).await?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the benchmark reads the snapshot the gateway loads"
    )]
    let admin = PlatformAdmin::local_operator("bench");
    let r0 = own_rss_kib();
    let snap = store.platform(&admin).auth_snapshot().await?;
    let r1 = own_rss_kib();
    let index = tenantgate_gateway::identity::auth::AuthIndex::build(
        store.platform(&admin).auth_snapshot().await?,
    );
    let r2 = own_rss_kib();
    let per = |kib: u64| kib as f64 * 1024.0 / tenants as f64;
    println!(
        "  in this process: snapshot ~{:.0} B/tenant, AuthIndex ~{:.0} B/tenant (identifier automaton {:.0} B/tenant)",
        per(r1.saturating_sub(r0)),
        per(r2.saturating_sub(r1)),
        index.scanner.memory_usage() as f64 / tenants as f64,
    );
    drop((snap, index));
    store.close().await;
    Ok(())
}

struct Run {
    tenants: usize,
    idle_kib: u64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = match args.bin {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .join("tenantgate"),
    };
    let mock = mockllm::start(
        "127.0.0.1:0".parse()?,
        mockllm::MockConfig {
            chunks: 4,
            ..Default::default()
        },
    )
    .await?;
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http();
    let before = own_rss_kib();
    tenantgate_providers::tokens::warm_up();
    println!(
        "tokenizer vocabulary (loaded by the first call that counts tokens): ~{:.1} MiB resident",
        mib(own_rss_kib().saturating_sub(before))
    );
    let mut runs = Vec::new();
    for &n in &args.tenants {
        let dir = tempfile::tempdir()?;
        let config = config(dir.path(), &mock.base_url());
        let seeded = Instant::now();
        let keys = Arc::new(seed(&config, n, args.key_every).await?);
        let seed_secs = seeded.elapsed().as_secs_f64();
        breakdown(&config, n).await?;
        let started = Instant::now();
        let gw = spawn(&bin, dir.path(), &config)?;
        let listening = started.elapsed();
        ready(&client, &gw.url).await?;
        let to_ready = started.elapsed();
        let at_ready = gw.status_kib("VmRSS:");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = gw.status_kib("VmRSS:");
        let loaded = Instant::now();
        let errors = load(&client, &gw.url, keys.clone(), args.calls, args.connections).await;
        let load_secs = loaded.elapsed().as_secs_f64();
        let after = gw.status_kib("VmRSS:");
        let peak = gw.status_kib("VmHWM:");
        println!(
            "{n} tenants ({} keyed, seeded in {seed_secs:.1} s): listening {} ms, ready {} ms; \
             rss at ready {:.1} MiB, idle {:.1} MiB; after {} calls ({:.0}/s, errors {errors}) \
             {:.1} MiB, peak {:.1} MiB",
            keys.len(),
            listening.as_millis(),
            to_ready.as_millis(),
            mib(at_ready),
            mib(idle),
            args.calls,
            args.calls as f64 / load_secs,
            mib(after),
            mib(peak),
        );
        runs.push(Run {
            tenants: n,
            idle_kib: idle,
        });
        drop(gw);
    }
    if let (Some(a), Some(b)) = (
        runs.iter().min_by_key(|r| r.tenants),
        runs.iter().max_by_key(|r| r.tenants),
    ) {
        if b.tenants > a.tenants {
            let per =
                (b.idle_kib as f64 - a.idle_kib as f64) * 1024.0 / (b.tenants - a.tenants) as f64;
            println!(
                "idle slope {}..{} tenants: {per:.0} bytes per tenant",
                a.tenants, b.tenants
            );
        }
    }
    mock.stop().await;
    Ok(())
}
