//! Opening a store: URL parsing, SQLite pragmas, PostgreSQL schema, runtime role and RLS setup.

use crate::{Access, Result, Store, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Executor};
use std::str::FromStr;
use std::time::Duration;

pub const DEFAULT_PG_SCHEMA: &str = "tenantgate";
pub const DEFAULT_PG_RUNTIME_ROLE: &str = "tenantgate_app";

/// How to open a store. `url` selects the backend: `sqlite:PATH` / `sqlite://PATH` or
/// `postgres://...` / `postgresql://...`.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    pub max_connections: u32,
    /// PostgreSQL schema holding tenantgate's tables (created if missing).
    pub pg_schema: String,
    /// PostgreSQL role the runtime pool switches to: DML grants only, no ownership, no BYPASSRLS.
    pub pg_runtime_role: String,
    pub acquire_timeout: Duration,
    /// SQLite only: `true` (default) fsyncs every commit, so a committed audit record survives
    /// a power loss; `false` (`synchronous=NORMAL` in WAL mode) survives a killed process but
    /// not a power loss, and makes each commit cheaper.
    pub sqlite_fsync_each_commit: bool,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            pg_schema: DEFAULT_PG_SCHEMA.to_owned(),
            pg_runtime_role: DEFAULT_PG_RUNTIME_ROLE.to_owned(),
            sqlite_fsync_each_commit: true,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the store. Fails if the backend cannot be reached:
    /// the gateway does not start on a store it cannot use.
    pub async fn open(opts: &StoreOptions) -> Result<Store> {
        let url = opts.url.as_str();
        if url.starts_with("sqlite:") {
            open_sqlite(opts).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            open_postgres(opts).await
        } else {
            Err(StoreError::Url(format!(
                "{url:?}: expected sqlite:PATH or postgres://..."
            )))
        }
    }
}

async fn open_sqlite(opts: &StoreOptions) -> Result<Store> {
    let path = opts
        .url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        // An in-memory database is per connection; a pool of them would be several databases.
        return Err(StoreError::Url(
            "sqlite needs a file path (in-memory databases are not shared across connections)"
                .into(),
        ));
    }
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Url(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
    }
    let connect = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
        .map_err(|e| StoreError::Url(e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if opts.sqlite_fsync_each_commit {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        })
        .foreign_keys(true)
        // Deleted rows are overwritten, so crypto-shredded key material leaves no bytes behind.
        .pragma("secure_delete", "ON")
        .busy_timeout(Duration::from_secs(5))
        .disable_statement_logging();
    let pool = SqlitePoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(connect)
        .await?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    Ok(Store::Sqlite(pool))
}

fn check_ident(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Url(format!(
            "{what} {s:?} must be a lowercase identifier ([a-z][a-z0-9_]*)"
        )))
    }
}

async fn open_postgres(opts: &StoreOptions) -> Result<Store> {
    let schema = opts.pg_schema.clone();
    let role = opts.pg_runtime_role.clone();
    check_ident("database.pg_schema", &schema)?;
    check_ident("database.pg_runtime_role", &role)?;
    let connect = PgConnectOptions::from_str(&opts.url)
        .map_err(|e| StoreError::Url(e.to_string()))?
        .disable_statement_logging();

    // Migrations and grants run as the connecting (owner) role on one dedicated connection,
    // serialised across processes by an advisory lock (role creation is cluster-wide).
    let mut admin = sqlx::PgConnection::connect_with(&connect).await?;
    admin
        .execute("SELECT pg_advisory_lock(7335463318211)")
        .await?;
    let setup = async {
        admin
            .execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}").as_str())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&mut admin).await?;
        admin
            .execute(
                format!(
                    "DO $$ BEGIN
                       IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                         CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
                       END IF;
                     END $$;
                     GRANT {role} TO CURRENT_USER;
                     GRANT USAGE ON SCHEMA {schema} TO {role};
                     GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
                     GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
                     REVOKE ALL ON {schema}._sqlx_migrations FROM {role};
                     REVOKE UPDATE ON {schema}.audit_records, {schema}.audit_checkpoints FROM {role};"
                )
                .as_str(),
            )
            .await?;
        Ok::<_, StoreError>(())
    }
    .await;
    let _ = admin
        .execute("SELECT pg_advisory_unlock(7335463318211)")
        .await;
    let _ = admin.close().await;
    setup?;

    let after = format!("SET search_path TO {schema}; SET ROLE {role}");
    let pool = PgPoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .acquire_timeout(opts.acquire_timeout)
        .after_connect(move |conn, _meta| {
            let after = after.clone();
            Box::pin(async move {
                conn.execute(after.as_str()).await?;
                Ok(())
            })
        })
        .connect_with(connect)
        .await?;
    Ok(Store::Postgres(pool))
}

/// Applies the transaction-local RLS setting for `access`.
pub(crate) async fn apply_pg_access(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    access: Access<'_>,
) -> Result<()> {
    match access {
        Access::Tenant(id) => {
            sqlx::query("SELECT set_config('tenantgate.tenant_id', $1, true)")
                .bind(id.as_str())
                .execute(&mut **tx)
                .await?;
        }
        Access::Platform => {
            sqlx::query("SELECT set_config('tenantgate.platform', 'on', true)")
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}
