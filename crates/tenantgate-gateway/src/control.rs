//! Control-plane operations shared by the CLI and the gateway's own bootstrap. They run as
//! platform operations; the gateways pick the changes up through the control-plane revision.

use crate::identity::keys::{generate, ServerSecret};
use tenantgate_core::{ApiKeyRecord, NewApiKey, PlatformAdmin, Role, TenantId};
use tenantgate_store::{Store, StoreError};

pub struct KeySpec {
    pub role: Role,
    pub name: Option<String>,
    pub end_user: Option<String>,
    pub expires_at_ms: Option<i64>,
}

/// Creates an API key for `tenant`; returns the record and the plaintext, which exists only in
/// this return value (it is shown once and never stored).
pub async fn create_key(
    store: &Store,
    admin: &PlatformAdmin,
    secret: &ServerSecret,
    tenant: &TenantId,
    spec: KeySpec,
) -> Result<(ApiKeyRecord, String), StoreError> {
    if spec.role == Role::PlatformAdmin {
        return Err(tenantgate_core::InvalidValue(
            "API keys carry tenant_admin or member; platform admins sign in with OIDC".into(),
        )
        .into());
    }
    let g = generate(secret);
    let rec = store
        .platform(admin)
        .create_key(
            tenant,
            &NewApiKey {
                prefix: g.prefix,
                hash: g.hash_hex,
                name: spec.name,
                role: spec.role,
                end_user: spec.end_user,
                expires_at_ms: spec.expires_at_ms,
            },
        )
        .await?;
    Ok((rec, g.plaintext))
}

/// Opens the keyring the configuration describes: the local KMS with its master key, and
/// tenants' own keys in AWS KMS (clients made only when a tenant has one).
pub fn keyring(
    store: &Store,
    cfg: &crate::config::EncryptionConfig,
) -> Result<tenantgate_store::Keyring, tenantgate_crypto::KeyFileError> {
    use std::time::Duration;
    let master = tenantgate_crypto::MasterKey::load_or_create(&cfg.master_key_file)?;
    let kms = tenantgate_store::LocalKms::new(
        store.clone(),
        master,
        Duration::from_secs(cfg.kek_cache_secs),
    )
    .with_customer_keys(std::sync::Arc::new(tenantgate_kms_aws::AwsKms::new()));
    Ok(tenantgate_store::Keyring::new(
        store.clone(),
        std::sync::Arc::new(kms),
        tenantgate_store::KeyringOptions {
            cache: true,
            dek_max_age: Duration::from_secs(cfg.dek_max_age_secs),
            dek_max_uses: cfg.dek_max_uses,
            retire_grace: Duration::from_secs(cfg.retire_grace_secs),
        },
    ))
}

/// Where an operator action's audit record is written.
pub enum AuditSink<'a> {
    /// The server's group-commit writer: every record a server writes goes through it, so
    /// the writer's counters, its checkpoints and its shutdown drain see them all.
    Writer(&'a crate::audit::AuditLog),
    /// The CLI, a process that runs no writer: each command appends its record directly, in
    /// one transaction of its own, and is the only audit writer of its process. Its chain stays
    /// linear beside running servers because the store locks each head it appends to (`FOR
    /// UPDATE`, SQLite's `BEGIN IMMEDIATE`); the servers' writers sign the head at their next
    /// start or checkpoint. Only the CLI builds this (`tests/structure.rs`).
    Cli(&'a Store),
}

/// Records an operator action in the tenant's audit chain (actor: the platform operator).
pub async fn record_operator_event(
    sink: AuditSink<'_>,
    admin: &PlatformAdmin,
    tenant: &TenantId,
    event: tenantgate_audit::EventType,
    detail: serde_json::Value,
) -> Result<(), String> {
    record_operator_outcome(sink, admin, tenant, event, 200, detail).await
}

/// Records an operator action, or its refusal, with the HTTP status the operator received.
pub async fn record_operator_outcome(
    sink: AuditSink<'_>,
    admin: &PlatformAdmin,
    tenant: &TenantId,
    event: tenantgate_audit::EventType,
    status: u16,
    detail: serde_json::Value,
) -> Result<(), String> {
    let mut entry = crate::audit::event_record(
        &crate::audit::new_event_id(),
        event,
        crate::audit::operator_actor(admin),
        detail,
    );
    entry.record.status = status;
    match sink {
        AuditSink::Writer(log) => log.append_operator(admin, tenant, entry).await.map(|_| ()),
        AuditSink::Cli(store) => store
            .platform(admin)
            .audit_append(tenant, vec![entry])
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

/// Deletes a tenant: the deletion is recorded in its audit chain first (the chain outlives the
/// tenant: records without bodies), then its API keys are revoked and its keys shredded.
pub async fn delete_tenant(
    sink: AuditSink<'_>,
    store: &Store,
    keyring: &tenantgate_store::Keyring,
    admin: &PlatformAdmin,
    tenant: &TenantId,
) -> Result<tenantgate_core::Tenant, String> {
    record_operator_event(
        sink,
        admin,
        tenant,
        tenantgate_audit::EventType::Deletion,
        serde_json::json!({"action": "tenant.delete"}),
    )
    .await
    .map_err(|e| format!("the deletion could not be audited, nothing was deleted: {e}"))?;
    let t = store
        .platform(admin)
        .mark_deleted(tenant)
        .await
        .map_err(|e| e.to_string())?;
    keyring
        .shred(admin, tenant)
        .await
        .map_err(|e| e.to_string())?;
    Ok(t)
}
