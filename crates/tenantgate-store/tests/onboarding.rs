//! Onboarding's store side: a tenant whose creation failed leaves no storage behind.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{admin, new_tenant, open_sqlite};
use tenantgate_core::IsolationTier;
use tenantgate_store::Db;

/// The schema tier's own file is made before the tenant row; when the row cannot be written,
/// the file goes again, and a discard afterwards does not bring it back.
#[tokio::test]
async fn a_failed_creation_leaves_no_tenant_file() {
    let h = open_sqlite().await;
    let Db::Sqlite(pool) = h.store.db() else {
        unreachable!()
    };
    sqlx::query("CREATE TRIGGER fault BEFORE INSERT ON tenant_placement BEGIN SELECT RAISE(ABORT, 'injected'); END")
        .execute(pool)
        .await
        .unwrap();
    let mut t = new_tenant("bank");
    t.isolation = IsolationTier::Schema;
    let id = tenantgate_store::new_tenant_id();
    let a = admin();
    let p = h.store.platform(&a);
    assert!(p.create_tenant_as(id.clone(), &t, None).await.is_err());
    let dir = h._dir.as_ref().unwrap().path().join("tenants");
    let files = |when: &str| {
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{when}: {left:?}");
    };
    files("after the failed creation");
    p.discard_tenant(&id).await.unwrap();
    files("after the discard");
}
