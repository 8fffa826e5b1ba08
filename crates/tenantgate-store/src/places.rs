//! Where each tenant's data lives: its isolation tier (`IsolationTier`).
//!
//! The control plane stays in the shared database for every tier: tenants, API-key hashes,
//! members, break-glass grants, guard/audit/limit policies, prompt settings (the canary, and
//! custom instructions sealed under the tenant's key), knowledge-base names, placements and
//! the revision. It is what authenticates a call and routes it, and what every replica's
//! snapshot reads in one transaction. A tenant's data is in its place ([`DATA_TABLES`]):
//! - namespace: the shared tables (row-level security forced, a tenant predicate in every
//!   query);
//! - schema: its own PostgreSQL schema in the shared database, reached on the shared pool
//!   with a transaction-local search path (so 10,000 schema tenants are 10,000 schemas, not
//!   10,000 pools), or on SQLite its own file beside the shared one;
//! - dedicated: its own database (a PostgreSQL URL) or data directory (a SQLite file in it).
//!
//! Places with a database of their own are opened when first used and kept in a bounded LRU
//! (`MAX_OPEN`); an evicted pool closes when its last user drops it. Each is a full
//! tenantgate database (the same migrations, triggers and, on PostgreSQL, row-level
//! security), of which only the data tables are used.
//!
//! Architecture Invariant: no code above the store names a place; the tenant-bound handle,
//! the keyring and the KMS resolve it here (`tests/placement.rs` finds each tier's rows
//! where its tier says and nowhere else).

use crate::backend::{
    check_ident, drop_pg_schema, open_pg_dedicated, open_sqlite, provision_pg_schema,
};
use crate::{now_ms, with_tx, Access, Db, Result, Store, StoreError, StoreOptions};
use sha2::Digest;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use tenantgate_core::{IsolationTier, TenantId};

/// The tables that hold a tenant's data, which move with its tier. Every other table is the
/// control plane.
pub const DATA_TABLES: &[&str] = &[
    "tenant_keks",
    "tenant_data_keys",
    "tenant_secrets",
    "prompt_templates",
    "prompt_versions",
    "kb_documents",
    "kb_chunks",
    "kb_sources",
    "ft_files",
    "ft_file_parts",
    "audit_heads",
    "audit_records",
    "audit_bodies",
    "audit_checkpoints",
];

/// Databases of their own (SQLite files, dedicated databases) open at once in one process.
const MAX_OPEN: usize = 64;

/// Where one tenant's data rows are.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "location", rename_all = "snake_case")]
pub enum Place {
    /// The shared tables (namespace tier).
    Shared,
    /// Its own schema in the shared PostgreSQL database (schema tier).
    PgSchema(String),
    /// Its own SQLite file beside the shared one (schema tier on SQLite).
    SqliteFile(PathBuf),
    /// Its own database: `postgres://` (no password in it) or `sqlite:PATH` (dedicated tier).
    Dedicated(String),
}

impl Place {
    pub fn tier(&self) -> IsolationTier {
        match self {
            Place::Shared => IsolationTier::Namespace,
            Place::PgSchema(_) | Place::SqliteFile(_) => IsolationTier::Schema,
            Place::Dedicated(_) => IsolationTier::Dedicated,
        }
    }

    /// Its `tenant_placement` row (tier, location); none for the shared tables.
    pub(crate) fn row(&self) -> Option<(&'static str, String)> {
        match self {
            Place::Shared => None,
            _ => Some((self.tier().as_str(), self.location())),
        }
    }

    fn location(&self) -> String {
        match self {
            Place::Shared => String::new(),
            Place::PgSchema(s) => s.clone(),
            Place::SqliteFile(p) => p.display().to_string(),
            Place::Dedicated(u) => u.clone(),
        }
    }

    pub(crate) fn from_row(tier: &str, location: String, db: &Db) -> Result<Place> {
        let tier: IsolationTier = tier
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("placement tier {tier:?}")))?;
        Ok(match (tier, db) {
            (IsolationTier::Namespace, _) => Place::Shared,
            (IsolationTier::Schema, Db::Postgres(_)) => Place::PgSchema(location),
            (IsolationTier::Schema, Db::Sqlite(_)) => Place::SqliteFile(PathBuf::from(location)),
            (IsolationTier::Dedicated, _) => Place::Dedicated(location),
        })
    }
}

