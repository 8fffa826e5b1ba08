//! Opening a store: URL parsing, SQLite pragmas, PostgreSQL schema, runtime role and RLS setup.

use crate::{Access, Db, Result, Store, StoreError};
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
    /// PostgreSQL role the request pool runs as: DML grants only, no ownership, no BYPASSRLS.
    pub pg_runtime_role: String,
    /// PostgreSQL only: how the request pool logs in (see [`PgLogin`]).
    pub pg_login: PgLogin,
    pub acquire_timeout: Duration,
    /// SQLite only: `true` (default) fsyncs every commit, so a committed audit record survives
    /// a power loss; `false` (`synchronous=NORMAL` in WAL mode) survives a killed process but
    /// not a power loss, and makes each commit cheaper.
    pub sqlite_fsync_each_commit: bool,
}

/// How the PostgreSQL request pool logs in. `url` (the owner) always runs migrations and grants.
#[derive(Clone)]
pub enum PgLogin {
    /// As `pg_runtime_role` itself (a LOGIN role, created or given this password at open), with
    /// `url`'s host and database: a connection that owns nothing, so no `RESET ROLE` or
    /// `SET ROLE` on it reaches the owner's privileges.
    Password(String),
    /// With this URL: an operator-managed role (its user is granted DML at open; it must not be
    /// a superuser, bypass RLS or own the schema's tables).
    Url(String),
    /// As the owner, switching each connection to `pg_runtime_role` (`SET ROLE`). For operator
    /// tools that hold the owner's credentials anyway (the CLI); a `RESET ROLE` on such a
    /// connection regains the owner's privileges, so a server taking requests never uses it.
    OwnerSetRole,
}

impl std::fmt::Debug for PgLogin {
    // Never print a password or a URL that may carry one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PgLogin::Password(_) => "Password(***)",
            PgLogin::Url(_) => "Url(***)",
            PgLogin::OwnerSetRole => "OwnerSetRole",
        })
    }
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            pg_schema: DEFAULT_PG_SCHEMA.to_owned(),
            pg_runtime_role: DEFAULT_PG_RUNTIME_ROLE.to_owned(),
            pg_login: PgLogin::OwnerSetRole,
            sqlite_fsync_each_commit: true,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Every statement is traced (SQL text and timing, never the bound values) at TRACE under
/// target `sqlx::query`, which no deployment's log filter enables by accident; tests count a
/// call's database work with it (`tenantgate-gateway/tests/queries.rs`). A slow one (past a
/// second) says so, at the same level.
trait Traced: sqlx::ConnectOptions {
    fn traced(self) -> Self {
        self.log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Trace, Duration::from_secs(1))
    }
}

impl<O: sqlx::ConnectOptions> Traced for O {}

