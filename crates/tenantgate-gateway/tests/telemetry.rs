//! Telemetry (issue 21): `/metrics` read back with a Prometheus text parser after real calls
//! (RED series, bounded labels, top-N tenants, process and build info, who may read it), and
//! one call's trace received by a real OTLP/HTTP receiver with its stages in request order and
//! its `traceparent` at the provider.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, TestGateway};
use prost::Message;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The page parsed; panics (with the page) where the parser refuses it.
fn parse(page: &str) -> prometheus_parse::Scrape {
    let lines = page.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("{e}:\n{page}"))
}

/// A sample's value, for the labels given (all of them must match); `None` when absent.
fn value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(b) => b.last().map_or(0.0, |c| c.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

/// Every sample belongs to a family with both `# HELP` and `# TYPE`.
fn every_family_is_described(page: &str) {
    let mut helped = BTreeSet::new();
    let mut typed = HashMap::new();
    for l in page.lines() {
        if let Some(rest) = l.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.trim().is_empty(), "empty HELP for {name}");
            helped.insert(name.to_owned());
        } else if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            typed.insert(name.to_owned(), kind.to_owned());
        }
    }
    assert_eq!(
        helped,
        typed.keys().cloned().collect::<BTreeSet<_>>(),
        "HELP and TYPE name the same families"
    );
    for l in page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = l.split(['{', ' ']).next().unwrap();
        let family = [name, name.trim_end_matches("_total")]
            .into_iter()
            .chain(
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .filter_map(|s| name.strip_suffix(s)),
            )
            .find(|f| typed.contains_key(*f));
        assert!(family.is_some(), "sample {name} has no TYPE:\n{page}");
    }
}

async fn streamed(gw: &TestGateway, key: &str) {
    let mut body = chat("gpt-test", "stream please");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", key, &body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("[DONE]"), "{text}");
}

