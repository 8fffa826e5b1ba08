//! The incident playbooks' commands (`/admin/v1/incidents/...`, `lifecycle::incident`) driven
//! against running gateways: two replicas on one store, the command given to one and its
//! effect checked on the other, and each command's records in the tenant's chain and the
//! platform's. SQLite here; the freeze on PostgreSQL with polling too slow to explain it
//! (needs `TENANTGATE_TEST_POSTGRES_URL`, skipped without it).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::idp::{self, Idp};
use common::{chat, TestGateway};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tenantgate_core::{Tenant, TenantId};
use tenantgate_gateway::lifecycle::incident::evidence;

struct Deployment {
    a: TestGateway,
    b: TestGateway,
    platform: String,
    _idp: Idp,
    _dir: tempfile::TempDir,
}

/// Replicas `a` and `b`: one database, secrets and providers; a platform admin's token.
async fn deployment(pg: Option<String>) -> Deployment {
    let idp = Idp::start(&["rsa1"]).await;
    let mut oidc = idp.config();
    oidc.platform_admins = true;
    let schema = format!("tg_inc_{:016x}", rand::random::<u64>());
    let pg = move |c: &mut tenantgate_gateway::Config| {
        if let Some(url) = &pg {
            c.database.url = url.clone();
            c.database.pg_schema = schema.clone();
            c.database.max_connections = 4;
            // Polling cannot be what propagates a change here: NOTIFY must.
            c.auth.reload_interval_ms = 600_000;
        }
    };
    let pg2 = pg.clone();
    let a = TestGateway::start_with(move |c| {
        c.auth.oidc = vec![oidc];
        pg2(c);
    })
    .await;
    let config = a.config.clone();
    let elsewhere = tempfile::tempdir().unwrap();
    let index_dir = elsewhere.path().join("indexes");
    let witness = elsewhere.path().join("witness");
    let b = TestGateway::start_with(move |c| {
        *c = config;
        c.rag.index_dir = index_dir;
        c.audit.witness_dir = witness;
    })
    .await;
    let platform = idp::mint("rsa1", &idp.claims("ops", None, &["platform_admin"]));
    Deployment {
        a,
        b,
        platform,
        _idp: idp,
        _dir: elsewhere,
    }
}

impl Deployment {
    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .a
            .http
            .request(method, format!("{}{path}", self.a.url))
            .bearer_auth(&self.platform);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn stop(self) {
        self.b.stop().await;
        self.a.stop().await;
    }
}

/// Every record of a chain (a tenant's, or the platform's), as objects.
async fn chain(gw: &TestGateway, id: &TenantId) -> Vec<Value> {
    let admin = TestGateway::admin();
    let p = gw.state.store().platform(&admin);
    p.chain(id)
        .records(1, i64::MAX as u64)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.record).unwrap())
        .collect()
}

fn actions(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| r["detail"]["action"].as_str().map(str::to_owned))
        .collect()
}

/// Polls `f` until it returns true (a replica's snapshot catching up), within 10 s.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn status_of(gw: &TestGateway, path: &str, key: &str, body: &Value) -> u16 {
    gw.post(path, key, body).await.status().as_u16()
}

fn messages(model: &str) -> Value {
    json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
}

