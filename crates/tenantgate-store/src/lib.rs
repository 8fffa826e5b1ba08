//! tenantgate persistence.
//!
//! [`Store`] is a closed set of backends (SQLite, PostgreSQL). Callers reach data only through
//! two handles:
//! - [`Store::tenant`] takes a [`TenantScope`] and returns a [`TenantStore`] whose methods take no
//!   tenant id: a query without the tenant predicate cannot be written from outside this crate.
//! - [`Store::platform`] takes a [`PlatformAdmin`] capability and holds every cross-tenant
//!   operation (see `platform.rs`).
//!
//! Architecture Invariant: no SQL exists outside this crate (only this crate depends on sqlx).
//! Architecture Invariant: in PostgreSQL every tenant table has row-level security enabled and
//! forced, and the runtime role neither owns the tables nor bypasses RLS.

pub mod audit;
pub mod audit_anchor;
pub mod audit_sqlite;
mod backend;
pub mod console;
pub mod endpoints;
pub mod export;
pub mod finetune;
pub mod identity;
pub mod incident;
mod keyring;
mod kms;
pub mod knowledge;
mod moves;
pub mod offboard;
pub mod onboarding;
mod places;
mod platform;
pub mod prompts;
pub mod routing;
mod rows;
mod tenant;

pub use backend::{PgLogin, StoreOptions, DEFAULT_PG_RUNTIME_ROLE, DEFAULT_PG_SCHEMA};
pub use keyring::{KeyStatus, Keyring, KeyringError, KeyringOptions};
pub use kms::LocalKms;
pub use moves::{MovePhase, MovePlan, SwitchReport, TableCheck};
pub use offboard::{DeletionPhase, KeyInventory, PendingDeletion, PurgedPlace, TableRows};
pub use places::{Layer, LayerPlace, Place, PlaceSummary, DATA_TABLES};
pub use platform::{new_tenant_id, AuthSnapshot, Platform};
pub use tenant::TenantStore;

use tenantgate_core::{InvalidValue, PlatformAdmin, TenantScope};

/// tenantgate's store: the shared database (the control plane, and the data of tenants on
/// the namespace tier) and the places other tenants' data lives in (their isolation tier:
/// their own PostgreSQL schema or SQLite file, or their own database). Which place a
/// tenant's rows are in is resolved here, below the tenant-bound handle; nothing above the
/// store branches on a tenant's tier.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    places: std::sync::Arc<places::Places>,
}

/// One database connection pool, of either backend.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Absent, or belonging to another tenant: callers cannot tell the two apart.
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error("invalid database url: {0}")]
    Url(String),
    #[error("database error: {0}")]
    Backend(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The audit writer's own SQLite connection (`audit_sqlite`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// A write refused by a place's fence: the tenant's data moved elsewhere (`moves.rs`).
    /// The writer forgets the place and retries; the new one comes from the control plane.
    pub fn is_moved(&self) -> bool {
        match self {
            StoreError::Backend(e) => e.to_string().contains("tenantgate: tenant moved"),
            StoreError::Sqlite(e) => e.to_string().contains("tenantgate: tenant moved"),
            StoreError::NotFound
            | StoreError::Conflict(_)
            | StoreError::Invalid(_)
            | StoreError::Url(_)
            | StoreError::Migrate(_)
            | StoreError::Corrupt(_) => false,
        }
    }
}

impl Store {
    pub(crate) fn new(db: Db, opts: &StoreOptions) -> Store {
        Store {
            places: std::sync::Arc::new(places::Places::new(opts)),
            db,
        }
    }

    /// A store whose placements are read afresh each time (the owner's maintenance store).
    pub(crate) fn uncached(db: Db, opts: &StoreOptions) -> Store {
        Store {
            places: std::sync::Arc::new(places::Places::new(opts).uncached()),
            db,
        }
    }

    /// The shared database's pool (tests and operator tools inspect it directly).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// For `with_tx!`, which also runs on a tenant's place (`places::Data`): the shared
    /// store's transactions keep the connection's search path (the shared schema).
    pub(crate) fn pg_schema(&self) -> Option<&str> {
        None
    }

    /// The tenant-bound handle: every query it runs is restricted to `scope`'s tenant.
    pub fn tenant<'a>(&'a self, scope: &'a TenantScope) -> TenantStore<'a> {
        TenantStore::new(self, scope)
    }

    /// Cross-tenant operations, behind the platform capability.
    pub fn platform<'a>(&'a self, admin: &'a PlatformAdmin) -> Platform<'a> {
        Platform::new(self, admin)
    }

    /// The control-plane revision: it changes whenever a tenant or key changes. Not tenant data.
    pub async fn revision(&self) -> Result<i64> {
        let q = "SELECT revision FROM control_revision WHERE id = 1";
        Ok(match &self.db {
            Db::Sqlite(p) => sqlx::query_scalar(q).fetch_one(p).await?,
            Db::Postgres(p) => sqlx::query_scalar(q).fetch_one(p).await?,
        })
    }

    /// A listener that wakes when the control plane changes (PostgreSQL `LISTEN`); `None` on
    /// SQLite, where callers poll [`Store::revision`].
    pub async fn change_listener(&self) -> Result<Option<ChangeListener>> {
        match &self.db {
            Db::Sqlite(_) => Ok(None),
            Db::Postgres(pool) => {
                let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
                l.listen("tenantgate_control").await?;
                Ok(Some(ChangeListener(l)))
            }
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match &self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        self.places.close().await;
        match &self.db {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}

/// Wakes on control-plane changes; see [`Store::change_listener`].
pub struct ChangeListener(sqlx::postgres::PgListener);

impl ChangeListener {
    /// Waits for the next change notification (of any schema: a spurious wake-up only costs
    /// one revision check).
    pub async fn changed(&mut self) -> Result<()> {
        self.0.recv().await?;
        Ok(())
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Whose rows a transaction may touch; applied as a PostgreSQL setting (RLS) and, in both
/// backends, as an explicit predicate in every tenant query.
#[derive(Clone, Copy)]
pub(crate) enum Access<'a> {
    Tenant(&'a tenantgate_core::TenantId),
    Platform,
}

/// Runs `$body` inside a transaction on whichever backend `$store` (the shared store, or a
/// tenant's place, `places::Data`) is, with `$access` applied (RLS settings,
/// and the tenant's schema as the search path, in PostgreSQL). The body is written once and
/// type-checked per backend. Evaluates to `Ok(body value)`; an early return with `?` drops
/// the transaction, which rolls it back.
macro_rules! with_tx {
    ($store:expr, $access:expr, |$tx:ident| $body:block) => {{
        // Evaluated once (it may resolve a tenant's place).
        // Method calls, not a trait: autoderef finds `db` and `pg_schema` on a `Store` or a
        // `places::Data` behind any number of references.
        let at = &$store;
        match at.db() {
            $crate::Db::Sqlite(pool) => {
                // IMMEDIATE: take the write lock up front. A deferred transaction that reads
                // and then writes fails at once ("database is locked") when another connection
                // wrote in between; an immediate one waits under the busy timeout instead.
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                Ok::<_, $crate::StoreError>(out)
            }
            $crate::Db::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                $crate::backend::apply_pg_access(&mut $tx, $access, at.pg_schema()).await?;
                let out = $body;
                $tx.commit().await?;
                Ok::<_, $crate::StoreError>(out)
            }
        }
    }};
}
pub(crate) use with_tx;

/// Maps a unique-constraint violation to [`StoreError::Conflict`].
pub(crate) fn conflict_or(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(format!("{what} already exists"))
        }
        _ => StoreError::Backend(e),
    }
}
