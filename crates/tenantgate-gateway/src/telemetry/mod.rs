//! What the request path emits: the counters behind `/metrics` ([`red`], rendered by
//! `crate::metrics`), and logs and traces: the one `tracing` subscriber of the process
//! ([`init`], shared by the binary and the tests) and, when `[telemetry] otlp_endpoint` is
//! set, OpenTelemetry spans exported over OTLP/HTTP (`export.rs`). This folder imports no
//! other part of the crate (every part reports here).
//!
//! Spans, only while tracing is on (off: [`stage`] and [`request`] are `Span::none()`, so a
//! call pays nothing): one `request` span per HTTP request (the edge, its parent taken from
//! the caller's W3C `traceparent`), under it one span per pipeline stage in request order
//! (`authorize`, `admit.count`, ..., `route` with an `upstream` span per provider attempt,
//! `record`), and every provider request carries the `traceparent` of its `upstream` span
//! ([`inject`]). Span names and fields are names and ids only: no prompt or response text.
//!
//! Logs: `TENANTGATE_LOG` (an `EnvFilter`), `TENANTGATE_LOG_FORMAT=json` for one JSON object
//! per line; while tracing is on, the request span carries `trace_id` and `span_id`, so every
//! JSON line inside a request has them (under `span` and `spans`), the edge's line too.

mod export;
pub mod red;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The target of the spans that go to OTLP (and only they do).
pub const TARGET: &str = "tenantgate::trace";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (set once by [`init`]).
pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.otlp_endpoint: {0}")]
    Exporter(String),
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps the exporter alive; [`Guard::shutdown`] (or dropping it) flushes what is queued.
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Guard {
    /// Exports every finished span now (tests poll their receiver after it).
    pub async fn force_flush(&self) {
        if let Some(p) = self.provider.clone() {
            // The exporter's thread sends on this runtime: wait for it off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || p.force_flush()).await;
        }
    }

    /// Flushes and stops the exporter.
    pub async fn shutdown(mut self) {
        if let Some(p) = self.provider.take() {
            let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            // Outside a runtime only (the binary's last step): inside one, `shutdown` is the way.
            if tokio::runtime::Handle::try_current().is_err() {
                let _ = p.shutdown();
            }
        }
    }
}

/// Installs the process's subscriber: the log layer (`TENANTGATE_LOG`, else `default_filter`;
/// JSON when `TENANTGATE_LOG_FORMAT=json`) and, with an OTLP endpoint, the span exporter,
/// which sends from a thread of its own through `runtime` (a Tokio runtime of the caller's).
pub fn init(
    otlp_endpoint: Option<&str>,
    service_name: &str,
    default_filter: &str,
    runtime: Option<tokio::runtime::Handle>,
) -> Result<Guard, TelemetryError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TENANTGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if std::env::var("TENANTGATE_LOG_FORMAT").as_deref() == Ok("json") {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let (provider, spans) = match (otlp_endpoint, runtime) {
        (Some(endpoint), Some(rt)) => {
            let provider =
                export::provider(endpoint, service_name, rt).map_err(TelemetryError::Exporter)?;
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("tenantgate"))
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target(TARGET, tracing::Level::INFO),
                );
            (Some(provider), Some(layer))
        }
        (Some(_), None) => {
            return Err(TelemetryError::Exporter(
                "the exporter needs a Tokio runtime".into(),
            ))
        }
        (None, _) => (None, None),
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    if provider.is_some() {
        ENABLED.store(true, Relaxed);
    }
    Ok(Guard { provider })
}

/// One pipeline stage's span (a child of the current span); none while tracing is off.
pub fn stage(name: &'static str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(target: TARGET, "stage", otel.name = name)
}

/// The request span of the edge: its parent is the caller's `traceparent`, if it sent one.
/// Also its `(trace_id, span_id)` in hex, for the log line.
pub(crate) fn request(
    method: &axum::http::Method,
    route: &str,
    headers: &axum::http::HeaderMap,
) -> (Span, Option<(String, String)>) {
    if !enabled() {
        return (Span::none(), None);
    }
    // The method from a closed set: an extension method a client invents is one fixed value.
    let method = red::method_label(method);
    let span = tracing::info_span!(
        target: TARGET, "request",
        otel.name = %format_args!("{method} {route}"),
        http.request.method = method,
        http.route = route,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    // The caller's trace and parent ids are continued; its `tracestate` (vendor data a client
    // writes) is dropped, so nothing but a valid `traceparent` reaches the providers, and the
    // call is sampled whatever the caller's flag says (a client cannot switch tracing off).
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        let clean = opentelemetry::trace::SpanContext::new(
            remote.trace_id(),
            remote.span_id(),
            opentelemetry::trace::TraceFlags::SAMPLED,
            true,
            opentelemetry::trace::TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(clean));
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return (span, None);
    }
    let ids = (sc.trace_id().to_string(), sc.span_id().to_string());
    span.record("trace_id", ids.0.as_str());
    span.record("span_id", ids.1.as_str());
    (span, Some(ids))
}

/// Adds the current span's `traceparent` to a provider request (nothing while tracing is off).
pub(crate) fn inject(headers: &mut axum::http::HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = Span::current().context();
    TraceContextPropagator::new()
        .inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers));
    // The propagator writes `tracestate` even empty (ours always is): send only `traceparent`.
    if headers.get("tracestate").is_some_and(|v| v.is_empty()) {
        headers.remove("tracestate");
    }
}
