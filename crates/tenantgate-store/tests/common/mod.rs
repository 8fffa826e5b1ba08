//! Shared harness of the store suites: a fresh SQLite file or PostgreSQL schema per test.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use rand::Rng;
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, PlatformAdmin, TenantScope};
use tenantgate_store::{PgLogin, Store, StoreOptions};

/// The runtime role's password in tests (every test sets the same one: the role is shared by
/// the cluster, its schemas are not).
pub const TEST_PG_PASSWORD: &str = "tenantgatetestpassword";

pub struct Harness {
    pub store: Store,
    pub _dir: Option<tempfile::TempDir>,
    pub pg_schema: Option<(String, String)>,
}

impl Harness {
    /// A second, independent handle on the same database (another replica).
    pub async fn reopen(&self) -> Store {
        let opts = match (&self._dir, &self.pg_schema) {
            (Some(dir), _) => {
                StoreOptions::new(format!("sqlite:{}", dir.path().join("t.db").display()))
            }
            (None, Some((url, schema))) => {
                let mut o = StoreOptions::new(url.clone());
                o.pg_schema = schema.clone();
                o.max_connections = 4;
                o.pg_login = PgLogin::Password(TEST_PG_PASSWORD.into());
                o
            }
            (None, None) => unreachable!(),
        };
        Store::open(&opts).await.unwrap()
    }

    /// The owner's maintenance handle on the same database (audit retention).
    pub async fn maintenance(&self) -> Store {
        let opts = match (&self._dir, &self.pg_schema) {
            (Some(dir), _) => {
                StoreOptions::new(format!("sqlite:{}", dir.path().join("t.db").display()))
            }
            (None, Some((url, schema))) => {
                let mut o = StoreOptions::new(url.clone());
                o.pg_schema = schema.clone();
                o
            }
            (None, None) => unreachable!(),
        };
        Store::open_maintenance(&opts).await.unwrap()
    }

    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some((url, schema)) = self.pg_schema {
            use sqlx::Connection;
            if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&mut c)
                    .await;
            }
        }
    }
}

pub async fn open_sqlite() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("t.db").display());
    let store = Store::open(&StoreOptions::new(url)).await.unwrap();
    Harness {
        store,
        _dir: Some(dir),
        pg_schema: None,
    }
}

#[path = "../../../tenantgate-gateway/tests/common/skip.rs"]
pub mod skip;

pub async fn open_pg() -> Option<Harness> {
    let url = skip::backend_url("TENANTGATE_TEST_POSTGRES_URL")?;
    let schema = format!("tg_test_{:016x}", rand::thread_rng().gen::<u64>());
    let mut opts = StoreOptions::new(url.clone());
    opts.pg_schema = schema.clone();
    opts.max_connections = 2;
    // Requests log in as the runtime role itself, as the gateway's pool does.
    opts.pg_login = PgLogin::Password(TEST_PG_PASSWORD.into());
    let store = Store::open(&opts).await.unwrap();
    Some(Harness {
        store,
        _dir: None,
        pg_schema: Some((url, schema)),
    })
}

#[expect(
    clippy::disallowed_methods,
    reason = "tests stand in for the CLI operator"
)]
pub fn admin() -> PlatformAdmin {
    PlatformAdmin::local_operator("test")
}

#[expect(
    clippy::disallowed_methods,
    reason = "tests stand in for the authentication stage"
)]
pub fn scope(id: &tenantgate_core::TenantId) -> TenantScope {
    TenantScope::from_verified_credential(id.clone())
}

pub fn new_tenant(slug: &str) -> NewTenant {
    NewTenant {
        slug: slug.into(),
        display_name: slug.to_uppercase(),
        plan: PlanTier::Pro,
        isolation: IsolationTier::Namespace,
        allowed_models: vec!["gpt-4o".into(), "demo".into()],
        max_tokens_per_request: Some(2048),
    }
}