/// Polls the page until `ok` holds for it (a stream's own bookkeeping ends just after its
/// last byte reached the client).
async fn metrics_until(gw: &TestGateway, ok: impl Fn(&prometheus_parse::Scrape) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page = gw.metrics().await;
        if ok(&parse(&page)) {
            return page;
        }
        assert!(Instant::now() < deadline, "condition never held:\n{page}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn metrics_parse_with_red_series_bounded_labels_and_top_tenants() {
    // Tenants are named only on a protected page.
    let gw = TestGateway::start_with(|c| {
        c.metrics.tenant_top_n = 2;
        c.metrics.token = Some(TOKEN.into());
    })
    .await;
    let models = ["gpt-test"];
    let (a, ka) = gw.tenant("alpha", &models, None).await;
    let (b, kb) = gw.tenant("bravo", &models, None).await;
    let (_, kc) = gw.tenant("charlie", &models, None).await;
    let (_, kd) = gw.tenant("delta", &models, None).await;
    // alpha: 3 plain calls (and a failed one below); bravo: 2 streamed; charlie: a model it
    // invented; delta: 1 plain.
    for _ in 0..3 {
        let r = gw
            .post("/v1/chat/completions", &ka, &chat("gpt-test", "hi"))
            .await;
        assert_eq!(r.status(), 200);
    }
    streamed(&gw, &kb).await;
    streamed(&gw, &kb).await;
    let invented = "my-invented-model-9f3a";
    let r = gw
        .post("/v1/chat/completions", &kc, &chat(invented, "hi"))
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = gw
        .post("/v1/chat/completions", &kd, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 200);
    // The provider fails one of alpha's calls.
    gw.mock.stats.outage.store(500, Ordering::Relaxed);
    let r = gw
        .post("/v1/chat/completions", &ka, &chat("gpt-test", "hi"))
        .await;
    assert!(r.status().is_server_error(), "{}", r.status());
    gw.mock.stats.outage.store(0, Ordering::Relaxed);
    // Unauthenticated, and a path no route has.
    let r = gw
        .post("/v1/chat/completions", "sk-nope", &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 401);
    let r = gw
        .http
        .get(format!("{}/no/such/path-77", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let page = metrics_until(&gw, |s| {
        value(s, "tenantgate_streams_in_flight", &[]) == Some(0.0)
    })
    .await;
    every_family_is_described(&page);
    let s = parse(&page);
    let chat_route = [("route", "/v1/chat/completions"), ("method", "POST")];
    let v = |m: &str, l: &[(&str, &str)]| value(&s, m, l);
    let requests = "tenantgate_http_requests_total";
    assert_eq!(
        v(requests, &[chat_route[0], chat_route[1], ("status", "200")]),
        Some(6.0)
    );
    assert_eq!(v(requests, &[chat_route[0], ("status", "401")]), Some(1.0));
    assert_eq!(
        v(requests, &[("route", "unmatched"), ("status", "404")]),
        Some(1.0)
    );
    // Calls: four plain and two streamed answers of gpt-test at its provider.
    let calls = "tenantgate_model_calls_total";
    let ok = [
        ("surface", "chat_completions"),
        ("model", "gpt-test"),
        ("provider", "mock-openai"),
        ("outcome", "ok"),
    ];
    assert_eq!(v(calls, &ok), Some(6.0));
    assert_eq!(
        v(calls, &[("model", "unknown"), ("outcome", "refused")]),
        Some(1.0)
    );
    let failed = [("model", "gpt-test"), ("outcome", "upstream_error")];
    assert_eq!(v(calls, &failed), Some(1.0), "{page}");
    // Client-chosen strings never become label values.
    for never in [invented, "/no/such/path-77", "sk-nope"] {
        assert!(!page.contains(never), "{never} on the page:\n{page}");
    }
    let tokens = "tenantgate_model_tokens_total";
    assert!(v(tokens, &[("model", "gpt-test"), ("direction", "input")]).unwrap() > 0.0);
    assert!(v(tokens, &[("model", "gpt-test"), ("direction", "output")]).unwrap() > 0.0);
    assert!(v(
        "tenantgate_model_cost_micros_total",
        &[("model", "gpt-test")]
    )
    .is_some());
    // Latency: every answered call's overhead and upstream time; the streams' first token.
    assert_eq!(
        v("tenantgate_gateway_overhead_seconds_count", &[]),
        Some(6.0)
    );
    assert_eq!(v("tenantgate_upstream_seconds_count", &[]), Some(6.0));
    assert_eq!(
        v("tenantgate_stream_first_token_seconds_count", &[]),
        Some(2.0)
    );
    // Routing.
    let attempts = "tenantgate_upstream_attempts_total";
    assert_eq!(
        v(attempts, &[("provider", "mock-openai"), ("outcome", "ok")]),
        Some(6.0)
    );
    let retryable = [("provider", "mock-openai"), ("outcome", "retryable")];
    assert_eq!(v(attempts, &retryable), Some(1.0));
    assert_eq!(v("tenantgate_failovers_total", &[]), Some(0.0));
    let closed = [("provider", "mock-openai"), ("state", "closed")];
    assert_eq!(v("tenantgate_circuit_state", &closed), Some(1.0));
    // Top 2 of 4 tenants by calls (alpha 4, bravo 2), charlie's refusal and delta as other.
    let tenants = "tenantgate_tenant_calls_total";
    assert_eq!(v(tenants, &[("tenant", a.id.as_str())]), Some(4.0));
    assert_eq!(v(tenants, &[("tenant", b.id.as_str())]), Some(2.0));
    assert_eq!(v(tenants, &[("tenant", "other")]), Some(2.0));
    let named = s.samples.iter().filter(|x| x.metric == tenants).count();
    assert_eq!(named, 3, "{page}");
    // Process and build.
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        v("tenantgate_build_info", &[("version", version)]),
        Some(1.0)
    );
    if cfg!(target_os = "linux") {
        assert!(v("process_resident_memory_bytes", &[]).unwrap() > 0.0);
        assert!(v("process_open_fds", &[]).unwrap() > 0.0);
        assert!(v("process_start_time_seconds", &[]).unwrap() > 1.6e9);
        assert!(v("process_cpu_seconds_total", &[]).is_some());
    }
    gw.stop().await;
}

#[tokio::test]
async fn no_tenant_label_at_top_n_zero() {
    let gw = TestGateway::start_with(|c| {
        c.metrics.tenant_top_n = 0;
        c.demo.enabled = true;
    })
    .await;
    let (_, k) = gw.tenant("alpha", &["gpt-test", "demo"], None).await;
    for model in ["gpt-test", "demo"] {
        let r = gw
            .post("/v1/chat/completions", &k, &chat(model, "hi"))
            .await;
        assert_eq!(r.status(), 200);
    }
    let page = gw.metrics().await;
    every_family_is_described(&page);
    assert!(!page.contains("tenant=\""), "{page}");
    // The built-in demo model's provider is a label value like a configured one.
    let s = parse(&page);
    let demo = [("model", "demo"), ("provider", "demo"), ("outcome", "ok")];
    assert_eq!(
        value(&s, "tenantgate_model_calls_total", &demo),
        Some(1.0),
        "{page}"
    );
    gw.stop().await;
}

const TOKEN: &str = "metrics-scrape-token-0123456789";

#[tokio::test]
async fn metrics_on_their_own_listener_behind_a_token() {
    let gw = TestGateway::start_with(|c| {
        c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
        c.metrics.token = Some(TOKEN.into());
    })
    .await;
    // The main listener does not serve it at all.
    let r = gw
        .http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let url = format!("{}/metrics", gw.metrics_url.as_deref().unwrap());
    let r = gw.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = gw
        .http
        .get(&url)
        .bearer_auth("wrong-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = gw.http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    every_family_is_described(&page);
    assert!(
        page.contains("# TYPE tenantgate_build_info gauge"),
        "{page}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_token_protects_metrics_on_the_main_listener() {
    let gw = TestGateway::start_with(|c| c.metrics.token = Some(TOKEN.into())).await;
    let url = format!("{}/metrics", gw.url);
    let r = gw.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = gw.http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    gw.stop().await;
}

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;

/// An OTLP/HTTP receiver (protobuf, as the protocol says) on port 0, keeping every span.
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let kept = kept.clone();
            async move {
                assert_eq!(headers["content-type"], "application/x-protobuf");
                let req = ExportTraceServiceRequest::decode(body).unwrap();
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        kept.lock().unwrap().extend(ss.spans);
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    #[expect(
        clippy::disallowed_methods,
        reason = "the test's receiver is not server background work"
    )]
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_calls_trace_reaches_an_otlp_receiver_with_its_stages_in_order() {
    let (endpoint, spans) = otlp_receiver().await;
    // The one test of this binary that installs the process's subscriber.
    let guard = tenantgate_gateway::telemetry::init(
        Some(&endpoint),
        "tenantgate-test",
        "warn",
        Some(tokio::runtime::Handle::current()),
    )
    .unwrap();
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("alpha", &["gpt-test"], None).await;
    // The caller's own trace: the gateway's request span continues it.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        // Not sampled, and vendor state: neither is the caller's to set for the platform.
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-00"))
        .header("tracestate", "evil=inject-me")
        .json(&chat("gpt-test", "trace me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _: Value = r.json().await.unwrap();

    // Polled with a deadline: the batch exporter sends when flushed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let trace: Vec<Span> = loop {
        guard.force_flush().await;
        let got: Vec<Span> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex(&s.trace_id) == caller_trace)
            .cloned()
            .collect();
        if got.iter().any(|s| s.name == "record") {
            break got;
        }
        assert!(Instant::now() < deadline, "no complete trace: {got:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let request = trace
        .iter()
        .find(|s| s.name == "POST /v1/chat/completions")
        .unwrap_or_else(|| panic!("no request span: {trace:#?}"));
    assert_eq!(hex(&request.parent_span_id), caller_span);
    let mut stages: Vec<&Span> = trace
        .iter()
        .filter(|s| s.parent_span_id == request.span_id)
        .collect();
    stages.sort_by_key(|s| s.start_time_unix_nano);
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "authorize",
            "authorize.tenant_key",
            "admit.count",
            "request.parse",
            "authorize.model",
            "guard.inbound",
            "compose",
            "retrieve.plan",
            "admit.reserve",
            "route",
            "record",
        ]
    );
    for w in stages.windows(2) {
        assert!(
            w[0].end_time_unix_nano <= w[1].start_time_unix_nano,
            "{w:#?}"
        );
    }
    let route = stages.iter().find(|s| s.name == "route").unwrap();
    let upstream: Vec<&Span> = trace.iter().filter(|s| s.name == "upstream").collect();
    assert_eq!(upstream.len(), 1, "{trace:#?}");
    assert_eq!(upstream[0].parent_span_id, route.span_id);
    // The provider received the trace, its parent the upstream attempt's span.
    let seen = gw.mock.stats.last_request().unwrap();
    let tp = seen
        .headers
        .get("traceparent")
        .expect("traceparent sent upstream");
    assert_eq!(
        tp,
        &format!("00-{caller_trace}-{}-01", hex(&upstream[0].span_id))
    );
    assert!(
        !seen.headers.contains_key("tracestate"),
        "the caller's tracestate reached the provider: {:?}",
        seen.headers
    );
    gw.stop().await;
    guard.shutdown().await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
