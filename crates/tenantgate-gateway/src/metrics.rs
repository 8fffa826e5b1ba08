//! `/metrics`: one `prometheus-client` registry per gateway, rendered by [`Metrics::render`]
//! in the Prometheus text format (0.0.4).
//!
//! The values stay where they are counted: plain atomics in each part's stats (audit writer,
//! admission, knowledge-base cache, leak-guard incidents, policy snapshot) and the request
//! path's [`crate::telemetry::red::Red`] (small maps keyed by closed sets), so counting on
//! the request path costs an atomic add or one short lock and no registry lookup. Each part
//! is registered once as a collector that reads its stats at scrape time; every family's
//! name, type, help and labels is written here or in `metrics/families.rs` and nowhere else.
//!
//! Labels come from closed sets or the configuration, never from a client: a model or
//! provider not in the configuration is `unknown`, a path no route matched is `unmatched`.
//! One family carries a tenant label, `tenantgate_tenant_calls`: the `[metrics]
//! tenant_top_n` busiest tenants by id and `other` for the rest (none at 0), so the page's
//! size does not grow with the number of tenants. Who may read the page: `[metrics] listen`
//! and `token` (`http::metrics`).
//!
//! Names: `prometheus-client` appends `_total` to counters, so counters are registered
//! without it and the exposed names are the ones dashboards already use.

mod families;
mod process;

use crate::audit::AuditStats;
use crate::guard::Incidents;
use crate::identity::auth::AuthIndex;
use crate::knowledge::KnowledgeStats;
use crate::limits::AdmissionStats;
use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// The `Content-Type` of [`Metrics::render`]'s page.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What `/metrics` reads: the stats of each part, shared with the part that counts them.
#[derive(Clone)]
pub struct Sources {
    pub incidents: Arc<Incidents>,
    pub audit: Arc<AuditStats>,
    pub admission: Arc<AdmissionStats>,
    pub knowledge: Arc<KnowledgeStats>,
    /// The auth snapshot (its count of tenants whose stored policy is unreadable).
    pub auth: Arc<ArcSwap<AuthIndex>>,
    /// Calls refused because their tenant's stored policy is unreadable.
    pub policy_refusals: Arc<AtomicU64>,
    /// The request path's series.
    pub red: Arc<crate::telemetry::red::Red>,
    /// The circuits (`tenantgate_circuit_state`, for the configured providers).
    pub breakers: Arc<crate::upstream::breaker::Breakers>,
}

/// The gateway's registry.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new(s: Sources) -> Metrics {
        let mut registry = Registry::default();
        registry.register_collector(Part::boxed(s.incidents, incidents));
        registry.register_collector(Part::boxed(s.audit, audit));
        registry.register_collector(Part::boxed(s.admission, admission));
        registry.register_collector(Part::boxed(s.knowledge, knowledge));
        registry.register_collector(Part::boxed(Arc::new((s.auth, s.policy_refusals)), policy));
        let providers = s.red.providers.names.clone();
        registry.register_collector(Part::boxed(s.red, families::red));
        registry.register_collector(Part::boxed(
            Arc::new((s.breakers, providers)),
            families::circuits,
        ));
        registry.register_collector(Part::boxed(Arc::new(()), families::process));
        Metrics { registry }
    }

    /// The page, every family in registration order.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; an encoder error would leave the page cut short,
        // which a scraper reports, so it is logged rather than turned into a 500.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

/// One part's stats and the function that describes them.
type Describe<T> = fn(&T, &mut DescriptorEncoder<'_>) -> fmt::Result;

struct Part<T> {
    stats: Arc<T>,
    describe: Describe<T>,
}

impl<T: Send + Sync + 'static> Part<T> {
    fn boxed(stats: Arc<T>, describe: Describe<T>) -> Box<dyn Collector> {
        Box::new(Part { stats, describe })
    }
}

impl<T> fmt::Debug for Part<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Part")
    }
}

impl<T: Send + Sync + 'static> Collector for Part<T> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        (self.describe)(&self.stats, &mut encoder)
    }
}

/// A counter without labels; `name` without the `_total` the encoder appends.
fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: &AtomicU64,
) -> fmt::Result {
    let c = ConstCounter::new(value.load(Relaxed));
    c.encode(e.encode_descriptor(name, help, None, ConstCounter::<u64>::TYPE)?)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, ConstGauge::<u64>::TYPE)?)
}

