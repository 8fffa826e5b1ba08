//! Offboarding (`lifecycle::offboard`): the pending-deletion window, finalization, and the
//! deletion certificate; and, the "done when", nothing of an offboarded tenant left
//! in any file of the deployment (database files, index directory, witness, logs).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, TestGateway};
use serde_json::{json, Value};
use sha2::Digest;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, Role, Tenant, TenantStatus};
use tenantgate_gateway::control::{create_key, AuditSink, KeySpec};
use tenantgate_gateway::lifecycle::offboard;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn sink(gw: &TestGateway) -> AuditSink<'_> {
    AuditSink::Writer(gw.state.audit_log())
}

async fn maintenance(gw: &TestGateway) -> tenantgate_store::Store {
    tenantgate_gateway::server::open_maintenance_store(&gw.config, gw.state.store())
        .await
        .unwrap()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The markers found in any file under `dir` or in `logs`: (marker, where).
fn leaks(dir: &Path, logs: &[u8], markers: &[String]) -> Vec<(String, String)> {
    let mut all = Vec::new();
    files(dir, &mut all);
    let mut found = Vec::new();
    for f in &all {
        let bytes = std::fs::read(f).unwrap_or_default();
        for m in markers {
            if find(&bytes, m.as_bytes()) {
                found.push((m.clone(), f.display().to_string()));
            }
        }
    }
    for m in markers {
        if find(logs, m.as_bytes()) {
            found.push((m.clone(), "logs".into()));
        }
    }
    found
}

/// A tenant with a marker in everything it can write: key name and end user, prompt name
/// and text (and so author and template digest), knowledge base, document name and content,
/// a member subject, a chat with its user agent and user; returns the markers.
async fn populate(gw: &TestGateway, t: &Tenant, tag: &str) -> Vec<String> {
    let m = |what: &str| format!("MK{tag}{what}QZ");
    let admin = TestGateway::admin();
    let (_, key) = create_key(
        gw.state.store(),
        &admin,
        &gw.secret(),
        &t.id,
        KeySpec {
            role: Role::TenantAdmin,
            name: Some(m("keyname")),
            end_user: Some(m("enduser")),
            expires_at_ms: None,
        },
    )
    .await
    .unwrap();
    gw.wait_for_revision().await;
    let template = format!("You help {} with parcels.", m("prompttext"));
    let r = gw
        .post(
            &format!("/tenant/v1/prompts/{}/versions", m("promptname")),
            &key,
            &json!({"template": template, "activate": true}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let s: Value = gw
        .get("/tenant/v1/prompt-settings", &key)
        .await
        .json()
        .await
        .unwrap();
    let canary = s["canary"].as_str().unwrap().to_owned();
    let r = gw
        .post(
            "/tenant/v1/knowledge-bases",
            &key,
            &json!({"name": m("kb"), "chunk_tokens": 32}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = gw
        .http
        .post(format!(
            "{}/tenant/v1/knowledge-bases/{}/documents?name={}.txt",
            gw.url,
            m("kb"),
            m("docname")
        ))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body(format!("Parcels leave on Mondays. {}", m("doctext")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = gw
        .post(
            &format!("/tenant/v1/knowledge-bases/{}/search", m("kb")),
            &key,
            &json!({"query": "parcels"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = gw
        .http
        .put(format!("{}/tenant/v1/members/{}", gw.url, m("subject")))
        .bearer_auth(&key)
        .json(&json!({"role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mut body = chat("gpt-test", &format!("Where is {}?", m("chattext")));
    body["user"] = json!(m("chatuser"));
    let r = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .header("user-agent", m("useragent"))
        .header("x-forwarded-for", "203.0.113.77")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mut markers: Vec<String> = [
        "keyname",
        "enduser",
        "promptname",
        "prompttext",
        "kb",
        "docname",
        "doctext",
        "subject",
        "chattext",
        "chatuser",
        "useragent",
    ]
    .iter()
    .map(|w| m(w))
    .collect();
    markers.push(canary);
    markers.push(hex::encode(sha2::Sha256::digest(template.as_bytes())));
    markers.push(t.display_name.clone());
    markers
}

async fn call_status(gw: &TestGateway, key: &str) -> u16 {
    gw.post("/v1/chat/completions", key, &chat("gpt-test", "hi"))
        .await
        .status()
        .as_u16()
}

/// Polls until `key`'s calls answer `status` (each replica reloads its snapshot).
async fn wait_status(gw: &TestGateway, key: &str, status: u16) -> Value {
    let start = Instant::now();
    loop {
        let r = gw
            .post("/v1/chat/completions", key, &chat("gpt-test", "hi"))
            .await;
        let got = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or_default();
        if got == status {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "calls answer {got}, not {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// current_thread: the gateway's tasks run on this thread, under this test's log capture.
#[tokio::test(flavor = "current_thread")]
async fn an_offboarded_tenant_leaves_no_marker_in_any_file_or_log() {
    let cap = Capture::default();
    let writer = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let gw = TestGateway::start().await;
    let admin = TestGateway::admin();
    let p = gw.state.store().platform(&admin);
    let new = |slug: &str, tier| NewTenant {
        slug: slug.into(),
        display_name: format!("MK{slug}displayQZ"),
        plan: PlanTier::Pro,
        isolation: tier,
        allowed_models: vec!["*".into()],
        max_tokens_per_request: None,
    };
    let a = p
        .create_tenant(&new("leaving", IsolationTier::Namespace))
        .await
        .unwrap();
    let c = p
        .create_tenant(&new("leavingschema", IsolationTier::Schema))
        .await
        .unwrap();
    let (stays, stays_key) = gw.tenant("stays", &["*"], None).await;
    gw.wait_for_revision().await;
    let mut markers = populate(&gw, &a, "ns").await;
    markers.extend(populate(&gw, &c, "sch").await);
    let schema_file = gw
        .dir
        .path()
        .join("tenants")
        .join(format!("{}.sqlite", c.id));
    assert!(schema_file.exists(), "the schema tenant's own file");
    // Sanity: the scan finds what is there before offboarding.
    assert!(
        !leaks(gw.dir.path(), &cap.0.lock().unwrap(), &markers).is_empty(),
        "the scan finds nothing even before offboarding"
    );

    let maint = maintenance(&gw).await;
    for t in [&a, &c] {
        offboard::request(sink(&gw), gw.state.store(), &admin, &t.id, 0)
            .await
            .unwrap();
    }
    let certs = offboard::finalize_due(&gw.state, &maint).await;
    assert_eq!(certs.len(), 2, "{certs:?}");
    for t in [&a, &c] {
        let now = p.get_tenant(&t.id).await.unwrap();
        assert_eq!(now.status, TenantStatus::Deleted);
        assert_eq!(
            (now.slug.as_str(), now.display_name.as_str()),
            (t.id.as_str(), t.id.as_str())
        );
    }
    assert!(!schema_file.exists(), "the schema tenant's file is gone");
    // The slug is free again.
    let mut again = new("leaving", IsolationTier::Namespace);
    again.display_name = "Someone else".into();
    p.create_tenant(&again).await.unwrap();

    // The other tenant is untouched: its calls work and its chain verifies.
    assert_eq!(call_status(&gw, &stays_key).await, 200);
    let stays_admin = gw.admin_key(&stays).await;
    let export = gw.get("/tenant/v1/audit/export", &stays_admin).await;
    assert_eq!(export.status(), 200);
    let text = export.text().await.unwrap();
    let keys = gw.audit_keys(&stays_admin).await;
    tenantgate_audit::verify_jsonl(&text, Some(&keys)).unwrap();

    // Shut down (the writer drains, the WAL is checkpointed), then read every byte.
    let dir = gw.stop_keeping_files().await;
    let logs = cap.0.lock().unwrap().clone();
    let found = leaks(dir.path(), &logs, &markers);
    assert!(found.is_empty(), "markers left behind: {found:?}");
}

#[tokio::test]
async fn a_pending_tenant_is_refused_restored_and_finalized_only_after_its_window() {
    let gw = TestGateway::start().await;
    let admin = TestGateway::admin();
    let (t, key) = gw.tenant("windowed", &["*"], None).await;
    let (_, other) = gw.tenant("neighbour", &["*"], None).await;
    assert_eq!(call_status(&gw, &key).await, 200);
    let maint = maintenance(&gw).await;

    let (pending, d) = offboard::request(sink(&gw), gw.state.store(), &admin, &t.id, 3600)
        .await
        .unwrap();
    assert_eq!(pending.status, TenantStatus::PendingDeletion);
    assert!(d.delete_after_ms > pending.created_at_ms);
    let body = wait_status(&gw, &key, 403).await;
    assert_eq!(body["error"]["code"], "tenant_pending_deletion", "{body}");
    assert_eq!(call_status(&gw, &other).await, 200);
    // Before its window the finalizer leaves it alone.
    assert!(offboard::finalize_due(&gw.state, &maint).await.is_empty());
    let still = gw
        .state
        .store()
        .platform(&admin)
        .get_tenant(&t.id)
        .await
        .unwrap();
    assert_eq!(still.status, TenantStatus::PendingDeletion);

    let back = offboard::restore(sink(&gw), gw.state.store(), &admin, &t.id)
        .await
        .unwrap();
    assert_eq!(back.status, TenantStatus::Active);
    wait_status(&gw, &key, 200).await;

    // A short window this time: nothing before it ends, the certificate after.
    offboard::request(sink(&gw), gw.state.store(), &admin, &t.id, 1)
        .await
        .unwrap();
    wait_status(&gw, &key, 403).await;
    assert!(offboard::finalize_due(&gw.state, &maint).await.is_empty());
    let start = Instant::now();
    let cert = loop {
        let mut c = offboard::finalize_due(&gw.state, &maint).await;
        if let Some(c) = c.pop() {
            break c;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never finalized");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(cert["tenant"], t.id.as_str());
    // A second finalizer (another replica) finds nothing left to do.
    assert!(offboard::finalize_due(&gw.state, &maint).await.is_empty());
    wait_status(&gw, &key, 401).await;
    assert_eq!(call_status(&gw, &other).await, 200);
    // A deleted tenant cannot be restored.
    assert!(
        offboard::restore(sink(&gw), gw.state.store(), &admin, &t.id)
            .await
            .is_err()
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_deletion_certificate_verifies_offline_and_names_what_was_destroyed() {
    let gw = TestGateway::start().await;
    let admin = TestGateway::admin();
    let (t, key) = gw.tenant("certified", &["*"], None).await;
    assert_eq!(call_status(&gw, &key).await, 200);
    let tenant_admin = gw.admin_key(&t).await;
    let pk = gw.audit_keys(&tenant_admin).await;
    // Some key material to shred: a sealed prompt.
    let r = gw
        .post(
            "/tenant/v1/prompts/p/versions",
            &tenant_admin,
            &json!({"template": "rules", "activate": true}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let maint = maintenance(&gw).await;
    offboard::request(sink(&gw), gw.state.store(), &admin, &t.id, 0)
        .await
        .unwrap();
    let certs = offboard::finalize_due(&gw.state, &maint).await;
    assert_eq!(certs.len(), 1);

    let (record, lines) =
        offboard::certificate(gw.state.store(), &admin, gw.state.audit_signer(), &t.id)
            .await
            .unwrap()
            .expect("a certificate");
    let d = &record["detail"];
    assert_eq!(record["tenant"], tenantgate_core::PLATFORM_CHAIN);
    assert_eq!(record["event"], "deletion");
    assert_eq!(d["tenant"], t.id.as_str());
    assert!(d["certified_head"]["seq"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["certified_head"]["hash"].as_str().unwrap().len(), 64);
    assert!(
        !d["destroyed"]["keys"]["kek_versions"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{d}"
    );
    assert!(
        d["destroyed"]["keys"]["data_keys"].as_u64().unwrap() >= 1,
        "{d}"
    );
    let rows = &d["destroyed"]["rows_removed"];
    assert!(rows["audit_records"].as_u64().unwrap() >= 3, "{d}");
    assert!(rows["prompt_versions"].as_u64().unwrap() >= 1, "{d}");
    assert!(rows["api_keys"].as_u64().unwrap() >= 2, "{d}");
    // The export that carries it verifies against the pinned key, offline.
    let text = tenantgate_audit::jsonl(&lines);
    let report = tenantgate_audit::verify_jsonl(&text, Some(&pk)).unwrap();
    let _ = report;
    assert!(text.contains(&format!("\"tenant\":\"{}\"", t.id)));
    // A forged certificate does not.
    let forged = text.replacen(
        &format!("\"tenant\":\"{}\"", t.id),
        "\"tenant\":\"someone-else\"",
        1,
    );
    assert!(tenantgate_audit::verify_jsonl(&forged, Some(&pk)).is_err());
    // Every step is in the platform chain, in order.
    let chain = gw.state.store().platform(&admin);
    let platform = tenantgate_core::TenantId::platform_chain();
    let recs = chain
        .chain(&platform)
        .query(&tenantgate_store::audit::AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<String> = recs
        .iter()
        .rev()
        .map(|r| serde_json::from_str::<Value>(&r.record).unwrap())
        .filter(|r| r["detail"]["tenant"] == t.id.as_str())
        .map(|r| {
            r["detail"]["action"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        actions,
        [
            offboard::action::REQUESTED,
            offboard::action::FINALIZING,
            offboard::action::KEYS_SHREDDED,
            offboard::action::ROWS_REMOVED,
            offboard::action::CERTIFICATE
        ]
    );
    gw.stop().await;
}

/// On PostgreSQL, two replicas: the second refuses the pending tenant's calls at once too; a
/// namespace tenant and a schema-tier tenant are offboarded by the first, then no row of any
/// table (each row's text cast) holds a marker, the tenant's schema is gone, and (if the
/// server's data directory is readable here) no file outside `pg_wal` holds one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_offboarding_leaves_no_marker_in_any_row_or_data_file() {
    let Some(url) = common::skip::backend_url("TENANTGATE_TEST_POSTGRES_URL") else {
        return;
    };
    let schema = format!("tg_gw_{:016x}", rand::random::<u64>());
    let pg = |c: &mut tenantgate_gateway::Config| {
        c.database.url = url.clone();
        c.database.pg_schema = schema.clone();
        c.database.max_connections = 4;
        // The data-file scan below holds only if the deleted rows' pages are rewritten.
        c.lifecycle.pg_vacuum_full = true;
    };
    let a = TestGateway::start_with(pg).await;
    let shared = a.config.clone();
    let b = TestGateway::start_with(|c| {
        pg(c);
        c.server.secret_file = shared.server.secret_file.clone();
        c.encryption.master_key_file = shared.encryption.master_key_file.clone();
        c.audit.signing_key_file = shared.audit.signing_key_file.clone();
    })
    .await;
    let admin = TestGateway::admin();
    let p = a.state.store().platform(&admin);
    let tag = format!("{:08x}", rand::random::<u32>());
    let new = |slug: String, tier| NewTenant {
        slug,
        display_name: format!("MK{tag}displayQZ"),
        plan: PlanTier::Pro,
        isolation: tier,
        allowed_models: vec!["*".into()],
        max_tokens_per_request: None,
    };
    let n = p
        .create_tenant(&new(format!("pgns-{tag}"), IsolationTier::Namespace))
        .await
        .unwrap();
    let s = p
        .create_tenant(&new(format!("pgsch-{tag}"), IsolationTier::Schema))
        .await
        .unwrap();
    a.wait_for_revision().await;
    let mut markers = populate(&a, &n, &format!("pgns{tag}")).await;
    markers.extend(populate(&a, &s, &format!("pgsch{tag}")).await);
    let (_, b_key) = b.tenant(&format!("pgstays-{tag}"), &["*"], None).await;
    let tenant_schema = match a.state.store().place(&s.id).await.unwrap() {
        tenantgate_store::Place::PgSchema(x) => x,
        other => panic!("{other:?}"),
    };

    // Pending on one replica is refused on the other at once (NOTIFY), with the precise error.
    let (_, n_key) = create_key(
        a.state.store(),
        &admin,
        &a.secret(),
        &n.id,
        KeySpec {
            role: Role::Member,
            name: None,
            end_user: None,
            expires_at_ms: None,
        },
    )
    .await
    .unwrap();
    wait_status(&b, &n_key, 200).await;
    offboard::request(sink(&a), a.state.store(), &admin, &n.id, 3600)
        .await
        .unwrap();
    let body = wait_status(&b, &n_key, 403).await;
    assert_eq!(body["error"]["code"], "tenant_pending_deletion");
    offboard::request(sink(&a), a.state.store(), &admin, &n.id, 0)
        .await
        .unwrap();
    offboard::request(sink(&a), a.state.store(), &admin, &s.id, 0)
        .await
        .unwrap();
    let maint = maintenance(&a).await;
    // Both replicas race for the work; each tenant is finalized exactly once.
    let mb = maintenance(&b).await;
    let (ca, cb) = tokio::join!(
        offboard::finalize_due(&a.state, &maint),
        offboard::finalize_due(&b.state, &mb)
    );
    assert_eq!(ca.len() + cb.len(), 2, "{ca:?} {cb:?}");
    wait_status(&b, &n_key, 401).await;
    assert_eq!(call_status(&b, &b_key).await, 200);

    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let gone: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = $1",
    )
    .bind(&tenant_schema)
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(gone, 0, "the schema tenant's schema is dropped");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(&schema)
    .fetch_all(&mut c)
    .await
    .unwrap();
    let mut found = Vec::new();
    for t in &tables {
        for m in &markers {
            let k: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM {schema}.{t} x WHERE CAST(x.* AS text) LIKE $1"
            ))
            .bind(format!("%{m}%"))
            .fetch_one(&mut c)
            .await
            .unwrap();
            if k > 0 {
                found.push((m.clone(), t.clone()));
            }
        }
    }
    assert!(found.is_empty(), "markers in rows: {found:?}");
    // The data files, where this process may read them (the server on this host).
    let dir: String = sqlx::query_scalar("SHOW data_directory")
        .fetch_one(&mut c)
        .await
        .unwrap_or_default();
    sqlx::query("CHECKPOINT").execute(&mut c).await.ok();
    let base = Path::new(&dir).join("base");
    if std::fs::read_dir(&base).is_ok() {
        let found = leaks(&base, &[], &markers);
        assert!(
            found.is_empty(),
            "markers in PostgreSQL data files: {found:?}"
        );
    } else {
        common::skip::skip("the PostgreSQL data directory is not readable here");
    }
    a.stop().await;
    b.stop().await;
    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut c)
        .await;
}

/// The admin API end to end, as a platform admin's token: DELETE with a window (body or
/// query; bounded), restore, DELETE with window 0 (finalized in the call, the certificate in
/// the answer), the certificate route, and the platform chain's export, which verifies with
/// the pinned key like a tenant's.
#[tokio::test]
async fn the_admin_api_offboards_restores_and_exports_the_platform_chain() {
    let idp = common::idp::Idp::start(&["rsa1"]).await;
    let mut cfg = idp.config();
    cfg.platform_admins = true;
    let gw = TestGateway::start_with(move |c| c.auth.oidc = vec![cfg]).await;
    let ops = common::idp::mint("rsa1", &idp.claims("ops", None, &["platform_admin"]));
    let (t, key) = gw.tenant("viaapi", &["*"], None).await;
    let tenant_admin = gw.admin_key(&t).await;
    let pk = gw.audit_keys(&tenant_admin).await;
    let send = |m: reqwest::Method, path: String, body: Option<Value>| {
        let mut r = gw
            .http
            .request(m, format!("{}{path}", gw.url))
            .bearer_auth(&ops);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    let path = format!("/admin/v1/tenants/{}", t.slug);
    let r = send(
        reqwest::Method::DELETE,
        format!("{path}?window_secs=999999999"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400, "an unbounded window is refused");
    let r = send(
        reqwest::Method::DELETE,
        path.clone(),
        Some(json!({"window_secs": 3600})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tenant"]["status"], "pending_deletion", "{v}");
    let body = wait_status(&gw, &key, 403).await;
    assert_eq!(body["error"]["code"], "tenant_pending_deletion");
    let r = send(reqwest::Method::POST, format!("{path}/restore"), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_status(&gw, &key, 200).await;

    let r = send(
        reqwest::Method::DELETE,
        format!("{path}?window_secs=0"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tenant"]["status"], "deleted", "{v}");
    assert_eq!(v["tenant"]["slug"], t.id.as_str());
    assert_eq!(v["certificate"]["action"], offboard::action::CERTIFICATE);
    wait_status(&gw, &key, 401).await;

    let r = send(
        reqwest::Method::GET,
        format!("/admin/v1/tenants/{}/deletion-certificate", t.id),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["certificate"]["detail"]["tenant"], t.id.as_str());
    tenantgate_audit::verify_jsonl(c["export_jsonl"].as_str().unwrap(), Some(&pk)).unwrap();

    let r = send(reqwest::Method::GET, "/admin/v1/audit/export".into(), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let report = tenantgate_audit::verify_jsonl(&text, Some(&pk)).unwrap();
    let _ = report;
    assert!(text.contains(offboard::action::CANCELLED));
    assert!(text.contains(offboard::action::CERTIFICATE));
    assert!(
        !text.contains("viaapi"),
        "the platform chain names tenants by id only"
    );
    gw.stop().await;
}
