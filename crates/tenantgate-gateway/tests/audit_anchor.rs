//! The audit history cannot be rewritten in the database without detection (the insider's
//! attack done with plain SQL on the SQLite file), and `/readyz` means calls can be written.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, TestGateway};
use serde_json::Value;
use std::time::{Duration, Instant};
use tenantgate_audit::{link, verify_extends, verify_jsonl};
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, TenantScope};
use tenantgate_store::audit::NewAuditRecord;
use tenantgate_store::{Db, Store, StoreOptions};

async fn max_checkpoint(pool: &sqlx::SqlitePool, tid: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints WHERE tenant_id = ?1")
        .bind(tid)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The attack from issue 14: rewrite records from seq N with recomputed hashes, remove the
/// checkpoints from N, move the head. With the triggers in place the forging steps are refused;
/// the file's owner can drop triggers, and then the signer is what stops it: the running
/// gateway and a restarted one refuse to sign the rewritten head, count and report the break,
/// and an export the old code would have signed fails `verify --since` the earlier export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_rewritten_in_the_database_is_never_signed() {
    let gw = TestGateway::start_with(|c| c.audit.checkpoint_interval_ms = 50).await;
    let (t, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    for _ in 0..6 {
        let r = gw
            .post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
            .await;
        assert_eq!(r.status(), 200);
    }
    let keys = gw.audit_keys(&key).await;
    let r = gw.get("/tenant/v1/audit/export", &admin).await;
    assert_eq!(r.status(), 200);
    let old_text = r.text().await.unwrap();
    let old = verify_jsonl(&old_text, Some(&keys)).unwrap();
    let Db::Sqlite(pool) = gw.state.store().db() else {
        unreachable!()
    };
    let tid = t.id.as_str().to_owned();
    // The export's own record gets signed by the writer's next tick.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let head: i64 = sqlx::query_scalar("SELECT seq FROM audit_heads WHERE tenant_id = ?1")
            .bind(&tid)
            .fetch_one(pool)
            .await
            .unwrap();
        if max_checkpoint(pool, &tid).await == Some(head) {
            break;
        }
        assert!(Instant::now() < deadline, "head never signed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signed_before = max_checkpoint(pool, &tid).await.unwrap();

    // With the triggers in place: the fake checkpoint that lifted the delete guard, and
    // deleting checkpoints, are refused.
    let fake = sqlx::query(
        "INSERT INTO audit_checkpoints (tenant_id, seq, hash, ts_ms, key_id, sig) \
         VALUES (?1, 1000000, zeroblob(32), 0, 'k', 's')",
    )
    .bind(&tid)
    .execute(pool)
    .await;
    assert!(fake.is_err(), "a checkpoint past the head was stored");
    let del = sqlx::query("DELETE FROM audit_checkpoints WHERE tenant_id = ?1 AND seq >= 3")
        .bind(&tid)
        .execute(pool)
        .await;
    assert!(del.is_err(), "checkpoints were deleted");

    // Whoever holds the file can drop the triggers; the rewrite then goes through.
    for trig in [
        "audit_records_no_update",
        "audit_records_delete_checkpointed",
        "audit_records_past_checkpoint",
        "audit_checkpoints_same_again",
        "audit_checkpoints_in_order",
        "audit_checkpoints_on_chain",
        "audit_checkpoints_no_delete",
    ] {
        sqlx::query(&format!("DROP TRIGGER {trig}"))
            .execute(pool)
            .await
            .unwrap();
    }
    let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, record, hash FROM audit_records WHERE tenant_id = ?1 ORDER BY seq",
    )
    .bind(&tid)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut prev: [u8; 32] = rows[1].2.clone().try_into().unwrap();
    sqlx::query("DELETE FROM audit_records WHERE tenant_id = ?1 AND seq >= 3")
        .bind(&tid)
        .execute(pool)
        .await
        .unwrap();
    for (seq, rec, _) in rows.iter().filter(|r| r.0 >= 3) {
        let forged = rec.replace("\"status\":200", "\"status\":500");
        prev = link(&prev, forged.as_bytes());
        sqlx::query(
            "INSERT INTO audit_records (tenant_id, seq, ts_ms, request_id, event, status, record, hash) \
             VALUES (?1, ?2, 0, '', '', 500, ?3, ?4)",
        )
        .bind(&tid)
        .bind(seq)
        .bind(&forged)
        .bind(prev.to_vec())
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query("DELETE FROM audit_checkpoints WHERE tenant_id = ?1 AND seq >= 3")
        .bind(&tid)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_heads SET hash = ?2 WHERE tenant_id = ?1")
        .bind(&tid)
        .bind(prev.to_vec())
        .execute(pool)
        .await
        .unwrap();
    let rewritten_head = rows.last().unwrap().0;

    // (a) A new call lands on the rewritten head; the signer refuses it and counts the break.
    let r = gw
        .post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.metric("tenantgate_audit_chain_breaks_total").await == 0 {
        assert!(Instant::now() < deadline, "the break was never detected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        max_checkpoint(pool, &tid).await.unwrap_or(0) < 3,
        "a checkpoint was signed over the rewritten history"
    );
    // (b) The tenant's export reports it instead of signing the rewritten head.
    let r = gw.get("/tenant/v1/audit/export", &admin).await;
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "audit_chain_broken", "{body}");
    // The witness, outside the database, still holds the head signed before the rewrite.
    let witness =
        tenantgate_gateway::audit::anchor::read_witness(&gw.config.audit.witness_dir).unwrap();
    assert!(witness
        .iter()
        .any(|c| c.tenant == tid && c.seq as i64 == signed_before));

    // (c) What the old code did at the next start or export: sign the head it found. That
    // export verifies on its own, but not as an extension of the earlier one.
    let seed = tenantgate_crypto::load_or_create_key(
        &gw.config.audit.signing_key_file,
        "TENANTGATE_AUDIT_SIGNING_KEY_UNUSED_IN_TEST",
        "audit.signing_key_file",
    )
    .unwrap();
    let signer = tenantgate_audit::Signer::from_seed(seed.bytes());
    let forged = sqlx::query_as::<_, (String, Vec<u8>)>(
        "SELECT record, hash FROM audit_records WHERE tenant_id = ?1 AND seq <= ?2 ORDER BY seq",
    )
    .bind(&tid)
    .bind(rewritten_head)
    .fetch_all(pool)
    .await
    .unwrap();
    let records = forged
        .iter()
        .map(|(r, h)| tenantgate_audit::ExportRecord {
            hash: hex::encode(h),
            record: serde_json::from_str(r).unwrap(),
            prompt: None,
            response: None,
        })
        .collect();
    let head_hash: [u8; 32] = forged.last().unwrap().1.clone().try_into().unwrap();
    let cp = signer.checkpoint(&tid, rewritten_head as u64, &head_hash, 1);
    let lines = tenantgate_audit::assemble(
        &tid,
        tenantgate_audit::Window {
            from_ms: 0,
            to_ms: i64::MAX,
        },
        tenantgate_audit::Anchor {
            seq: 0,
            hash: hex::encode(tenantgate_audit::GENESIS),
        },
        records,
        vec![cp],
        &signer,
        2,
    );
    let new = verify_jsonl(&tenantgate_audit::jsonl(&lines), Some(&keys)).unwrap();
    let err = verify_extends(&new, &old).unwrap_err();
    assert_eq!(err.first_bad_seq(), Some(3), "{err}");

    // A restarted gateway (empty memory, same witness) refuses too, at start.
    let gw = gw.restart().await;
    let r = gw.get("/tenant/v1/audit/export", &admin).await;
    assert_eq!(r.status(), 500);
    assert_eq!(gw.metric("tenantgate_audit_chain_breaks_total").await, 1);
    let Db::Sqlite(pool) = gw.state.store().db() else {
        unreachable!()
    };
    assert!(max_checkpoint(pool, &tid).await.unwrap_or(0) < 3);
    gw.stop().await;
}

#[expect(
    clippy::disallowed_methods,
    reason = "the test writes each new tenant's first record as the CLI does"
)]
fn scope(id: &tenantgate_core::TenantId) -> TenantScope {
    TenantScope::from_verified_credential(id.clone())
}

