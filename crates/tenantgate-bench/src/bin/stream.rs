//! Streaming benchmark: what the gateway adds to a stream, against the upstream called directly
//! in the same run.
//!
//! - time to first token against a paced upstream (one chunk every `--delay-ms`): from the
//!   request to the first frame carrying text, direct vs gateway, p50/p99 and added (the client
//!   then leaves, so each sample costs one chunk interval);
//! - per-event cost against an unpaced upstream: time to the last byte of a `--chunks`-event
//!   stream, and the slope between a stream of `--chunks` and one of 10x as many events, which
//!   is the per-event cost without the per-call one (authentication, the audit write).
//!
//! The gateway has every layer on (auth, admission, the leak guard over `--tenants` tenants'
//! identifiers, the audit write before the terminal frame). The text is English prose, which is
//! what the guard's hold-back decisions see in practice.
//!
//! `cargo run --release -p tenantgate-bench --bin stream [-- --tenants 1000 --requests 200]`

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, Instant};
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, PlatformAdmin, Role};
use tenantgate_gateway::config::{ModelConfig, ProviderConfig, ProviderKind};
use tenantgate_gateway::control::{create_key, KeySpec};
use tenantgate_gateway::identity::keys::ServerSecret;
use tenantgate_gateway::{Config, Server};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
struct Args {
    /// Tenants configured in the gateway (their identifiers are in the leak guard).
    #[arg(long, default_value_t = 1_000)]
    tenants: usize,
    /// Samples per measurement.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Upstream pacing for the time-to-first-token run.
    #[arg(long, default_value_t = 20)]
    delay_ms: u64,
    /// Events per stream for the per-event run.
    #[arg(long, default_value_t = 50)]
    chunks: usize,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const PROSE: &str =
    "The quarterly report shows revenue growth of twelve percent, driven by the new \
    enterprise plan. Support tickets fell while onboarding time improved; the roadmap adds \
    regional hosting next year, and the team expects margins to widen as usage grows. ";

/// A streamed request whose reply (the mock echoes the prompt) has `words` words, one per
/// chunk, paced by `delay_ms`.
fn body(words: usize, delay_ms: u64) -> Bytes {
    let text: Vec<&str> = PROSE.split_whitespace().cycle().take(words).collect();
    let text = format!(
        "{} mock:chunks={words} mock:chunk_delay_ms={delay_ms}",
        text.join(" ")
    );
    Bytes::from(
        serde_json::json!({"model":"bench-model","stream":true,
            "messages":[{"role":"user","content":text}]})
        .to_string(),
    )
}

/// Whether an SSE frame carries text for the client.
fn has_text(frame: &[u8]) -> bool {
    let s = String::from_utf8_lossy(frame);
    s.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .any(|v| {
            v["choices"].as_array().into_iter().flatten().any(|c| {
                c["delta"]["content"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
            })
        })
}

/// One stream: (time to the first text, time to the last byte). With `first_only` the client
/// leaves once the first text arrived.
async fn stream(
    client: &HttpClient,
    url: &str,
    key: &str,
    payload: Bytes,
    first_only: bool,
) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    let req = hyper::Request::post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(payload))?;
    let resp = client.request(req).await?;
    anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
    let mut b = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut first = None;
    while let Some(frame) = b.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if first.is_none() {
            buf.extend_from_slice(&data);
            while let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
                if first.is_none() && has_text(&buf[..i]) {
                    first = Some(start.elapsed());
                }
                buf.drain(..i + 2);
            }
            if first.is_some() && first_only {
                break;
            }
        }
    }
    let first = first.context("no text in the stream")?;
    Ok((first, start.elapsed()))
}

