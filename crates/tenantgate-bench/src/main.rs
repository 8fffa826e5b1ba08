//! Gateway overhead benchmark.
//!
//! Starts mockllm (no added latency) and the gateway (SQLite, N tenants, every isolation
//! check the gateway has on) in this process, then measures against both:
//! - fixed rate (open loop, latency from the intended send time): p50/p99 direct vs gateway,
//!   and the gateway's own `x-tenantgate-overhead-ms`;
//! - max throughput (closed loop, C connections);
//! - streaming: time to first byte and to the last byte of a 50-chunk stream.
//!
//! Everything shares this machine's cores, as the load generator does in any single-host run.

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, PlatformAdmin, Role};
use tenantgate_gateway::config::{ModelConfig, ProviderConfig, ProviderKind};
use tenantgate_gateway::control::{create_key, KeySpec};
use tenantgate_gateway::identity::keys::ServerSecret;
use tenantgate_gateway::{Config, Server};

#[derive(Parser, Debug)]
struct Args {
    /// Tenants configured in the gateway.
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
    /// Fixed request rate for the latency runs.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Connections for the throughput runs.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Chunks per streamed response.
    #[arg(long, default_value_t = 50)]
    stream_chunks: usize,
    /// Run the gateway as a separate `tenantgate serve` process (path to the binary), so its
    /// resident memory is measured alone.
    #[arg(long)]
    external: Option<std::path::PathBuf>,
    /// With `--external`: record a `perf` profile of the gateway process during the JSON
    /// throughput run into this file (`perf report -i FILE`).
    #[arg(long)]
    perf: Option<std::path::PathBuf>,
    /// Run on PostgreSQL at this URL (a schema of its own) instead of SQLite.
    #[arg(long)]
    postgres: Option<String>,
    /// With `--external`: gateway processes sharing the database; calls go round-robin.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// One enterprise tenant (no plan limits) with 16 keys takes every call: one audit chain
    /// under the whole load (the scale-out case of one large tenant).
    #[arg(long)]
    single_tenant: bool,
    /// The isolation tier of every seeded tenant: namespace, schema, or dedicated (each its
    /// own data directory under the benchmark's, or `--dedicated-url` on PostgreSQL). Also
    /// times onboarding 20 more tenants on that tier.
    #[arg(long, default_value = "namespace")]
    tier: IsolationTier,
}

/// A `tenantgate serve` child process on the seeded data directory.
struct External {
    child: std::process::Child,
    url: String,
}

impl External {
    fn start(
        bin: &std::path::Path,
        dir: &std::path::Path,
        config: &Config,
        replica: usize,
    ) -> Result<External> {
        use std::io::{BufRead, BufReader};
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nsecret_file = {:?}\n[database]\nurl = {:?}\npg_schema = {:?}\n[demo]\nenabled = false\nbootstrap_tenant = false\n[encryption]\nmaster_key_file = {:?}\n[audit]\nsigning_key_file = {:?}\nwitness_dir = {:?}\n[[providers]]\nname = \"mock\"\nkind = \"openai_compatible\"\nbase_url = {:?}\npool_max_idle_per_host = 512\n[[models]]\nname = \"bench-model\"\nprovider = \"mock\"\nupstream_model = \"bench-upstream\"\n",
            config.server.secret_file.display().to_string(),
            config.database.url,
            config.database.pg_schema,
            dir.join("master.key").display().to_string(),
            dir.join("audit-signing.key").display().to_string(),
            dir.join(format!("audit-witness-{replica}"))
                .display()
                .to_string(),
            config.providers[0].base_url.clone().unwrap_or_default(),
        );
        let cfg_path = dir.join(format!("bench-{replica}.toml"));
        std::fs::write(&cfg_path, toml)?;
        let mut child = std::process::Command::new(bin)
            .args(["--config", &cfg_path.display().to_string(), "serve"])
            .env("TENANTGATE_LOG_FORMAT", "json")
            .env("TENANTGATE_LOG", "warn,tenantgate=info")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        let stderr = child.stderr.take().context("child stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
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
        Ok(External { child, url })
    }