/// Thousands of tenants created while the gateway was down leave unsigned heads. `/readyz`
/// answers 200 only once the writer takes records (their heads signed, in batches), and no
/// call after that fails for want of the audit writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_means_calls_can_be_written_after_thousands_of_new_tenants() {
    const TENANTS: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("pre.db").display());
    let mut opts = StoreOptions::new(url.clone());
    opts.sqlite_fsync_each_commit = false;
    let store = Store::open(&opts).await.unwrap();
    let admin = TestGateway::admin();
    let p = store.platform(&admin);
    let mut ids = Vec::with_capacity(TENANTS);
    for i in 0..TENANTS {
        let t = p
            .create_tenant(&NewTenant {
                slug: format!("t{i}"),
                display_name: format!("t{i}"),
                plan: PlanTier::Pro,
                isolation: IsolationTier::Namespace,
                allowed_models: vec!["gpt-test".into()],
                max_tokens_per_request: None,
            })
            .await
            .unwrap();
        ids.push(scope(&t.id));
    }
    let rec = |id: &str| NewAuditRecord {
        record: tenantgate_audit::Record {
            v: 1,
            tenant: String::new(),
            seq: 0,
            ts_ms: 1,
            id: id.into(),
            event: tenantgate_audit::EventType::ConfigurationChange,
            actor: tenantgate_audit::Actor {
                kind: "operator".into(),
                key_id: None,
                user: None,
                role: None,
            },
            model: None,
            prompt: None,
            response: None,
            tool_calls: vec![],
            tokens: None,
            cost_micros: None,
            latency_ms: None,
            status: 200,
            error: None,
            client: None,
            detail: serde_json::json!({"action": "tenant.create"}),
        },
        prompt_sealed: None,
        response_sealed: None,
    };
    let entries: Vec<Vec<NewAuditRecord>> = ids
        .iter()
        .map(|s| vec![rec(s.tenant_id().as_str())])
        .collect();
    for chunk in ids.iter().zip(&entries).collect::<Vec<_>>().chunks(500) {
        let groups: Vec<(&TenantScope, &[NewAuditRecord])> =
            chunk.iter().map(|(s, e)| (*s, e.as_slice())).collect();
        store.audit_append(&groups).await.unwrap();
    }
    store.close().await;

    let started = Instant::now();
    let gw = TestGateway::start_with(|c| {
        c.database.url = url.clone();
        // Short enough that calls queued behind thousands of start-up signatures would fail,
        // long enough for a durable write on a disk still flushing a fresh build (a second
        // was seen to be too short there: every fsync stalled). That readiness waits for the
        // start-up signing is asserted directly below, from the checkpoint count.
        c.audit.write_timeout_ms = 5_000;
    })
    .await;
    let (_, key) = gw.tenant("caller", &["gpt-test"], None).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = gw
            .http
            .get(format!("{}/readyz", gw.url))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready_after = started.elapsed();
    // Ready: every head left unsigned at start is signed.
    assert!(gw.metric("tenantgate_audit_checkpoints_total").await >= TENANTS as u64);
    let calls = (0..32).map(|_| {
        let gw = &gw;
        let key = key.clone();
        async move {
            gw.post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
                .await
                .status()
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "calls failed after ready: {statuses:?}"
    );
    eprintln!(
        "{TENANTS} unsigned heads: ready after {:.2} s",
        ready_after.as_secs_f64()
    );
    gw.stop().await;
}

/// The per-tenant witness: a tenant whose guard policy names a webhook receives each signed
/// checkpoint of its chain, verifiable with the gateway's public key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_checkpoints_reach_the_tenants_webhook() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let collector = axum::Router::new().route(
        "/witness",
        axum::routing::post(move |body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    #[expect(
        clippy::disallowed_methods,
        reason = "the test drives the server from outside; its tasks are not server background work"
    )]
    tokio::spawn(async move { axum::serve(listener, collector).await });
    let gw = TestGateway::start_with(|c| {
        c.guard.allow_http_webhooks = true;
        c.audit.checkpoint_interval_ms = 50;
    })
    .await;
    let (t, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let r = gw
        .http
        .put(format!("{}/tenant/v1/guard-policy", gw.url))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"webhook_url": format!("http://{addr}/witness")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.wait_for_revision().await;
    let r = gw
        .post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 200);
    let keys = gw.audit_keys(&key).await;
    let body = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a checkpoint delivered within 5 s")
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "tenantgate.checkpoint");
    let cp: tenantgate_audit::Checkpoint = serde_json::from_value(v["checkpoint"].clone()).unwrap();
    assert_eq!(cp.tenant, t.id.as_str());
    keys[0].verify(&cp.message(), &cp.sig).unwrap();
    gw.stop().await;
}

