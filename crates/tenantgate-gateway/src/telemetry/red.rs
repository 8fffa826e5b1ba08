//! The request path's series (rate, errors, duration): what each call adds is an atomic add
//! or one short-held lock on a small map whose keys come from closed sets (the enums below,
//! the routes' templates, the configured models and providers); nothing looks up the
//! registry. Label values never come from a client: a model or provider name that is not
//! in the configuration is counted as `unknown`.

use prometheus_client::metrics::histogram::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The endpoint a model call came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallSurface {
    ChatCompletions,
    Messages,
    Responses,
    Completions,
    Embeddings,
    CountTokens,
    /// A knowledge base's own embedding call (ingestion, a retrieval query).
    Knowledge,
}

impl CallSurface {
    pub fn label(self) -> &'static str {
        match self {
            CallSurface::ChatCompletions => "chat_completions",
            CallSurface::Messages => "messages",
            CallSurface::Responses => "responses",
            CallSurface::Completions => "completions",
            CallSurface::Embeddings => "embeddings",
            CallSurface::CountTokens => "count_tokens",
            CallSurface::Knowledge => "knowledge",
        }
    }
}

/// How a model call ended, from its recorded status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    Ok,
    /// 4xx other than the ones below: the request or its model was refused.
    Refused,
    RateLimited,
    /// 499: the client left.
    Cancelled,
    /// 502, 504: the provider failed or timed out.
    UpstreamError,
    /// 503: no provider available, a key or the audit writer unavailable, shutdown.
    Unavailable,
    /// Any other 5xx.
    Error,
}

impl CallOutcome {
    pub fn of(status: u16) -> CallOutcome {
        match status {
            0..=399 => CallOutcome::Ok,
            429 => CallOutcome::RateLimited,
            499 => CallOutcome::Cancelled,
            400..=498 => CallOutcome::Refused,
            502 | 504 => CallOutcome::UpstreamError,
            503 => CallOutcome::Unavailable,
            _ => CallOutcome::Error,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Refused => "refused",
            CallOutcome::RateLimited => "rate_limited",
            CallOutcome::Cancelled => "cancelled",
            CallOutcome::UpstreamError => "upstream_error",
            CallOutcome::Unavailable => "unavailable",
            CallOutcome::Error => "error",
        }
    }
}

/// One try of one provider target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    Ok,
    /// A failure the route retries or fails over from.
    Retryable,
    /// A failure that ends the call (the provider's own answer, e.g. 400).
    Final,
    /// Not tried: the target's circuit is open.
    CircuitOpen,
    /// Not tried: the provider is drained.
    Drained,
}

impl AttemptOutcome {
    pub fn label(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::Retryable => "retryable",
            AttemptOutcome::Final => "final",
            AttemptOutcome::CircuitOpen => "circuit_open",
            AttemptOutcome::Drained => "drained",
        }
    }
}

/// A closed set of names (the configured models or providers); index 0 is `unknown`.
pub(crate) struct Names {
    index: HashMap<String, usize>,
    pub(crate) names: Vec<String>,
}

impl Names {
    fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Names {
        let mut all = vec!["unknown".to_owned()];
        let mut index = HashMap::new();
        for n in names {
            if n != "unknown" && !index.contains_key(n) {
                index.insert(n.to_owned(), all.len());
                all.push(n.to_owned());
            }
        }
        Names { index, names: all }
    }

    pub(crate) fn of(&self, name: Option<&str>) -> usize {
        name.and_then(|n| self.index.get(n).copied()).unwrap_or(0)
    }
}

/// Tokens and cost of one model.
#[derive(Default)]
pub(crate) struct Usage {
    pub input: AtomicU64,
    pub output: AtomicU64,
    pub cost_micros: AtomicU64,
}

/// A model call as its record saw it.
pub struct CallRecord<'a> {
    pub surface: Option<CallSurface>,
    pub model: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub status: u16,
    pub tenant: &'a str,
    pub tokens: Option<(u64, u64)>,
    pub cost_micros: u64,
}

pub(crate) type CallKey = (Option<CallSurface>, usize, usize, CallOutcome);

