//! One-call onboarding (issue 18): `POST /admin/v1/tenants` makes a complete, working tenant
//! (storage, key, limits, default prompt, knowledge space, first credential, audit) or nothing.
//! Faults are real: a trigger that makes the database refuse one step's rows, a KMS that
//! cannot be reached, an index directory that is a file, an audit table that refuses the
//! tenant's chain. After each, nothing of the tenant is left in any table, file or directory,
//! and a retry with the same idempotency key onboards it.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::idp::{self, Idp};
use common::{chat, TestGateway};
use serde_json::{json, Value};
use sqlx::sqlite::SqlitePool;
use sqlx::Row;

const TEMPLATE: &str = "You are the onboarding-template assistant (marker T-55Q).";

/// A gateway with a platform IdP (the operator's token) and a second issuer bound to the
/// tenant `acme` (its invited admin signs in there).
async fn gateway(
    tweak: impl FnOnce(&mut tenantgate_gateway::Config) + Send + 'static,
) -> (TestGateway, Idp, Idp, String) {
    let platform = Idp::start(&["rsa1"]).await;
    let acme_idp = Idp::start(&["rsa2"]).await;
    let mut p = platform.config();
    p.platform_admins = true;
    let mut a = acme_idp.config();
    a.tenant = Some("acme".into());
    let gw = TestGateway::start_with(move |c| {
        c.auth.oidc = vec![p, a];
        c.lifecycle
            .prompt_templates
            .insert("support".into(), TEMPLATE.into());
        tweak(c);
    })
    .await;
    let token = idp::mint("rsa1", &platform.claims("ops", None, &["platform_admin"]));
    (gw, platform, acme_idp, token)
}

async fn onboard(
    gw: &TestGateway,
    token: &str,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut r = gw
        .http
        .post(format!("{}/admin/v1/tenants", gw.url))
        .bearer_auth(token)
        .json(body);
    if let Some(k) = key {
        r = r.header("idempotency-key", k);
    }
    r.send().await.unwrap()
}

fn full_spec(acme_issuer: &str) -> Value {
    json!({
        "slug": "acme", "display_name": "Acme Corp", "plan": "pro",
        "allowed_models": ["gpt-test"], "max_tokens_per_request": 300,
        "limits": {"monthly_spend_micros": 5_000_000, "requests_per_minute": 50},
        "prompt": {"template": "support"},
        "admin_key": true,
        "admin_invite": {"issuer": acme_issuer, "subject": "alice@acme.example"},
    })
}

async fn db(gw: &TestGateway) -> SqlitePool {
    SqlitePool::connect(&gw.config.database.url).await.unwrap()
}

/// Every table of the shared database with a `tenant_id` column.
async fn tenant_tables(pool: &SqlitePool) -> Vec<String> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(pool)
            .await
            .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let cols: Vec<String> = sqlx::query(&format!("PRAGMA table_info({t})"))
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
        if cols.iter().any(|c| c == "tenant_id") {
            out.push(t);
        }
    }
    out
}

/// Nothing of any tenant but `live` (and the platform chain) is anywhere: no row in any
/// table, no tenant file, no index directory.
async fn assert_nothing_but(gw: &TestGateway, live: &[String], what: &str) {
    let pool = db(gw).await;
    let slugs: Vec<String> = sqlx::query_scalar("SELECT slug FROM tenants")
        .fetch_all(&pool)
        .await
        .unwrap();
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM tenants")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(ids.len(), live.len(), "{what}: tenants {slugs:?}");
    for t in tenant_tables(&pool).await {
        let owners: Vec<String> =
            sqlx::query_scalar(&format!("SELECT DISTINCT tenant_id FROM {t}"))
                .fetch_all(&pool)
                .await
                .unwrap();
        for o in owners {
            assert!(
                o == "platform" || live.contains(&o),
                "{what}: a row of tenant {o} is left in {t}"
            );
        }
    }
    pool.close().await;
    let files = gw.dir.path().join("tenants");
    if let Ok(rd) = std::fs::read_dir(&files) {
        let left: Vec<_> = rd.map(|e| e.unwrap().file_name()).collect();
        assert!(
            left.iter().all(|f| live
                .iter()
                .any(|l| f.to_string_lossy().contains(l.as_str()))),
            "{what}: tenant files left: {left:?}"
        );
    }
    if let Ok(rd) = std::fs::read_dir(&gw.config.rag.index_dir) {
        let left: Vec<String> = rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            left.iter().all(|f| live.contains(f)),
            "{what}: index directories left: {left:?}"
        );
    }
}