/// Replicas append to one tenant's chain and each signs the heads it appended: a checkpoint
/// another replica already stored past such a head covers it. Neither may read that as a
/// break (a break refuses every later checkpoint and every export of the tenant).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_signing_one_chain_see_no_break() {
    // A ticks slowly, B fast: B's checkpoint lands past A's head before A's tick signs it.
    let a = TestGateway::start_with(|c| c.audit.checkpoint_interval_ms = 200).await;
    let shared = a.config.clone();
    let b = TestGateway::start_with(move |r| {
        r.database.url = shared.database.url.clone();
        r.server.secret_file = shared.server.secret_file.clone();
        r.encryption.master_key_file = shared.encryption.master_key_file.clone();
        r.audit.signing_key_file = shared.audit.signing_key_file.clone();
        r.audit.checkpoint_interval_ms = 10;
    })
    .await;
    let (t, key) = a.tenant("acme", &["gpt-test"], None).await;
    let admin = a.admin_key(&t).await;
    b.wait_for_revision().await;
    let body = chat("gpt-test", "hi");
    for _ in 0..3 {
        let r = a.post("/v1/chat/completions", &key, &body).await;
        assert_eq!(r.status(), 200);
        let signed = b.metric("tenantgate_audit_checkpoints_total").await;
        let r = b.post("/v1/chat/completions", &key, &body).await;
        assert_eq!(r.status(), 200);
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.metric("tenantgate_audit_checkpoints_total").await == signed {
            assert!(Instant::now() < deadline, "B never signed its head");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A's tick is not observable when it signs nothing new: let two of them pass.
        tokio::time::sleep(Duration::from_millis(450)).await;
    }
    for gw in [&a, &b] {
        assert_eq!(gw.metric("tenantgate_audit_chain_breaks_total").await, 0);
        assert_eq!(
            gw.get("/tenant/v1/audit/export", &admin).await.status(),
            200
        );
    }
    b.stop().await;
    a.stop().await;
}
