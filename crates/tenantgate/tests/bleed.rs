//! `tenantgate bleed-test` against freshly started deployments, as CI runs it: the real binary
//! serving (SQLite; PostgreSQL with two replicas sharing Redis limits when configured), mock
//! upstreams speaking both providers' wires (an obedient echo model and a poisoned one), and a
//! real OIDC issuer for the platform admin. The run must find no leak; and with the leak
//! guard's cross-tenant layer switched off (a test-only switch, `bleed-switches`), it must fail
//! and name the leak.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use axum::routing::get;
use axum::{Json, Router};
use common::{serve_with, terminate};
use rand::Rng;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn oidc_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tenantgate-gateway/tests/data/oidc")
        .join(name)
}

/// The platform's OpenID provider: discovery and the JWKS publishing test key `rsa1`.
async fn idp() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let jwks: Value =
        serde_json::from_slice(&std::fs::read(oidc_data("jwks.json")).unwrap()).unwrap();
    let key = jwks["rsa1"].clone();
    let u = url.clone();
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let u = u.clone();
                async move { Json(json!({"issuer": u, "jwks_uri": format!("{u}/jwks")})) }
            }),
        )
        .route(
            "/jwks",
            get(move || {
                let k = key.clone();
                async move { Json(json!({"keys": [k]})) }
            }),
        );
    #[expect(
        clippy::disallowed_methods,
        reason = "the test's IdP, outside the gateway; it lives as long as the test process"
    )]
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn platform_token(issuer: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"iss": issuer, "aud": "tenantgate", "sub": "bleed-ops", "iat": now, "nbf": now,
        "exp": now + 3600, "roles": ["platform_admin"]});
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("rsa1".into());
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(oidc_data("rsa1.pem")).unwrap())
            .unwrap();
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

struct Deployment {
    dir: tempfile::TempDir,
    replicas: Vec<(tokio::process::Child, String)>,
    token: String,
    _mock: mockllm::MockHandle,
}

/// A fresh deployment: `backend` is extra TOML (database, limits); `env` goes to every replica.
async fn deploy(backend: &str, replicas: usize, env: &[(&str, &str)]) -> Deployment {
    let mock = mockllm::start("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let issuer = idp().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tenantgate.toml"),
        format!(
            r#"
{backend}
[demo]
enabled = true
bootstrap_tenant = false
[cache]
enabled = true
[auth]
reload_interval_ms = 100
[[auth.oidc]]
issuer = "{issuer}"
audience = "tenantgate"
platform_admins = true
[[providers]]
name = "mock-openai"
kind = "openai_compatible"
base_url = "{mock}/v1"
[[providers]]
name = "mock-anthropic"
kind = "anthropic"
base_url = "{mock}"
api_key_env = "BLEED_MOCK_KEY"
[[models]]
name = "bleed-openai"
provider = "mock-openai"
upstream_model = "m"
[[models]]
name = "bleed-priced"
provider = "mock-openai"
upstream_model = "m"
pricing = {{ input_per_mtok = 100000000, output_per_mtok = 100000000 }}
[[models]]
name = "bleed-anthropic"
provider = "mock-anthropic"
upstream_model = "claude-m"
"#,
            mock = mock.base_url()
        ),
    )
    .unwrap();
    let mut env: Vec<(&str, &str)> = env.to_vec();
    let cfg = dir.path().join("tenantgate.toml");
    let cfg = cfg.to_str().unwrap().to_owned();
    env.push(("TENANTGATE_CONFIG", &cfg));
    env.push(("BLEED_MOCK_KEY", "sk-mock"));
    let mut running = Vec::new();
    for _ in 0..replicas {
        running.push(serve_with(dir.path(), &env).await);
    }
    Deployment {
        dir,
        replicas: running,
        token: platform_token(&issuer),
        _mock: mock,
    }
}

/// `tenantgate bleed-test` against the deployment: its exit code and JSON report.
async fn bleed(d: &Deployment) -> (i32, Value, String) {
    let report = d.dir.path().join("bleed.json");
    let mut args: Vec<String> = vec!["bleed-test".into()];
    for (_, url) in &d.replicas {
        args.extend(["--target".into(), url.clone()]);
    }
    args.extend(
        [
            "--echo-model",
            "bleed-openai",
            "--poison-model",
            "bleed-openai",
            "--poison-model",
            "bleed-anthropic",
            "--priced-model",
            "bleed-priced",
            "--reload-ms",
            "300",
            "--report",
        ]
        .map(String::from),
    );
    args.push(report.to_str().unwrap().into());
    args.extend([
        "--idp-signing-key".into(),
        oidc_data("rsa1.pem").to_str().unwrap().into(),
    ]);
    let out = tokio::process::Command::new(common::bin())
        .args(&args)
        .env("TENANTGATE_BLEED_PLATFORM_CREDENTIAL", &d.token)
        .env_remove("TENANTGATE_CONFIG")
        .output()
        .await
        .unwrap();
    let human = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{human}{}", String::from_utf8_lossy(&out.stderr));
    let json = std::fs::read(&report)
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, human)
}

fn failures(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .map(|c| format!("{}: {}", c["id"], c["reason"]))
        .collect()
}

