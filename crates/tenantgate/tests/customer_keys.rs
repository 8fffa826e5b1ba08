//! `tenantgate keys use-kms` / `use-platform` through the real binary, against a local AWS KMS
//! (moto, through the official SDK): the tenant's KEK moves to its own key and back, and each
//! move is in the tenant's audit chain with the key it moved to.
//! Needs `TENANTGATE_TEST_KMS_URL` (skipped without it, with a message).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;
#[path = "../../tenantgate-gateway/tests/common/moto.rs"]
mod moto;

use common::cli_json;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_use_kms_moves_a_tenant_to_its_own_key_and_back_and_each_move_is_audited() {
    let Some(kms) = moto::moto().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    cli_json(
        d,
        &["tenant", "create", "--slug", "acme", "--models", "demo"],
    );
    let admin = cli_json(
        d,
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--role",
            "tenant_admin",
        ],
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let arn = kms.create_key().await;
    let moved = cli_json(
        d,
        &[
            "keys",
            "use-kms",
            "acme",
            "--aws-key-id",
            &arn,
            "--region",
            moto::REGION,
            "--endpoint",
            &kms.url,
        ],
    );
    let ours = format!("aws:{arn}");
    assert_eq!(moved["wrapped_by"], ours.as_str(), "{moved}");
    assert_eq!(moved["customer_key"], ours.as_str());
    assert_eq!(moved["pending_rewrap"], 0);
    let st = cli_json(d, &["keys", "status", "--tenant", "acme"]);
    assert_eq!(st[0]["wrapped_by"], ours.as_str(), "{st}");

    let back = cli_json(d, &["keys", "use-platform", "acme"]);
    assert_eq!(back["wrapped_by"], "local", "{back}");
    assert_eq!(back["customer_key"], Value::Null);

    let (mut child, url) = common::serve(d).await;
    let body: Value = reqwest::Client::new()
        .get(format!(
            "{url}/tenant/v1/audit/records?event=configuration_change"
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    common::terminate(&mut child).await;
    let moves: Vec<&Value> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["record"]["detail"])
        .filter(|d| {
            d["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("keys.use_"))
        })
        .collect();
    // Newest first.
    assert_eq!(moves.len(), 2, "{body}");
    assert_eq!(moves[0]["action"], "keys.use_platform");
    assert_eq!(moves[0]["wrapped_by"], "local");
    assert_eq!(moves[1]["action"], "keys.use_kms");
    assert_eq!(moves[1]["wrapped_by"], ours.as_str());
    assert_eq!(moves[1]["region"], moto::REGION);
}