impl Store {
    /// A store on the owner's connection (`url`, no role switch), for maintenance the request
    /// role may not do: audit retention. One connection, opened when first used.
    pub async fn open_maintenance(opts: &StoreOptions) -> Result<Store> {
        let url = opts.url.as_str();
        if url.starts_with("sqlite:") {
            // One file, one set of rights: the same store.
            open_sqlite(opts).await.map(|db| Store::uncached(db, opts))
        } else {
            check_ident("database.pg_schema", &opts.pg_schema)?;
            let connect = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::Url(e.to_string()))?
                .traced();
            let after = format!("SET search_path TO {}", opts.pg_schema);
            // Retention takes one; a tenant move holds the source's locks on one while it
            // copies and switches on others.
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(opts.acquire_timeout)
                .after_connect(move |conn, _meta| {
                    let after = after.clone();
                    Box::pin(async move {
                        conn.execute(after.as_str()).await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(connect);
            Ok(Store::uncached(Db::Postgres(pool), opts))
        }
    }

    /// Opens (creating if needed) and migrates the store. Fails if the backend cannot be reached:
    /// the gateway does not start on a store it cannot use.
    pub async fn open(opts: &StoreOptions) -> Result<Store> {
        let url = opts.url.as_str();
        if url.starts_with("sqlite:") {
            Ok(Store::new(open_sqlite(opts).await?, opts))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            open_postgres(opts).await
        } else {
            Err(StoreError::Url(format!(
                "{url:?}: expected sqlite:PATH or postgres://..."
            )))
        }
    }
}

/// Opens (creating and migrating) one SQLite database file: the shared store, or a tenant's
/// own file (`places.rs`).
pub(crate) async fn open_sqlite(opts: &StoreOptions) -> Result<Db> {
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
        .traced();
    let pool = SqlitePoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(connect)
        .await?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    Ok(Db::Sqlite(pool))
}

pub(crate) fn check_ident(what: &str, s: &str) -> Result<()> {
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
    // The role requests run as: an operator's own (`Url`) is the user its URL names.
    let runtime_connect = match &opts.pg_login {
        PgLogin::Url(u) => Some(
            PgConnectOptions::from_str(u)
                .map_err(|e| StoreError::Url(format!("database.runtime_url: {e}")))?
                .traced(),
        ),
        PgLogin::Password(_) | PgLogin::OwnerSetRole => None,
    };
    let role = match &runtime_connect {
        Some(c) => c.get_username().to_owned(),
        None => opts.pg_runtime_role.clone(),
    };
    check_ident("database.pg_schema", &schema)?;
    check_ident("database.pg_runtime_role", &role)?;
    // Not traced: the setup below sends the runtime role's password in a statement's text.
    // The request pool's connections (made from a clone below) are.
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
            .execute(
                format!("CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}")
                    .as_str(),
            )
            .await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&mut admin)
            .await?;
        // The request role: created NOLOGIN if missing; a LOGIN with its password for
        // `Password`; only `OwnerSetRole` needs the owner to be a member (for SET ROLE).
        let login = match &opts.pg_login {
            PgLogin::Password(pw) => {
                check_password(pw)?;
                format!("ALTER ROLE {role} LOGIN PASSWORD '{pw}';")
            }
            PgLogin::OwnerSetRole => format!("GRANT {role} TO CURRENT_USER;"),
            PgLogin::Url(_) => String::new(),
        };
        admin
            .execute(
                format!(
                    "DO $$ BEGIN
                       IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                         CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
                       END IF;
                     END $$;
                     {login}"
                )
                .as_str(),
            )
            .await?;
        let (connect, after) = match (&opts.pg_login, runtime_connect) {
            (PgLogin::OwnerSetRole, _) => (
                connect.clone().traced(),
                format!("SET search_path TO {schema}; SET ROLE {role}"),
            ),
            (PgLogin::Password(pw), _) => (
                connect.clone().username(&role).password(pw).traced(),
                format!("SET search_path TO {schema}"),
            ),
            (PgLogin::Url(_), Some(c)) => (c, format!("SET search_path TO {schema}")),
            (PgLogin::Url(_), None) => unreachable!("parsed above"),
        };
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
        // Checked before any grant, so a misconfigured login (the owner's own URL) is refused
        // without touching its privileges.
        if !matches!(opts.pg_login, PgLogin::OwnerSetRole) {
            check_request_role(&pool, &schema).await?;
        }
        grant_runtime(&mut admin, &schema, &role).await?;
        // Tenants on the schema tier: their schemas migrate with the shared one.
        let placed: Vec<String> = sqlx::query_scalar(
            "SELECT location FROM tenant_placement WHERE tier = 'schema' ORDER BY location",
        )
        .fetch_all(&mut admin)
        .await?;
        for s in placed {
            migrate_pg_schema(&mut admin, &s, &schema, &role).await?;
        }
        Ok::<_, StoreError>(pool)
    }
    .await;
    let _ = admin
        .execute("SELECT pg_advisory_unlock(7335463318211)")
        .await;
    let _ = admin.close().await;
    Ok(Store::new(Db::Postgres(setup?), opts))
}

/// DML only for the request role; audit rows are neither updated nor deleted by requests
/// (retention runs on the owner's maintenance connection).
async fn grant_runtime(admin: &mut sqlx::PgConnection, schema: &str, role: &str) -> Result<()> {
    admin
        .execute(
            format!(
                "GRANT USAGE ON SCHEMA {schema} TO {role};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
                 GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
                 REVOKE ALL ON {schema}._sqlx_migrations FROM {role};
                 REVOKE UPDATE ON {schema}.audit_records, {schema}.audit_checkpoints FROM {role};
                 REVOKE DELETE ON {schema}.audit_records, {schema}.audit_checkpoints, {schema}.audit_bodies FROM {role};"
            )
            .as_str(),
        )
        .await?;
    Ok(())
}

/// Creates (if missing) and migrates a schema-tier tenant's own schema in the shared database,
/// as the owner: the same tables, triggers and row-level security as the shared schema, and
/// the same grants to the request role. (`open_postgres` runs the same on its setup
/// connection for every placed schema at start.)
pub(crate) async fn migrate_pg_schema(
    admin: &mut sqlx::PgConnection,
    tenant_schema: &str,
    shared: &str,
    role: &str,
) -> Result<()> {
    check_ident("tenant schema", tenant_schema)?;
    admin
        .execute(
            format!(
                "CREATE SCHEMA IF NOT EXISTS {tenant_schema}; SET search_path TO {tenant_schema}"
            )
            .as_str(),
        )
        .await?;
    let migrated = sqlx::migrate!("./migrations/postgres")
        .run(&mut *admin)
        .await;
    let granted = match migrated {
        Ok(()) => grant_runtime(admin, tenant_schema, role).await,
        Err(e) => Err(e.into()),
    };
    admin
        .execute(format!("SET search_path TO {shared}").as_str())
        .await?;
    granted
}

/// A one-connection pool on the owner's login whose search path is `schema` (which need not
/// exist yet), with the role requests run as. For provisioning at run time: a pool, not a
/// bare connection, because the migrator over `&mut PgConnection` makes a future that is
/// not `Send` for every lifetime, and request handlers provision.
pub(crate) async fn pg_owner_pool(
    opts: &StoreOptions,
    schema: &str,
) -> Result<(sqlx::PgPool, String)> {
    check_ident("schema", schema)?;
    let role = match &opts.pg_login {
        PgLogin::Url(u) => PgConnectOptions::from_str(u)
            .map_err(|e| StoreError::Url(format!("database.runtime_url: {e}")))?
            .get_username()
            .to_owned(),
        PgLogin::Password(_) | PgLogin::OwnerSetRole => opts.pg_runtime_role.clone(),
    };
    let connect = PgConnectOptions::from_str(&opts.url)
        .map_err(|e| StoreError::Url(e.to_string()))?
        .traced();
    let pool = search_path_pool(connect, schema, 1, opts.acquire_timeout).await?;
    Ok((pool, role))
}

async fn search_path_pool(
    connect: PgConnectOptions,
    schema: &str,
    max: u32,
    acquire_timeout: Duration,
) -> Result<sqlx::PgPool> {
    let after = format!("SET search_path TO {schema}");
    Ok(PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _meta| {
            let after = after.clone();
            Box::pin(async move {
                conn.execute(after.as_str()).await?;
                Ok(())
            })
        })
        .connect_with(connect)
        .await?)
}