/// The platform chain's records, as JSON.
async fn platform_chain(gw: &TestGateway) -> Vec<Value> {
    let pool = db(gw).await;
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT record FROM audit_records WHERE tenant_id = 'platform' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_makes_a_complete_working_tenant() {
    let (gw, _platform, acme_idp, token) = gateway(|_| {}).await;
    let r = onboard(&gw, &token, None, &full_spec(&acme_idp.config().issuer)).await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let id = body["tenant"]["id"].as_str().unwrap().to_owned();
    let key = body["admin_key"]["key"].as_str().unwrap().to_owned();
    let steps: Vec<&str> = body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "storage",
            "key",
            "limits",
            "prompt",
            "knowledge_space",
            "credential"
        ],
        "the body lists the steps made before it was sealed"
    );
    assert!(
        !body["steps"].to_string().contains(&key),
        "no secret in the steps"
    );
    gw.wait_for_revision().await;

    // The key works, within the allow-list, and the default prompt came from the template.
    let r = gw
        .post("/v1/chat/completions", &key, &chat("gpt-test", "hello"))
        .await;
    assert_eq!(r.status(), 200);
    let sent = gw.mock.stats.last_request().unwrap();
    assert!(
        sent.body.to_string().contains("marker T-55Q"),
        "{}",
        sent.body
    );
    let r = gw
        .post("/v1/chat/completions", &key, &chat("claude-test", "hi"))
        .await;
    assert_eq!(r.status(), 404, "outside the allow-list");
    // Limits and budget as asked, over the plan's.
    let limits: Value = gw
        .get("/tenant/v1/limits", &key)
        .await
        .json()
        .await
        .unwrap();
    let text = limits.to_string();
    assert!(
        text.contains("5000000") && text.contains("\"pro\""),
        "{text}"
    );
    // The knowledge space exists, owner-only.
    let space = gw.config.rag.index_dir.join(&id);
    assert!(space.is_dir());
    // The invited admin signs in at the tenant's own issuer and is a tenant admin.
    let alice = idp::mint("rsa2", &acme_idp.claims("alice@acme.example", None, &[]));
    let r = gw.get("/tenant/v1/members", &alice).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let bob = idp::mint("rsa2", &acme_idp.claims("bob@acme.example", None, &[]));
    assert_eq!(
        gw.get("/tenant/v1/members", &bob).await.status(),
        403,
        "not invited: a member"
    );
    // Recorded: the tenant's chain opens with the onboarding; the platform's names it by id.
    let pool = db(&gw).await;
    let first: String = sqlx::query_scalar(
        "SELECT record FROM audit_records WHERE tenant_id = $1 ORDER BY seq LIMIT 1",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(first.contains("tenant.onboard"), "{first}");
    let platform = platform_chain(&gw).await;
    let rec = platform
        .iter()
        .find(|r| r["detail"]["action"] == "tenant.onboard")
        .unwrap();
    assert_eq!(rec["detail"]["tenant"], id.as_str());
    let text = rec.to_string();
    assert!(!text.contains("acme") && !text.contains("Acme"), "{text}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_idempotency_key_returns_the_first_result() {
    let (gw, _p, acme_idp, token) = gateway(|_| {}).await;
    let spec = full_spec(&acme_idp.config().issuer);
    let r1 = onboard(&gw, &token, Some("req-1"), &spec).await;
    assert_eq!(r1.status(), 201);
    assert!(r1.headers().get("idempotent-replayed").is_none());
    let b1: Value = r1.json().await.unwrap();
    let r2 = onboard(&gw, &token, Some("req-1"), &spec).await;
    assert_eq!(r2.status(), 201);
    assert_eq!(r2.headers()["idempotent-replayed"], "true");
    let b2: Value = r2.json().await.unwrap();
    assert_eq!(b1["tenant"]["id"], b2["tenant"]["id"]);
    assert_eq!(
        b1["admin_key"]["key"], b2["admin_key"]["key"],
        "the key shown once, replayed"
    );
    // The same key for another request is refused; without a key the slug is taken.
    let mut other = spec.clone();
    other["plan"] = json!("enterprise");
    let r = onboard(&gw, &token, Some("req-1"), &other).await;
    assert_eq!(r.status(), 409);
    let r = onboard(&gw, &token, None, &spec).await;
    assert_eq!(r.status(), 409);
    let r = onboard(&gw, &token, Some(&"k".repeat(300)), &spec).await;
    assert_eq!(r.status(), 400);
    let id = b1["tenant"]["id"].as_str().unwrap().to_owned();
    assert_nothing_but(&gw, &[id], "after replays and refusals").await;
    gw.stop().await;
}

/// How one fault is made and unmade.
enum Fault {
    /// The database refuses this statement on this table.
    Trigger(&'static str, &'static str, &'static str),
    /// The tenant's KMS cannot be reached.
    Kms,
    /// The index directory is a file.
    IndexDir,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_at_every_step_leaves_no_partial_tenant() {
    // The invitation's issuer names tenants by claim here, so each fault onboards its own
    // slug and the tenants the retries made stay beside the next fault.
    let (gw, _p, acme_idp, token) = gateway(|c| {
        c.audit.write_timeout_ms = 2_000;
        c.auth.oidc[1].tenant = None;
    })
    .await;
    let mut live: Vec<String> = Vec::new();
    let issuer = acme_idp.config().issuer;
    let faults = [
        ("storage", Fault::Trigger("tenants", "INSERT", "1")),
        (
            "storage (schema tier)",
            Fault::Trigger("tenant_placement", "INSERT", "1"),
        ),
        ("key", Fault::Trigger("tenant_keks", "INSERT", "1")),
        ("key (tenant KMS)", Fault::Kms),
        ("limits", Fault::Trigger("tenant_limits", "INSERT", "1")),
        ("prompt", Fault::Trigger("prompt_versions", "INSERT", "1")),
        (
            "prompt settings",
            Fault::Trigger("tenant_prompt_settings", "INSERT", "1"),
        ),
        ("knowledge space", Fault::IndexDir),
        (
            "credential (key)",
            Fault::Trigger("api_keys", "INSERT", "1"),
        ),
        (
            "credential (invite)",
            Fault::Trigger("tenant_members", "INSERT", "1"),
        ),
        (
            "result",
            Fault::Trigger("onboarding_requests", "UPDATE", "NEW.state = 'done'"),
        ),
        (
            "audit (tenant chain)",
            Fault::Trigger("audit_records", "INSERT", "NEW.tenant_id <> 'platform'"),
        ),
    ];
    let pool = db(&gw).await;
    for (i, (what, fault)) in faults.iter().enumerate() {
        let mut spec = full_spec(&issuer);
        spec["slug"] = json!(format!("t{i}"));
        if what.contains("schema tier") {
            spec["isolation"] = json!("schema");
        }
        if let Fault::Kms = fault {
            spec["kms"] = json!({"aws_key_id": "arn:aws:kms:us-east-1:111122223333:key/none",
                "region": "us-east-1", "endpoint": "http://127.0.0.1:9"});
        }
        match fault {
            Fault::Trigger(table, op, when) => {
                sqlx::query(&format!(
                    "CREATE TRIGGER fault_{i} BEFORE {op} ON {table} WHEN {when} \
                     BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
                ))
                .execute(&pool)
                .await
                .unwrap();
            }
            Fault::IndexDir => {
                std::fs::create_dir_all(&gw.config.rag.index_dir).unwrap();
                std::fs::remove_dir_all(&gw.config.rag.index_dir).unwrap();
                std::fs::write(&gw.config.rag.index_dir, b"not a directory").unwrap();
            }
            Fault::Kms => {}
        }
        let key = format!("fault-{i}");
        let r = onboard(&gw, &token, Some(&key), &spec).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 503, "{what}: {text}");
        assert_nothing_but(&gw, &live, what).await;
        // Unmade, the same request onboards the tenant (the KMS fault: onboarded on the
        // platform key instead, a different request, so under another key).
        match fault {
            Fault::Trigger(..) => {
                sqlx::query(&format!("DROP TRIGGER fault_{i}"))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            Fault::IndexDir => std::fs::remove_file(&gw.config.rag.index_dir).unwrap(),
            Fault::Kms => {
                spec.as_object_mut().unwrap().remove("kms");
            }
        }
        let key = if matches!(fault, Fault::Kms) {
            format!("{key}-b")
        } else {
            key
        };
        let r = onboard(&gw, &token, Some(&key), &spec).await;
        assert_eq!(r.status(), 201, "{what}: the retry after the fault");
        let b: Value = r.json().await.unwrap();
        live.push(b["tenant"]["id"].as_str().unwrap().to_owned());
        assert_nothing_but(&gw, &live, what).await;
    }
    // Every failure is in the platform chain, by tenant id and step.
    let undone: Vec<Value> = platform_chain(&gw)
        .await
        .into_iter()
        .filter(|r| r["detail"]["action"] == "tenant.onboard.undone")
        .collect();
    assert!(undone.len() >= faults.len() - 1, "{undone:?}");
    pool.close().await;
    gw.stop().await;
}

/// A process that died mid-onboarding left a claim `running`, a tenant row, its storage and
/// its key: once the claim is stale, the server's sweep undoes it all (and only it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_undoes_an_onboarding_whose_process_died() {
    let (gw, _p, acme_idp, token) = gateway(|c| c.lifecycle.onboarding_stale_secs = 10).await;
    let r = onboard(&gw, &token, None, &full_spec(&acme_idp.config().issuer)).await;
    assert_eq!(r.status(), 201);
    let kept: Value = r.json().await.unwrap();
    let kept = kept["tenant"]["id"].as_str().unwrap().to_owned();
    // What the dead process had made: the claim, the tenant on its own file, its key.
    let admin = TestGateway::admin();
    let p = gw.state.store().platform(&admin);
    let id = tenantgate_store::new_tenant_id();
    let claim = p
        .onboarding_claim("key:dead", "sha", &id, 10_000)
        .await
        .unwrap();
    assert_eq!(
        claim,
        tenantgate_store::onboarding::Claim::New { discard: None }
    );
    let mut new = tenantgate_core::NewTenant {
        slug: "half".into(),
        display_name: "half".into(),
        plan: tenantgate_core::PlanTier::Free,
        isolation: tenantgate_core::IsolationTier::Schema,
        allowed_models: vec![],
        max_tokens_per_request: None,
    };
    p.create_tenant_as(id.clone(), &new, None).await.unwrap();
    gw.state.keyring().rotate(&admin, &id).await.unwrap();
    // Not stale yet: the sweep leaves it alone.
    assert_eq!(
        tenantgate_gateway::server::onboarding_sweep(&gw.state)
            .await
            .unwrap(),
        0
    );
    let pool = db(&gw).await;
    sqlx::query("UPDATE onboarding_requests SET updated_at_ms = updated_at_ms - 60000 WHERE idempotency_key = 'key:dead'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(
        tenantgate_gateway::server::onboarding_sweep(&gw.state)
            .await
            .unwrap(),
        1
    );
    assert_nothing_but(&gw, &[kept], "after the sweep").await;
    // The slug is free again.
    new.isolation = tenantgate_core::IsolationTier::Namespace;
    p.create_tenant(&new).await.unwrap();
    gw.stop().await;
}
