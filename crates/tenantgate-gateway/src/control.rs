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
#[derive(Clone, Copy)]
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

impl<'a> AuditSink<'a> {
    /// The server's writer, when there is one (the CLI has none: it must not sign checkpoints).
    pub fn writer(self) -> Option<&'a crate::audit::AuditLog> {
        match self {
            AuditSink::Writer(log) => Some(log),
            AuditSink::Cli(_) => None,
        }
    }
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
    // Its endpoints' sealed copies cannot be opened any more; their base URLs go too.
    keyring
        .endpoints(store, admin)
        .remove_all(tenant)
        .await
        .map_err(|e| e.to_string())?;
    Ok(t)
}

/// What `tenant move` did, step by step.
#[derive(Debug, serde::Serialize)]
pub struct MoveOutcome {
    pub plan: tenantgate_store::MovePlan,
    pub copied: Vec<tenantgate_store::TableCheck>,
    pub switch: Option<tenantgate_store::SwitchReport>,
    pub aborted: bool,
    pub copy_ms: u64,
    pub purge_ms: u64,
}

/// Moves a tenant's data to another place online (its isolation tier; `tenantgate-store`
/// `moves`), recording each step in the tenant's audit chain: begun and copied in the source's
/// chain, switched and purged in the target's (the chain moves with its records, so it reads
/// as one). `maintenance` is the owner's store (it provisions and clears past the audit
/// triggers); `store` the one the audit sink writes through. Resumes an interrupted move;
/// `abort` rolls back one that has not switched.
pub async fn move_tenant(
    sink: AuditSink<'_>,
    store: &Store,
    maintenance: &Store,
    admin: &PlatformAdmin,
    tenant: &TenantId,
    to: Option<(tenantgate_core::IsolationTier, Option<&str>)>,
    abort: bool,
) -> Result<MoveOutcome, String> {
    use tenantgate_audit::EventType::ConfigurationChange;
    use tenantgate_store::MovePhase;
    let p = maintenance.platform(admin);
    let plan = p.move_begin(tenant, to).await.map_err(|e| e.to_string())?;
    let (from, to) = (plan.from.clone(), plan.to.clone());
    let event = |step: &str, extra: serde_json::Value| {
        let mut d = serde_json::json!({
            "action": format!("tenant.move.{step}"),
            "from": from, "to": to,
        });
        if let (Some(d), Some(x)) = (d.as_object_mut(), extra.as_object()) {
            d.extend(x.clone());
        }
        d
    };
    let mut out = MoveOutcome {
        plan: plan.clone(),
        copied: Vec::new(),
        switch: None,
        aborted: false,
        copy_ms: 0,
        purge_ms: 0,
    };
    let record = |d: serde_json::Value| async move {
        // The sink's store may remember the tenant's old place: ask the control plane.
        store.forget_place(tenant);
        record_operator_event(sink, admin, tenant, ConfigurationChange, d).await
    };
    if abort {
        p.move_abort(&plan).await.map_err(|e| e.to_string())?;
        record(event("abort", serde_json::json!({}))).await?;
        out.aborted = true;
        return Ok(out);
    }
    let mut plan = plan;
    if plan.phase == MovePhase::Copying {
        record(event(
            if plan.resumed { "resume" } else { "begin" },
            serde_json::json!({}),
        ))
        .await?;
        let t0 = std::time::Instant::now();
        out.copied = p.move_copy(&plan).await.map_err(|e| e.to_string())?;
        out.copy_ms = t0.elapsed().as_millis() as u64;
        record(event("copied", serde_json::json!({"tables": out.copied}))).await?;
        let report = p.move_switch(&plan).await.map_err(|e| e.to_string())?;
        plan.phase = MovePhase::Switched;
        record(event(
            "switched",
            serde_json::json!({"verified": report.tables, "audit_head": report.audit_head,
                "fenced_ms": report.fenced_ms}),
        ))
        .await?;
        out.switch = Some(report);
    }
    let t0 = std::time::Instant::now();
    p.move_purge(&plan).await.map_err(|e| e.to_string())?;
    out.purge_ms = t0.elapsed().as_millis() as u64;
    record(event("purged", serde_json::json!({}))).await?;
    out.plan = plan;
    Ok(out)
}

/// A tenant's own endpoint for a provider, as an operator sets it and as it is listed.
pub use tenantgate_store::endpoints::{EndpointInfo, EndpointSecret};

/// Who made an endpoint change, for its audit record.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    Cli,
    AdminApi,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::AdminApi => "admin_api",
        }
    }
}

/// Sets (or replaces) `tenant`'s own endpoint for the configured `provider`: from the next
/// snapshot reload its calls to that provider go there, with its key, and never to the
/// platform's endpoint. The key is sealed with the tenant's keys; the audit record names the
/// provider, base URL and api_version, never the key.
#[expect(
    clippy::too_many_arguments,
    reason = "the one operation the CLI and the admin API share; each part is a different service"
)]
pub async fn set_endpoint(
    sink: AuditSink<'_>,
    store: &Store,
    keyring: &tenantgate_store::Keyring,
    config: &crate::config::Config,
    admin: &PlatformAdmin,
    tenant: &tenantgate_core::Tenant,
    provider: &str,
    mut endpoint: EndpointSecret,
    via: Via,
) -> Result<EndpointInfo, crate::error::GatewayError> {
    live(tenant)?;
    crate::upstream::endpoints::validate(config, provider, &mut endpoint)?;
    let info = keyring
        .endpoints(store, admin)
        .set(&tenant.id, provider, &endpoint)
        .await
        .map_err(crate::error::store_err)?;
    drop(endpoint);
    record_operator_event(
        sink,
        admin,
        &tenant.id,
        tenantgate_audit::EventType::ConfigurationChange,
        serde_json::json!({
            "action": "tenant.endpoint.set",
            "provider": info.provider,
            "base_url": info.base_url,
            "api_version": info.api_version,
            "revision": info.revision,
            "via": via.as_str(),
        }),
    )
    .await
    .map_err(unrecorded)?;
    Ok(info)
}