fn hist() -> Histogram<u64> {
    #[expect(clippy::expect_used, reason = "constant, valid bounds")]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// `n` sequential streams; histograms of (first text, last byte) in microseconds.
async fn run(
    client: &HttpClient,
    url: &str,
    key: &str,
    payload: &Bytes,
    n: usize,
    first_only: bool,
) -> Result<(Histogram<u64>, Histogram<u64>)> {
    let (mut first, mut last) = (hist(), hist());
    for _ in 0..n {
        let (f, l) = stream(client, url, key, payload.clone(), first_only).await?;
        first.record(f.as_micros().max(1) as u64)?;
        last.record(l.as_micros().max(1) as u64)?;
    }
    Ok((first, last))
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn p(h: &Histogram<u64>, q: f64) -> f64 {
    ms(h.value_at_quantile(q))
}

async fn start_gateway(
    tenants: usize,
    mock_url: &str,
    dir: &std::path::Path,
) -> Result<(String, String, tokio::sync::oneshot::Sender<()>)> {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse()?;
    config.server.secret_file = dir.join("secret");
    config.encryption.master_key_file = dir.join("master.key");
    config.audit.signing_key_file = dir.join("audit-signing.key");
    config.audit.witness_dir = dir.join("audit-witness");
    config.database.url = format!("sqlite:{}", dir.join("bench.db").display());
    config.demo.bootstrap_tenant = false;
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
        pool_max_idle_per_host: 64,
        cache_salt: None,
    }];
    config.models = vec![ModelConfig {
        name: "bench-model".into(),
        provider: "mock".into(),
        upstream_model: Some("bench-upstream".into()),
        default_max_tokens: 4096,
        pricing: None,
        ..Default::default()
    }];
    let store = tenantgate_gateway::server::open_store(&config).await?;
    let secret = ServerSecret::load_or_create(&config.server.secret_file)?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the benchmark plays the CLI operator"
    )]
    let admin = PlatformAdmin::local_operator("bench");
    let mut key = None;
    for i in 0..tenants.max(1) {
        let t = store
            .platform(&admin)
            .create_tenant(&NewTenant {
                slug: format!("tenant-{i:06}"),
                display_name: format!("Customer Company {i}"),
                plan: PlanTier::Pro,
                isolation: IsolationTier::Namespace,
                allowed_models: vec!["bench-model".into()],
                max_tokens_per_request: Some(8192),
            })
            .await?;
        if key.is_none() {
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
            key = Some(k);
        }
    }
    store.close().await;
    let server = Server::bind(config).await.context("gateway start")?;
    let url = format!("http://{}", server.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    #[expect(
        clippy::disallowed_methods,
        reason = "the benchmark drives the server from outside; its tasks are not server background work"
    )]
    tokio::spawn(server.serve(async {
        let _ = stop_rx.await;
    }));
    Ok((url, key.context("a key")?, stop_tx))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mock = mockllm::start("127.0.0.1:0".parse()?, mockllm::MockConfig::default()).await?;
    let dir = tempfile::tempdir()?;
    let (gw, key, stop) = start_gateway(args.tenants, &mock.base_url(), dir.path()).await?;
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http();
    let direct = mock.base_url();
    let n = args.requests;

    // Warm-up: pools, the guard's automata, the tenant's caches.
    run(&client, &direct, "unused", &body(args.chunks, 0), 20, false).await?;
    run(&client, &gw, &key, &body(args.chunks, 0), 20, false).await?;

    println!(
        "stream benchmark: {} tenants, {n} sequential samples per figure",
        args.tenants
    );
    let paced = body(args.chunks, args.delay_ms);
    let (df, _) = run(&client, &direct, "unused", &paced, n, true).await?;
    let (gf, _) = run(&client, &gw, &key, &paced, n, true).await?;
    println!(
        "\ntime to first token, upstream paced at one chunk per {} ms",
        args.delay_ms
    );
    println!(
        "  direct   p50 {:.3} ms  p99 {:.3} ms",
        p(&df, 0.5),
        p(&df, 0.99)
    );
    println!(
        "  gateway  p50 {:.3} ms  p99 {:.3} ms",
        p(&gf, 0.5),
        p(&gf, 0.99)
    );
    println!(
        "  added    p50 {:.3} ms  p99 {:.3} ms",
        p(&gf, 0.5) - p(&df, 0.5),
        p(&gf, 0.99) - p(&df, 0.99)
    );

    let short = body(args.chunks, 0);
    let long = body(args.chunks * 10, 0);
    let (_, ds) = run(&client, &direct, "unused", &short, n, false).await?;
    let (_, gs) = run(&client, &gw, &key, &short, n, false).await?;
    let (_, dl) = run(&client, &direct, "unused", &long, n, false).await?;
    let (_, gl) = run(&client, &gw, &key, &long, n, false).await?;
    let added_short = p(&gs, 0.5) - p(&ds, 0.5);
    let added_long = p(&gl, 0.5) - p(&dl, 0.5);
    println!("\nunpaced streams, time to the last byte (p50)");
    println!(
        "  {} events: direct {:.3} ms  gateway {:.3} ms  added {:.3} ms ({:.1} us per event, call costs included)",
        args.chunks,
        p(&ds, 0.5),
        p(&gs, 0.5),
        added_short,
        added_short * 1000.0 / args.chunks as f64
    );
    println!(
        "  {} events: direct {:.3} ms  gateway {:.3} ms  added {:.3} ms",
        args.chunks * 10,
        p(&dl, 0.5),
        p(&gl, 0.5),
        added_long
    );
    println!(
        "  per event (slope between the two): {:.1} us",
        (added_long - added_short) * 1000.0 / (args.chunks * 9) as f64
    );

    let _ = stop.send(());
    mock.stop().await;
    Ok(())
}
