//! The audit log end to end: every call's record exists before the caller sees the response
//! (streams: before the terminal event), the call fails closed when the record cannot be
//! written, exports verify offline in both formats, and tampering with the database is caught
//! by verifying an export.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, sse_data, TestGateway};
use serde_json::{json, Value};
use tenantgate_audit::{verify_csv, verify_jsonl};
use tenantgate_core::{Tenant, TenantScope};
use tenantgate_store::audit::AuditFilter;
use tenantgate_store::Db;

#[expect(
    clippy::disallowed_methods,
    reason = "the test reads the store as the tenant, standing in for the authentication stage"
)]
fn scope(t: &Tenant) -> TenantScope {
    TenantScope::from_verified_credential(t.id.clone())
}

/// The tenant's records straight from the store, oldest first.
async fn records(gw: &TestGateway, t: &Tenant) -> Vec<Value> {
    let s = scope(t);
    let mut rows = gw
        .state
        .store()
        .tenant(&s)
        .audit()
        .query(&AuditFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    rows.reverse();
    rows.iter()
        .map(|r| serde_json::from_str(&r.record).unwrap())
        .collect()
}

fn by_id<'a>(recs: &'a [Value], id: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no record for {id}"))
}

fn rid(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_owned()
}

async fn export(gw: &TestGateway, key: &str, format: &str) -> String {
    let r = gw
        .get(&format!("/tenant/v1/audit/export?format={format}"), key)
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    r.text().await.unwrap()
}

#[tokio::test]
async fn every_call_is_recorded_before_its_response_is_released() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &["gpt-test", "claude-test"], None).await;

    // Plain call: the record exists the moment the response arrives.
    let r = gw
        .post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 200);
    let id = rid(&r);
    let recs = records(&gw, &t).await;
    let rec = by_id(&recs, &id);
    assert_eq!(rec["event"], "api_call");
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["actor"]["user"], "end-user-1");
    assert_eq!(rec["model"]["requested"], "gpt-test");
    assert_eq!(rec["model"]["provider"], "mock-openai");
    assert!(rec["tokens"]["output"].as_u64().unwrap() > 0);
    assert_eq!(rec["client"]["ip"], "127.0.0.1");
    // Default policy: digests, no bodies.
    assert_eq!(rec["prompt"]["mode"], "sha256");
    assert_eq!(rec["prompt"]["sha256"].as_str().unwrap().len(), 64);

    // Streamed call: the record exists before the terminal event is sent. The body is read
    // frame by frame, and the store is checked at the moment `[DONE]` arrives.
    let mut body = json!(chat("claude-test", "stream please"));
    body["stream"] = json!(true);
    let mut resp = gw.post("/v1/chat/completions", &key, &body).await;
    let sid = rid(&resp);
    let mut seen_done = false;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        if String::from_utf8_lossy(&chunk).contains("[DONE]") {
            let recs = records(&gw, &t).await;
            let rec = by_id(&recs, &sid);
            assert_eq!(rec["detail"]["outcome"], "completed");
            assert!(rec["tokens"]["output"].as_u64().unwrap() > 0);
            seen_done = true;
        }
    }
    assert!(seen_done);

    // A denial by policy is recorded as such, with the model asked for.
    let r = gw
        .post("/v1/chat/completions", &key, &chat("gpt-test-other", "x"))
        .await;
    let did = rid(&r);
    assert!(r.status().is_client_error());
    let recs = records(&gw, &t).await;
    let rec = by_id(&recs, &did);
    assert_eq!(
        rec["event"], "api_call",
        "unknown model is a failed call, not a denial"
    );
    let (t2, key2) = gw.tenant("globex", &["gpt-test"], None).await;
    let r = gw
        .post("/v1/chat/completions", &key2, &chat("claude-test", "x"))
        .await;
    // Another tenant's model is recorded exactly like an unknown one (no catalogue oracle).
    assert_eq!(r.status(), 404);
    let recs2 = records(&gw, &t2).await;
    let rec = by_id(&recs2, &rid(&r));
    assert_eq!(rec["event"], "api_call");
    assert_eq!(rec["error"]["code"], "model_not_found");
    // ... and lands in its own tenant's chain only.
    assert!(recs2.iter().all(|r| r["tenant"] == t2.id.as_str()));

    // Unauthenticated calls have no tenant chain to land in.
    let r = gw
        .post("/v1/chat/completions", "tgk_bogus", &chat("gpt-test", "x"))
        .await;
    assert_eq!(r.status(), 401);
    let all = records(&gw, &t).await.len() + records(&gw, &t2).await.len();
    assert_eq!(all, 4);
    gw.stop().await;
}