/// A resolved place: where a transaction on one tenant's data runs (`with_tx!`).
pub(crate) struct Data {
    db: Db,
    pg_schema: Option<String>,
    shared: bool,
}

impl Data {
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    pub(crate) fn pg_schema(&self) -> Option<&str> {
        self.pg_schema.as_deref()
    }

    /// Whether the control-plane tables are reachable in the same transaction (the shared
    /// tables): then a change and the revision it bumps commit together; elsewhere the data
    /// commits first and the control plane after it (a crash between leaves the revision
    /// behind, so replicas notice at the next change, never before the data exists).
    pub(crate) fn holds_control(&self) -> bool {
        self.shared
    }
}

pub(crate) struct Places {
    opts: StoreOptions,
    /// Off for the owner's maintenance store, which no snapshot reload refreshes: it reads
    /// the placement every time (its operations are rare) and so never acts on a stale one.
    cache: bool,
    known: RwLock<HashMap<TenantId, Place>>,
    open: tokio::sync::Mutex<lru::LruCache<String, Db>>,
}

impl std::fmt::Debug for Places {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Places").finish_non_exhaustive()
    }
}

impl Places {
    pub(crate) fn uncached(mut self) -> Places {
        self.cache = false;
        self
    }

    pub(crate) fn new(opts: &StoreOptions) -> Places {
        Places {
            opts: opts.clone(),
            cache: true,
            known: RwLock::new(HashMap::new()),
            open: tokio::sync::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(MAX_OPEN).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        }
    }

    pub(crate) async fn close(&self) {
        let pools: Vec<Db> = self
            .open
            .lock()
            .await
            .iter()
            .map(|(_, d)| d.clone())
            .collect();
        for p in pools {
            match p {
                Db::Sqlite(p) => p.close().await,
                Db::Postgres(p) => p.close().await,
            }
        }
    }

    fn cached(&self, tenant: &TenantId) -> Option<Place> {
        if !self.cache {
            return None;
        }
        self.known.read().ok()?.get(tenant).cloned()
    }

    fn remember(&self, tenant: &TenantId, place: Place) {
        if !self.cache {
            return;
        }
        if let Ok(mut g) = self.known.write() {
            g.insert(tenant.clone(), place);
        }
    }

    /// Replaces every remembered placement (the auth snapshot read them all at once; tenants
    /// it does not name are on the shared tables, and are looked up again when first used, so
    /// one created since is not taken for shared).
    pub(crate) fn replace(&self, all: HashMap<TenantId, Place>) {
        if let Ok(mut g) = self.known.write() {
            *g = all;
        }
    }

    /// Opens (creating and migrating on first use) a database of its own, or takes it from
    /// the LRU.
    async fn own_db(&self, url: &str) -> Result<Db> {
        let mut open = self.open.lock().await;
        if let Some(db) = open.get(url) {
            return Ok(db.clone());
        }
        // Opening holds the lock: rare (first use per process) and it keeps two callers from
        // migrating one file at once.
        let db = if url.starts_with("sqlite:") {
            let mut o = self.opts.clone();
            o.url = url.to_owned();
            o.max_connections = o.max_connections.clamp(1, 4);
            open_sqlite(&o).await?
        } else {
            open_pg_dedicated(&self.opts, url).await?
        };
        open.put(url.to_owned(), db.clone());
        Ok(db)
    }

    async fn forget_db(&self, url: &str) -> Option<Db> {
        self.open.lock().await.pop(url)
    }
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}