    fn rss_mib(&self) -> u64 {
        rss_of(&format!("/proc/{}/status", self.child.id()))
    }

    /// CPU time (user + system) the gateway process has used so far.
    fn cpu(&self) -> Duration {
        cpu_of(self.child.id())
    }
}

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The binary's allocator: glibc malloc showed ~14% of samples under this load (arena
// contention); mimalloc is what the tenantgate binary ships with too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

struct Target {
    /// One per replica; calls go round-robin.
    urls: Vec<String>,
    key: Option<String>,
}

fn body(stream: bool, chunks: usize) -> Bytes {
    let text = if stream {
        format!("{} mock:chunks={chunks}", "w ".repeat(chunks))
    } else {
        "hello benchmark".to_owned()
    };
    Bytes::from(serde_json::json!({"model":"bench-model","stream":stream,"messages":[{"role":"user","content":text}]}).to_string())
}

/// One request; returns (time to response head, time to last byte, gateway overhead ms).
async fn call(
    client: &HttpClient,
    t: &Target,
    key_idx: usize,
    keys: &[String],
    payload: Bytes,
) -> Result<(Duration, Duration, Option<f64>)> {
    let start = Instant::now();
    let url = &t.urls[key_idx % t.urls.len()];
    let mut req = hyper::Request::post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json");
    let key = t
        .key
        .clone()
        .unwrap_or_else(|| keys[key_idx % keys.len()].clone());
    req = req.header("authorization", format!("Bearer {key}"));
    let resp = client.request(req.body(Full::new(payload))?).await?;
    let head = start.elapsed();
    anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
    let overhead = resp
        .headers()
        .get("x-tenantgate-overhead-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut b = resp.into_body();
    while let Some(frame) = b.frame().await {
        frame?;
    }
    Ok((head, start.elapsed(), overhead))
}

struct Stats {
    head: Histogram<u64>,
    total: Histogram<u64>,
    overhead: Histogram<u64>,
    errors: u64,
    late: u64,
}

fn hist() -> Histogram<u64> {
    #[expect(clippy::expect_used, reason = "constant, valid bounds")]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Open loop at `rate` req/s for `secs`: one request per tick, whether or not earlier ones
/// finished.
async fn fixed_rate(
    client: &HttpClient,
    t: Arc<Target>,
    keys: Arc<Vec<String>>,
    rate: u64,
    secs: u64,
    payload: Bytes,
) -> Stats {
    let n = rate * secs;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let begin = Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let intended = begin + interval * i as u32;
        tokio::time::sleep_until(intended.into()).await;
        let (client, t, keys, payload) = (client.clone(), t.clone(), keys.clone(), payload.clone());
        #[expect(
            clippy::disallowed_methods,
            reason = "the benchmark drives the server from outside; its tasks are not server background work"
        )]
        tasks.push(tokio::spawn(async move {
            // tokio's timer has 1 ms resolution, so lateness is reported apart rather than added
            // to every sample; at these rates nothing queues, so coordinated omission is absent.
            let late = intended.elapsed() > Duration::from_millis(2);
            call(&client, &t, i as usize, &keys, payload)
                .await
                .map(|(h, total, o)| (h, total, o, late))
        }));
    }
    let mut s = Stats {
        head: hist(),
        total: hist(),
        overhead: hist(),
        errors: 0,
        late: 0,
    };
    for task in tasks {
        match task.await {
            Ok(Ok((h, total, o, late))) => {
                s.late += u64::from(late);
                let _ = s.head.record(h.as_micros().max(1) as u64);
                let _ = s.total.record(total.as_micros().max(1) as u64);
                if let Some(o) = o {
                    let _ = s.overhead.record(((o * 1000.0) as u64).max(1));
                }
            }
            _ => s.errors += 1,
        }
    }
    s
}