fn incidents(s: &Incidents, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let mut family = e.encode_descriptor(
        "tenantgate_guard_incidents",
        "Leak-guard findings.",
        None,
        ConstCounter::<u64>::TYPE,
    )?;
    for ((detector, action, direction), n) in s.counts() {
        let labels = [
            ("detector", detector),
            ("action", action),
            ("direction", direction),
        ];
        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn audit(s: &AuditStats, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    counter(
        e,
        "tenantgate_audit_records",
        "Audit records appended.",
        &s.appended,
    )?;
    counter(
        e,
        "tenantgate_audit_commits",
        "Group commits of the audit writer.",
        &s.batches,
    )?;
    gauge(
        e,
        "tenantgate_audit_largest_batch",
        "Most records written in one group commit.",
        s.largest_batch.load(Relaxed),
    )?;
    counter(
        e,
        "tenantgate_audit_write_failures",
        "Audit records that could not be written.",
        &s.failures,
    )?;
    counter(
        e,
        "tenantgate_audit_checkpoints",
        "Signed audit checkpoints.",
        &s.checkpoints,
    )?;
    counter(
        e,
        "tenantgate_audit_chain_breaks",
        "Tenants whose audit chain no longer extends the last signed checkpoint.",
        &s.chain_breaks,
    )
}

fn admission(s: &AdmissionStats, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    counter(
        e,
        "tenantgate_admission_admitted",
        "Calls admitted.",
        &s.admitted,
    )?;
    counter(
        e,
        "tenantgate_admission_refused",
        "Calls refused by a rate, concurrency or budget limit.",
        &s.refused,
    )?;
    counter(
        e,
        "tenantgate_admission_settled",
        "Reservations settled.",
        &s.settled,
    )?;
    counter(
        e,
        "tenantgate_admission_backend_errors",
        "Limits store operations that failed.",
        &s.backend_errors,
    )?;
    counter(
        e,
        "tenantgate_admission_spend_anomalies",
        "Calls refused by the spend anomaly breaker.",
        &s.anomalies,
    )?;
    counter(
        e,
        "tenantgate_admission_reserved_micros",
        "Micro-dollars reserved by admitted calls.",
        &s.reserved_micros,
    )?;
    counter(
        e,
        "tenantgate_admission_settled_micros",
        "Micro-dollars settled (actual cost).",
        &s.settled_micros,
    )
}

fn knowledge(s: &KnowledgeStats, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    counter(
        e,
        "tenantgate_rag_index_loads",
        "Knowledge-base indexes loaded from disk.",
        &s.loads,
    )?;
    counter(
        e,
        "tenantgate_rag_index_builds",
        "Knowledge-base indexes built.",
        &s.builds,
    )?;
    counter(
        e,
        "tenantgate_rag_index_evictions",
        "Knowledge-base indexes evicted from memory.",
        &s.evictions,
    )?;
    counter(
        e,
        "tenantgate_rag_chunks_inserted",
        "Chunks added to resident knowledge-base indexes without a rebuild.",
        &s.inserts,
    )?;
    counter(
        e,
        "tenantgate_rag_documents_deleted",
        "Documents removed from resident knowledge-base indexes without a rebuild.",
        &s.deletes,
    )?;
    counter(
        e,
        "tenantgate_rag_index_merges",
        "Knowledge-base index merges built in the background and swapped in.",
        &s.merges,
    )?;
    gauge(
        e,
        "tenantgate_rag_resident_bytes",
        "Bytes of knowledge-base indexes in memory.",
        s.resident_bytes.load(Relaxed),
    )
}

fn policy(
    s: &(Arc<ArcSwap<AuthIndex>>, Arc<AtomicU64>),
    e: &mut DescriptorEncoder<'_>,
) -> fmt::Result {
    let (auth, refusals) = s;
    gauge(
        e,
        "tenantgate_policy_unreadable_tenants",
        "Tenants whose stored policy this gateway cannot read.",
        auth.load().unreadable_count() as u64,
    )?;
    counter(
        e,
        "tenantgate_policy_unreadable_refusals",
        "Calls refused because their tenant's stored policy is unreadable.",
        refusals,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantgate_guard::{Action, Detector, Direction};

    fn metrics() -> (Metrics, Sources) {
        let sources = Sources {
            incidents: Arc::default(),
            audit: Arc::default(),
            admission: Arc::default(),
            knowledge: Arc::default(),
            auth: Arc::new(ArcSwap::from_pointee(AuthIndex::default())),
            policy_refusals: Arc::default(),
            red: Arc::new(crate::telemetry::red::Red::new(["m"], ["p"], 2)),
            breakers: Arc::new(crate::upstream::breaker::Breakers::new(
                1,
                std::time::Duration::from_secs(1),
            )),
        };
        (Metrics::new(sources.clone()), sources)
    }

    /// Every family `/metrics` exposed before this registry (four hand-written renderers and
    /// `http::policy_metrics`), with the same name and type: dashboards and alerts keep working.
    #[test]
    fn every_family_keeps_its_name_and_type() {
        let (m, _) = metrics();
        let page = m.render();
        for (name, kind) in [
            ("tenantgate_guard_incidents_total", "counter"),
            ("tenantgate_audit_records_total", "counter"),
            ("tenantgate_audit_commits_total", "counter"),
            ("tenantgate_audit_largest_batch", "gauge"),
            ("tenantgate_audit_write_failures_total", "counter"),
            ("tenantgate_audit_checkpoints_total", "counter"),
            ("tenantgate_audit_chain_breaks_total", "counter"),
            ("tenantgate_admission_admitted_total", "counter"),
            ("tenantgate_admission_refused_total", "counter"),
            ("tenantgate_admission_settled_total", "counter"),
            ("tenantgate_admission_backend_errors_total", "counter"),
            ("tenantgate_admission_spend_anomalies_total", "counter"),
            ("tenantgate_admission_reserved_micros_total", "counter"),
            ("tenantgate_admission_settled_micros_total", "counter"),
            ("tenantgate_rag_index_loads_total", "counter"),
            ("tenantgate_rag_index_builds_total", "counter"),
            ("tenantgate_rag_index_evictions_total", "counter"),
            ("tenantgate_rag_resident_bytes", "gauge"),
            // Added with incremental knowledge-base indexes (issue 16).
            ("tenantgate_rag_chunks_inserted_total", "counter"),
            ("tenantgate_rag_documents_deleted_total", "counter"),
            ("tenantgate_rag_index_merges_total", "counter"),
            ("tenantgate_policy_unreadable_tenants", "gauge"),
            ("tenantgate_policy_unreadable_refusals_total", "counter"),
        ] {
            assert!(
                page.contains(&format!("\n# TYPE {name} {kind}\n")),
                "{name}:\n{page}"
            );
        }
        // The request path's, the circuits', the process's and the build's (issue 21).
        for (name, kind) in [
            ("tenantgate_http_requests_total", "counter"),
            ("tenantgate_gateway_overhead_seconds", "histogram"),
            ("tenantgate_upstream_seconds", "histogram"),
            ("tenantgate_stream_first_token_seconds", "histogram"),
            ("tenantgate_streams_in_flight", "gauge"),
            ("tenantgate_model_calls_total", "counter"),
            ("tenantgate_model_tokens_total", "counter"),
            ("tenantgate_model_cost_micros_total", "counter"),
            ("tenantgate_upstream_attempts_total", "counter"),
            ("tenantgate_failovers_total", "counter"),
            ("tenantgate_tenant_calls_total", "counter"),
            ("tenantgate_circuit_state", "gauge"),
            ("tenantgate_build_info", "gauge"),
        ] {
            assert!(
                page.contains(&format!("\n# TYPE {name} {kind}\n")),
                "{name}:\n{page}"
            );
        }
        let process = if cfg!(target_os = "linux") { 4 } else { 0 };
        assert_eq!(page.matches("# TYPE ").count(), 23 + 13 + process, "{page}");
        assert!(!page.contains("# EOF"), "Prometheus text, not OpenMetrics");
    }

    #[test]
    fn values_are_read_at_render_time_with_labels_in_order() {
        let (m, s) = metrics();
        s.admission.anomalies.fetch_add(3, Relaxed);
        s.audit.largest_batch.store(17, Relaxed);
        s.policy_refusals.fetch_add(2, Relaxed);
        s.incidents
            .record(Detector::CrossTenant, Action::Block, Direction::Outbound);
        s.incidents
            .record(Detector::CrossTenant, Action::Block, Direction::Outbound);
        let page = m.render();
        for line in [
            "tenantgate_admission_spend_anomalies_total 3",
            "tenantgate_audit_largest_batch 17",
            "tenantgate_policy_unreadable_refusals_total 2",
            "tenantgate_policy_unreadable_tenants 0",
            "tenantgate_guard_incidents_total{detector=\"cross_tenant\",action=\"block\",direction=\"outbound\"} 2",
        ] {
            assert!(page.lines().any(|l| l == line), "{line}:\n{page}");
        }
    }
}
