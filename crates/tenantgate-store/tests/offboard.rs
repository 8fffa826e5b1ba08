//! Offboarding removes a tenant from every table that can hold it: each table with a
//! `tenant_id` column in the migrated schema must be in one of the lists offboarding walks
//! (`places::DATA_TABLES`, `offboard::CONTROL_TABLES`, `offboard::PLACE_TABLES`), so a table
//! added by a later migration fails here until offboarding covers it. Both backends.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use tenantgate_store::offboard::{CONTROL_TABLES, PLACE_TABLES};

fn covered(table: &str) -> bool {
    tenantgate_store::DATA_TABLES.contains(&table)
        || CONTROL_TABLES.contains(&table)
        || PLACE_TABLES.contains(&table)
}

#[tokio::test]
async fn every_table_with_a_tenant_id_is_covered_by_offboarding_on_sqlite() {
    let h = common::open_sqlite().await;
    let tenantgate_store::Db::Sqlite(pool) = h.store.db() else {
        unreachable!()
    };
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name NOT LIKE '_sqlx%' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut with_tenant = Vec::new();
    for t in &tables {
        let cols: Vec<String> =
            sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{t}')"))
                .fetch_all(pool)
                .await
                .unwrap();
        if cols.iter().any(|c| c == "tenant_id") {
            with_tenant.push(t.clone());
        }
    }
    assert!(with_tenant.len() >= 20, "{with_tenant:?}");
    let missed: Vec<&String> = with_tenant.iter().filter(|t| !covered(t)).collect();
    assert!(
        missed.is_empty(),
        "tables offboarding does not remove: {missed:?}"
    );
    h.cleanup().await;
}

#[tokio::test]
async fn every_table_with_a_tenant_id_is_covered_by_offboarding_on_postgres() {
    let Some(h) = common::open_pg().await else {
        return;
    };
    let schema = h.pg_schema.clone().unwrap().1;
    let url = h.pg_schema.clone().unwrap().0;
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let with_tenant: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND column_name = 'tenant_id' ORDER BY 1",
    )
    .bind(&schema)
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert!(with_tenant.len() >= 20, "{with_tenant:?}");
    let missed: Vec<&String> = with_tenant.iter().filter(|t| !covered(t)).collect();
    assert!(
        missed.is_empty(),
        "tables offboarding does not remove: {missed:?}"
    );
    h.cleanup().await;
}