/// Closed loop with `conns` concurrent callers for `secs`; returns (req/s, errors).
async fn throughput(
    client: &HttpClient,
    t: Arc<Target>,
    keys: Arc<Vec<String>>,
    conns: usize,
    secs: u64,
    payload: Bytes,
) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let begin = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..conns {
        let (client, t, keys, payload, done, errors) = (
            client.clone(),
            t.clone(),
            keys.clone(),
            payload.clone(),
            done.clone(),
            errors.clone(),
        );
        #[expect(
            clippy::disallowed_methods,
            reason = "the benchmark drives the server from outside; its tasks are not server background work"
        )]
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < deadline {
                match call(&client, &t, i, &keys, payload.clone()).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
                i += conns;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (
        done.load(Ordering::Relaxed) as f64 / begin.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed),
    )
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mock = mockllm::start(
        "127.0.0.1:0".parse()?,
        mockllm::MockConfig {
            chunks: 4,
            ..Default::default()
        },
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse()?;
    config.server.secret_file = dir.path().join("secret");
    config.encryption.master_key_file = dir.path().join("master.key");
    config.audit.signing_key_file = dir.path().join("audit-signing.key");
    config.audit.witness_dir = dir.path().join("audit-witness");
    config.database.url = match &args.postgres {
        Some(url) => {
            config.database.pg_schema = format!("tg_bench_{}", std::process::id());
            url.clone()
        }
        None => format!("sqlite:{}", dir.path().join("bench.db").display()),
    };
    if std::env::var("TENANTGATE_BENCH_SQLITE_NORMAL").is_ok() {
        config.database.sqlite_synchronous = tenantgate_gateway::config::SqliteSync::Normal;
    }
    config.demo.bootstrap_tenant = false;
    config.providers = vec![ProviderConfig {
        name: "mock".into(),
        kind: ProviderKind::OpenaiCompatible,
        base_url: Some(format!("{}/v1", mock.base_url())),
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

    // Tenants and keys, written as the CLI would, before the gateway starts.
    let store = tenantgate_gateway::server::open_store(&config).await?;
    let secret = ServerSecret::load_or_create(&config.server.secret_file)?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the benchmark plays the CLI operator"
    )]
    let admin = PlatformAdmin::local_operator("bench");
    let seeded = Instant::now();
    let mut keys = Vec::new();
    let tenants = if args.single_tenant { 1 } else { args.tenants };
    let new_tenant = |i: usize| NewTenant {
        slug: format!("tenant-{i:06}"),
        display_name: format!("Tenant {i}"),
        plan: if args.single_tenant {
            PlanTier::Enterprise
        } else {
            PlanTier::Pro
        },
        isolation: args.tier,
        allowed_models: vec!["bench-model".into()],
        max_tokens_per_request: Some(1024),
    };
    // The dedicated tier: each tenant's own data directory.
    let place = |i: usize| {
        (args.tier == IsolationTier::Dedicated).then(|| {
            dir.path()
                .join(format!("dedicated-{i:06}"))
                .display()
                .to_string()
        })
    };
    let keyring = tenantgate_gateway::control::keyring(&store, &config.encryption)?;
    for i in 0..tenants {
        let t = store
            .platform(&admin)
            .create_tenant_at(&new_tenant(i), place(i).as_deref())
            .await?;
        if args.tier == IsolationTier::Dedicated {
            // A dedicated tenant reaches only endpoints of its own: its own (here the same
            // mock, with its own key) is set, as an operator would.
            tenantgate_gateway::control::set_endpoint(
                tenantgate_gateway::control::AuditSink::Cli(&store),
                &store,
                &keyring,
                &config,
                &admin,
                &t,
                "mock",
                tenantgate_gateway::control::EndpointSecret {
                    base_url: format!("{}/v1", mock.base_url()),
                    api_key: "sk-bench-own".into(),
                    api_version: None,
                },
                tenantgate_gateway::control::Via::Cli,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        let per_tenant = if args.single_tenant { 16 } else { 1 };
        for _ in 0..per_tenant {
            if !args.single_tenant && i % (args.tenants / 100).max(1) != 0 {
                break;
            }
            let (_, k) = create_key(
                &store,
                &admin,
                &secret,
                &t.id,
                KeySpec {
                    role: Role::Member,
                    name: None,
                    end_user: None,
                    expires_at_ms: None,
                },
            )
            .await?;
            keys.push(k);
        }
    }
    let seed_secs = seeded.elapsed().as_secs_f64();
    // Onboarding on the tier: 20 more tenants, one after another, each the whole one-call
    // onboarding (storage, KEK, limits, a default prompt from a platform template, knowledge
    // space, an admin key, the platform's and the tenant's chains), as the admin API runs it.
    let mut ob_config = config.clone();
    ob_config
        .lifecycle
        .prompt_templates
        .insert("bench".into(), "You are a benchmark assistant.".into());
    let onboarding = tenantgate_gateway::lifecycle::onboard::Onboarding {
        store: &store,
        keyring: &keyring,
        config: &ob_config,
        secret: &secret,
        sink: tenantgate_gateway::control::AuditSink::Cli(&store),
        admin: &admin,
        via: "bench",
    };
    let t0 = Instant::now();
    for i in 0..20 {
        let i = 900_000 + i;
        let n = new_tenant(i);
        let spec = tenantgate_gateway::lifecycle::onboard::TenantSpec {
            slug: n.slug,
            display_name: Some(n.display_name),
            plan: n.plan,
            isolation: n.isolation,
            database: place(i),
            allowed_models: n.allowed_models,
            max_tokens_per_request: n.max_tokens_per_request,
            limits: serde_json::json!({"monthly_spend_micros": 100_000_000})
                .as_object()
                .cloned(),
            kms: None,
            prompt: Some(tenantgate_gateway::lifecycle::onboard::PromptSpec {
                template: "bench".into(),
                name: None,
            }),
            admin_key: true,
            admin_invite: None,
        };
        onboarding
            .run(&spec, Some(&format!("bench-{i}")))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "onboarding on the {} tier: {:.1} tenants/s, {:.1} ms per tenant (20 tenants, one call each: storage, KEK, limits, default prompt, knowledge space, admin key, both audit chains; {})",
        args.tier,
        20.0 / secs,
        secs * 1000.0 / 20.0,
        store.backend_name()
    );
    store.close().await;

    let started = Instant::now();
    let (gw_urls, external, stop) = match &args.external {
        Some(bin) => {
            let mut ext = Vec::new();
            for r in 0..args.replicas.max(1) {
                ext.push(External::start(bin, dir.path(), &config, r)?);
            }
            (ext.iter().map(|e| e.url.clone()).collect(), ext, None)
        }
        None => {
            let server = Server::bind(config).await.context("gateway start")?;
            let url = format!("http://{}", server.local_addr());
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            #[expect(
                clippy::disallowed_methods,
                reason = "the benchmark drives the server from outside; its tasks are not server background work"
            )]
            let task = tokio::spawn(server.serve(async {
                let _ = stop_rx.await;
            }));
            (vec![url], Vec::new(), Some((stop_tx, task)))
        }
    };
    let ready = started.elapsed();
    let gateway_rss = |ext: &[External]| {
        ext.iter()
            .map(|e| format!(", gateway process rss {} MiB", e.rss_mib()))
            .collect::<String>()
    };
    // CPU of every gateway process (None in-process, where it would include the load).
    let gateway_cpu = |ext: &[External]| -> Option<Duration> {
        (!ext.is_empty()).then(|| ext.iter().map(External::cpu).sum())
    };

    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http();
    let keys = Arc::new(keys);
    let direct = Arc::new(Target {
        urls: vec![mock.base_url()],
        key: Some("unused".into()),
    });
    let via = Arc::new(Target {
        urls: gw_urls,
        key: None,
    });
    let plain = body(false, 0);
    let streamed = body(true, args.stream_chunks);

    // warm up pools and caches
    throughput(&client, direct.clone(), keys.clone(), 16, 1, plain.clone()).await;
    throughput(&client, via.clone(), keys.clone(), 16, 1, plain.clone()).await;

    // The disk's own cost of one durable write, measured in the same run on the same
    // filesystem as the audit log: the floor of the added latency.
    let fsync = fsync_cost(dir.path(), 2_000)?;

    println!("tenantgate overhead benchmark: {} tenants ({} keys) seeded in {:.1}s, gateway ready in {} ms, rss {} MiB{}",
        tenants, keys.len(), seed_secs, ready.as_millis(), rss_mib(), gateway_rss(&external));
    println!(
        "disk: 4 KiB write + fdatasync  p50 {:.3} ms  p99 {:.3} ms",
        ms(fsync.value_at_quantile(0.5)),
        ms(fsync.value_at_quantile(0.99))
    );
    let d = fixed_rate(
        &client,
        direct.clone(),
        keys.clone(),
        args.rate,
        args.seconds,
        plain.clone(),
    )
    .await;
    let g = fixed_rate(
        &client,
        via.clone(),
        keys.clone(),
        args.rate,
        args.seconds,
        plain.clone(),
    )
    .await;
    println!("\nnon-streaming at {} req/s for {} s (open loop; sends more than 2 ms late: direct {}, gateway {})", args.rate, args.seconds, d.late, g.late);
    println!(
        "  direct   p50 {:.3} ms  p99 {:.3} ms  errors {}",
        ms(d.total.value_at_quantile(0.5)),
        ms(d.total.value_at_quantile(0.99)),
        d.errors
    );
    println!(
        "  gateway  p50 {:.3} ms  p99 {:.3} ms  errors {}",
        ms(g.total.value_at_quantile(0.5)),
        ms(g.total.value_at_quantile(0.99)),
        g.errors
    );
    let added50 = ms(g.total.value_at_quantile(0.5)) - ms(d.total.value_at_quantile(0.5));
    let added99 = ms(g.total.value_at_quantile(0.99)) - ms(d.total.value_at_quantile(0.99));
    println!("  added    p50 {added50:.3} ms  p99 {added99:.3} ms");
    println!(
        "  gateway-reported overhead (x-tenantgate-overhead-ms)  p50 {:.3} ms  p99 {:.3} ms",
        ms(g.overhead.value_at_quantile(0.5)),
        ms(g.overhead.value_at_quantile(0.99))
    );
    println!(
        "  targets: added p50 <= fsync p50 + 0.15 = {:.3} ms, added p99 <= 1 + fsync p99 = {:.3} ms",
        ms(fsync.value_at_quantile(0.5)) + 0.15,
        1.0 + ms(fsync.value_at_quantile(0.99))
    );

    let ds = fixed_rate(
        &client,
        direct.clone(),
        keys.clone(),
        args.rate.min(100),
        args.seconds,
        streamed.clone(),
    )
    .await;
    let gs = fixed_rate(
        &client,
        via.clone(),
        keys.clone(),
        args.rate.min(100),
        args.seconds,
        streamed.clone(),
    )
    .await;
    println!(
        "\nstreaming ({} chunks) at {} req/s for {} s",
        args.stream_chunks,
        args.rate.min(100),
        args.seconds
    );
    println!(
        "  direct   head p50 {:.3} ms  p99 {:.3} ms   last byte p50 {:.3} ms  p99 {:.3} ms",
        ms(ds.head.value_at_quantile(0.5)),
        ms(ds.head.value_at_quantile(0.99)),
        ms(ds.total.value_at_quantile(0.5)),
        ms(ds.total.value_at_quantile(0.99))
    );
    println!("  gateway  head p50 {:.3} ms  p99 {:.3} ms   last byte p50 {:.3} ms  p99 {:.3} ms  errors {}", ms(gs.head.value_at_quantile(0.5)), ms(gs.head.value_at_quantile(0.99)), ms(gs.total.value_at_quantile(0.5)), ms(gs.total.value_at_quantile(0.99)), gs.errors);

    println!(
        "\nmax throughput, {} connections, {} s each",
        args.connections, args.seconds
    );
    let (dt, de) = throughput(
        &client,
        direct.clone(),
        keys.clone(),
        args.connections,
        args.seconds,
        plain.clone(),
    )
    .await;
    println!("  direct   JSON {dt:.0} req/s (errors {de})");
    let cpu0 = gateway_cpu(&external);
    let perf = match (&args.perf, external.first()) {
        (Some(out), Some(ext)) => Some(
            std::process::Command::new("perf")
                .args(["record", "-F", "999", "-g", "-o"])
                .arg(out)
                .args(["-p", &ext.child.id().to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("perf record")?,
        ),
        _ => None,
    };
    let calls0 = std::time::Instant::now();
    let (gt, ge) = throughput(
        &client,
        via.clone(),
        keys.clone(),
        args.connections,
        args.seconds,
        plain.clone(),
    )
    .await;
    let json_elapsed = calls0.elapsed();
    if let Some(mut p) = perf {
        // SIGINT lets perf write its file.
        let _ = std::process::Command::new("kill")
            .args(["-INT", &p.id().to_string()])
            .status();
        let _ = p.wait();
    }
    let cpu_json = cpu0.zip(gateway_cpu(&external));
    println!(
        "  gateway  JSON {gt:.0} req/s (errors {ge})   rss after {} MiB{}",
        rss_mib(),
        gateway_rss(&external)
    );
    let (dst, dse) = throughput(
        &client,
        direct.clone(),
        keys.clone(),
        args.connections,
        args.seconds,
        streamed.clone(),
    )
    .await;
    println!(
        "  direct   SSE ({} events) {dst:.0} req/s (errors {dse})",
        args.stream_chunks
    );
    let cpu1 = gateway_cpu(&external);
    let (gst, gse) = throughput(
        &client,
        via.clone(),
        keys.clone(),
        args.connections,
        args.seconds,
        streamed.clone(),
    )
    .await;
    let cpu_sse = cpu1.zip(gateway_cpu(&external));
    println!(
        "  gateway  SSE ({} events) {gst:.0} req/s (errors {gse})",
        args.stream_chunks
    );
    if let Some((a, b)) = cpu_json {
        let calls = gt * json_elapsed.as_secs_f64();
        println!(
            "  gateway process CPU per JSON call {:.4} ms (target <= 0.07)",
            (b - a).as_secs_f64() * 1000.0 / calls.max(1.0)
        );
    }
    if let Some((a, b)) = cpu_sse {
        let calls = gst * args.seconds as f64;
        println!(
            "  gateway process CPU per SSE call {:.4} ms",
            (b - a).as_secs_f64() * 1000.0 / calls.max(1.0)
        );
    }

    if let Some((stop_tx, task)) = stop {
        let _ = stop_tx.send(());
        let _ = task.await;
    }
    drop(external);
    mock.stop().await;
    Ok(())
}

/// 4 KiB written and `fdatasync`ed `n` times in `dir`: what one durable append costs the disk.
fn fsync_cost(dir: &std::path::Path, n: usize) -> Result<Histogram<u64>> {
    use std::io::{Seek, Write};
    let mut f = std::fs::File::create(dir.join("fsync-probe"))?;
    let block = vec![7u8; 4096];
    let mut h = hist();
    for i in 0..n {
        let t = Instant::now();
        f.seek(std::io::SeekFrom::Start(((i % 64) * 4096) as u64))?;
        f.write_all(&block)?;
        f.sync_data()?;
        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
    }
    Ok(h)
}

/// User + system CPU time of process `pid` (/proc/PID/stat, in clock ticks of 1/100 s).
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line: 12th and 13th after the name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn rss_mib() -> u64 {
    rss_of("/proc/self/status")
}

fn rss_of(status: &str) -> u64 {
    std::fs::read_to_string(status)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}
