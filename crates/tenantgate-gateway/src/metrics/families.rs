//! The families of the request path ([`Red`]), the circuits, the process and the build: each
//! one's name, type, help and labels, written here and nowhere else.

use super::process;
use crate::telemetry::red::{lock, CallSurface, Red};
use crate::upstream::breaker::Breakers;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::TypedMetric;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

const COUNTER: prometheus_client::metrics::MetricType = ConstCounter::<u64>::TYPE;
const GAUGE: prometheus_client::metrics::MetricType = ConstGauge::<i64>::TYPE;

pub(super) fn red(r: &Red, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    {
        let mut f = e.encode_descriptor(
            "tenantgate_http_requests",
            "HTTP requests by matched route template (`unmatched` for none), method and status.",
            None,
            COUNTER,
        )?;
        let mut rows: Vec<_> = lock(&r.requests)
            .iter()
            .flat_map(|(route, by)| by.iter().map(move |(k, n)| (route.clone(), k.0, k.1, *n)))
            .collect();
        rows.sort_unstable();
        for (route, method, status, n) in rows {
            let status = status.to_string();
            let labels = [
                ("route", route.as_str()),
                ("method", method),
                ("status", &status),
            ];
            ConstCounter::new(n).encode(f.encode_family(&labels)?)?;
        }
    }
    histogram(
        e,
        "tenantgate_gateway_overhead_seconds",
        "Time a model call spent in the gateway itself (total minus time waiting on the provider).",
        &r.overhead,
    )?;
    histogram(
        e,
        "tenantgate_upstream_seconds",
        "Time a model call waited on its provider (to the response headers for a stream).",
        &r.upstream,
    )?;
    histogram(
        e,
        "tenantgate_stream_first_token_seconds",
        "Time from a streamed call's arrival to its first frame released to the caller.",
        &r.first_token,
    )?;
    ConstGauge::new(r.streams.load(Relaxed)).encode(e.encode_descriptor(
        "tenantgate_streams_in_flight",
        "Streamed answers being sent now.",
        None,
        GAUGE,
    )?)?;
    calls(r, e)?;
    usage(r, e)?;
    {
        let mut f = e.encode_descriptor(
            "tenantgate_upstream_attempts",
            "Provider targets tried or skipped, by provider (`unknown`: a tenant's own endpoint) and outcome.",
            None,
            COUNTER,
        )?;
        let mut rows: Vec<_> = lock(&r.attempts)
            .iter()
            .map(|(k, n)| (r.providers.names[k.0].as_str(), k.1.label(), *n))
            .collect();
        rows.sort_unstable();
        for (provider, outcome, n) in rows {
            let labels = [("provider", provider), ("outcome", outcome)];
            ConstCounter::new(n).encode(f.encode_family(&labels)?)?;
        }
    }
    ConstCounter::new(r.failovers.load(Relaxed)).encode(e.encode_descriptor(
        "tenantgate_failovers",
        "Calls answered by a target other than their first.",
        None,
        COUNTER,
    )?)?;
    tenants(r, e)
}

fn histogram(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, h: &Histogram) -> fmt::Result {
    h.encode(e.encode_descriptor(name, help, None, Histogram::TYPE)?)
}

fn surface_label(s: Option<CallSurface>) -> &'static str {
    s.map_or("unknown", CallSurface::label)
}

fn calls(r: &Red, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let mut f = e.encode_descriptor(
        "tenantgate_model_calls",
        "Authenticated model calls by surface, model and provider (configured names; `unknown` otherwise) and outcome.",
        None,
        COUNTER,
    )?;
    let mut rows: Vec<_> = lock(&r.calls)
        .iter()
        .map(|(k, n)| {
            (
                surface_label(k.0),
                r.models.names[k.1].as_str(),
                r.providers.names[k.2].as_str(),
                k.3.label(),
                *n,
            )
        })
        .collect();
    rows.sort_unstable();
    for (surface, model, provider, outcome, n) in rows {
        let labels = [
            ("surface", surface),
            ("model", model),
            ("provider", provider),
            ("outcome", outcome),
        ];
        ConstCounter::new(n).encode(f.encode_family(&labels)?)?;
    }
    Ok(())
}

