//! Tenant prompt templates: immutable, numbered versions whose bodies are sealed with the
//! tenant's keys (associated data binds tenant, kind `prompt` and a per-version uid), an active
//! pointer per template (rollback = point at an older version), and per-tenant settings. Every
//! method runs under the tenant's scope; a name of another tenant answers `NotFound`.

use crate::keyring::{Keyring, KeyringError};
use crate::tenant::bump_revision;
use crate::{now_ms, with_tx, Access, Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tenantgate_core::{InvalidValue, TenantScope};

const KIND: &str = "prompt";
const SETTINGS_KIND: &str = "prompt_settings";
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptInfo {
    pub name: String,
    pub active_version: Option<u32>,
    pub latest_version: u32,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub name: String,
    pub version: u32,
    pub author: String,
    pub created_at_ms: i64,
    /// SHA-256 of the template text, hex: lets a tenant check an export without the body.
    pub sha256: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptVersion {
    #[serde(flatten)]
    pub info: VersionInfo,
    pub template: String,
}

/// What the tenant allows a client to do with its own system message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientSystem {
    /// A request carrying a system message is refused (400).
    Refuse,
    /// The client's system text is appended after the tenant's prompt, in one system message.
    Append,
    /// The client's system messages are kept, after the tenant's.
    Allow,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptSettings {
    pub client_system: ClientSystem,
    /// Template applied when a request names none.
    pub default_prompt: Option<String>,
    /// Available to templates as `custom_instructions`.
    pub custom_instructions: String,
    /// Append the tenant's canary marker to every composed system prompt.
    pub canary_enabled: bool,
    /// The tenant's canary token (generated; not settable).
    pub canary: String,
}

impl PromptSettings {
    fn initial() -> Self {
        Self {
            client_system: ClientSystem::Append,
            default_prompt: None,
            custom_instructions: String::new(),
            canary_enabled: true,
            canary: format!("tgc_{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

pub fn validate_name(name: &str) -> Result<(), InvalidValue> {
    // Starts with a letter or digit: no ".", "..", or hidden names, since exports use the name
    // as a path inside the archive.
    let ok = name
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphanumeric)
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(InvalidValue(format!(
            "invalid prompt name {name:?}: use 1-100 of A-Z a-z 0-9 - _ . starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod name_tests {
    #[test]
    fn prompt_names_cannot_be_paths() {
        for ok in ["support", "v2.1", "a-b_c"] {
            assert!(super::validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", &"x".repeat(101)] {
            assert!(super::validate_name(bad).is_err(), "{bad:?}");
        }
    }
}

fn sha_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn version_u32(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt("prompt version".into()))
}

/// One version to write (a new push, or an imported one that keeps its history).
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub name: String,
    pub template: String,
    pub author: String,
    pub created_at_ms: Option<i64>,
}

/// A whole import, applied in one transaction.
#[derive(Debug, Clone)]
pub struct ImportSet {
    /// Versions in order; each template's versions are numbered 1.. in this order.
    pub versions: Vec<NewVersion>,
    /// name -> active version
    pub active: Vec<(String, u32)>,
    pub settings: Option<PromptSettings>,
}

/// (version, uid, sealed body, author, created, sha256, active version)
type VersionRow = (i64, String, Vec<u8>, String, i64, String, Option<i64>);
/// (client_system, default prompt, sealed custom instructions, canary enabled, canary)
type SettingsRow = (String, Option<String>, Option<Vec<u8>>, i64, String);

pub struct Prompts<'a> {
    store: &'a Store,
    keyring: &'a Keyring,
    scope: &'a TenantScope,
}

impl Keyring {
    /// The tenant-bound prompt store.
    pub fn prompts<'a>(&'a self, store: &'a Store, scope: &'a TenantScope) -> Prompts<'a> {
        Prompts {
            store,
            keyring: self,
            scope,
        }
    }
}

impl Prompts<'_> {
    fn tenant(&self) -> &str {
        self.scope.tenant_id().as_str()
    }

    fn access(&self) -> Access<'_> {
        Access::Tenant(self.scope.tenant_id())
    }

    /// Where this tenant's templates and versions are (settings are control plane).
    async fn data(&self) -> Result<crate::places::Data, StoreError> {
        self.store.data(self.scope.tenant_id()).await
    }

    pub async fn list(&self) -> Result<Vec<PromptInfo>, KeyringError> {
        let rows: Vec<(String, Option<i64>, i64, i64)> =
            with_tx!(self.data().await?, self.access(), |tx| {
                sqlx::query_as(
                "SELECT t.name, t.active_version, (SELECT MAX(v.version) FROM prompt_versions v \
                 WHERE v.tenant_id = t.tenant_id AND v.name = t.name), t.updated_at_ms \
                 FROM prompt_templates t WHERE t.tenant_id = $1 ORDER BY t.name",
            )
            .bind(self.tenant())
            .fetch_all(&mut *tx)
            .await?
            })?;
        rows.into_iter()
            .map(|(name, active, latest, updated)| {
                Ok(PromptInfo {
                    name,
                    active_version: active.map(version_u32).transpose()?,
                    latest_version: version_u32(latest)?,
                    updated_at_ms: updated,
                })
            })
            .collect::<Result<_, StoreError>>()
            .map_err(KeyringError::from)
    }

    /// Version metadata, newest first, without bodies.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionInfo>, KeyringError> {
        let rows: Vec<(i64, String, i64, String, Option<i64>)> = with_tx!(
            self.data().await?,
            self.access(),
            |tx| {
                sqlx::query_as(
                "SELECT v.version, v.author, v.created_at_ms, v.body_sha256, t.active_version \
                 FROM prompt_versions v JOIN prompt_templates t ON t.tenant_id = v.tenant_id AND t.name = v.name \
                 WHERE v.tenant_id = $1 AND v.name = $2 ORDER BY v.version DESC",
            )
            .bind(self.tenant())
            .bind(name)
            .fetch_all(&mut *tx)
            .await?
            }
        )?;
        if rows.is_empty() {
            return Err(KeyringError::NotFound);
        }
        rows.into_iter()
            .map(|(v, author, at, sha, active)| {
                Ok(VersionInfo {
                    name: name.to_owned(),
                    version: version_u32(v)?,
                    author,
                    created_at_ms: at,
                    sha256: sha,
                    active: active == Some(v),
                })
            })
            .collect::<Result<_, StoreError>>()
            .map_err(KeyringError::from)
    }

    /// One version with its body; `None` is the active version.
    pub async fn get(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<PromptVersion, KeyringError> {
        let row: Option<VersionRow> = with_tx!(self.data().await?, self.access(), |tx| {
            let sql = "SELECT v.version, v.uid, v.body_sealed, v.author, v.created_at_ms, v.body_sha256, t.active_version \
                 FROM prompt_versions v JOIN prompt_templates t ON t.tenant_id = v.tenant_id AND t.name = v.name \
                 WHERE v.tenant_id = $1 AND v.name = $2 AND v.version = COALESCE($3, t.active_version)";
            sqlx::query_as(sql)
                .bind(self.tenant())
                .bind(name)
                .bind(version.map(i64::from))
                .fetch_optional(&mut *tx)
                .await?
        })?;
        let (v, uid, sealed, author, at, sha, active) = row.ok_or(KeyringError::NotFound)?;
        let body = self.keyring.open(self.scope, KIND, &uid, &sealed).await?;
        let template = String::from_utf8(body.to_vec()).map_err(|_| KeyringError::Undecryptable)?;
        Ok(PromptVersion {
            info: VersionInfo {
                name: name.to_owned(),
                version: version_u32(v)?,
                author,
                created_at_ms: at,
                sha256: sha,
                active: active == Some(v),
            },
            template,
        })
    }

    /// Adds the next version of `name` (creating the template), active if `activate` or if it
    /// is the first one.
    pub async fn push(
        &self,
        name: &str,
        template: &str,
        author: &str,
        activate: bool,
    ) -> Result<VersionInfo, KeyringError> {
        let set = ImportSet {
            versions: vec![NewVersion {
                name: name.into(),
                template: template.into(),
                author: author.into(),
                created_at_ms: None,
            }],
            active: vec![],
            settings: None,
        };
        let mut written = self.write(&set, false, activate).await?;
        written.pop().ok_or(KeyringError::NotFound)
    }

    /// Imports templates with their whole history in one transaction. Names that already exist
    /// make the import fail as a whole (`Conflict`), writing nothing.
    pub async fn import(&self, set: &ImportSet) -> Result<Vec<VersionInfo>, KeyringError> {
        self.write(set, true, false).await
    }

    async fn write(
        &self,
        set: &ImportSet,
        import: bool,
        activate: bool,
    ) -> Result<Vec<VersionInfo>, KeyringError> {
        for v in &set.versions {
            validate_name(&v.name).map_err(StoreError::from)?;
            if v.template.len() > MAX_TEMPLATE_BYTES {
                return Err(StoreError::Invalid(InvalidValue(format!(
                    "template larger than {MAX_TEMPLATE_BYTES} bytes"
                )))
                .into());
            }
        }
        // Seal first (the KMS may be remote); then one transaction writes everything or nothing.
        let mut sealed = Vec::with_capacity(set.versions.len());
        for v in &set.versions {
            let uid = uuid::Uuid::new_v4().to_string();
            let body = self
                .keyring
                .seal(self.scope, KIND, &uid, v.template.as_bytes())
                .await?;
            sealed.push((uid, body, sha_hex(&v.template)));
        }
        // Imported settings replace the tenant's; otherwise defaults are created if absent.
        let settings = set.settings.clone().unwrap_or_else(PromptSettings::initial);
        let settings_sealed = self
            .keyring
            .seal(
                self.scope,
                SETTINGS_KIND,
                self.tenant(),
                settings.custom_instructions.as_bytes(),
            )
            .await?;
        let now = now_ms();
        let tenant = self.tenant().to_owned();
        let on_conflict = if set.settings.is_some() {
            REPLACE_KEEPING_CANARY
        } else {
            KEEP_EXISTING
        };
        // Versions are the tenant's data (its place); settings and revisions the control
        // plane, in the same transaction where they share a database.
        let data = self.data().await?;
        let out = with_tx!(&data, self.access(), |tx| {
            let mut out = Vec::new();
            let mut seen_import: Vec<String> = Vec::new();
            for (v, (uid, body, sha)) in set.versions.iter().zip(&sealed) {
                let latest: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(version) FROM prompt_versions WHERE tenant_id = $1 AND name = $2",
                )
                .bind(&tenant)
                .bind(&v.name)
                .fetch_one(&mut *tx)
                .await?;
                if import && latest.is_some() && !seen_import.contains(&v.name) {
                    return Err(KeyringError::Store(StoreError::Conflict(format!(
                        "prompt {:?} already exists",
                        v.name
                    ))));
                }
                seen_import.push(v.name.clone());
                let version = latest.unwrap_or(0) + 1;
                sqlx::query(
                    "INSERT INTO prompt_templates (tenant_id, name, active_version, created_at_ms, updated_at_ms) \
                     VALUES ($1, $2, NULL, $3, $3) ON CONFLICT (tenant_id, name) DO UPDATE SET updated_at_ms = excluded.updated_at_ms",
                )
                .bind(&tenant)
                .bind(&v.name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let created = v.created_at_ms.unwrap_or(now);
                sqlx::query(
                    "INSERT INTO prompt_versions (tenant_id, name, version, uid, body_sealed, body_sha256, author, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&tenant)
                .bind(&v.name)
                .bind(version)
                .bind(uid)
                .bind(body)
                .bind(sha)
                .bind(&v.author)
                .bind(created)
                .execute(&mut *tx)
                .await
                .map_err(|e| crate::conflict_or(e, "prompt version"))?;
                if activate || version == 1 {
                    sqlx::query("UPDATE prompt_templates SET active_version = $1 WHERE tenant_id = $2 AND name = $3")
                        .bind(version)
                        .bind(&tenant)
                        .bind(&v.name)
                        .execute(&mut *tx)
                        .await?;
                }
                out.push(VersionInfo {
                    name: v.name.clone(),
                    version: version_u32(version)?,
                    author: v.author.clone(),
                    created_at_ms: created,
                    sha256: sha.clone(),
                    active: activate || version == 1,
                });
            }
            for (name, version) in &set.active {
                let n = sqlx::query(
                    "UPDATE prompt_templates SET active_version = $1 WHERE tenant_id = $2 AND name = $3 \
                     AND EXISTS (SELECT 1 FROM prompt_versions WHERE tenant_id = $2 AND name = $3 AND version = $1)",
                )
                .bind(i64::from(*version))
                .bind(&tenant)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(KeyringError::Store(StoreError::Invalid(InvalidValue(
                        format!("active version {version} of {name:?} is not in the import"),
                    ))));
                }
            }
            if data.holds_control() {
                import_control(
                    &mut tx,
                    &tenant,
                    &settings,
                    &settings_sealed,
                    now,
                    on_conflict,
                )
                .await?;
            }
            out
        })?;
        if !data.holds_control() {
            with_tx!(self.store, self.access(), |tx| {
                import_control(
                    &mut tx,
                    &tenant,
                    &settings,
                    &settings_sealed,
                    now,
                    on_conflict,
                )
                .await?;
            })?;
        }
        Ok(out)
    }

    /// Points `name` at an existing version (rollback or roll forward).
    pub async fn activate(&self, name: &str, version: u32) -> Result<(), KeyringError> {
        let tenant = self.tenant().to_owned();
        let data = self.data().await?;
        with_tx!(&data, self.access(), |tx| {
            let n = sqlx::query(
                "UPDATE prompt_templates SET active_version = $1, updated_at_ms = $2 WHERE tenant_id = $3 AND name = $4 \
                 AND EXISTS (SELECT 1 FROM prompt_versions WHERE tenant_id = $3 AND name = $4 AND version = $1)",
            )
            .bind(i64::from(version))
            .bind(now_ms())
            .bind(&tenant)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(KeyringError::NotFound);
            }
            if data.holds_control() {
                bump_prompts(&mut tx, &tenant).await?;
            }
        })?;
        if !data.holds_control() {
            with_tx!(self.store, self.access(), |tx| {
                bump_prompts(&mut tx, &tenant).await?;
            })?;
        }
        Ok(())
    }

    /// The tenant's settings, if it has any (a tenant that never configured prompts has none,
    /// and nothing is composed for it). Never writes: it is read on the request path.
    pub async fn settings(&self) -> Result<Option<PromptSettings>, KeyringError> {
        let row: Option<SettingsRow> = with_tx!(self.store, self.access(), |tx| {
            sqlx::query_as("SELECT client_system, default_prompt, custom_instructions_sealed, canary_enabled, canary FROM tenant_prompt_settings WHERE tenant_id = $1")
                .bind(self.tenant())
                .fetch_optional(&mut *tx)
                .await?
        })?;
        let Some((cs, default_prompt, ci, canary_enabled, canary)) = row else {
            return Ok(None);
        };
        let custom_instructions = match ci {
            Some(sealed) => String::from_utf8(
                self.keyring
                    .open(self.scope, SETTINGS_KIND, self.tenant(), &sealed)
                    .await?
                    .to_vec(),
            )
            .map_err(|_| KeyringError::Undecryptable)?,
            None => String::new(),
        };
        let client_system = serde_json::from_value(serde_json::Value::String(cs))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some(PromptSettings {
            client_system,
            default_prompt,
            custom_instructions,
            canary_enabled: canary_enabled == 1,
            canary,
        }))
    }

    /// The settings, created with defaults and a fresh canary if the tenant has none yet.
    pub async fn settings_or_init(&self) -> Result<PromptSettings, KeyringError> {
        if let Some(s) = self.settings().await? {
            return Ok(s);
        }
        let initial = PromptSettings::initial();
        self.set_settings(&initial).await?;
        // A concurrent first write may have won; what is stored is the truth.
        Ok(self.settings().await?.unwrap_or(initial))
    }

    /// Replaces the settings; the canary token is kept (it is not the caller's to choose).
    pub async fn set_settings(&self, s: &PromptSettings) -> Result<(), KeyringError> {
        if let Some(d) = &s.default_prompt {
            validate_name(d).map_err(StoreError::from)?;
        }
        let ci = self
            .keyring
            .seal(
                self.scope,
                SETTINGS_KIND,
                self.tenant(),
                s.custom_instructions.as_bytes(),
            )
            .await?;
        let tenant = self.tenant().to_owned();
        with_tx!(self.store, self.access(), |tx| {
            write_settings(&mut tx, &tenant, s, &ci, now_ms(), REPLACE_KEEPING_CANARY).await?;
            bump_revision(&mut tx).await?;
        })?;
        Ok(())
    }
}

