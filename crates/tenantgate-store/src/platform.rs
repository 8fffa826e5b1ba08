//! Cross-tenant operations. Everything here requires the [`PlatformAdmin`] capability; in
//! PostgreSQL these transactions set `tenantgate.platform = on`, the only RLS policy that shows
//! more than one tenant's rows.

use crate::rows::{key_from_row, tenant_from_row, KEY_COLS, TENANT_COLS};
use crate::tenant::{bump_revision, create_key, get_tenant, list_keys, revoke_key};
use crate::{now_ms, with_tx, Access, Result, Store, StoreError};
use tenantgate_core::{
    ApiKeyRecord, KeyId, NewApiKey, NewTenant, PlatformAdmin, Tenant, TenantId, TenantStatus,
};

/// A new tenant's id: a UUIDv7, never the platform chain's reserved id.
pub fn new_tenant_id() -> TenantId {
    TenantId::parse(&uuid::Uuid::now_v7().to_string()).expect("a UUID is a valid tenant id")
}

pub struct Platform<'a> {
    pub(crate) store: &'a Store,
    admin: &'a PlatformAdmin,
}

/// Everything the authentication stage needs in memory: every tenant and every usable key.
#[derive(Debug, Clone, Default)]
pub struct AuthSnapshot {
    pub revision: i64,
    pub tenants: Vec<Tenant>,
    pub keys: Vec<ApiKeyRecord>,
    /// Every tenant's prompt canary (the leak guard matches them in other tenants' traffic).
    pub canaries: Vec<(TenantId, String)>,
    /// Tenants' leak-prevention policies, as stored (JSON).
    pub guard_policies: Vec<(TenantId, String)>,
    /// Tenants' audit policies, as stored (JSON).
    pub audit_policies: Vec<(TenantId, String)>,
    /// Tenants' limit overrides (JSON) and kill switches.
    pub limits: Vec<(TenantId, String, bool)>,
    /// Each tenant's prompt revision: its cached prompts are valid while this is unchanged.
    pub prompt_revisions: Vec<(TenantId, i64)>,
    /// OIDC users tenant admins gave a role: (tenant, subject, role).
    pub members: Vec<(TenantId, String, tenantgate_core::Role)>,
    /// Knowledge bases searched for chat requests that name none: (tenant, knowledge base id).
    pub default_knowledge_bases: Vec<(TenantId, String)>,
    /// Every knowledge base (by tenant, then name), revision included: retrieval resolves
    /// names and checks its resident indexes against these, with no query. Creating or
    /// deleting a knowledge base, or adding or deleting a document, moves the revision.
    pub knowledge_bases: Vec<(TenantId, crate::knowledge::KnowledgeBase)>,
    /// Every tenant's own provider endpoints: (tenant, provider, revision), by tenant then
    /// provider. Names and revisions only: the endpoints are opened under the tenant's scope.
    pub endpoints: Vec<(TenantId, String, i64)>,
    /// Providers a platform operator drained (`routing.rs`): no model call goes to them.
    pub drains: Vec<String>,
    /// Platform holds on tenants', routes' and models' calls (`incident.rs`).
    pub freezes: Vec<crate::incident::Freeze>,
    /// Every tenant's private (fine-tuned) models, by tenant then name: each is callable by
    /// its tenant only, and a warm call to one reads no row.
    pub private_models: Vec<(TenantId, crate::finetune::PrivateModel)>,
}

impl<'a> Platform<'a> {
    /// Sets a tenant's limit overrides (JSON, validated by the caller) and/or kill switch.
    pub async fn set_limits(
        &self,
        id: &TenantId,
        overrides: Option<&str>,
        kill_switch: Option<bool>,
    ) -> Result<()> {
        tracing::info!(actor = self.admin.actor(), tenant = %id, "changing tenant limits");
        crate::tenant::set_limits(self.store, Access::Platform, id, overrides, kill_switch).await
    }

    pub async fn limits(&self, id: &TenantId) -> Result<Option<(String, bool)>> {
        crate::tenant::get_limits(self.store, Access::Platform, id).await
    }

    /// Who is acting (recorded on grants and in logs).
    pub fn actor(&self) -> &str {
        self.admin.actor()
    }

    pub(crate) fn new(store: &'a Store, admin: &'a PlatformAdmin) -> Self {
        Self { store, admin }
    }

