//! `[database]`: the control-plane and audit store (SQLite or PostgreSQL).

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite:PATH` (embedded default) or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    /// PostgreSQL only: schema holding tenantgate's tables.
    pub pg_schema: String,
    /// PostgreSQL only: the LOGIN role request connections use (DML grants, owns nothing, no
    /// BYPASSRLS). The gateway creates it and sets its password, derived from the server secret
    /// (replicas sharing the secret derive the same one).
    pub pg_runtime_role: String,
    /// PostgreSQL only: log request connections in with this URL instead (a role the operator
    /// manages; it is granted DML at start, and the gateway refuses to start if it is a
    /// superuser, bypasses RLS or owns tables). `url` stays the owner, for migrations.
    pub runtime_url: Option<String>,
    /// SQLite only. `full` (default): every commit is fsynced, so an acknowledged call's audit
    /// record survives a power loss. `normal`: it survives a killed process but not a power
    /// loss; each commit is cheaper (see the audit benchmark in ARCHITECTURE.md).
    pub sqlite_synchronous: SqliteSync,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteSync {
    #[default]
    Full,
    Normal,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite:data/tenantgate.db".to_owned(),
            max_connections: 8,
            pg_schema: tenantgate_store::DEFAULT_PG_SCHEMA.to_owned(),
            pg_runtime_role: tenantgate_store::DEFAULT_PG_RUNTIME_ROLE.to_owned(),
            runtime_url: None,
            sqlite_synchronous: SqliteSync::Full,
        }
    }
}

impl DatabaseConfig {
    /// The store must be named.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.url.is_empty() {
            return Err(invalid("database.url", "must not be empty"));
        }
        Ok(())
    }
}

impl DatabaseConfig {
    /// The store's options this section describes (the server, the CLI and offboarding's
    /// owner connection open the store with them).
    pub(crate) fn store_options(&self) -> tenantgate_store::StoreOptions {
        let mut opts = tenantgate_store::StoreOptions::new(self.url.clone());
        opts.max_connections = self.max_connections;
        opts.sqlite_fsync_each_commit = self.sqlite_synchronous == SqliteSync::Full;
        opts.pg_schema = self.pg_schema.clone();
        opts.pg_runtime_role = self.pg_runtime_role.clone();
        opts
    }
}