impl Store {
    /// The place of `tenant`'s data: remembered, else read from the control plane.
    pub async fn place(&self, tenant: &TenantId) -> Result<Place> {
        if let Some(p) = self.places.cached(tenant) {
            return Ok(p);
        }
        let row: Option<(String, String)> = with_tx!(self, Access::Tenant(tenant), |tx| {
            sqlx::query_as("SELECT tier, location FROM tenant_placement WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_optional(&mut *tx)
                .await?
        })?;
        let place = match row {
            Some((tier, loc)) => Place::from_row(&tier, loc, &self.db)?,
            None => Place::Shared,
        };
        self.places.remember(tenant, place.clone());
        Ok(place)
    }

    /// Drops the remembered place of `tenant`: the next use reads it from the control plane
    /// (after a write failed on a moved tenant's fence, or after moving it).
    pub fn forget_place(&self, tenant: &TenantId) {
        if let Ok(mut g) = self.places.known.write() {
            g.remove(tenant);
        }
    }

    /// Where a transaction on `tenant`'s data runs.
    pub(crate) async fn data(&self, tenant: &TenantId) -> Result<Data> {
        let place = self.place(tenant).await?;
        self.resolve(&place).await
    }

    pub(crate) async fn resolve(&self, place: &Place) -> Result<Data> {
        Ok(match place {
            Place::Shared => Data {
                db: self.db.clone(),
                pg_schema: None,
                shared: true,
            },
            Place::PgSchema(s) => Data {
                db: self.db.clone(),
                pg_schema: Some(s.clone()),
                shared: false,
            },
            Place::SqliteFile(p) => Data {
                db: self.places.own_db(&sqlite_url(p)).await?,
                pg_schema: None,
                shared: false,
            },
            Place::Dedicated(u) => Data {
                db: self.places.own_db(u).await?,
                pg_schema: None,
                shared: false,
            },
        })
    }

    /// Every place that holds some tenant's data: the shared tables first, then each other
    /// place once. For the few cross-tenant reads of data tables (start-up signing, counters
    /// rebuilt from the audit log, key maintenance).
    pub(crate) async fn data_places(&self) -> Result<Vec<(Vec<TenantId>, Data)>> {
        // (the tenants each non-shared place holds, and the place)
        let rows: Vec<(String, String, String)> = with_tx!(self, Access::Platform, |tx| {
            sqlx::query_as(
                "SELECT tenant_id, tier, location FROM tenant_placement ORDER BY location, tenant_id",
            )
            .fetch_all(&mut *tx)
            .await?
        })?;
        let mut out = vec![(Vec::new(), self.resolve(&Place::Shared).await?)];
        let mut seen: Vec<(Place, usize)> = Vec::new();
        for (t, tier, loc) in rows {
            let Ok(t) = TenantId::parse(&t) else { continue };
            let place = Place::from_row(&tier, loc, &self.db)?;
            if place == Place::Shared {
                continue;
            }
            match seen.iter().find(|(p, _)| *p == place) {
                Some((_, i)) => out[*i].0.push(t),
                None => {
                    seen.push((place.clone(), out.len()));
                    out.push((vec![t], self.resolve(&place).await?));
                }
            }
        }
        Ok(out)
    }

    /// Groups `items` by the place of the tenant each belongs to, keeping their order within
    /// a place; the shared place first.
    pub(crate) async fn by_place<T>(
        &self,
        items: Vec<T>,
        tenant: impl Fn(&T) -> &TenantId,
    ) -> Result<Vec<(Data, Vec<(usize, T)>)>> {
        let mut groups: Vec<(Place, Vec<(usize, T)>)> = Vec::new();
        for (i, it) in items.into_iter().enumerate() {
            let place = self.place(tenant(&it)).await?;
            match groups.iter_mut().find(|(p, _)| *p == place) {
                Some((_, v)) => v.push((i, it)),
                None => groups.push((place, vec![(i, it)])),
            }
        }
        groups.sort_by_key(|(p, _)| *p != Place::Shared);
        let mut out = Vec::with_capacity(groups.len());
        for (p, v) in groups {
            out.push((self.resolve(&p).await?, v));
        }
        Ok(out)
    }

    /// Whether `tenant`'s data is in the shared tables (the audit writer's own SQLite
    /// connection writes only those).
    pub async fn is_shared(&self, tenant: &TenantId) -> Result<bool> {
        Ok(self.place(tenant).await? == Place::Shared)
    }
}

/// The place a new tenant on `tier` gets. `dedicated` names its own database for the
/// dedicated tier: a `postgres://` URL with no password (credentials come from the
/// environment or a password file, never the control plane) or a data directory.
pub(crate) fn place_for(
    store: &Store,
    tenant: &TenantId,
    tier: IsolationTier,
    dedicated: Option<&str>,
) -> Result<Place> {
    let invalid = |m: &str| StoreError::Invalid(tenantgate_core::InvalidValue(m.to_owned()));
    match (tier, dedicated) {
        (IsolationTier::Namespace, None) => Ok(Place::Shared),
        (IsolationTier::Schema, None) => match &store.db {
            Db::Postgres(_) => {
                let h = sha2::Sha256::digest(tenant.as_str().as_bytes());
                let name = format!("tgt_{}", &hex::encode(h)[..32]);
                check_ident("tenant schema", &name)?;
                Ok(Place::PgSchema(name))
            }
            Db::Sqlite(_) => {
                let shared = store
                    .places
                    .opts
                    .url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                let shared = shared.split('?').next().unwrap_or(shared);
                let dir = Path::new(shared)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                Ok(Place::SqliteFile(
                    dir.join("tenants")
                        .join(format!("{}.sqlite", tenant.as_str())),
                ))
            }
        },
        (IsolationTier::Dedicated, Some(loc)) => {
            if loc.len() > 1024 {
                return Err(invalid("a dedicated location is at most 1024 bytes"));
            }
            if loc.starts_with("postgres://") || loc.starts_with("postgresql://") {
                let has_password = loc
                    .split_once("://")
                    .and_then(|(_, rest)| rest.split_once('@'))
                    .is_some_and(|(creds, _)| creds.contains(':'));
                if has_password {
                    return Err(invalid(
                        "a dedicated database URL must not carry a password (it would be stored \
                         in the control plane); give it through PGPASSWORD or a password file",
                    ));
                }
                Ok(Place::Dedicated(loc.to_owned()))
            } else if loc.starts_with("sqlite:") || loc.contains("://") {
                Err(invalid(
                    "a dedicated location is a postgres:// URL or a data directory",
                ))
            } else {
                let dir = Path::new(loc);
                if !dir.is_absolute() {
                    return Err(invalid(
                        "a dedicated data directory must be an absolute path",
                    ));
                }
                Ok(Place::Dedicated(sqlite_url(&dir.join("tenantgate.sqlite"))))
            }
        }
        (IsolationTier::Dedicated, None) => Err(invalid(
            "the dedicated tier needs its own database: a postgres:// URL or a data directory",
        )),
        (IsolationTier::Namespace | IsolationTier::Schema, Some(_)) => Err(invalid(
            "only the dedicated tier takes a database of its own",
        )),
    }
}

impl crate::Platform<'_> {
    /// Creates (and migrates) the storage of `place`: a schema (as the owner), a SQLite file or
    /// a dedicated database. Idempotent.
    pub(crate) async fn provision(&self, place: &Place) -> Result<()> {
        let store = self.store;
        match place {
            Place::Shared => Ok(()),
            Place::PgSchema(s) => provision_pg_schema(&store.places.opts, s).await,
            Place::SqliteFile(_) | Place::Dedicated(_) => store.resolve(place).await.map(|_| ()),
        }
    }