    pub async fn create_tenant(&self, new: &NewTenant) -> Result<Tenant> {
        self.create_tenant_at(new, None).await
    }

    /// Creates a tenant on its tier: its place (a schema, a SQLite file, or `dedicated`, its
    /// own database: a `postgres://` URL without password or an absolute data directory) is
    /// provisioned first, then the tenant and its placement are recorded in one transaction;
    /// if that fails, the new storage is removed again.
    pub async fn create_tenant_at(
        &self,
        new: &NewTenant,
        dedicated: Option<&str>,
    ) -> Result<Tenant> {
        self.create_tenant_as(new_tenant_id(), new, dedicated).await
    }

    /// [`Self::create_tenant_at`] with an id chosen before (onboarding claims its idempotency
    /// key for the id first, so a retry after a crash can find what to discard).
    pub async fn create_tenant_as(
        &self,
        id: TenantId,
        new: &NewTenant,
        dedicated: Option<&str>,
    ) -> Result<Tenant> {
        new.validate()?;
        let now = now_ms();
        let tenant = Tenant {
            id,
            slug: new.slug.clone(),
            display_name: new.display_name.trim().to_owned(),
            plan: new.plan,
            isolation: new.isolation,
            status: TenantStatus::Active,
            allowed_models: new.allowed_models.clone(),
            enabled_models: None,
            max_tokens_per_request: new.max_tokens_per_request,
            created_at_ms: now,
        };
        let models = serde_json::to_string(&tenant.allowed_models)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let place = crate::places::place_for(self.store, &tenant.id, new.isolation, dedicated)?;
        tracing::info!(actor = self.admin.actor(), tenant = %tenant.id, slug = %tenant.slug,
            tier = %new.isolation, "creating tenant");
        self.provision(&place).await?;
        // In an async block: a `?` in `with_tx!`'s body returns from the enclosing function,
        // which would skip removing the storage just made.
        let created = async {
            with_tx!(self.store, Access::Platform, |tx| {
                sqlx::query(
                    "INSERT INTO tenants (id, slug, display_name, plan, isolation, status, \
                 allowed_models, max_tokens_per_request, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
                )
                .bind(tenant.id.as_str())
                .bind(&tenant.slug)
                .bind(&tenant.display_name)
                .bind(tenant.plan.as_str())
                .bind(tenant.isolation.as_str())
                .bind(tenant.status.as_str())
                .bind(&models)
                .bind(tenant.max_tokens_per_request.map(i64::from))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| crate::conflict_or(e, "tenant slug"))?;
                if let Some((tier, location)) = place.row() {
                    sqlx::query(
                        "INSERT INTO tenant_placement (tenant_id, tier, location, updated_at_ms) \
                     VALUES ($1, $2, $3, $4)",
                    )
                    .bind(tenant.id.as_str())
                    .bind(tier)
                    .bind(location)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                bump_revision(&mut tx).await?;
            })
        }
        .await;
        if let Err(e) = created {
            if let Err(u) = self.unprovision(&tenant.id, &place).await {
                tracing::warn!(tenant = %tenant.id, error = %u, "could not remove a failed tenant's storage");
            }
            return Err(e);
        }
        Ok(tenant)
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let sql = format!("SELECT {TENANT_COLS} FROM tenants ORDER BY slug");
        with_tx!(self.store, Access::Platform, |tx| {
            let rows = sqlx::query(&sql).fetch_all(&mut *tx).await?;
            rows.iter()
                .map(tenant_from_row)
                .collect::<Result<Vec<_>>>()?
        })
    }