/// Removes `tenant`'s own endpoint for `provider` (404 if it has none): from the next
/// snapshot reload its calls to that provider take the platform's endpoint again, or, for a
/// `dedicated` tenant, that provider's models are no longer available to it.
pub async fn remove_endpoint(
    sink: AuditSink<'_>,
    store: &Store,
    keyring: &tenantgate_store::Keyring,
    admin: &PlatformAdmin,
    tenant: &tenantgate_core::Tenant,
    provider: &str,
    via: Via,
) -> Result<(), crate::error::GatewayError> {
    live(tenant)?;
    keyring
        .endpoints(store, admin)
        .remove(&tenant.id, provider)
        .await
        .map_err(crate::error::st)?;
    record_operator_event(
        sink,
        admin,
        &tenant.id,
        tenantgate_audit::EventType::ConfigurationChange,
        serde_json::json!({
            "action": "tenant.endpoint.remove",
            "provider": provider,
            "via": via.as_str(),
        }),
    )
    .await
    .map_err(unrecorded)
}

/// `tenant`'s own endpoints: providers, base URLs and api_versions, never the keys.
pub async fn list_endpoints(
    store: &Store,
    keyring: &tenantgate_store::Keyring,
    admin: &PlatformAdmin,
    tenant: &tenantgate_core::Tenant,
) -> Result<Vec<EndpointInfo>, crate::error::GatewayError> {
    keyring
        .endpoints(store, admin)
        .list(&tenant.id)
        .await
        .map_err(crate::error::st)
}

/// A deleted tenant's endpoints are neither set nor removed: it answers like a missing one.
fn live(tenant: &tenantgate_core::Tenant) -> Result<(), crate::error::GatewayError> {
    match tenant.status {
        tenantgate_core::TenantStatus::Active | tenantgate_core::TenantStatus::Suspended => Ok(()),
        // Nothing new is set up for a tenant on its way out.
        tenantgate_core::TenantStatus::PendingDeletion => Err(
            crate::error::GatewayError::Conflict("the tenant is pending deletion".into()),
        ),
        tenantgate_core::TenantStatus::Deleted => Err(crate::error::GatewayError::NotFound),
    }
}

fn unrecorded(e: String) -> crate::error::GatewayError {
    tracing::error!(error = %e, "an endpoint change was made but not recorded in the tenant's audit chain");
    crate::error::GatewayError::Unavailable(
        "the change was made but could not be recorded in the tenant's audit log".into(),
    )
}

/// The longest drain reason kept (it is recorded and listed).
const MAX_DRAIN_REASON_BYTES: usize = 512;

/// Drains the configured `provider`: no model call goes to it on any replica from its next
/// snapshot reload (`pipeline::route`). Recorded in the platform's chain with the reason.
/// `NotFound` for a name the configuration does not have (the demo model runs in process:
/// nothing to drain).
pub async fn drain_provider(
    sink: AuditSink<'_>,
    store: &Store,
    config: &crate::config::Config,
    admin: &PlatformAdmin,
    provider: &str,
    reason: &str,
) -> Result<tenantgate_store::routing::Drain, crate::error::GatewayError> {
    crate::bounds::check("reason", reason, MAX_DRAIN_REASON_BYTES)?;
    if reason.trim().is_empty() {
        return Err(crate::error::GatewayError::invalid(
            "a drain needs a reason (it is recorded)",
            "reason",
        ));
    }
    configured(config, provider)?;
    let d = store
        .platform(admin)
        .drain_provider(provider, reason)
        .await
        .map_err(crate::error::st)?;
    record_routing(
        sink,
        admin,
        serde_json::json!({"action": "provider.drain", "provider": provider, "reason": reason}),
    )
    .await?;
    Ok(d)
}

/// Puts a drained provider back (`NotFound` if it was not drained), recorded like the drain.
pub async fn undrain_provider(
    sink: AuditSink<'_>,
    store: &Store,
    config: &crate::config::Config,
    admin: &PlatformAdmin,
    provider: &str,
) -> Result<(), crate::error::GatewayError> {
    configured(config, provider)?;
    store
        .platform(admin)
        .undrain_provider(provider)
        .await
        .map_err(crate::error::st)?;
    record_routing(
        sink,
        admin,
        serde_json::json!({"action": "provider.undrain", "provider": provider}),
    )
    .await
}

fn configured(
    config: &crate::config::Config,
    provider: &str,
) -> Result<(), crate::error::GatewayError> {
    match config.providers.iter().find(|p| p.name == provider) {
        Some(p) if p.kind != crate::config::ProviderKind::Demo => Ok(()),
        _ => Err(crate::error::GatewayError::NotFound),
    }
}

async fn record_routing(
    sink: AuditSink<'_>,
    admin: &PlatformAdmin,
    detail: serde_json::Value,
) -> Result<(), crate::error::GatewayError> {
    record_operator_event(
        sink,
        admin,
        &TenantId::platform_chain(),
        tenantgate_audit::EventType::ConfigurationChange,
        detail,
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "a routing change was made but not recorded in the platform's audit chain");
        crate::error::GatewayError::Unavailable(
            "the change was made but could not be recorded in the platform's audit log".into(),
        )
    })
}