/// Bumps the tenant's prompt revision (gateways reload a tenant's prompts only when it moves).
const BUMP_PROMPT_REVISION: &str =
    "UPDATE tenant_prompt_settings SET revision = revision + 1 WHERE tenant_id = $1";

/// Creates the settings row only if the tenant has none.
const KEEP_EXISTING: &str = "ON CONFLICT (tenant_id) DO NOTHING";
/// Replaces the settings but never the canary: once set, a tenant's canary does not change.
const REPLACE_KEEPING_CANARY: &str = "ON CONFLICT (tenant_id) DO UPDATE SET client_system = excluded.client_system, \
     default_prompt = excluded.default_prompt, custom_instructions_sealed = excluded.custom_instructions_sealed, \
     canary_enabled = excluded.canary_enabled, updated_at_ms = excluded.updated_at_ms, \
     revision = tenant_prompt_settings.revision + 1";

/// The control-plane side of an import or push: the settings (created or replaced) and the
/// revisions that make every replica reload the tenant's prompts.
async fn import_control<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    tenant: &str,
    s: &PromptSettings,
    ci: &[u8],
    now: i64,
    on_conflict: &str,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB>,
    for<'q> Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    write_settings(tx, tenant, s, ci, now, on_conflict).await?;
    bump_prompts(tx, tenant).await
}

/// Moves the tenant's prompt revision and the control-plane revision.
async fn bump_prompts<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    tenant: &str,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(BUMP_PROMPT_REVISION)
        .bind(tenant.to_owned())
        .execute(&mut **tx)
        .await?;
    bump_revision(tx).await
}

async fn write_settings<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    tenant: &str,
    s: &PromptSettings,
    ci: &[u8],
    now: i64,
    on_conflict: &str,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB>,
    for<'q> Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let cs = match s.client_system {
        ClientSystem::Refuse => "refuse",
        ClientSystem::Append => "append",
        ClientSystem::Allow => "allow",
    };
    let sql = format!(
        "INSERT INTO tenant_prompt_settings (tenant_id, client_system, default_prompt, custom_instructions_sealed, canary_enabled, canary, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) {on_conflict}"
    );
    sqlx::query(&sql)
        .bind(tenant.to_owned())
        .bind(cs.to_owned())
        .bind(s.default_prompt.clone())
        .bind(ci.to_vec())
        .bind(i64::from(s.canary_enabled))
        .bind(s.canary.clone())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
