//! The browser console (`/console`) over HTTP, as a browser sends it: cookies, forms, `Origin`.
//! Each test performs the attack or the task and checks the effect through the API and the
//! model path (the browser-driven versions, with a real IdP, are in `console_browser.rs`).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::browser::{Browser, Page};
use common::idp::{self, Idp};
use common::{chat, TestGateway};
use serde_json::{json, Value};
use std::time::Instant;

async fn kill_switch(gw: &TestGateway, admin: &str) -> bool {
    let l: Value = gw
        .get("/tenant/v1/limits", admin)
        .await
        .json()
        .await
        .unwrap();
    l["kill_switch"].as_bool().unwrap()
}

#[tokio::test]
async fn kill_switch_from_the_console_stops_the_next_call_and_forged_posts_change_nothing() {
    let gw = TestGateway::start().await;
    let (t, member) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let mut b = Browser::sign_in(&gw, &admin).await;
    let home = b.get("/console").await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("id=\"kill-switch-state\">off"));
    assert!(home.body.contains("acme · tenant_admin"));
    let csrf = Browser::csrf(&home);

    // Forged: no token; a wrong token; the right token from another site; no Origin at all.
    for (form, origin) in [
        (vec![("enabled", "true")], Some(b.base.clone())),
        (
            vec![("enabled", "true"), ("csrf", "AAAA")],
            Some(b.base.clone()),
        ),
        (
            vec![("enabled", "true"), ("csrf", csrf.as_str())],
            Some("https://evil.example".into()),
        ),
        (vec![("enabled", "true"), ("csrf", csrf.as_str())], None),
    ] {
        let p = b
            .post_from("/console/kill-switch", &form, origin.as_deref())
            .await;
        assert_eq!(p.status, 403, "{form:?} {origin:?}");
        assert!(p.body.contains("<h1>Not allowed</h1>"));
        assert!(
            !kill_switch(&gw, &admin).await,
            "a forged POST changed the kill switch"
        );
    }
    let r = gw
        .post("/v1/chat/completions", &member, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 200);

    let p = b
        .post(
            "/console/kill-switch",
            &[("enabled", "true"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!((p.status, p.location.as_deref()), (303, Some("/console")));
    assert!(kill_switch(&gw, &admin).await);
    let r = gw
        .post("/v1/chat/completions", &member, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(
        r.status(),
        429,
        "the kill switch did not stop the next call"
    );
    assert!(b
        .get("/console")
        .await
        .body
        .contains("id=\"kill-switch-state\">on"));

    // The change is in the tenant's chain as the API call it was, marked as the console's.
    let recs: Value = gw
        .get(
            "/tenant/v1/audit/records?event=configuration_change",
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    let rec = &recs["data"][0]["record"];
    assert_eq!(rec["detail"]["route"], "/tenant/v1/kill-switch", "{rec}");
    assert_eq!(rec["detail"]["via"], "console", "{rec}");
    let p = b
        .post(
            "/console/kill-switch",
            &[("enabled", "false"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 303);
    let r = gw
        .post("/v1/chat/completions", &member, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn rollback_in_the_console_is_what_the_next_call_uses_and_prompt_text_is_inert() {
    let gw = TestGateway::start().await;
    let (t, member) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    for (text, activate) in [
        ("V1 <script>window.__pwned=1</script>", true),
        ("V2 rules", true),
    ] {
        let r = gw
            .post(
                "/tenant/v1/prompts/support/versions",
                &admin,
                &json!({"template": text, "activate": activate}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let r = gw
        .http
        .put(format!("{}/tenant/v1/prompt-settings", gw.url))
        .bearer_auth(&admin)
        .json(&json!({"client_system": "append", "default_prompt": "support"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let system = |gw: &TestGateway| {
        let body = gw.mock.stats.last_request().unwrap().body;
        body["messages"][0]["content"].as_str().unwrap().to_owned()
    };
    gw.post("/v1/chat/completions", &member, &chat("gpt-test", "hi"))
        .await;
    assert!(system(&gw).starts_with("V2"), "{}", system(&gw));

    let mut b = Browser::sign_in(&gw, &admin).await;
    let page = b.get("/console/prompts/support").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("<tr data-version=\"2\" class=\"active\">"),
        "{}",
        page.body
    );
    let csrf = Browser::csrf(&page);
    let p = b
        .post(
            "/console/prompts/support/activate",
            &[("version", "1"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    gw.post("/v1/chat/completions", &member, &chat("gpt-test", "hi"))
        .await;
    assert!(
        system(&gw).starts_with("V1"),
        "the rollback was not used: {}",
        system(&gw)
    );

    // The text a tenant wrote is text: escaped, and no inline script could run anyway (CSP).
    let v1 = b.get("/console/prompts/support/versions/1").await;
    assert_eq!(v1.status, 200);
    assert!(
        v1.body.contains("&lt;script&gt;window.__pwned=1"),
        "{}",
        v1.body
    );
    assert!(!v1.body.contains("<script>window"));
}

#[tokio::test]
async fn a_member_reaches_no_admin_page_and_no_admin_change() {
    let gw = TestGateway::start().await;
    let (t, member) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let mut b = Browser::sign_in(&gw, &member).await;
    let home = b.get("/console").await;
    assert_eq!(home.status, 200);
    assert!(
        !home.body.contains("kill-switch-form"),
        "a member sees the kill switch"
    );
    assert!(!home.body.contains("href=\"/console/audit\""));
    for path in [
        "/console/audit",
        "/console/limits",
        "/console/members",
        "/console/break-glass",
        "/console/incidents",
        "/console/platform/tenants",
        "/console/platform/health",
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, 403, "{path}");
        assert!(p.body.contains("<h1>Not allowed</h1>"), "{path}");
    }
    let csrf = Browser::csrf(&home);
    let p = b
        .post(
            "/console/kill-switch",
            &[("enabled", "true"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 403);
    assert!(!kill_switch(&gw, &admin).await);
    let p = b
        .post(
            "/console/keys",
            &[("name", "x"), ("role", "tenant_admin"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 403);
}

#[tokio::test]
async fn another_tenants_session_sees_nothing_of_acme() {
    let gw = TestGateway::start().await;
    let (t, _) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let r = gw
        .post(
            "/tenant/v1/prompts/acme-secret/versions",
            &admin,
            &json!({"template": "ACME-CANARY-TEXT", "activate": true}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let (i, _) = gw.tenant("initech", &["gpt-test"], None).await;
    let initech = gw.admin_key(&i).await;
    let mut b = Browser::sign_in(&gw, &initech).await;
    for path in [
        "/console/prompts/acme-secret",
        "/console/prompts/acme-secret/versions/1",
        "/console/prompts/acme-secret/diff?from=1&to=1",
        "/console/audit/records/999999",
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, 404, "{path}: {}", p.body);
        assert!(!p.body.contains("ACME-CANARY-TEXT"));
    }
    for path in [
        "/console",
        "/console/prompts",
        "/console/keys",
        "/console/audit",
        "/console/knowledge",
        "/console/members",
        "/console/break-glass",
        "/console/limits",
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, 200, "{path}");
        assert!(!p.body.contains("acme"), "{path} shows acme: {}", p.body);
    }
    // A change aimed at acme's prompt acts on initech's (absent) one: 404, acme unchanged.
    let csrf = Browser::csrf(&b.get("/console").await);
    let p = b
        .post(
            "/console/prompts/acme-secret/activate",
            &[("version", "1"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 404);
}

#[tokio::test]
async fn sign_out_ends_the_session_everywhere_and_bad_credentials_get_no_session() {
    let gw = TestGateway::start().await;
    let (t, member) = gw.tenant("acme", &["gpt-test"], None).await;
    let mut b = Browser::sign_in(&gw, &member).await;
    let old = b.cookie.clone().unwrap();
    let csrf = Browser::csrf(&b.get("/console").await);
    let p = b.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(
        (p.status, p.location.as_deref()),
        (303, Some("/console/login"))
    );
    assert!(b.cookie.is_none(), "the cookie was not cleared");
    b.cookie = Some(old);
    let p = b.get("/console").await;
    assert_eq!(
        (p.status, p.location.as_deref()),
        (303, Some("/console/login"))
    );

    let mut stranger = Browser::new(&gw);
    let p = stranger
        .post("/console/login/key", &[("api_key", "tg-not-a-key")])
        .await;
    assert_eq!(p.status, 401);
    assert!(stranger.cookie.is_none());
    // Sign-in from another site's page is refused (login CSRF).
    let p = stranger
        .post_from(
            "/console/login/key",
            &[("api_key", &member)],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(p.status, 403);
    assert!(stranger.cookie.is_none());

    // A revoked key ends the session it opened at its next page.
    let admin = gw.admin_key(&t).await;
    let mut b = Browser::sign_in(&gw, &member).await;
    let keys: Value = gw
        .get("/tenant/v1/keys", &admin)
        .await
        .json()
        .await
        .unwrap();
    let id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "member")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = gw
        .http
        .delete(format!("{}/tenant/v1/keys/{id}", gw.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.wait_for_revision().await;
    let p = b.get("/console").await;
    assert_eq!(
        (p.status, p.location.as_deref()),
        (303, Some("/console/login"))
    );
}

/// The console's rows of the authorization matrix: every page, for each kind of session, gets
/// what the API lets that credential see (signed out: to the sign-in page).
#[tokio::test]
async fn console_authorization_matrix() {
    let idp = Idp::start(&["rsa1"]).await;
    let mut cfg = idp.config();
    cfg.platform_admins = true;
    let gw = TestGateway::start_with(move |c| c.auth.oidc = vec![cfg]).await;
    let (t, member) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let r = gw
        .post(
            "/tenant/v1/prompts/p/versions",
            &admin,
            &json!({"template": "T", "activate": true}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let ops = idp::mint("rsa1", &idp.claims("ops", None, &["platform_admin"]));
    #[derive(Clone, Copy, Debug)]
    enum Who {
        SignedOut,
        Member,
        Admin,
        Platform,
    }
    use Who::*;
    // (page, [signed out, member, tenant admin, platform admin])
    let rows: &[(&str, [u16; 4])] = &[
        ("/console", [303, 200, 200, 303]),
        ("/console/usage", [303, 200, 200, 403]),
        ("/console/keys", [303, 200, 200, 403]),
        ("/console/members", [303, 403, 200, 403]),
        ("/console/models", [303, 200, 200, 403]),
        ("/console/prompts", [303, 200, 200, 403]),
        ("/console/prompts/p", [303, 200, 200, 403]),
        ("/console/prompts/p/versions/1", [303, 403, 200, 403]),
        ("/console/prompts/p/diff?from=1&to=1", [303, 403, 200, 403]),
        ("/console/knowledge", [303, 200, 200, 403]),
        ("/console/audit", [303, 403, 200, 403]),
        ("/console/audit/export?format=jsonl", [303, 403, 200, 403]),
        ("/console/incidents", [303, 403, 200, 403]),
        ("/console/limits", [303, 403, 200, 403]),
        ("/console/break-glass", [303, 403, 200, 403]),
        ("/console/platform/tenants", [303, 403, 403, 200]),
        ("/console/platform/onboard", [303, 403, 403, 200]),
        ("/console/platform/plans", [303, 403, 403, 200]),
        ("/console/platform/health", [303, 403, 403, 200]),
        ("/console/platform/break-glass", [303, 403, 403, 200]),
        ("/console/platform/tenants/acme", [303, 403, 403, 200]),
    ];
    let mut browsers = [
        Browser::new(&gw),
        Browser::sign_in(&gw, &member).await,
        Browser::sign_in(&gw, &admin).await,
        Browser::sign_in(&gw, &ops).await,
    ];
    for (page, expected) in rows {
        for (i, who) in [SignedOut, Member, Admin, Platform].into_iter().enumerate() {
            let p = browsers[i].get(page).await;
            assert_eq!(p.status, expected[i], "{page} as {who:?}: {}", p.body);
            if p.status == 303 && matches!(who, SignedOut) {
                assert_eq!(p.location.as_deref(), Some("/console/login"));
            }
        }
    }
}

/// Sessions live in the store: one opened on replica A serves on replica B, and signing out on
/// B ends it on A.
#[tokio::test]
async fn a_session_serves_on_every_replica_and_ends_on_every_replica() {
    let a = TestGateway::start().await;
    let c = a.config.clone();
    let b = TestGateway::start_with(move |r| {
        r.database.url = c.database.url.clone();
        r.server.secret_file = c.server.secret_file.clone();
        r.encryption.master_key_file = c.encryption.master_key_file.clone();
        r.audit.signing_key_file = c.audit.signing_key_file.clone();
        r.rag.index_dir = c.rag.index_dir.with_extension("b");
    })
    .await;
    let (t, _) = a.tenant("acme", &["gpt-test"], None).await;
    let admin = a.admin_key(&t).await;
    b.wait_for_revision().await;
    let mut on_a = Browser::sign_in(&a, &admin).await;
    let mut on_b = Browser::new(&b);
    on_b.cookie = on_a.cookie.clone();
    let page = on_b.get("/console").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let p = on_b
        .post("/console/logout", &[("csrf", &Browser::csrf(&page))])
        .await;
    assert_eq!(p.status, 303);
    let p = on_a.get("/console").await;
    assert_eq!(
        (p.status, p.location.as_deref()),
        (303, Some("/console/login"))
    );
}

/// The overview's figures follow calls as they settle: the record is written before the
/// response is released, so the next refresh counts the call.
#[tokio::test]
async fn usage_counts_each_call_by_the_next_refresh() {
    let gw = TestGateway::start().await;
    let (t, member) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let mut b = Browser::sign_in(&gw, &admin).await;
    let count = |p: &Page| -> u64 {
        let at = p.body.find("id=\"usage-requests\">").unwrap() + 20;
        p.body[at..].split('<').next().unwrap().parse().unwrap()
    };
    let before = count(&b.get("/console/usage").await);
    for _ in 0..3 {
        let r = gw
            .post("/v1/chat/completions", &member, &chat("gpt-test", "hi"))
            .await;
        assert_eq!(r.status(), 200);
    }
    let after = b.get("/console/usage").await;
    assert_eq!(count(&after), before + 3);
    assert!(
        after.body.contains("<rect"),
        "no bar for this minute: {}",
        after.body
    );
}

/// `console.enabled = false`: no console route answers (sign-in included), the API does.
#[tokio::test]
async fn a_disabled_console_serves_nothing() {
    let gw = TestGateway::start_with(|c| c.console.enabled = false).await;
    let (_, member) = gw.tenant("acme", &["gpt-test"], None).await;
    let mut b = Browser::new(&gw);
    for path in [
        "/console",
        "/console/login",
        "/console/static/console.js",
        "/console/login/oidc/0",
    ] {
        assert_eq!(b.get(path).await.status, 404, "{path}");
    }
    assert_eq!(
        b.post("/console/login/key", &[("api_key", &member)])
            .await
            .status,
        404
    );
    assert!(b.cookie.is_none());
    assert_eq!(gw.get("/tenant/v1/me", &member).await.status(), 200);
}

/// Narrowing the allow-list in the console is what the next call meets; a model the platform
/// does not allow is refused by the API, and the page says why.
#[tokio::test]
async fn models_narrowed_in_the_console_apply_to_the_next_call() {
    let gw = TestGateway::start().await;
    let (t, member) = gw.tenant("acme", &["gpt-test", "claude-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let mut b = Browser::sign_in(&gw, &admin).await;
    let page = b.get("/console/models").await;
    let csrf = Browser::csrf(&page);
    let p = b
        .post(
            "/console/models",
            &[("enabled", "claude-test\n"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    gw.wait_for_revision().await;
    let r = gw
        .post("/v1/chat/completions", &member, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 404, "a model the tenant disabled was served");
    let p = b
        .post(
            "/console/models",
            &[("enabled", "gpt-4-not-allowed"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("does not allow model"), "{}", p.body);
    let p = b
        .post("/console/models", &[("enabled", ""), ("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 303);
    gw.wait_for_revision().await;
    let r = gw
        .post("/v1/chat/completions", &member, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(r.status(), 200);
}

/// The cookie's token is rotated once the session is `rotate_after_secs` old: the new cookie
/// serves, a form loaded before the rotation still submits (the CSRF token belongs to the
/// sign-in), and signing out ends every id of the sign-in, the rotated-out one included.
#[tokio::test]
async fn rotation_replaces_the_cookie_keeps_open_forms_and_sign_out_ends_every_id() {
    let gw = TestGateway::start_with(|c| c.console.rotate_after_secs = 1).await;
    let (t, _) = gw.tenant("acme", &["gpt-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let mut b = Browser::sign_in(&gw, &admin).await;
    let first = b.cookie.clone().unwrap();
    let csrf = Browser::csrf(&b.get("/console").await);
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while b.cookie.as_deref() == Some(first.as_str()) {
        assert!(Instant::now() < deadline, "the session was never rotated");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(b.get("/console/usage").await.status, 200);
    }
    let p = b
        .post(
            "/console/kill-switch",
            &[("enabled", "true"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(
        p.status, 303,
        "a form from before the rotation was refused: {}",
        p.body
    );
    assert!(kill_switch(&gw, &admin).await);
    let mut old = Browser::new(&gw);
    old.cookie = Some(first);
    assert_eq!(
        old.get("/console").await.status,
        200,
        "the grace for in-flight requests"
    );
    let p = b.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    let p = old.get("/console").await;
    assert_eq!(
        (p.status, p.location.as_deref()),
        (303, Some("/console/login"))
    );
}

/// `group_by=minute` (the live chart's query) answers at most a day of rows.
#[tokio::test]
async fn usage_by_minute_is_bounded_to_a_day() {
    let gw = TestGateway::start().await;
    let (_, member) = gw.tenant("acme", &["gpt-test"], None).await;
    let r = gw.get("/tenant/v1/usage?group_by=minute", &member).await;
    assert_eq!(r.status(), 200);
    let r = gw
        .get("/tenant/v1/usage?group_by=minute&from=0", &member)
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "from");
}