    /// Removes what [`Self::provision`] made, after the tenant's keys were shredded: drops a
    /// schema, deletes a SQLite file (and its journal), and in a dedicated PostgreSQL
    /// database (which the operator owns) deletes the tenant's data rows.
    pub(crate) async fn unprovision(&self, tenant: &TenantId, place: &Place) -> Result<()> {
        let store = self.store;
        match place {
            Place::Shared => Ok(()),
            Place::PgSchema(s) => drop_pg_schema(&store.places.opts, s).await,
            Place::SqliteFile(p) => {
                remove_sqlite(store, &sqlite_url(p), p).await;
                Ok(())
            }
            Place::Dedicated(u) if u.starts_with("sqlite:") => {
                let p = PathBuf::from(u.trim_start_matches("sqlite:"));
                remove_sqlite(store, u, &p).await;
                Ok(())
            }
            Place::Dedicated(_) => {
                let data = store.resolve(place).await?;
                with_tx!(&data, Access::Tenant(tenant), |tx| {
                    for t in DATA_TABLES {
                        sqlx::query(&format!("DELETE FROM {t} WHERE tenant_id = $1"))
                            .bind(tenant.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                })
            }
        }
    }

    /// Records `tenant`'s place in the control plane (after its storage exists), and bumps
    /// the revision so every replica's snapshot reload picks it up.
    pub(crate) async fn set_place(&self, tenant: &TenantId, place: &Place) -> Result<()> {
        let store = self.store;
        with_tx!(store, Access::Platform, |tx| {
            match place {
                Place::Shared => {
                    sqlx::query("DELETE FROM tenant_placement WHERE tenant_id = $1")
                        .bind(tenant.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                _ => {
                    sqlx::query(
                        "INSERT INTO tenant_placement (tenant_id, tier, location, updated_at_ms) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET \
                         tier = excluded.tier, location = excluded.location, \
                         updated_at_ms = excluded.updated_at_ms",
                    )
                    .bind(tenant.as_str())
                    .bind(place.tier().as_str())
                    .bind(place.location())
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query("UPDATE tenants SET isolation = $1, updated_at_ms = $2 WHERE id = $3")
                .bind(place.tier().as_str())
                .bind(now_ms())
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?;
            crate::tenant::bump_revision(&mut tx).await?;
        })?;
        store.places.remember(tenant, place.clone());
        Ok(())
    }

    /// Where `tenant`'s data lives, layer by layer, for `tenant show`.
    pub async fn placement(&self, tenant: &TenantId) -> Result<PlaceSummary> {
        let place = self.store.place(tenant).await?;
        Ok(PlaceSummary::of(&place, self.store.backend_name()))
    }
}

async fn remove_sqlite(store: &Store, url: &str, path: &Path) {
    if let Some(Db::Sqlite(p)) = store.places.forget_db(url).await {
        p.close().await;
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut f = path.as_os_str().to_owned();
        f.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(f));
    }
}

/// One layer of a tenant's data, as `tenant show` states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Prompts,
    Knowledge,
    AuditLog,
    Keys,
    Caches,
    Provider,
}

/// Where one layer is and what it shares with other tenants.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerPlace {
    pub layer: Layer,
    pub location: String,
    pub shares: String,
}

/// A tenant's placement, per layer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PlaceSummary {
    pub tier: IsolationTier,
    pub place: Place,
    pub layers: Vec<LayerPlace>,
    /// What every tier keeps in the shared control plane.
    pub control_plane: &'static str,
}

impl PlaceSummary {
    fn of(place: &Place, backend: &str) -> PlaceSummary {
        let (rows, shares) = match place {
            Place::Shared => (
                format!("shared {backend} tables"),
                "tables with every namespace tenant; row-level security forced, tenant predicate in every query",
            ),
            Place::PgSchema(s) => (
                format!("own PostgreSQL schema {s}"),
                "the database server with other tenants; no table",
            ),
            Place::SqliteFile(p) => (
                format!("own SQLite file {}", p.display()),
                "the host with other tenants; no file",
            ),
            Place::Dedicated(u) => (
                format!("own database {u}"),
                "nothing",
            ),
        };
        let dedicated = matches!(place, Place::Dedicated(_));
        let layer = |layer, location: String, shares: &str| LayerPlace {
            layer,
            location,
            shares: shares.to_owned(),
        };
        let layers = vec![
            layer(Layer::Prompts, format!("{rows}: templates and versions, sealed with the tenant's data keys"), shares),
            layer(Layer::Knowledge, format!("{rows}: documents and chunks, sealed; index files under rag.index_dir/<tenant> on each replica"), shares),
            layer(Layer::AuditLog, format!("{rows}: the tenant's own hash chain, records, bodies and signed checkpoints"), shares),
            layer(Layer::Keys, format!("{rows}: the tenant's own KEK versions and data keys"), "no key with any tenant; KEKs wrapped by the platform KMS unless the tenant has its own key"),
            layer(
                Layer::Caches,
                if dedicated { "none: no shared response cache".to_owned() } else { "the response cache and provider prompt caches, keyed by tenant".to_owned() },
                if dedicated { "nothing" } else { "cache memory with other tenants; entries never (tenant-keyed)" },
            ),
            layer(
                Layer::Provider,
                if dedicated { "the tenant's own endpoints and credentials only".to_owned() } else { "the platform's provider endpoints and credentials".to_owned() },
                if dedicated { "nothing" } else { "provider accounts with other tenants (prompt caches scoped per tenant)" },
            ),
        ];
        PlaceSummary {
            tier: place.tier(),
            place: place.clone(),
            layers,
            control_plane: "tenant record, API-key hashes, members, policies, limits, prompt settings \
                (canary; custom instructions sealed), knowledge-base names and placement: shared database",
        }
    }
}
