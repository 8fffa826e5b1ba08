//! The Redis limits backend against a real Redis: all-or-nothing reservations, expiry of an
//! unsettled reservation, and settlement that counts a call once, even when it arrives late.
//! Needs `TENANTGATE_TEST_REDIS_URL` (skipped without it).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

#[path = "common/skip.rs"]
mod skip;

use tenantgate_core::TenantId;
use tenantgate_gateway::limits::{Admission, Ask, Counter, LimitSet, LimitsBackend, LimitsConfig};

async fn redis_admission(ttl_secs: u64) -> Option<Admission> {
    let url = skip::backend_url("TENANTGATE_TEST_REDIS_URL")?;
    let cfg = LimitsConfig {
        backend: LimitsBackend::Redis,
        redis_url: Some(url),
        redis_prefix: format!("tgtest:{}:{}:", std::process::id(), uuid_like()),
        reservation_ttl_secs: ttl_secs,
        ..Default::default()
    };
    Some(Admission::start(cfg).await.unwrap())
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn now() -> i64 {
    (uuid_like() / 1_000_000) as i64
}

#[tokio::test]
async fn redis_reservations_are_atomic_expire_and_settle_once() {
    let Some(adm) = redis_admission(1).await else {
        return;
    };
    let t = TenantId::parse("01a206c5-7d5b-7763-abd8-b9ab9f4ec1cf").unwrap();
    let limits = LimitSet {
        concurrent_requests: Some(1),
        monthly_spend_micros: Some(1_000),
        ..Default::default()
    };
    let ask = |rid: &'static str, cost: u64| Ask {
        tenant: &t,
        key: "k",
        user: None,
        request_id: rid,
        limits: &limits,
        tokens: 10,
        prompt_tokens: 5,
        cost,
        now_ms: now(),
    };
    let m = tenantgate_gateway::limits::checks(&limits, "k", None, 0, 0, now())
        .into_iter()
        .find(|c| matches!(c.counter, Counter::MonthlySpend { .. }))
        .unwrap()
        .counter;
    let r1 = adm.reserve(ask("r1", 600)).await.unwrap();
    // The concurrency slot is taken: refused, and the refused call added nothing.
    assert!(adm.reserve(ask("r2", 100)).await.is_err());
    assert_eq!(adm.counter(&t, &m).await.unwrap(), 600);
    // r1 is never settled in time: after the TTL, the next reservation releases it.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r3 = adm.reserve(ask("r3", 300)).await.unwrap();
    assert_eq!(adm.counter(&t, &m).await.unwrap(), 300);
    // r3 settles at its actual 200; a second settle changes nothing.
    adm.settle(&r3, 5, 200).await;
    adm.settle(&r3, 5, 200).await;
    assert_eq!(adm.counter(&t, &m).await.unwrap(), 200);
    // r1's late settle counts its actual 50 once.
    adm.settle(&r1, 5, 50).await;
    adm.settle(&r1, 5, 50).await;
    assert_eq!(adm.counter(&t, &m).await.unwrap(), 250);
}

/// Issue 14 item 13 on Redis: a request counted at the front of a call stays counted (no
/// reservation to settle), a full window refuses the next one, and the call's reservation
/// does not count it again.
#[tokio::test]
async fn redis_request_counts_are_kept_and_not_counted_twice() {
    let Some(adm) = redis_admission(60).await else {
        return;
    };
    let t = TenantId::parse("01a206c5-7d5b-7763-abd8-b9ab9f4ec1cf").unwrap();
    let limits = LimitSet {
        requests_per_minute: Some(2),
        ..Default::default()
    };
    // One clock reading for every step: the minute window cannot roll over mid-test.
    let at = now();
    let rq = tenantgate_gateway::limits::checks(&limits, "k", None, 0, 0, at)
        .into_iter()
        .find(|c| matches!(c.counter, Counter::Requests { .. }))
        .unwrap()
        .counter;
    let c1 = adm
        .count_request(&t, "k", None, &limits, "q1", at)
        .await
        .unwrap();
    assert_eq!(c1.unwrap().tenant_requests, Some(1));
    let ask = Ask {
        tenant: &t,
        key: "k",
        user: None,
        request_id: "q1",
        limits: &limits,
        tokens: 0,
        prompt_tokens: 0,
        cost: 0,
        now_ms: at,
    };
    let r = adm.reserve_counted(ask, c1).await.unwrap();
    assert_eq!(r.rate.remaining_requests, 1);
    assert_eq!(adm.counter(&t, &rq).await.unwrap(), 1, "counted once");
    adm.count_request(&t, "k", None, &limits, "q2", at)
        .await
        .unwrap();
    let refused = adm.count_request(&t, "k", None, &limits, "q3", at).await;
    assert!(
        refused.is_err(),
        "the third request of a 2-per-minute window"
    );
    assert_eq!(adm.counter(&t, &rq).await.unwrap(), 2);
}