#[tokio::test]
async fn a_call_whose_record_cannot_be_written_fails_closed_unless_the_tenant_is_fail_open() {
    let gw = TestGateway::start_with(|c| c.audit.write_timeout_ms = 2_000).await;
    let (closed, key_closed) = gw.tenant("acme", &["gpt-test"], None).await;
    let (open, key_open) = gw.tenant("globex", &["gpt-test"], None).await;
    let admin_open = gw.admin_key(&open).await;
    let r = gw
        .http
        .put(format!("{}/tenant/v1/audit-policy", gw.url))
        .bearer_auth(&admin_open)
        .json(&json!({"on_failure": "open"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.wait_for_revision().await;

    // The audit table becomes unwritable (what a full disk or a lost database looks like).
    let Db::Sqlite(pool) = gw.state.store().db() else {
        unreachable!()
    };
    sqlx::query("ALTER TABLE audit_records RENAME TO audit_records_gone")
        .execute(pool)
        .await
        .unwrap();

    let r = gw
        .post("/v1/chat/completions", &key_closed, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("audit"));
    assert!(
        body.to_string().find("mock").is_none(),
        "no model output released: {body}"
    );

    // A stream is cut before its terminal event: the caller gets an error instead of [DONE].
    let mut sreq = chat("gpt-test", "stream");
    sreq["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", &key_closed, &sreq).await;
    let text = r.text().await.unwrap();
    let data = sse_data(&text);
    assert!(!data.iter().any(|d| d == "[DONE]"), "{text}");
    assert!(data.last().unwrap().contains("audit"), "{text}");

    let r = gw
        .post("/v1/chat/completions", &key_open, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 200, "fail-open tenant proceeds");

    let metrics = gw.get("/metrics", "").await.text().await.unwrap();
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tenantgate_audit_write_failures_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 3, "{metrics}");
    let _ = closed;
    gw.stop().await;
}

#[tokio::test]
async fn exports_verify_offline_in_both_formats_with_sealed_bodies() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &["gpt-test", "claude-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let r = gw
        .http
        .put(format!("{}/tenant/v1/audit-policy", gw.url))
        .bearer_auth(&admin)
        .json(&json!({"prompt": "sealed", "response": "sealed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.wait_for_revision().await;
    for i in 0..5 {
        let r = gw
            .post(
                "/v1/chat/completions",
                &key,
                &chat(
                    "gpt-test",
                    &format!("question \"{i}\", with, commas\nand lines"),
                ),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let mut s = chat("claude-test", "streamed question");
    s["stream"] = json!(true);
    let streamed = gw
        .post("/v1/chat/completions", &key, &s)
        .await
        .text()
        .await
        .unwrap();
    let keys = gw.audit_keys(&key).await;

    let jsonl = export(&gw, &admin, "jsonl").await;
    let report = verify_jsonl(&jsonl, Some(&keys)).unwrap();
    assert!(report.records >= 7, "{report:?}");
    assert_eq!(report.bodies_absent, 0);
    assert!(report.keys_pinned);
    // The sealed bodies come back in the export, checked against their digests.
    assert!(jsonl.contains("with, commas"));
    assert!(jsonl.contains(&sse_data(&streamed)[0].replace('"', "\\\"")));

    let csv = export(&gw, &admin, "csv").await;
    let creport = verify_csv(csv.as_bytes(), Some(&keys)).unwrap();
    assert_eq!(
        creport.records,
        report.records + 1,
        "the first export is itself recorded"
    );

    // Members cannot export; the attempt is recorded as a denial.
    let r = gw.get("/tenant/v1/audit/export", &key).await;
    assert_eq!(r.status(), 403);
    let recs = records(&gw, &t).await;
    assert_eq!(recs.last().unwrap()["event"], "access_denied");
    assert_eq!(
        recs.last().unwrap()["detail"]["route"],
        "/tenant/v1/audit/export"
    );
    gw.stop().await;
}

/// Tampering done straight in the database (by someone who can drop the append-only
/// triggers) shows up when the export is verified, at the record that was touched.
#[tokio::test]
async fn database_tampering_is_detected_by_verifying_an_export() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    for _ in 0..6 {
        assert_eq!(
            gw.post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
                .await
                .status(),
            200
        );
    }
    let keys = gw.audit_keys(&key).await;
    // The first export signs the head: records 1-6 are now under a checkpoint.
    verify_jsonl(&export(&gw, &admin, "jsonl").await, Some(&keys)).unwrap();
    let Db::Sqlite(pool) = gw.state.store().db() else {
        unreachable!()
    };
    // The attacker holds the SQLite file, so the row guards are no obstacle to it.
    for trig in [
        "audit_records_no_update",
        "audit_records_delete_checkpointed",
        "audit_records_past_checkpoint",
    ] {
        sqlx::query(&format!("DROP TRIGGER {trig}"))
            .execute(pool)
            .await
            .unwrap();
    }
    let tid = t.id.as_str().to_owned();
    let exec = |sql: &'static str| {
        let tid = tid.clone();
        async move {
            sqlx::query(sql).bind(tid).execute(pool).await.unwrap();
        }
    };
    let snapshot: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, record, hash FROM audit_records WHERE tenant_id = ?1 ORDER BY seq",
    )
    .bind(&tid)
    .fetch_all(pool)
    .await
    .unwrap();
    let restore = || async {
        sqlx::query("DELETE FROM audit_records WHERE tenant_id = ?1 AND seq <= 6")
            .bind(&tid)
            .execute(pool)
            .await
            .unwrap();
        for (seq, rec, hash) in snapshot.iter().filter(|(s, _, _)| *s <= 6) {
            sqlx::query("INSERT INTO audit_records (tenant_id, seq, ts_ms, request_id, event, status, record, hash) VALUES (?1, ?2, 0, '', '', 200, ?3, ?4)")
                .bind(&tid)
                .bind(seq)
                .bind(rec)
                .bind(hash)
                .execute(pool)
                .await
                .unwrap();
        }
    };
    let check = |want_seq: u64, what: &'static str| {
        let keys = keys.clone();
        let gw = &gw;
        let admin = admin.clone();
        async move {
            let text = export(gw, &admin, "jsonl").await;
            let err = verify_jsonl(&text, Some(&keys)).expect_err(what);
            assert_eq!(err.first_bad_seq(), Some(want_seq), "{what}: {err}");
        }
    };
    // Edited: a status rewritten.
    exec("UPDATE audit_records SET record = replace(record, '\"status\":200', '\"status\":500') WHERE tenant_id = ?1 AND seq = 3").await;
    check(3, "edited").await;
    restore().await;
    // Deleted.
    exec("DELETE FROM audit_records WHERE tenant_id = ?1 AND seq = 4").await;
    check(4, "deleted").await;
    restore().await;
    // Reordered: two records' contents swapped.
    exec("UPDATE audit_records SET record = CASE seq WHEN 2 THEN (SELECT record FROM audit_records r WHERE r.tenant_id = audit_records.tenant_id AND r.seq = 5) ELSE (SELECT record FROM audit_records r WHERE r.tenant_id = audit_records.tenant_id AND r.seq = 2) END WHERE tenant_id = ?1 AND seq IN (2, 5)").await;
    check(2, "reordered").await;
    restore().await;
    // Restored: the chain verifies again (the test's own edits undone exactly).
    verify_jsonl(&export(&gw, &admin, "jsonl").await, Some(&keys)).unwrap();
    // Inserted: a fabricated record slipped in at 3, the rest shifted up.
    exec("UPDATE audit_records SET seq = seq + 1000000 WHERE tenant_id = ?1 AND seq >= 3").await;
    exec("UPDATE audit_records SET seq = seq - 999999 WHERE tenant_id = ?1 AND seq >= 1000000")
        .await;
    exec("INSERT INTO audit_records (tenant_id, seq, ts_ms, request_id, event, status, record, hash) SELECT tenant_id, 3, ts_ms, request_id, event, status, replace(record, '\"seq\":2', '\"seq\":3'), hash FROM audit_records WHERE tenant_id = ?1 AND seq = 2").await;
    // The attacker moves the head row too, or the next append would collide.
    exec("UPDATE audit_heads SET seq = seq + 1 WHERE tenant_id = ?1").await;
    // The shift reaches past the last checkpoint (each export is itself recorded), so the
    // gateway refuses to sign or export the chain at all: the signer's continuity check finds
    // the records after its last checkpoint no longer link.
    let r = gw.get("/tenant/v1/audit/export?format=jsonl", &admin).await;
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "audit_chain_broken", "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn tenant_api_changes_and_reads_are_recorded_and_checkpoints_are_signed() {
    let gw = TestGateway::start_with(|c| c.audit.checkpoint_interval_ms = 50).await;
    let (t, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let r = gw
        .http
        .put(format!("{}/tenant/v1/guard-policy", gw.url))
        .bearer_auth(&admin)
        .json(&json!({"pii": "redact"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let change = rid(&r);
    let r = gw.get("/tenant/v1/guard-policy", &key).await;
    assert_eq!(r.status(), 403);
    let denied = rid(&r);
    let recs = records(&gw, &t).await;
    let c = by_id(&recs, &change);
    assert_eq!(c["event"], "configuration_change");
    assert_eq!(c["detail"]["route"], "/tenant/v1/guard-policy");
    assert_eq!(c["actor"]["role"], "tenant_admin");
    assert_eq!(by_id(&recs, &denied)["event"], "access_denied");

    // The writer signs the new head within its interval.
    let s = scope(&t);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let audit = gw.state.store().tenant(&s);
        let (head, _) = audit.audit().head().await.unwrap();
        let (cp, _) = audit.audit().checkpoint_around(head).await.unwrap();
        if cp.is_some_and(|c| c.seq == head) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "head {head} never signed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_the_client_abandons_is_still_recorded() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let words = "word ".repeat(200);
    let mut s = chat(
        "gpt-test",
        &format!("{words} mock:chunks=100 mock:chunk_delay_ms=20"),
    );
    s["stream"] = json!(true);
    let mut resp = gw.post("/v1/chat/completions", &key, &s).await;
    let id = rid(&resp);
    resp.chunk().await.unwrap();
    drop(resp);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let recs = records(&gw, &t).await;
        if let Some(r) = recs.iter().find(|r| r["id"] == id) {
            assert_eq!(r["status"], 499, "{r}");
            assert_eq!(r["detail"]["outcome"], "client_disconnected");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no record for the abandoned stream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    gw.stop().await;
}

/// Issue 14 item 5: every control-plane record carries the status its caller got, and a
/// refused change is not a `configuration_change`; the `status` filter finds them.
#[tokio::test]
async fn control_plane_refusals_are_recorded_with_the_status_the_caller_got() {
    let gw = TestGateway::start().await;
    let (t, member) = gw.tenant("acme", &["*"], None).await;
    let admin = gw.admin_key(&t).await;
    let put = |key: &str, path: &str, body: Value| {
        gw.http
            .put(format!("{}{path}", gw.url))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let mut expect: Vec<(String, u16, &str)> = Vec::new();
    let r = put(&admin, "/tenant/v1/guard-policy", json!({"pii": "redact"}))
        .await
        .unwrap();
    expect.push((rid(&r), 200, "configuration_change"));
    let r = gw.get("/tenant/v1/guard-policy", &member).await;
    expect.push((rid(&r), 403, "access_denied"));
    // The platform API refuses a tenant principal: recorded in its tenant's chain as such.
    let r = gw.get("/admin/v1/tenants", &admin).await;
    expect.push((rid(&r), 403, "access_denied"));
    let r = put(&admin, "/tenant/v1/guard-policy", json!({"pii": "explode"}))
        .await
        .unwrap();
    expect.push((rid(&r), 400, "request_failed"));
    let r = gw
        .get("/tenant/v1/prompts/no-such-prompt/versions/1", &admin)
        .await;
    expect.push((rid(&r), 404, "request_failed"));
    let kb = json!({"name": "docs"});
    let r = gw.post("/tenant/v1/knowledge-bases", &admin, &kb).await;
    expect.push((rid(&r), 201, "configuration_change"));
    let r = gw.post("/tenant/v1/knowledge-bases", &admin, &kb).await;
    expect.push((rid(&r), 409, "request_failed"));

    for (id, status, event) in &expect {
        let page: Value = gw
            .get(&format!("/tenant/v1/audit/records?status={status}"), &admin)
            .await
            .json()
            .await
            .unwrap();
        let found = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| &d["record"])
            .find(|r| r["id"] == *id)
            .unwrap_or_else(|| panic!("{id} not found with ?status={status}: {page}"));
        assert_eq!(found["status"], *status, "{found}");
        assert_eq!(found["event"], *event, "{found}");
    }
    // Only the changes that happened are changes.
    let changes: Value = gw
        .get(
            "/tenant/v1/audit/records?event=configuration_change",
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    for c in changes["data"].as_array().unwrap() {
        let s = c["record"]["status"].as_u64().unwrap();
        assert!(
            (200..300).contains(&s),
            "a refused change recorded as a change: {c}"
        );
    }
    gw.stop().await;
}

/// Issue 14 item 8, shutdown: a call still waiting on the provider when shutdown's grace is
/// over is cut while the audit writer still runs, answered 503 and recorded as `shutdown`
/// with that status (it used to vanish with the process).
#[tokio::test]
async fn a_call_cut_by_shutdown_is_recorded() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let seen = gw
        .mock
        .stats
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    #[expect(
        clippy::disallowed_methods,
        reason = "the test drives the server from outside; its tasks are not server background work"
    )]
    let call = {
        let (http, url, key) = (gw.http.clone(), gw.url.clone(), key.clone());
        tokio::spawn(async move {
            http.post(format!("{url}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&chat("gpt-test", "think for an hour mock:timeout"))
                .send()
                .await
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while gw
        .mock
        .stats
        .requests
        .load(std::sync::atomic::Ordering::Relaxed)
        == seen
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the provider never got the call"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let config = gw.config.clone();
    // Stops within the grace (1 s in the test kit), not when the provider answers.
    let _dir = tokio::time::timeout(std::time::Duration::from_secs(10), gw.stop_keeping_files())
        .await
        .expect("shutdown waited for the provider");
    let r = call.await.unwrap().unwrap();
    assert_eq!(r.status(), 503);
    let id = rid(&r);
    let store = tenantgate_gateway::server::open_store(&config)
        .await
        .unwrap();
    let rows = store
        .tenant(&scope(&t))
        .audit()
        .query(&AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let rec: Value = rows
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.record).unwrap())
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no record for the call cut by shutdown"));
    assert_eq!(rec["status"], 503, "{rec}");
    assert_eq!(rec["detail"]["outcome"], "shutdown", "{rec}");
    store.close().await;
}
