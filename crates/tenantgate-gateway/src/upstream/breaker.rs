//! A circuit breaker per provider endpoint (the platform's, or one tenant's own endpoint at
//! one revision): after `routing.breaker_failures` consecutive failures the circuit opens and
//! calls skip the endpoint for `routing.breaker_open_ms`; then one probe call is let through
//! (half-open), and its outcome closes or reopens the circuit. Each replica keeps its own
//! circuits: they describe what this process sees of the endpoint.
//!
//! An admitted attempt holds a [`Permit`], a drop guard: it is settled as a success, a
//! failure, or neither (a 429: the provider is up, only busy); a permit dropped unsettled (the
//! caller went away mid-attempt) counts as neither, and a half-open probe abandoned that way
//! lets the next call probe instead of leaving the circuit stuck half-open.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The circuits of this process, by endpoint label (`Provider::cache_label`).
pub struct Breakers {
    failures: u32,
    open_for: Duration,
    circuits: Mutex<HashMap<String, Circuit>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// One probe may run; `probing` while it does.
    HalfOpen {
        probing: bool,
    },
}

#[derive(Debug)]
struct Circuit {
    state: State,
    consecutive: u32,
    /// Times the circuit opened since the process started.
    opened: u64,
}

impl Default for Circuit {
    fn default() -> Self {
        Circuit {
            state: State::Closed,
            consecutive: 0,
            opened: 0,
        }
    }
}

/// Whether an attempt at an endpoint may go ahead.
pub enum Admit<'a> {
    Go(Permit<'a>),
    /// The circuit is open (or its one probe is running): skip the endpoint for now.
    Skip {
        retry_in: Duration,
    },
}

/// How an attempt ended, for the endpoint's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered (a 2xx, or a 4xx about the request itself).
    Healthy,
    /// 5xx, timeout, connection or transport failure.
    Failed,
    /// Rate limited: neither healthy nor down.
    Busy,
}

/// One admitted attempt; settle it with [`Permit::settle`].
pub struct Permit<'a> {
    breakers: &'a Breakers,
    endpoint: String,
    probe: bool,
    settled: bool,
}

/// A circuit as platform admins see it (`GET /admin/v1/routing`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CircuitView {
    pub endpoint: String,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    pub consecutive_failures: u32,
    pub times_opened: u64,
    /// While open: how long until a probe is let through.
    pub retry_in_ms: Option<u64>,
}

impl Breakers {
    /// `failures` 0 disables the breaker (every attempt goes ahead).
    pub fn new(failures: u32, open_for: Duration) -> Breakers {
        Breakers {
            failures,
            open_for,
            circuits: Mutex::new(HashMap::new()),
        }
    }

