//! `tenantgate apply tenants.yaml` through the real binary: missing tenants are onboarded
//! (their admin key printed once), a rerun changes nothing, an edited file changes plan,
//! status, models and limits of exactly the tenants it names, `--dry-run` only reports, and
//! every change is in the tenant's chain and the platform's.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::cli_json;
use serde_json::Value;

const FILE: &str = r#"
tenants:
  - slug: acme
    display_name: Acme Corp
    plan: pro
    allowed_models: [demo]
    limits: {monthly_spend_micros: 25000000}
    admin_key: true
  - slug: bank
    isolation: schema
    allowed_models: [demo]
"#;

fn by_slug<'a>(out: &'a Value, slug: &str) -> &'a Value {
    out["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["slug"] == slug)
        .unwrap()
}

async fn records(dir: &std::path::Path, chain: &str) -> Vec<String> {
    let url = format!("sqlite:{}", dir.join("data/tenantgate.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let r =
        sqlx::query_scalar("SELECT record FROM audit_records WHERE tenant_id = $1 ORDER BY seq")
            .bind(chain)
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    r
}

#[tokio::test]
async fn apply_onboards_reconciles_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.yaml");
    std::fs::write(&file, FILE).unwrap();
    let path = file.to_str().unwrap();

    let out = cli_json(dir.path(), &["apply", path]);
    assert_eq!(by_slug(&out, "acme")["action"], "created");
    assert_eq!(by_slug(&out, "bank")["action"], "created");
    let key = by_slug(&out, "acme")["admin_key"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(key.starts_with("tg_") || key.len() > 20, "{key}");
    let list = cli_json(dir.path(), &["tenant", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let shown = cli_json(dir.path(), &["tenant", "show", "bank"]);
    assert_eq!(shown["isolation"], "schema");

    // Again: nothing to do.
    let out = cli_json(dir.path(), &["apply", path]);
    assert_eq!(by_slug(&out, "acme")["action"], "unchanged", "{out}");
    assert_eq!(by_slug(&out, "bank")["action"], "unchanged", "{out}");

    // Edited: acme moves plan and is suspended, its budget changes; bank is left out of the
    // file and must stay as it is.
    let edited = r#"
tenants:
  - slug: acme
    display_name: Acme Corp
    plan: enterprise
    status: suspended
    allowed_models: [demo]
    limits: {monthly_spend_micros: 90000000}
"#;
    std::fs::write(&file, edited).unwrap();
    let dry = cli_json(dir.path(), &["apply", path, "--dry-run"]);
    assert_eq!(by_slug(&dry, "acme")["action"], "update");
    let acme = cli_json(dir.path(), &["tenant", "show", "acme"]);
    assert_eq!(acme["plan"], "pro", "a dry run changes nothing");
    let out = cli_json(dir.path(), &["apply", path]);
    let a = by_slug(&out, "acme");
    assert_eq!(a["action"], "updated");
    for k in ["plan", "status", "limits"] {
        assert!(a["changes"].get(k).is_some(), "{a}");
    }
    let acme = cli_json(dir.path(), &["tenant", "show", "acme"]);
    assert_eq!(acme["plan"], "enterprise");
    assert_eq!(acme["status"], "suspended");
    let limits = cli_json(dir.path(), &["tenant", "limits", "acme"]);
    assert_eq!(limits["overrides"]["monthly_spend_micros"], 90000000);
    let bank = cli_json(dir.path(), &["tenant", "show", "bank"]);
    assert_eq!(
        bank["status"], "active",
        "a tenant the file does not name is untouched"
    );

    // Recorded: onboarding and the update in acme's chain and in the platform's (by id).
    let id = acme["id"].as_str().unwrap();
    let own = records(dir.path(), id).await;
    assert!(own[0].contains("tenant.onboard"), "{own:?}");
    assert!(own
        .iter()
        .any(|r| r.contains("tenant.apply") && r.contains("enterprise")));
    let platform = records(dir.path(), "platform").await;
    assert!(platform
        .iter()
        .any(|r| r.contains("tenant.apply") && r.contains(id)));
    assert!(platform.iter().all(|r| !r.contains("Acme Corp")));

    // A bad file is refused before anything changes, naming the entry.
    std::fs::write(&file, "tenants:\n  - slug: acme\n    plan: gold\n").unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["apply", path])
        .current_dir(dir.path())
        .env_remove("TENANTGATE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tenants[0]") && err.contains("gold"), "{err}");
}