/// Every family of attack ran and passed somewhere; the only skips are the cache's streamed
/// probes (only complete non-streamed answers are cached) and `n > 1` on the Anthropic-format
/// model (refused with 400 before any call: Anthropic has no `n`).
fn assert_clean(code: i32, report: &Value, human: &str) {
    assert_eq!(code, 0, "bleed-test failed:\n{human}");
    assert_eq!(report["summary"]["failed"], 0, "{:#?}", failures(report));
    let checks = report["checks"].as_array().unwrap();
    for family in [
        "credential",
        "spoofing",
        "route_matrix",
        "prompt_injection",
        "poisoned_response",
        "cache_probe",
        "data_query",
        "limit_race",
        "integrity",
    ] {
        assert!(
            checks
                .iter()
                .any(|c| c["family"] == family && c["verdict"] == "pass"),
            "no {family} check passed"
        );
    }
    for c in checks.iter().filter(|c| c["verdict"] == "skip") {
        let id = c["id"].as_str().unwrap();
        let cache_stream = c["family"] == "cache_probe" && id.contains("streamed");
        let anthropic_n = c["family"] == "poisoned_response"
            && id.contains("bleed-anthropic via Chat")
            && id.ends_with("n=2");
        assert!(cache_stream || anthropic_n, "unexpected skip: {c}");
    }
    assert!(checks.len() > 300, "only {} checks", checks.len());
    assert!(human.contains("no leak found"), "{human}");
    // Each check names the controls it is evidence for.
    assert!(checks
        .iter()
        .all(|c| !c["controls"].as_array().unwrap().is_empty()));
}

/// The canary tenants are gone afterwards: no `bleed-` tenant is left.
async fn assert_removed(d: &Deployment) {
    let r = reqwest::Client::new()
        .get(format!(
            "{}/admin/v1/tenants?prefix=bleed-",
            d.replicas[0].1
        ))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    // Removed tenants leave a tombstone named by id (status `deleted`), never by slug.
    let left: Vec<&Value> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["slug"].as_str().unwrap().starts_with("bleed-") || t["status"] != "deleted")
        .collect();
    assert!(left.is_empty(), "tenants left: {left:?}");
}

async fn stop(mut d: Deployment) {
    for (child, _) in &mut d.replicas {
        terminate(child).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bleed_test_finds_no_leak_on_a_fresh_sqlite_deployment() {
    let d = deploy("", 1, &[]).await;
    let (code, report, human) = bleed(&d).await;
    assert_clean(code, &report, &human);
    assert_removed(&d).await;
    stop(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bleed_test_finds_no_leak_on_two_postgresql_replicas_sharing_redis() {
    let Some(pg) = common::skip::backend_url("TENANTGATE_TEST_POSTGRES_URL") else {
        return;
    };
    let Some(redis) = common::skip::backend_url("TENANTGATE_TEST_REDIS_URL") else {
        return;
    };
    let tag = format!("{:016x}", rand::thread_rng().gen::<u64>());
    let backend = format!(
        "[database]\nurl = \"{pg}\"\npg_schema = \"tg_bleed_{tag}\"\n[limits]\nbackend = \"redis\"\nredis_url = \"{redis}\"\nredis_prefix = \"tgtest:{tag}:\"\n"
    );
    // The response cache shared too, as replicas at scale run it.
    let prefix = format!("tgtest:{tag}:cache:");
    let d = deploy(
        &backend,
        2,
        &[
            ("TENANTGATE_CACHE__REDIS_URL", &redis),
            ("TENANTGATE_CACHE__REDIS_PREFIX", &prefix),
        ],
    )
    .await;
    let (code, report, human) = bleed(&d).await;
    assert_clean(code, &report, &human);
    assert_eq!(report["targets"].as_array().unwrap().len(), 2);
    assert_removed(&d).await;
    stop(d).await;
}

/// A deployment with `layer` switched off (the switches exist in debug builds only,
/// `bleed_switch`), the run against it that must fail, its failed checks and human report.
async fn switched_off(layer: &str) -> (Deployment, Vec<Value>, String) {
    let d = deploy("", 1, &[("TENANTGATE_TEST_DISABLE_LAYER", layer)]).await;
    let (code, report, human) = bleed(&d).await;
    assert_eq!(code, 1, "the run must fail:\n{human}");
    let failed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .cloned()
        .collect();
    (d, failed, human)
}

#[cfg_attr(
    not(debug_assertions),
    ignore = "the layer switches exist in debug builds only"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bleed_test_names_the_leak_when_the_cross_tenant_guard_is_switched_off() {
    let (d, failed, human) = switched_off("cross-tenant-guard").await;
    assert!(
        failed.iter().any(|c| c["reason"]
            .as_str()
            .unwrap()
            .contains("guard canary reached the attacker")),
        "the leak is not named: {failed:#?}"
    );
    // Only what the missing layer guarded failed: the other layers still held.
    for c in &failed {
        assert_eq!(c["family"], "poisoned_response", "{c}");
    }
    assert!(
        human.contains("LEAK FOUND") && human.contains("LEAK  "),
        "{human}"
    );
    assert_removed(&d).await;
    stop(d).await;
}

#[cfg_attr(
    not(debug_assertions),
    ignore = "the layer switches exist in debug builds only"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bleed_test_names_the_leak_when_the_cache_key_forgets_the_tenant() {
    let (d, failed, _) = switched_off("cache-tenant-key").await;
    // The Anthropic-format model's two non-streamed probes, and nothing else: streams are
    // never cached, the OpenAI-compatible model's requests carry a per-tenant `cache_salt`,
    // and the other tenants' composed requests differ, so only the bare pair shared an entry.
    assert_eq!(failed.len(), 2, "{failed:#?}");
    for c in failed {
        assert_eq!(c["family"], "cache_probe", "{c}");
        assert!(
            c["reason"]
                .as_str()
                .unwrap()
                .contains("answered from the cache the victim filled"),
            "{c}"
        );
    }
    assert_removed(&d).await;
    stop(d).await;
}