/// Provisions a schema-tier tenant's schema at run time (see [`migrate_pg_schema`]).
pub(crate) async fn provision_pg_schema(opts: &StoreOptions, tenant_schema: &str) -> Result<()> {
    let (pool, role) = pg_owner_pool(opts, tenant_schema).await?;
    let r = async {
        pool.execute(format!("CREATE SCHEMA IF NOT EXISTS {tenant_schema}").as_str())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let mut c = pool.acquire().await?;
        grant_runtime(&mut c, tenant_schema, &role).await
    }
    .await;
    pool.close().await;
    r
}

/// Drops a schema-tier tenant's schema (after its keys were shredded).
pub(crate) async fn drop_pg_schema(opts: &StoreOptions, tenant_schema: &str) -> Result<()> {
    let (pool, _) = pg_owner_pool(opts, &opts.pg_schema).await?;
    check_ident("tenant schema", tenant_schema)?;
    let r = pool
        .execute(format!("DROP SCHEMA IF EXISTS {tenant_schema} CASCADE").as_str())
        .await;
    pool.close().await;
    r.map(|_| ()).map_err(Into::into)
}

/// Opens a dedicated tenant's own PostgreSQL database (`url`, its own role): creates and
/// migrates tenantgate's schema there. Nobody else's rows are in it, so it needs no separate
/// request role; row-level security and the audit triggers still apply.
pub(crate) async fn open_pg_dedicated(opts: &StoreOptions, url: &str) -> Result<Db> {
    let schema = opts.pg_schema.clone();
    check_ident("database.pg_schema", &schema)?;
    let connect = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Url(e.to_string()))?
        .traced();
    let pool = search_path_pool(
        connect,
        &schema,
        opts.max_connections.clamp(1, 4),
        opts.acquire_timeout,
    )
    .await?;
    pool.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(Db::Postgres(pool))
}