async fn freeze_holds_calls_on_every_replica(d: Deployment) {
    let (acme, acme_key) = d.a.tenant("acme", &["gpt-test", "claude-test"], None).await;
    let acme_admin = d.a.admin_key(&acme).await;
    let (_, globex_key) =
        d.a.tenant("globex", &["gpt-test", "claude-test"], None)
            .await;
    d.b.wait_for_revision().await;
    let gpt = chat("gpt-test", "hi");
    assert_eq!(
        status_of(&d.b, "/v1/chat/completions", &acme_key, &gpt).await,
        200
    );

    // A tenant freeze, placed through replica a, holds acme's calls on replica b.
    let (s, f) = d
        .admin(
            reqwest::Method::POST,
            "/admin/v1/incidents/freezes",
            Some(json!({"tenant": "acme", "reason": "INC-7 cross-tenant leak"})),
        )
        .await;
    assert_eq!(s, 201, "{f}");
    let freeze_id = f["id"].as_str().unwrap().to_owned();
    assert_eq!(f["target"], acme.id.as_str());
    let started = Instant::now();
    eventually("replica b still serves a frozen tenant", || async {
        status_of(&d.b, "/v1/chat/completions", &acme_key, &gpt).await == 403
    })
    .await;
    let took = started.elapsed();
    eprintln!("tenant freeze reached replica b in {took:?}");
    // The caller's SDK shape: OpenAI's error object, and Anthropic's on /v1/messages.
    let r = d.b.post("/v1/chat/completions", &acme_key, &gpt).await;
    assert_eq!(r.headers()["x-should-retry"], "false");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "incident_freeze", "{body}");
    assert_eq!(body["error"]["type"], "permission_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&freeze_id));
    let r =
        d.b.post("/v1/messages", &acme_key, &messages("claude-test"))
            .await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "permission_error");
    // Another tenant is not held.
    assert_eq!(
        status_of(&d.b, "/v1/chat/completions", &globex_key, &gpt).await,
        200
    );

    // The tenant's admin can neither lift it nor get around it with its kill switch.
    let r =
        d.a.http
            .delete(format!(
                "{}/admin/v1/incidents/freezes/{freeze_id}",
                d.a.url
            ))
            .bearer_auth(&acme_admin)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 403);
    let r =
        d.a.http
            .put(format!("{}/tenant/v1/kill-switch", d.a.url))
            .bearer_auth(&acme_admin)
            .json(&json!({"enabled": false}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        status_of(&d.a, "/v1/chat/completions", &acme_key, &gpt).await,
        403
    );

    // A model freeze holds every tenant's calls to that model, and no other model.
    let (s, m) = d
        .admin(
            reqwest::Method::POST,
            "/admin/v1/incidents/freezes",
            Some(json!({"model": "gpt-test", "reason": "INC-7 poisoned model"})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    eventually("replica b still serves a frozen model", || async {
        status_of(&d.b, "/v1/chat/completions", &globex_key, &gpt).await == 403
    })
    .await;
    assert_eq!(
        status_of(&d.b, "/v1/messages", &globex_key, &messages("claude-test")).await,
        200
    );
    // A route freeze holds that path only.
    let (s, r) = d
        .admin(
            reqwest::Method::POST,
            "/admin/v1/incidents/freezes",
            Some(json!({"route": "/v1/messages", "reason": "INC-7"})),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    eventually("replica b still serves a frozen route", || async {
        status_of(&d.b, "/v1/messages", &globex_key, &messages("claude-test")).await == 403
    })
    .await;
    // A second hold on the same target is refused; a route that is no model call too.
    let (s, _) = d
        .admin(
            reqwest::Method::POST,
            "/admin/v1/incidents/freezes",
            Some(json!({"route": "/v1/messages", "reason": "again"})),
        )
        .await;
    assert_eq!(s, 409);
    let (s, _) = d
        .admin(
            reqwest::Method::POST,
            "/admin/v1/incidents/freezes",
            Some(json!({"route": "/tenant/v1/keys", "reason": "no"})),
        )
        .await;
    assert_eq!(s, 400);

    // Status lists the three holds.
    let (s, st) = d
        .admin(reqwest::Method::GET, "/admin/v1/incidents/status", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(st["freezes"].as_array().unwrap().len(), 3, "{st}");

    // Lifted by the platform admin: every replica serves again.
    for id in [
        freeze_id.as_str(),
        m["id"].as_str().unwrap(),
        r["id"].as_str().unwrap(),
    ] {
        let (s, v) = d
            .admin(
                reqwest::Method::DELETE,
                &format!("/admin/v1/incidents/freezes/{id}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    eventually("replica b still holds a lifted freeze", || async {
        status_of(&d.b, "/v1/chat/completions", &acme_key, &gpt).await == 200
            && status_of(&d.b, "/v1/messages", &globex_key, &messages("claude-test")).await == 200
    })
    .await;

    // Recorded: the tenant freeze in acme's chain and the platform's; the others in the
    // platform's; acme's refused calls as access_denied with the code.
    let tenant = chain(&d.a, &acme.id).await;
    let acts = actions(&tenant);
    assert!(acts.contains(&"incident.freeze".to_owned()), "{acts:?}");
    assert!(acts.contains(&"incident.unfreeze".to_owned()), "{acts:?}");
    assert!(tenant
        .iter()
        .any(|r| r["event"] == "access_denied" && r["error"]["code"] == "incident_freeze"));
    let platform = chain(&d.a, &TenantId::platform_chain()).await;
    let frozen: Vec<&Value> = platform
        .iter()
        .filter(|r| r["detail"]["action"] == "incident.freeze")
        .collect();
    assert_eq!(frozen.len(), 3, "{frozen:?}");
    assert!(frozen
        .iter()
        .any(|r| r["detail"]["tenant"] == acme.id.as_str() && r["detail"]["kind"] == "tenant"));
    assert!(frozen.iter().any(|r| r["detail"]["target"] == "gpt-test"));
    assert_eq!(
        platform
            .iter()
            .filter(|r| r["detail"]["action"] == "incident.unfreeze")
            .count(),
        3
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_holds_calls_on_every_replica_and_only_a_platform_admin_lifts_it() {
    freeze_holds_calls_on_every_replica(deployment(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_reaches_every_postgres_replica_by_notify() {
    let Some(url) = common::skip::backend_url("TENANTGATE_TEST_POSTGRES_URL") else {
        return;
    };
    freeze_holds_calls_on_every_replica(deployment(Some(url)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contain_revokes_every_credential_rotates_keys_and_reports_each_step() {
    let d = deployment(None).await;
    let (acme, key) = d.a.tenant("acme", &["gpt-test"], None).await;
    let admin_key = d.a.admin_key(&acme).await;
    let (_, globex_key) = d.a.tenant("globex", &["gpt-test"], None).await;
    let gpt = chat("gpt-test", "hi");
    d.b.wait_for_revision().await;
    assert_eq!(
        status_of(&d.b, "/v1/chat/completions", &key, &gpt).await,
        200
    );
    let (s, grant) = d
        .admin(
            reqwest::Method::POST,
            "/admin/v1/break-glass",
            Some(json!({"tenant": "acme", "reason": "INC-9 look", "duration_secs": 600})),
        )
        .await;
    assert_eq!(s, 201, "{grant}");
    let admin = TestGateway::admin();
    let keyring = d.a.state.keyring();
    let before = keyring
        .status(&admin, &acme.id)
        .await
        .unwrap()
        .current_version;

    let (s, out) = d
        .admin(
            reqwest::Method::POST,
            "/admin/v1/incidents/contain",
            Some(json!({"tenant": "acme", "reason": "INC-9 tenant compromise"})),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let steps: Vec<&str> = out["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "kill_switch",
            "freeze",
            "api_keys",
            "break_glass_grants",
            "console_sessions",
            "rotate_keys",
            "oidc_members"
        ]
    );
    assert_eq!(
        out["steps"][2]["detail"]["revoked"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(out["steps"][3]["detail"]["revoked"][0], grant["id"]);
    assert_eq!(out["steps"][6]["done"], false);
    assert!(out["steps"][6]["detail"]["note"]
        .as_str()
        .unwrap()
        .contains("identity provider"));

    // Effects, seen on the other replica: both keys dead, the other tenant unaffected.
    eventually(
        "replica b still accepts a contained tenant's key",
        || async { status_of(&d.b, "/v1/chat/completions", &key, &gpt).await == 401 },
    )
    .await;
    // Each key is revoked in its own step: replica b may reload between two of them.
    eventually(
        "replica b still accepts a contained tenant's admin key",
        || async { d.b.get("/tenant/v1/me", &admin_key).await.status() == 401 },
    )
    .await;
    assert_eq!(
        status_of(&d.b, "/v1/chat/completions", &globex_key, &gpt).await,
        200
    );
    let after = keyring
        .status(&admin, &acme.id)
        .await
        .unwrap()
        .current_version;
    assert!(after > before, "KEK version {before:?} -> {after:?}");
    let p = d.a.state.store().platform(&admin);
    assert!(p.limits(&acme.id).await.unwrap().unwrap().1, "kill switch");
    let (s, st) = d
        .admin(reqwest::Method::GET, "/admin/v1/incidents/status", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(st["kill_switches"][0]["tenant"], acme.id.as_str(), "{st}");
    assert_eq!(st["freezes"][0]["target"], acme.id.as_str(), "{st}");
    let g = p.grants(Some(&acme.id)).await.unwrap();
    assert!(g[0].revoked_at_ms.is_some());
    assert_eq!(p.freezes().await.unwrap()[0].target, acme.id.as_str());

    // Each step in both chains, in order.
    let want: Vec<String> = steps
        .iter()
        .map(|s| format!("incident.contain.{s}"))
        .collect();
    let tenant: Vec<String> = actions(&chain(&d.a, &acme.id).await)
        .into_iter()
        .filter(|a| a.starts_with("incident.contain."))
        .collect();
    assert_eq!(tenant, want);
    let platform = chain(&d.a, &TenantId::platform_chain()).await;
    let in_platform: Vec<String> = platform
        .iter()
        .filter(|r| r["detail"]["tenant"] == acme.id.as_str())
        .filter_map(|r| r["detail"]["action"].as_str().map(str::to_owned))
        .filter(|a| a.starts_with("incident.contain."))
        .collect();
    assert_eq!(in_platform, want);
    d.stop().await;
}

/// Sets `t`'s audit policy to keep sealed bodies.
async fn keep_bodies(gw: &TestGateway, t: &Tenant) {
    let admin = gw.admin_key(t).await;
    let r = gw
        .http
        .put(format!("{}/tenant/v1/audit-policy", gw.url))
        .bearer_auth(&admin)
        .json(&json!({"prompt": "sealed", "response": "sealed", "on_failure": "closed", "retention_days": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_names_the_tenants_calls_and_window_a_needle_appeared_in() {
    let d = deployment(None).await;
    d.a.tenant("acme", &["gpt-test"], None).await;
    let (globex, globex_key) = d.a.tenant("globex", &["gpt-test"], None).await;
    let (_, initech_key) = d.a.tenant("initech", &["gpt-test"], None).await;
    keep_bodies(&d.a, &globex).await;
    d.a.wait_for_revision().await;
    // Bodies are searched only for a needle that names a tenant (its canary or identifier):
    // the leaked customer identifier together with the tenant it belongs to.
    let bare = "CUSTOMER-88213-ZETA";
    let needle = "CUSTOMER-88213-ZETA at globex";
    let r =
        d.a.post(
            "/v1/chat/completions",
            &globex_key,
            &chat("gpt-test", &format!("look up {needle} please")),
        )
        .await;
    assert_eq!(r.status(), 200);
    let call_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    // Noise: a call without it, in another tenant.
    let r =
        d.a.post(
            "/v1/chat/completions",
            &initech_key,
            &chat("gpt-test", "hello"),
        )
        .await;
    assert_eq!(r.status(), 200);

    let (s, out) = d
        .admin(
            reqwest::Method::POST,
            "/admin/v1/incidents/scope",
            Some(json!({"needle": needle})),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let tenants = out["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 1, "{out}");
    assert_eq!(tenants[0]["tenant"], globex.id.as_str());
    assert_eq!(tenants[0]["calls"], 1);
    let hit = &tenants[0]["hits"][0];
    assert_eq!(hit["id"], call_id.as_str());
    assert!(
        hit["found_in"]
            .as_array()
            .unwrap()
            .contains(&json!("prompt")),
        "{hit}"
    );
    assert!(out["seen"]["from_ms"].as_i64().unwrap() > 0);
    assert!(out["searched"]["tenants"].as_u64().unwrap() >= 3);
    // A needle naming no tenant opens no body: without a grant the search would be an
    // oracle on the tenants' prompts (rebuilt a character at a time).
    let (s, out) = d
        .admin(
            reqwest::Method::POST,
            "/admin/v1/incidents/scope",
            Some(json!({"needle": bare})),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["tenants"].as_array().unwrap().len(), 0, "{out}");
    // A window that ends before the call finds nothing.
    let (s, out) = d
        .admin(
            reqwest::Method::POST,
            "/admin/v1/incidents/scope",
            Some(json!({"needle": needle, "from_ms": 0, "to_ms": 1})),
        )
        .await;
    assert_eq!(s, 200);
    assert!(out["tenants"].as_array().unwrap().is_empty(), "{out}");
    // A needle nobody's chain holds.
    let (s, out) = d
        .admin(
            reqwest::Method::POST,
            "/admin/v1/incidents/scope",
            Some(json!({"needle": "acme-secret-acme", "from_ms": 0})),
        )
        .await;
    assert_eq!(s, 200);
    assert!(out["tenants"].as_array().unwrap().is_empty(), "{out}");

    // Recorded with the needle's digest, never the needle.
    let platform = chain(&d.a, &TenantId::platform_chain()).await;
    let scopes: Vec<&Value> = platform
        .iter()
        .filter(|r| r["detail"]["action"] == "incident.scope")
        .collect();
    // One summary per search (four), and globex's step (its chain was read) named by id.
    assert_eq!(
        scopes
            .iter()
            .filter(|r| r["detail"]["tenant"].is_null())
            .count(),
        4
    );
    assert_eq!(
        scopes
            .iter()
            .filter(|r| r["detail"]["tenant"] == globex.id.as_str())
            .count(),
        1
    );
    assert!(!serde_json::to_string(&platform).unwrap().contains(needle));
    let g = chain(&d.a, &globex.id).await;
    assert!(actions(&g).contains(&"incident.scope".to_owned()));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_finds_a_canary_leak_through_the_guards_incidents_and_its_owner() {
    let d = deployment(None).await;
    let (canary, b_key, _) = d.a.canary_and_other_tenant().await;
    // The other tenant sends A's canary: the guard's finding is an incident in its chain
    // (whatever its policy does with the call).
    d.a.post(
        "/v1/chat/completions",
        &b_key,
        &chat("gpt-test", &format!("what is {canary}")),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        let (s, v) = d
            .admin(
                reqwest::Method::POST,
                "/admin/v1/incidents/scope",
                Some(json!({"needle": canary})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        if !v["incidents"].as_array().unwrap().is_empty() {
            break v;
        }
        assert!(Instant::now() < deadline, "no incident record: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(out["owners"][0]["slug"], "acme-rockets", "{out}");
    assert_eq!(out["owners"][0]["by"], "canary");
    assert!(out["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["detail"]["detector"].as_str().is_some()));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evidence_bundle_verifies_offline_and_a_tampered_one_does_not() {
    let d = deployment(None).await;
    let (acme, key) = d.a.tenant("acme", &["gpt-test"], None).await;
    for _ in 0..3 {
        let r =
            d.a.post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
                .await;
        assert_eq!(r.status(), 200);
    }
    let pinned = d.a.audit_keys(&key).await;
    let r =
        d.a.http
            .get(format!(
                "{}/admin/v1/incidents/evidence/acme?from=0",
                d.a.url
            ))
            .bearer_auth(&d.platform)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-tar");
    let bundle = r.bytes().await.unwrap().to_vec();
    let v = evidence::verify(&bundle, &pinned).unwrap();
    assert_eq!(v.tenant, acme.id.as_str());
    assert!(v.tenant_records >= 3, "{v:?}");
    assert!(v.chains.iter().all(|c| c.complete));

    // One byte of a record changed: the manifest's hash no longer matches.
    let at = bundle
        .windows(8)
        .position(|w| w == b"api_call")
        .expect("a call record in the bundle");
    let mut tampered = bundle.clone();
    tampered[at] = b'X';
    let e = evidence::verify(&tampered, &pinned).unwrap_err();
    assert!(e.contains("does not match the manifest"), "{e}");
    // Another key's signature (a rewritten bundle re-signed) is refused.
    let other = tenantgate_audit::Signer::from_seed(&[7u8; 32]).public_key();
    let e = evidence::verify(&bundle, &[other]).unwrap_err();
    assert!(e.contains("not signed by a trusted key"), "{e}");
    // Truncated.
    let e = evidence::verify(&bundle[..bundle.len() / 2], &pinned).unwrap_err();
    assert!(e.contains("truncated") || e.contains("manifest"), "{e}");

    // Recorded in the tenant's chain and the platform's.
    assert!(actions(&chain(&d.a, &acme.id).await).contains(&"incident.evidence".to_owned()));
    assert!(platform_has(&d.a, "incident.evidence").await);
    d.stop().await;
}

async fn platform_has(gw: &TestGateway, action: &str) -> bool {
    actions(&chain(gw, &TenantId::platform_chain()).await)
        .iter()
        .any(|a| a == action)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_drain_empties_the_provider_on_every_replica_and_status_shows_it() {
    let d = deployment(None).await;
    let (_, key) = d.a.tenant("acme", &["gpt-test"], None).await;
    let gpt = chat("gpt-test", "hi");
    d.b.wait_for_revision().await;
    assert_eq!(
        status_of(&d.b, "/v1/chat/completions", &key, &gpt).await,
        200
    );
    let (s, v) = d
        .admin(
            reqwest::Method::PUT,
            "/admin/v1/incidents/drains/mock-openai",
            Some(json!({"reason": "INC-11 provider outage"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // gpt-test has no other target: a drained provider answers 503 on replica b.
    eventually("replica b still calls a drained provider", || async {
        status_of(&d.b, "/v1/chat/completions", &key, &gpt).await == 503
    })
    .await;
    let (s, st) = d
        .admin(reqwest::Method::GET, "/admin/v1/incidents/status", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(st["drains"][0]["provider"], "mock-openai", "{st}");
    assert!(st["circuits"].is_array(), "{st}");
    let (s, _) = d
        .admin(
            reqwest::Method::DELETE,
            "/admin/v1/incidents/drains/mock-openai",
            None,
        )
        .await;
    assert_eq!(s, 200);
    eventually("replica b does not take the provider back", || async {
        status_of(&d.b, "/v1/chat/completions", &key, &gpt).await == 200
    })
    .await;
    assert!(platform_has(&d.a, "incident.drain").await);
    assert!(platform_has(&d.a, "incident.undrain").await);
    assert!(platform_has(&d.a, "provider.drain").await);
    d.stop().await;
}