    /// One page of tenants by slug: those after `after` whose slug starts with `prefix`, at
    /// most `limit`, and how many tenants there are in all (the fleet view of thousands).
    pub async fn list_tenants_page(
        &self,
        after: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<(Vec<Tenant>, i64)> {
        // `LIKE` metacharacters in the prefix are escaped: a prefix is a literal.
        let pattern = format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let sql = format!(
            "SELECT {TENANT_COLS} FROM tenants WHERE slug > $1 AND slug LIKE $2 ESCAPE '\\' \
             ORDER BY slug LIMIT $3"
        );
        with_tx!(self.store, Access::Platform, |tx| {
            let rows = sqlx::query(&sql)
                .bind(after)
                .bind(&pattern)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
            let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
                .fetch_one(&mut *tx)
                .await?;
            let page = rows
                .iter()
                .map(tenant_from_row)
                .collect::<Result<Vec<_>>>()?;
            (page, total)
        })
    }

    /// Finds a tenant by id or slug.
    pub async fn find_tenant(&self, id_or_slug: &str) -> Result<Tenant> {
        let sql = format!("SELECT {TENANT_COLS} FROM tenants WHERE id = $1 OR slug = $1");
        with_tx!(self.store, Access::Platform, |tx| {
            let row = sqlx::query(&sql)
                .bind(id_or_slug)
                .fetch_optional(&mut *tx)
                .await?;
            match row {
                Some(r) => tenant_from_row(&r)?,
                None => return Err(StoreError::NotFound),
            }
        })
    }

    pub async fn get_tenant(&self, id: &TenantId) -> Result<Tenant> {
        get_tenant(self.store, Access::Platform, id).await
    }

    pub async fn set_status(&self, id: &TenantId, status: TenantStatus) -> Result<Tenant> {
        tracing::info!(actor = self.admin.actor(), tenant = %id, status = %status, "changing tenant status");
        with_tx!(self.store, Access::Platform, |tx| {
            // A tenant pending deletion changes status only by a restore (`offboard.rs`), so
            // a resume cannot leave a finalizer deleting an active tenant.
            let n = sqlx::query(
                "UPDATE tenants SET status = $1, updated_at_ms = $2 WHERE id = $3 AND status <> $4",
            )
            .bind(status.as_str())
            .bind(now_ms())
            .bind(id.as_str())
            .bind(TenantStatus::PendingDeletion.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
                        .bind(id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                return Err(match exists {
                    Some(_) => StoreError::Conflict(
                        "the tenant is pending deletion: restore it first".into(),
                    ),
                    None => StoreError::NotFound,
                });
            }
            bump_revision(&mut tx).await?;
        })?;
        self.get_tenant(id).await
    }

    /// Offboarding, first half: marks the tenant deleted and revokes every key in one
    /// transaction (gateways refuse its keys at the next reload). The second half,
    /// destroying its key material, is [`crate::Keyring::shred`].
    pub async fn mark_deleted(&self, id: &TenantId) -> Result<Tenant> {
        tracing::info!(actor = self.admin.actor(), tenant = %id, "deleting tenant");
        let now = now_ms();
        with_tx!(self.store, Access::Platform, |tx| {
            let n = sqlx::query("UPDATE tenants SET status = $1, updated_at_ms = $2 WHERE id = $3")
                .bind(TenantStatus::Deleted.as_str())
                .bind(now)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            sqlx::query("UPDATE api_keys SET revoked_at_ms = $1 WHERE tenant_id = $2 AND revoked_at_ms IS NULL")
                .bind(now)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            bump_revision(&mut tx).await?;
        })?;
        self.get_tenant(id).await
    }

    /// Changes a tenant's plan: its default limits follow at every replica's next snapshot
    /// reload (the revision moves with it).
    pub async fn set_plan(&self, id: &TenantId, plan: tenantgate_core::PlanTier) -> Result<Tenant> {
        tracing::info!(actor = self.admin.actor(), tenant = %id, plan = %plan, "changing tenant plan");
        with_tx!(self.store, Access::Platform, |tx| {
            let n = sqlx::query("UPDATE tenants SET plan = $1, updated_at_ms = $2 WHERE id = $3")
                .bind(plan.as_str())
                .bind(now_ms())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            bump_revision(&mut tx).await?;
        })?;
        self.get_tenant(id).await
    }

    /// Replaces a tenant's model allow-list and per-request token cap.
    pub async fn set_models(
        &self,
        id: &TenantId,
        allowed_models: &[String],
        max_tokens_per_request: Option<u32>,
    ) -> Result<Tenant> {
        tenantgate_core::validate_model_policy(allowed_models, max_tokens_per_request)?;
        let models = serde_json::to_string(allowed_models)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        with_tx!(self.store, Access::Platform, |tx| {
            let n = sqlx::query(
                "UPDATE tenants SET allowed_models = $1, max_tokens_per_request = $2, \
                 updated_at_ms = $3 WHERE id = $4",
            )
            .bind(&models)
            .bind(max_tokens_per_request.map(i64::from))
            .bind(now_ms())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            bump_revision(&mut tx).await?;
        })?;
        self.get_tenant(id).await
    }

    pub async fn create_key(&self, tenant: &TenantId, key: &NewApiKey) -> Result<ApiKeyRecord> {
        tracing::info!(actor = self.admin.actor(), tenant = %tenant, prefix = %key.prefix, "creating api key");
        create_key(self.store, Access::Platform, tenant, key).await
    }

    pub async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>> {
        list_keys(self.store, Access::Platform, tenant).await
    }

    /// Revokes a key by id or by its visible prefix, whichever tenant owns it.
    pub async fn revoke_key(&self, id_or_prefix: &str) -> Result<ApiKeyRecord> {
        let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE id = $1 OR prefix = $1");
        let found = with_tx!(self.store, Access::Platform, |tx| {
            let rows = sqlx::query(&sql)
                .bind(id_or_prefix)
                .fetch_all(&mut *tx)
                .await?;
            rows.iter().map(key_from_row).collect::<Result<Vec<_>>>()?
        })?;
        let key = match found.as_slice() {
            [k] => k.clone(),
            [] => return Err(StoreError::NotFound),
            _ => {
                return Err(StoreError::Conflict(format!(
                    "{id_or_prefix:?} matches several keys; use the key id"
                )))
            }
        };
        tracing::info!(actor = self.admin.actor(), tenant = %key.tenant_id, key = %key.id, "revoking api key");
        revoke_key(self.store, Access::Platform, &key.tenant_id, &key.id).await?;
        let id = key.id.clone();
        let keys = list_keys(self.store, Access::Platform, &key.tenant_id).await?;
        keys.into_iter()
            .find(|k| k.id == id)
            .ok_or(StoreError::NotFound)
    }

    /// Revokes a key of a known tenant by id (used where the tenant is already resolved).
    pub async fn revoke_tenant_key(&self, tenant: &TenantId, key: &KeyId) -> Result<()> {
        revoke_key(self.store, Access::Platform, tenant, key).await
    }

    /// Every tenant and every key that is neither revoked nor expired, read in one transaction
    /// so the snapshot is consistent with its revision.
    pub async fn auth_snapshot(&self) -> Result<AuthSnapshot> {
        let tenants_sql = format!("SELECT {TENANT_COLS} FROM tenants");
        let keys_sql = format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE revoked_at_ms IS NULL \
             AND (expires_at_ms IS NULL OR expires_at_ms > $1)"
        );
        with_tx!(self.store, Access::Platform, |tx| {
            let revision: i64 =
                sqlx::query_scalar("SELECT revision FROM control_revision WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await?;
            let tenants = sqlx::query(&tenants_sql).fetch_all(&mut *tx).await?;
            let keys = sqlx::query(&keys_sql)
                .bind(now_ms())
                .fetch_all(&mut *tx)
                .await?;
            let prompt_rows: Vec<(String, String, i64)> =
                sqlx::query_as("SELECT tenant_id, canary, revision FROM tenant_prompt_settings")
                    .fetch_all(&mut *tx)
                    .await?;
            let prompt_revisions = prompt_rows
                .iter()
                .filter_map(|(t, _, r)| TenantId::parse(t).ok().map(|t| (t, *r)))
                .collect();
            let canaries: Vec<(String, String)> =
                prompt_rows.into_iter().map(|(t, c, _)| (t, c)).collect();
            let policies: Vec<(String, String)> =
                sqlx::query_as("SELECT tenant_id, policy FROM tenant_guard_policy")
                    .fetch_all(&mut *tx)
                    .await?;
            let audit: Vec<(String, String)> =
                sqlx::query_as("SELECT tenant_id, policy FROM tenant_audit_policy")
                    .fetch_all(&mut *tx)
                    .await?;
            let limit_rows: Vec<(String, String, bool)> =
                sqlx::query_as("SELECT tenant_id, overrides, kill_switch FROM tenant_limits")
                    .fetch_all(&mut *tx)
                    .await?;
            let limits = limit_rows
                .into_iter()
                .filter_map(|(t, o, k)| TenantId::parse(&t).ok().map(|t| (t, o, k)))
                .collect();
            let member_rows: Vec<(String, String, String)> =
                sqlx::query_as("SELECT tenant_id, subject, role FROM tenant_members")
                    .fetch_all(&mut *tx)
                    .await?;
            let members = member_rows
                .into_iter()
                .filter_map(|(t, s, r)| Some((TenantId::parse(&t).ok()?, s, r.parse().ok()?)))
                .collect();
            let kb_sql = format!(
                "SELECT tenant_id, {} FROM knowledge_bases ORDER BY tenant_id, name",
                crate::knowledge::KB_COLS
            );
            type Row = (String, String, String, String, i32, i32, bool, i64, i64);
            let kb_rows: Vec<Row> = sqlx::query_as(&kb_sql).fetch_all(&mut *tx).await?;
            let knowledge_bases: Vec<(TenantId, crate::knowledge::KnowledgeBase)> = kb_rows
                .into_iter()
                .filter_map(|(t, a, b, c, d, e, f, g, h)| {
                    let t = TenantId::parse(&t).ok()?;
                    Some((t, crate::knowledge::kb((a, b, c, d, e, f, g, h))))
                })
                .collect();
            let default_kbs: Vec<(String, String)> = knowledge_bases
                .iter()
                .filter(|(_, kb)| kb.is_default)
                .map(|(t, kb)| (t.as_str().to_owned(), kb.id.clone()))
                .collect();
            let placed: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT t.id, p.tier, p.location FROM tenants t \
                 LEFT JOIN tenant_placement p ON p.tenant_id = t.id",
            )
            .fetch_all(&mut *tx)
            .await?;
            let mut places = std::collections::HashMap::with_capacity(placed.len());
            for (t, tier, loc) in placed {
                let Ok(t) = TenantId::parse(&t) else { continue };
                let place = match (tier, loc) {
                    (Some(tier), Some(loc)) => {
                        crate::places::Place::from_row(&tier, loc, self.store.db())?
                    }
                    _ => crate::places::Place::Shared,
                };
                places.insert(t, place);
            }
            // Every replica reloads its snapshot when the revision moves: a tier change
            // reaches each one's store here. A tenant absent from the map is looked up again.
            self.store.places.replace(places);
            let endpoint_rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT tenant_id, provider, revision FROM tenant_endpoints ORDER BY tenant_id, provider",
            )
            .fetch_all(&mut *tx)
            .await?;
            let endpoints = endpoint_rows
                .into_iter()
                .filter_map(|(t, p, r)| TenantId::parse(&t).ok().map(|t| (t, p, r)))
                .collect();
            let drains: Vec<String> =
                sqlx::query_scalar("SELECT provider FROM provider_drains ORDER BY provider")
                    .fetch_all(&mut *tx)
                    .await?;
            let freeze_rows: Vec<crate::incident::FreezeRow> =
                sqlx::query_as(crate::incident::SELECT_ALL)
                    .fetch_all(&mut *tx)
                    .await?;
            let freezes = crate::incident::parse_rows(freeze_rows)?;
            let private_rows: Vec<(String, String, String, String, String, i64)> = sqlx::query_as(
                "SELECT tenant_id, name, base_model, upstream_model, job_id, created_at_ms \
                 FROM private_models ORDER BY tenant_id, name",
            )
            .fetch_all(&mut *tx)
            .await?;
            let private_models = private_rows
                .into_iter()
                .filter_map(
                    |(t, name, base_model, upstream_model, job_id, created_at_ms)| {
                        let t = TenantId::parse(&t).ok()?;
                        Some((
                            t,
                            crate::finetune::PrivateModel {
                                name,
                                base_model,
                                upstream_model,
                                job_id,
                                created_at_ms,
                            },
                        ))
                    },
                )
                .collect();
            let ids = |v: Vec<(String, String)>| -> Vec<(TenantId, String)> {
                v.into_iter()
                    .filter_map(|(t, x)| TenantId::parse(&t).ok().map(|t| (t, x)))
                    .collect()
            };
            AuthSnapshot {
                private_models,
                endpoints,
                drains,
                freezes,
                default_knowledge_bases: ids(default_kbs),
                knowledge_bases,
                members,
                prompt_revisions,
                canaries: ids(canaries),
                guard_policies: ids(policies),
                audit_policies: ids(audit),
                limits,
                revision,
                tenants: tenants
                    .iter()
                    .map(tenant_from_row)
                    .collect::<Result<Vec<_>>>()?,
                keys: keys.iter().map(key_from_row).collect::<Result<Vec<_>>>()?,
            }
        })
    }
}