fn usage(r: &Red, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    {
        let mut f = e.encode_descriptor(
            "tenantgate_model_tokens",
            "Tokens of recorded model calls by model and direction (`input`, `output`).",
            None,
            COUNTER,
        )?;
        for (name, u) in r.models.names.iter().zip(&r.usage) {
            for (dir, v) in [("input", &u.input), ("output", &u.output)] {
                let labels = [("model", name.as_str()), ("direction", dir)];
                ConstCounter::new(v.load(Relaxed)).encode(f.encode_family(&labels)?)?;
            }
        }
    }
    let mut f = e.encode_descriptor(
        "tenantgate_model_cost_micros",
        "Cost of recorded model calls in micro-dollars (the catalog's prices), by model.",
        None,
        COUNTER,
    )?;
    for (name, u) in r.models.names.iter().zip(&r.usage) {
        let labels = [("model", name.as_str())];
        ConstCounter::new(u.cost_micros.load(Relaxed)).encode(f.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The busiest `tenant_top_n` tenants by id, the others summed as `other`. Which tenants
/// are named can change between scrapes, so a series (`other` included) may drop: rate()
/// reads that as a counter reset, which is the price of a bounded page.
fn tenants(r: &Red, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    if r.tenant_top_n == 0 {
        return Ok(());
    }
    let (top, other) = r.top_tenants();
    let mut f = e.encode_descriptor(
        "tenantgate_tenant_calls",
        "Authenticated model calls of the busiest tenants (metrics.tenant_top_n, by tenant id); the rest as tenant=\"other\".",
        None,
        COUNTER,
    )?;
    for (tenant, n) in &top {
        ConstCounter::new(*n).encode(f.encode_family(&[("tenant", tenant.as_str())])?)?;
    }
    if let Some(n) = other {
        ConstCounter::new(n).encode(f.encode_family(&[("tenant", "other")])?)?;
    }
    Ok(())
}

/// Each configured provider's circuit, one series per state (1 for the one it is in).
pub(super) fn circuits(
    s: &(Arc<Breakers>, Vec<String>),
    e: &mut DescriptorEncoder<'_>,
) -> fmt::Result {
    let (breakers, providers) = s;
    let view = breakers.view();
    let mut f = e.encode_descriptor(
        "tenantgate_circuit_state",
        "Circuit breaker state of each configured provider (1 for its current state).",
        None,
        GAUGE,
    )?;
    for p in providers.iter().skip(1) {
        let now = view
            .iter()
            .find(|c| &c.endpoint == p)
            .map_or("closed", |c| c.state);
        for state in ["closed", "open", "half_open"] {
            let labels = [("provider", p.as_str()), ("state", state)];
            ConstGauge::new(i64::from(now == state)).encode(f.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

pub(super) fn process(_: &(), e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let p = process::read();
    if let Some(v) = p.resident_bytes {
        ConstGauge::new(v as i64).encode(e.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            None,
            GAUGE,
        )?)?;
    }
    if let Some(v) = p.cpu_seconds {
        ConstCounter::new(v).encode(e.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            COUNTER,
        )?)?;
    }
    if let Some(v) = p.open_fds {
        ConstGauge::new(v as i64).encode(e.encode_descriptor(
            "process_open_fds",
            "Number of open file descriptors.",
            None,
            GAUGE,
        )?)?;
    }
    if let Some(v) = p.start_time_seconds {
        ConstGauge::new(v).encode(e.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            None,
            GAUGE,
        )?)?;
    }
    ConstGauge::new(1i64).encode(
        e.encode_descriptor(
            "tenantgate_build_info",
            "The running build (always 1); its version in the label.",
            None,
            GAUGE,
        )?
        .encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?,
    )
}
