//! The gateway's key maintenance: scheduled rotation and background re-wrap, and offboarding.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, TestGateway};
use std::time::Duration;
use tenantgate_core::TenantScope;
use tenantgate_gateway::server::key_maintenance;

#[expect(
    clippy::disallowed_methods,
    reason = "the test stands in for the authentication stage"
)]
fn scope(id: &tenantgate_core::TenantId) -> TenantScope {
    TenantScope::from_verified_credential(id.clone())
}

#[tokio::test]
async fn maintenance_rotates_due_keys_and_finishes_rewraps() {
    let gw = TestGateway::start_with(|c| c.encryption.retire_grace_secs = 0).await;
    let (t, _) = gw.tenant("acme", &["demo"], None).await;
    let s = scope(&t.id);
    let kr = gw.state.keyring();
    let sealed = kr.seal(&s, "prompt", "p1", b"v1 data").await.unwrap();
    // Nothing due, nothing pending.
    assert_eq!(
        key_maintenance(&gw.state, Some(Duration::from_secs(3600)))
            .await
            .unwrap(),
        (0, 0)
    );
    // A rotation made elsewhere (another replica, the CLI) leaves a re-wrap for the pass.
    kr.kms().rotate(&t.id).await.unwrap();
    assert_eq!(key_maintenance(&gw.state, None).await.unwrap(), (0, 1));
    let admin = TestGateway::admin();
    let st = kr.status(&admin, &t.id).await.unwrap();
    assert_eq!(
        (st.current_version, st.versions.clone(), st.pending_rewrap),
        (Some(2), vec![2], 0)
    );
    // Every key is older than zero seconds: the pass rotates it.
    assert_eq!(
        key_maintenance(&gw.state, Some(Duration::ZERO))
            .await
            .unwrap()
            .0,
        1
    );
    assert_eq!(
        kr.status(&admin, &t.id).await.unwrap().current_version,
        Some(3)
    );
    assert_eq!(
        &*kr.open(&s, "prompt", "p1", &sealed).await.unwrap(),
        b"v1 data"
    );
    gw.stop().await;
}

/// The CLI's `keys rotate` re-wraps everything at once, so no data key is left under version 1;
/// version 1 must still be destroyed once `retire_grace` is over, by the gateway's pass.
#[tokio::test]
async fn a_rotation_rewrapped_elsewhere_still_destroys_the_old_version_after_grace() {
    let gw = TestGateway::start_with(|c| c.encryption.retire_grace_secs = 1).await;
    let (t, _) = gw.tenant("acme", &["demo"], None).await;
    let s = scope(&t.id);
    let kr = gw.state.keyring();
    let sealed = kr.seal(&s, "prompt", "p1", b"v1 data").await.unwrap();
    let admin = TestGateway::admin();
    // What `tenantgate keys rotate` does: rotate and re-wrap in one go, inside the grace.
    let st = kr.rotate(&admin, &t.id).await.unwrap();
    assert_eq!(
        (st.current_version, st.versions.clone(), st.pending_rewrap),
        (Some(2), vec![1, 2], 0),
        "inside the grace the old version is kept"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        key_maintenance(&gw.state, None).await.unwrap();
        if kr.status(&admin, &t.id).await.unwrap().versions == vec![2] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "version 1 was never destroyed after its grace"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        &*kr.open(&s, "prompt", "p1", &sealed).await.unwrap(),
        b"v1 data"
    );
    gw.stop().await;
}

/// Deleted the way `tenantgate tenant delete` does it: the CLI appends its own record.
fn cli(gw: &TestGateway) -> tenantgate_gateway::control::AuditSink<'_> {
    tenantgate_gateway::control::AuditSink::Cli(gw.state.store())
}

#[tokio::test]
async fn deleting_a_tenant_revokes_its_keys_and_shreds_its_data() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &["demo"], None).await;
    let (_, other) = gw.tenant("globex", &["demo"], None).await;
    let s = scope(&t.id);
    let kr = gw.state.keyring();
    kr.put_secret(&s, "provider_key", b"sk-acme").await.unwrap();
    let admin = TestGateway::admin();
    let deleted =
        tenantgate_gateway::control::delete_tenant(cli(&gw), gw.state.store(), kr, &admin, &t.id)
            .await
            .unwrap();
    assert_eq!(deleted.status, tenantgate_core::TenantStatus::Deleted);
    gw.wait_for_revision().await;
    assert_eq!(
        gw.post("/v1/chat/completions", &key, &chat("demo", "hi"))
            .await
            .status(),
        401
    );
    assert_eq!(
        gw.post("/v1/chat/completions", &other, &chat("demo", "hi"))
            .await
            .status(),
        200
    );
    assert!(kr.get_secret(&s, "provider_key").await.is_err());
    // Running it again finishes nothing new and fails nothing.
    tenantgate_gateway::control::delete_tenant(cli(&gw), gw.state.store(), kr, &admin, &t.id)
        .await
        .unwrap();
    gw.stop().await;
}