/// A route's requests by (method, status).
pub(crate) type ByStatus = HashMap<(&'static str, u16), u64>;

/// The request path's counters, shared by the edge, the pipeline and `/metrics`.
pub struct Red {
    /// Route template -> (method, status) -> requests.
    pub(crate) requests: Mutex<HashMap<String, ByStatus>>,
    pub(crate) overhead: Histogram,
    pub(crate) upstream: Histogram,
    pub(crate) first_token: Histogram,
    pub(crate) streams: AtomicI64,
    pub(crate) models: Names,
    pub(crate) providers: Names,
    pub(crate) calls: Mutex<HashMap<CallKey, u64>>,
    /// Per model index.
    pub(crate) usage: Vec<Usage>,
    pub(crate) attempts: Mutex<HashMap<(usize, AttemptOutcome), u64>>,
    pub(crate) failovers: AtomicU64,
    /// Tenant id -> calls, for the top-N series (0: not counted at all).
    pub(crate) tenant_top_n: usize,
    pub(crate) tenants: Mutex<HashMap<String, u64>>,
}

const LATENCY: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const UPSTREAM: [f64; 12] = [
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A counter map stays usable after a panic elsewhere: counts are plain numbers.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Red {
    /// `models` and `providers`: the configured names, the only ones that become labels.
    pub fn new<'a>(
        models: impl IntoIterator<Item = &'a str>,
        providers: impl IntoIterator<Item = &'a str>,
        tenant_top_n: usize,
    ) -> Red {
        let models = Names::new(models);
        let usage = models.names.iter().map(|_| Usage::default()).collect();
        Red {
            requests: Mutex::default(),
            overhead: Histogram::new(LATENCY),
            upstream: Histogram::new(UPSTREAM),
            first_token: Histogram::new(UPSTREAM),
            streams: AtomicI64::new(0),
            models,
            providers: Names::new(providers),
            calls: Mutex::default(),
            usage,
            attempts: Mutex::default(),
            failovers: AtomicU64::new(0),
            tenant_top_n,
            tenants: Mutex::default(),
        }
    }

    /// One HTTP request: `route` is the matched template (or the fixed `unmatched`).
    pub fn request(&self, route: &str, method: &axum::http::Method, status: u16) {
        let method = method_label(method);
        let mut map = lock(&self.requests);
        let by = match map.get_mut(route) {
            Some(by) => by,
            None => map.entry(route.to_owned()).or_default(),
        };
        *by.entry((method, status)).or_default() += 1;
    }

    /// A model call's time in the gateway and, if it reached one, at the provider.
    pub fn latency(&self, overhead: Duration, upstream: Option<Duration>) {
        self.overhead.observe(overhead.as_secs_f64());
        if let Some(u) = upstream {
            self.upstream.observe(u.as_secs_f64());
        }
    }

    /// A model call's record (every authenticated call has exactly one).
    pub fn call(&self, c: &CallRecord<'_>) {
        let model = self.models.of(c.model);
        let provider = self.providers.of(c.provider);
        let key = (c.surface, model, provider, CallOutcome::of(c.status));
        *lock(&self.calls).entry(key).or_default() += 1;
        let u = &self.usage[model];
        if let Some((input, output)) = c.tokens {
            u.input.fetch_add(input, Relaxed);
            u.output.fetch_add(output, Relaxed);
        }
        u.cost_micros.fetch_add(c.cost_micros, Relaxed);
        if self.tenant_top_n > 0 {
            let mut map = lock(&self.tenants);
            match map.get_mut(c.tenant) {
                Some(n) => *n += 1,
                None => {
                    map.insert(c.tenant.to_owned(), 1);
                }
            }
        }
    }

    /// One provider target tried (or skipped) for a call.
    pub fn attempt(&self, provider: &str, outcome: AttemptOutcome) {
        let p = self.providers.of(Some(provider));
        *lock(&self.attempts).entry((p, outcome)).or_default() += 1;
    }

    /// A call answered by a target after its first.
    pub fn failover(&self) {
        self.failovers.fetch_add(1, Relaxed);
    }

    /// A stream starts: counted in flight until the returned guard drops.
    pub fn stream(self: &Arc<Red>, started: Instant) -> Live {
        self.streams.fetch_add(1, Relaxed);
        Live {
            red: self.clone(),
            started,
            first: false,
        }
    }

    /// The top `n` tenants by calls and the sum of the others (`None` when there are none).
    pub(crate) fn top_tenants(&self) -> (Vec<(String, u64)>, Option<u64>) {
        let map = lock(&self.tenants);
        let mut all: Vec<(&String, &u64)> = map.iter().collect();
        // Ties by id, so a scrape is stable.
        all.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let n = self.tenant_top_n.min(all.len());
        let top = all[..n].iter().map(|(k, v)| ((*k).clone(), **v)).collect();
        let rest = (all.len() > n).then(|| all[n..].iter().map(|(_, v)| **v).sum());
        (top, rest)
    }
}

/// A stream in flight; its first frame to the caller sets the time to first token.
pub struct Live {
    red: Arc<Red>,
    started: Instant,
    first: bool,
}

impl Live {
    pub fn first_frame(&mut self) {
        if !self.first {
            self.first = true;
            self.red
                .first_token
                .observe(self.started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.red.streams.fetch_sub(1, Relaxed);
    }
}

pub(crate) fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    // `Method` is open (extension methods): anything else is one fixed value.
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ]
    .iter()
    .find(|k| *k == m)
    .map_or("other", Method::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfigured_names_are_unknown_and_outcomes_close() {
        let red = Red::new(["m1"], ["p1"], 2);
        assert_eq!(red.models.of(Some("m1")), 1);
        assert_eq!(red.models.of(Some("invented")), 0);
        assert_eq!(red.providers.of(None), 0);
        assert_eq!(CallOutcome::of(200), CallOutcome::Ok);
        assert_eq!(CallOutcome::of(404), CallOutcome::Refused);
        assert_eq!(CallOutcome::of(429), CallOutcome::RateLimited);
        assert_eq!(CallOutcome::of(504), CallOutcome::UpstreamError);
        assert_eq!(
            method_label(&axum::http::Method::from_bytes(b"BREW").unwrap()),
            "other"
        );
    }

    #[test]
    fn top_n_keeps_the_busiest_and_sums_the_rest() {
        let red = Red::new(["m"], ["p"], 2);
        for (t, n) in [("a", 5), ("b", 1), ("c", 3), ("d", 2)] {
            for _ in 0..n {
                red.call(&CallRecord {
                    surface: None,
                    model: None,
                    provider: None,
                    status: 200,
                    tenant: t,
                    tokens: None,
                    cost_micros: 0,
                });
            }
        }
        let (top, rest) = red.top_tenants();
        assert_eq!(top, vec![("a".to_owned(), 5), ("c".to_owned(), 3)]);
        assert_eq!(rest, Some(3));
    }
}
