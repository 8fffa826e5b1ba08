//! OIDC bearer tokens against a real JWKS served on loopback: RSA, EC and Ed25519 keys, each
//! rejection case, the bounded JWKS refresh, issuers bound to one tenant, members' roles, and
//! API keys working beside tokens.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::idp::{self, Idp};
use common::TestGateway;
use serde_json::{json, Value};

struct Setup {
    gw: TestGateway,
    idp: Idp,
    /// A second issuer, bound to tenant `globex`, whose keys come from a file.
    globex_issuer: String,
}

async fn setup(min_refresh_secs: u64) -> Setup {
    let idp = Idp::start(&["rsa1", "ec1"]).await;
    let globex_issuer = format!("{}/globex", idp.url);
    let mut platform = idp.config();
    platform.platform_admins = true;
    platform.jwks_min_refresh_secs = min_refresh_secs;
    let dir = tempfile::tempdir().unwrap();
    let jwks_file = dir.path().join("globex-jwks.json");
    let all = idp::jwks();
    std::fs::write(
        &jwks_file,
        json!({"keys": [all["ed1"], all["ec1"]]}).to_string(),
    )
    .unwrap();
    let bound = tenantgate_gateway::config::OidcConfig {
        issuer: globex_issuer.clone(),
        audience: idp::AUDIENCE.into(),
        jwks_file: Some(jwks_file),
        tenant: Some("globex".into()),
        ..Default::default()
    };
    let gw = TestGateway::start_with(move |c| c.auth.oidc = vec![platform, bound]).await;
    std::mem::forget(dir);
    gw.tenant("acme", &["*"], None).await;
    gw.tenant("globex", &["*"], None).await;
    Setup {
        gw,
        idp,
        globex_issuer,
    }
}