    pub fn admit(&self, endpoint: &str) -> Admit<'_> {
        let go = |probe| {
            Admit::Go(Permit {
                breakers: self,
                endpoint: endpoint.to_owned(),
                probe,
                settled: false,
            })
        };
        if self.failures == 0 {
            return go(false);
        }
        let Ok(mut m) = self.circuits.lock() else {
            return go(false);
        };
        let Some(c) = m.get_mut(endpoint) else {
            return go(false);
        };
        match c.state {
            State::Closed => go(false),
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    Admit::Skip {
                        retry_in: until - now,
                    }
                } else {
                    c.state = State::HalfOpen { probing: true };
                    go(true)
                }
            }
            State::HalfOpen { probing: false } => {
                c.state = State::HalfOpen { probing: true };
                go(true)
            }
            // The probe is out: others wait for its outcome, about as long as a call takes.
            State::HalfOpen { probing: true } => Admit::Skip {
                retry_in: Duration::from_secs(1),
            },
        }
    }

    fn settle(&self, endpoint: &str, probe: bool, outcome: Option<Outcome>) {
        if self.failures == 0 {
            return;
        }
        let Ok(mut m) = self.circuits.lock() else {
            return;
        };
        let c = m.entry(endpoint.to_owned()).or_default();
        match (outcome, probe) {
            (Some(Outcome::Healthy), _) => {
                c.consecutive = 0;
                c.state = State::Closed;
            }
            (Some(Outcome::Failed), true) => {
                c.consecutive = c.consecutive.saturating_add(1);
                c.state = State::Open {
                    until: Instant::now() + self.open_for,
                };
                c.opened += 1;
            }
            (Some(Outcome::Failed), false) => {
                c.consecutive = c.consecutive.saturating_add(1);
                if c.consecutive >= self.failures && c.state == State::Closed {
                    c.state = State::Open {
                        until: Instant::now() + self.open_for,
                    };
                    c.opened += 1;
                    tracing::warn!(endpoint, failures = c.consecutive, "circuit opened");
                }
            }
            // A busy or abandoned probe proved nothing: the next call probes again.
            (Some(Outcome::Busy) | None, true) => c.state = State::HalfOpen { probing: false },
            (Some(Outcome::Busy) | None, false) => {}
        }
    }

    /// Every circuit this process has seen fail, by endpoint.
    pub fn view(&self) -> Vec<CircuitView> {
        let Ok(m) = self.circuits.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut v: Vec<CircuitView> = m
            .iter()
            .map(|(endpoint, c)| {
                let (state, retry_in_ms) = match c.state {
                    State::Closed => ("closed", None),
                    State::Open { until } if until > now => {
                        ("open", Some((until - now).as_millis() as u64))
                    }
                    // Past its time: the next call is the probe.
                    State::Open { .. } | State::HalfOpen { .. } => ("half_open", None),
                };
                CircuitView {
                    endpoint: endpoint.clone(),
                    state,
                    consecutive_failures: c.consecutive,
                    times_opened: c.opened,
                    retry_in_ms,
                }
            })
            .collect();
        v.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        v
    }
}

impl Permit<'_> {
    pub fn settle(mut self, outcome: Outcome) {
        self.settled = true;
        self.breakers
            .settle(&self.endpoint, self.probe, Some(outcome));
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breakers.settle(&self.endpoint, self.probe, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(b: &Breakers) -> Permit<'_> {
        match b.admit("p") {
            Admit::Go(p) => p,
            Admit::Skip { .. } => panic!("skipped"),
        }
    }

    fn state(b: &Breakers) -> &'static str {
        b.view().first().map_or("closed", |c| c.state)
    }

    #[test]
    fn opens_after_consecutive_failures_then_probes_once_and_closes_on_success() {
        let b = Breakers::new(3, Duration::from_millis(50));
        go(&b).settle(Outcome::Failed);
        go(&b).settle(Outcome::Failed);
        // A success in between resets the count.
        go(&b).settle(Outcome::Healthy);
        for _ in 0..3 {
            go(&b).settle(Outcome::Failed);
        }
        assert_eq!(state(&b), "open");
        assert!(matches!(b.admit("p"), Admit::Skip { .. }));
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(b.admit("p"), Admit::Skip { .. }) {
            assert!(Instant::now() < deadline, "never half-opened");
            std::thread::yield_now();
        }
        // The admit above took the probe and dropped it unsettled: the next call probes.
        let probe = go(&b);
        // Only one probe at a time.
        assert!(matches!(b.admit("p"), Admit::Skip { .. }));
        probe.settle(Outcome::Healthy);
        assert_eq!(state(&b), "closed");
        assert_eq!(b.view()[0].times_opened, 1);
    }

    #[test]
    fn a_failed_probe_reopens_and_busy_answers_never_open() {
        let b = Breakers::new(2, Duration::from_millis(20));
        for _ in 0..10 {
            go(&b).settle(Outcome::Busy);
        }
        assert_eq!(state(&b), "closed");
        go(&b).settle(Outcome::Failed);
        go(&b).settle(Outcome::Failed);
        assert_eq!(state(&b), "open");
        let deadline = Instant::now() + Duration::from_secs(5);
        let probe = loop {
            if let Admit::Go(p) = b.admit("p") {
                break p;
            }
            assert!(Instant::now() < deadline);
            std::thread::yield_now();
        };
        probe.settle(Outcome::Failed);
        assert_eq!(state(&b), "open");
        assert_eq!(b.view()[0].times_opened, 2);
    }

    #[test]
    fn zero_failures_disables_the_breaker() {
        let b = Breakers::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            go(&b).settle(Outcome::Failed);
        }
        assert!(matches!(b.admit("p"), Admit::Go(_)));
    }
}
