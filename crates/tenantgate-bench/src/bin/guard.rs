//! Leak-guard benchmark: scan throughput with 10,000 tenants' identifiers and canaries loaded,
//! and the time one call's scan takes (a 2 KiB prompt and a 4 KiB answer).
//!
//! `cargo run --release -p tenantgate-bench --bin guard [-- --tenants 10000]`

use std::time::Instant;
use tenantgate_core::TenantId;
use tenantgate_guard::{Direction, Policy, Scanner, TenantIdentifiers};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let tenants: usize = std::env::args()
        .skip_while(|a| a != "--tenants")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let started = Instant::now();
    let mut ids = Vec::with_capacity(tenants);
    let mut canaries = Vec::with_capacity(tenants);
    for i in 0..tenants {
        let id = TenantId::parse(&format!("0190a0b1-{i:04x}-7000-8000-{i:012x}"))
            .unwrap_or_else(|_| unreachable!());
        ids.push(TenantIdentifiers {
            tenant: id.clone(),
            names: vec![format!("customer-{i:06}"), format!("Customer Company {i}")],
            exact: vec![id.to_string()],
        });
        canaries.push((id, format!("tgc_{i:032x}")));
    }
    let scanner = Scanner::new(ids, &canaries);
    let build = started.elapsed();
    let me =
        TenantId::parse("0190a0b1-0000-7000-8000-000000000000").unwrap_or_else(|_| unreachable!());
    let policy = Policy::default();

    // Ordinary prose with a few numbers, no findings: the common case.
    let para = "The quarterly report shows revenue growth of 12 percent, driven by the new enterprise plan. \
                Support tickets fell while onboarding time improved; the roadmap adds regional hosting next year. ";
    let clean: String = para.repeat(1 + (1 << 20) / para.len());
    let t = Instant::now();
    let mut rounds = 0;
    while t.elapsed().as_secs_f64() < 2.0 {
        assert!(scanner
            .scan(&me, &clean, Direction::Outbound, &policy)
            .is_empty());
        rounds += 1;
    }
    let mbs = (clean.len() * rounds) as f64 / t.elapsed().as_secs_f64() / (1024.0 * 1024.0);

    let dirty = format!(
        "{}{} and sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123 {}",
        &clean[..4096],
        canaries[4321].1,
        &clean[..4096]
    );
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed().as_secs_f64() < 1.0 {
        assert_eq!(
            scanner
                .scan(&me, &dirty, Direction::Outbound, &policy)
                .len(),
            2
        );
        n += 1;
    }
    let dirty_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;

    let prompt = &clean[..2048];
    let answer = &clean[..4096];
    let t = Instant::now();
    let calls = 20_000;
    for _ in 0..calls {
        scanner.scan(&me, prompt, Direction::Inbound, &policy);
        scanner.scan(&me, answer, Direction::Outbound, &policy);
    }
    let per_call_us = t.elapsed().as_secs_f64() * 1e6 / calls as f64;

    use tenantgate_guard::Action;
    let only = |p: Policy| {
        let t = Instant::now();
        let mut r = 0;
        while t.elapsed().as_secs_f64() < 1.0 {
            scanner.scan(&me, &clean, Direction::Outbound, &p);
            r += 1;
        }
        (clean.len() * r) as f64 / t.elapsed().as_secs_f64() / (1024.0 * 1024.0)
    };
    let none = Policy {
        cross_tenant: Action::Off,
        canary: Action::Off,
        secrets: Action::Off,
        pii: Action::Off,
        injection: Action::Off,
        webhook_url: None,
    };
    let ids = only(Policy {
        cross_tenant: Action::Block,
        ..none.clone()
    });
    let secrets = only(Policy {
        secrets: Action::Redact,
        ..none.clone()
    });
    let pii = only(Policy {
        pii: Action::Flag,
        ..none.clone()
    });
    println!("leak guard: {tenants} tenants ({} patterns incl. ids, names, canaries), built in {} ms, automaton {} MiB, stream window {} bytes", tenants * 4, build.as_millis(), scanner.memory_usage() / (1024 * 1024), scanner.window());
    println!("  clean text        {mbs:.0} MB/s (identifiers alone {ids:.0}, secrets alone {secrets:.0}, PII alone {pii:.0})");
    println!("  8 KiB with 2 hits {dirty_us:.1} us per scan");
    println!("  per call (2 KiB prompt + 4 KiB answer) {per_call_us:.1} us");
}