async fn me(gw: &TestGateway, token: &str) -> (u16, Value) {
    let r = gw.get("/tenant/v1/me", token).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn refused(gw: &TestGateway, token: &str, why: &str) {
    let (status, body) = me(gw, token).await;
    assert_eq!(status, 401, "{why}: {body}");
    assert_eq!(body["error"]["code"], "invalid_token", "{why}: {body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains(why), "expected {why:?} in {msg:?}");
}

#[tokio::test]
async fn rsa_ec_and_eddsa_tokens_authenticate_into_the_named_tenant() {
    let s = setup(30).await;
    let claims = s.idp.claims("bob", Some("acme"), &["member"]);
    for key in ["rsa1", "ec1"] {
        let (status, body) = me(&s.gw, &idp::mint(key, &claims)).await;
        assert_eq!(status, 200, "{key}: {body}");
        assert_eq!(body["tenant"]["slug"], "acme");
        assert_eq!(body["role"], "member");
        assert_eq!(body["user"], "bob");
        assert_eq!(body["credential"]["kind"], "oidc");
    }
    // EdDSA through the issuer bound to globex (keys from a file)
    let mut c = s.idp.claims("carol", None, &["tenant_admin"]);
    c["iss"] = json!(s.globex_issuer);
    let (status, body) = me(&s.gw, &idp::mint("ed1", &c)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant"]["slug"], "globex");
    assert_eq!(body["role"], "tenant_admin");
    // a token calls models like a key does, and its user lands in the audit record
    let token = idp::mint("rsa1", &claims);
    let r =
        s.gw.post(
            "/v1/chat/completions",
            &token,
            &json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn every_rejection_case_is_a_401_naming_the_reason() {
    let s = setup(30).await;
    let good = s.idp.claims("bob", Some("acme"), &["member"]);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    let now = idp::now();
    // alg none: no signature at all
    refused(&s.gw, &idp::mint_none(&good), "algorithm").await;
    // HMAC with the issuer's RSA public key as the secret (key confusion)
    refused(
        &s.gw,
        &idp::mint_hs256(&idp::public_pem("rsa1"), "rsa1", &good),
        "algorithm",
    )
    .await;
    // signed by a key the issuer never published, under the issuer's kid
    refused(
        &s.gw,
        &idp::mint_with_kid("attacker", Some("rsa1"), &good),
        "signature",
    )
    .await;
    refused(&s.gw, &idp::mint("rsa2", &good), "no key").await;
    // a 4 KB subject would become audit actor data and a limits counter key (bounds.rs)
    let long_sub = s.idp.claims(&"u".repeat(4096), Some("acme"), &["member"]);
    refused(&s.gw, &idp::mint("rsa1", &long_sub), "too long").await;
    refused(
        &s.gw,
        &idp::mint("rsa1", &with(&|c| c["exp"] = json!(now - 120))),
        "expired",
    )
    .await;
    refused(
        &s.gw,
        &idp::mint("rsa1", &with(&|c| c["nbf"] = json!(now + 120))),
        "not valid yet",
    )
    .await;
    refused(
        &s.gw,
        &idp::mint("rsa1", &with(&|c| c["aud"] = json!("another-service"))),
        "audience",
    )
    .await;
    refused(
        &s.gw,
        &idp::mint("rsa1", &with(&|c| c["iss"] = json!("https://evil.example"))),
        "issuer",
    )
    .await;
    refused(
        &s.gw,
        &idp::mint(
            "rsa1",
            &with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        "exp",
    )
    .await;
    refused(
        &s.gw,
        &idp::mint("rsa1", &with(&|c| c["tenant"] = json!("no-such-tenant"))),
        "tenant is unknown",
    )
    .await;
    refused(
        &s.gw,
        &idp::mint(
            "rsa1",
            &with(&|c| {
                c.as_object_mut().unwrap().remove("tenant");
            }),
        ),
        "names no tenant",
    )
    .await;
    // a tenant-bound issuer cannot speak for another tenant
    let mut c = with(&|c| c["tenant"] = json!("acme"));
    c["iss"] = json!(s.globex_issuer);
    refused(&s.gw, &idp::mint("ed1", &c), "cannot speak for").await;
    // garbage that looks like a JWT
    refused(&s.gw, "eyJhbGciOi.eyJzdWIi.c2ln", "well-formed").await;

    // clock skew: 30 s past expiry is inside the default 60 s leeway
    let (status, _) = me(
        &s.gw,
        &idp::mint("rsa1", &with(&|c| c["exp"] = json!(now - 30))),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn only_an_issuer_trusted_for_it_makes_platform_admins() {
    let s = setup(30).await;
    let ops = idp::mint("rsa1", &s.idp.claims("ops", None, &["platform_admin"]));
    let r = s.gw.get("/admin/v1/tenants", &ops).await;
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    // a platform admin has no tenant: tenant routes and model calls are refused
    assert_eq!(s.gw.get("/tenant/v1/me", &ops).await.status(), 403);
    assert_eq!(s.gw.get("/v1/models", &ops).await.status(), 403);

    // globex's own IdP claiming platform_admin gets a globex member, not a platform admin
    let mut c = s.idp.claims("mallory", None, &["platform_admin"]);
    c["iss"] = json!(s.globex_issuer);
    let t = idp::mint("ed1", &c);
    assert_eq!(s.gw.get("/admin/v1/tenants", &t).await.status(), 403);
    let (status, body) = me(&s.gw, &t).await;
    assert_eq!((status, body["role"].as_str()), (200, Some("member")));
}

#[tokio::test]
async fn jwks_refresh_is_rate_bounded_and_follows_key_rotation() {
    let s = setup(2).await;
    let claims = s.idp.claims("bob", Some("acme"), &[]);
    assert_eq!(me(&s.gw, &idp::mint("rsa1", &claims)).await.0, 200);
    let after_first = s.idp.fetches();
    assert_eq!(after_first, 1, "one fetch serves many tokens");
    // a flood of tokens with unknown kids: at most one refetch per interval
    let mut tasks = Vec::new();
    for i in 0..50 {
        let t = idp::mint_with_kid("rsa1", Some(&format!("forged-{i}")), &claims);
        let url = format!("{}/tenant/v1/me", s.gw.url);
        #[expect(
            clippy::disallowed_methods,
            reason = "the test drives the server from outside; its tasks are not server background work"
        )]
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    assert!(
        s.idp.fetches() <= after_first + 1,
        "{} fetches for 50 unknown kids",
        s.idp.fetches()
    );
    // the IdP rotates to rsa2; once the interval has passed, the new kid is fetched and works
    s.idp.publish(&["rsa2"]);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = me(&s.gw, &idp::mint("rsa2", &claims)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn members_table_sets_the_role_and_api_keys_work_beside_tokens() {
    let s = setup(30).await;
    let admin = TestGateway::admin();
    let acme =
        s.gw.state
            .store()
            .platform(&admin)
            .find_tenant("acme")
            .await
            .unwrap();
    let admin_key = s.gw.admin_key(&acme).await;
    let dave = idp::mint("rsa1", &s.idp.claims("dave", Some("acme"), &[]));
    assert_eq!(me(&s.gw, &dave).await.1["role"], "member");
    let r =
        s.gw.http
            .put(format!("{}/tenant/v1/members/dave", s.gw.url))
            .bearer_auth(&admin_key)
            .json(&json!({"role": "tenant_admin"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    s.gw.wait_for_revision().await;
    assert_eq!(me(&s.gw, &dave).await.1["role"], "tenant_admin");
    // the API key still authenticates, as a key
    let (status, body) = me(&s.gw, &admin_key).await;
    assert_eq!(
        (status, body["credential"]["kind"].as_str()),
        (200, Some("api_key"))
    );
}

#[tokio::test]
async fn a_remembered_token_still_expires_at_its_exp() {
    let idp = Idp::start(&["rsa1"]).await;
    let mut cfg = idp.config();
    cfg.leeway_secs = 0;
    let gw = TestGateway::start_with(move |c| c.auth.oidc = vec![cfg]).await;
    gw.tenant("acme", &["*"], None).await;
    let mut claims = idp.claims("bob", Some("acme"), &[]);
    // valid through the second `exp` names (whole seconds), expired from the next one
    claims["exp"] = json!(idp::now() + 1);
    let token = idp::mint("rsa1", &claims);
    // verified once, then served from the verified-token cache
    assert_eq!(me(&gw, &token).await.0, 200);
    assert_eq!(me(&gw, &token).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    refused(&gw, &token, "expired").await;
}