/// A password goes into `ALTER ROLE .. PASSWORD '..'` (no bind parameters there): only
/// characters that need no quoting.
fn check_password(pw: &str) -> Result<()> {
    if pw.len() >= 16 && pw.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(StoreError::Url(
            "the request role's password must be at least 16 ASCII letters or digits".into(),
        ))
    }
}

/// Refuses to serve requests through a login that could bypass row-level security: a
/// superuser, a BYPASSRLS role, the owner of any of the schema's tables, or a member of a
/// role that is one of those (reachable with `SET ROLE`).
async fn check_request_role(pool: &sqlx::PgPool, schema: &str) -> Result<()> {
    let (user, bad_roles, owned): (String, Vec<String>, i64) = sqlx::query_as(
        "SELECT current_user::text, \
           ARRAY(SELECT r.rolname::text FROM pg_roles r \
                 WHERE (r.rolsuper OR r.rolbypassrls OR EXISTS (SELECT 1 FROM pg_tables t \
                        WHERE t.schemaname = $1 AND t.tableowner = r.rolname)) \
                   AND pg_has_role(current_user, r.oid, 'MEMBER')), \
           (SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tableowner = current_user)",
    )
    .bind(schema)
    .fetch_one(pool)
    .await?;
    if !bad_roles.is_empty() || owned > 0 {
        return Err(StoreError::Url(format!(
            "the request pool's user {user:?} must not be a superuser, bypass row-level security \
             or own tables in schema {schema:?} (directly or through a role it can SET ROLE \
             to: {bad_roles:?}); give database.runtime_url a role with DML grants only"
        )));
    }
    Ok(())
}

/// Applies the transaction-local RLS setting for `access` and, for a tenant on the schema
/// tier, its schema as the search path (one statement either way).
pub(crate) async fn apply_pg_access(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    access: Access<'_>,
    schema: Option<&str>,
) -> Result<()> {
    match (access, schema) {
        (Access::Tenant(id), None) => {
            sqlx::query("SELECT set_config('tenantgate.tenant_id', $1, true)")
                .bind(id.as_str())
                .execute(&mut **tx)
                .await?;
        }
        (Access::Tenant(id), Some(s)) => {
            sqlx::query(
                "SELECT set_config('tenantgate.tenant_id', $1, true), set_config('search_path', $2, true)",
            )
            .bind(id.as_str())
            .bind(s)
            .execute(&mut **tx)
            .await?;
        }
        (Access::Platform, Some(s)) => {
            sqlx::query(
                "SELECT set_config('tenantgate.platform', 'on', true), set_config('search_path', $1, true)",
            )
            .bind(s)
            .execute(&mut **tx)
            .await?;
        }
        (Access::Platform, None) => {
            sqlx::query("SELECT set_config('tenantgate.platform', 'on', true)")
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}
