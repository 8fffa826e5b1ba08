//! Incident playbooks as operations (`docs/incidents.md`), shared by the CLI (`tenantgate
//! incident ...`, [`AuditSink::Cli`]) and the platform API (`/admin/v1/incidents/...`,
//! `http/incident.rs`, through the server's writer):
//!
//! - [`freeze`] / [`unfreeze`]: a platform hold on one tenant's, one route's or one model's
//!   calls, on every replica (stored in `incident_freezes`; the snapshot carries it, so each
//!   replica holds it from its next reload: at once on the replica that placed it, within
//!   `auth.reload_interval_ms` on SQLite, on NOTIFY on PostgreSQL). A tenant admin cannot
//!   lift it: no tenant route reaches the table, and the kill switch is another row.
//! - [`scope::scope`]: which tenants, calls and window an identifier or canary appeared in.
//! - [`evidence::build`]: a signed bundle of a tenant's window, verifiable offline
//!   ([`evidence::verify`]).
//! - [`contain`]: kill switch, freeze, every credential revoked, keys rotated, step by step.
//! - [`drain`] / [`undrain`] / [`status`]: the provider-outage playbook and the overview.
//!
//! Every operation is recorded in the platform's chain, and in the tenant's when it names one
//! ([`crate::lifecycle::record_step`]: the tenant's record first). Records name tenants by id
//! and never carry the needle of a scope search (its SHA-256 only).

pub mod evidence;
pub mod scope;

use crate::control::AuditSink;
use crate::error::{st, GatewayError};
use serde::Serialize;
use serde_json::{json, Value};
use tenantgate_audit::EventType;
use tenantgate_core::{PlatformAdmin, Tenant, TenantId, TenantStatus};
use tenantgate_store::incident::{Freeze, FreezeKind};
use tenantgate_store::Store;

/// The longest reason kept (it is recorded and listed).
const MAX_REASON_BYTES: usize = 512;

/// What a freeze names, as the operator gives it.
#[derive(Debug, Clone)]
pub enum FreezeTarget {
    /// A tenant by id or slug.
    Tenant(String),
    /// A model-call path (`crate::pipeline::Operation::PATHS`).
    Route(String),
    /// A configured model name.
    Model(String),
}

fn reason_ok(reason: &str) -> Result<(), GatewayError> {
    crate::bounds::check("reason", reason, MAX_REASON_BYTES)?;
    if reason.trim().is_empty() {
        return Err(GatewayError::invalid(
            "an incident command needs a reason (it is recorded)",
            "reason",
        ));
    }
    Ok(())
}

/// A tenant by id or slug that still exists (a deleted one answers like a missing one).
pub async fn live_tenant(
    store: &Store,
    admin: &PlatformAdmin,
    name: &str,
) -> Result<Tenant, GatewayError> {
    let t = store.platform(admin).find_tenant(name).await.map_err(st)?;
    match t.status {
        TenantStatus::Active | TenantStatus::Suspended | TenantStatus::PendingDeletion => Ok(t),
        TenantStatus::Deleted => Err(GatewayError::NotFound),
    }
}

/// Records an incident command: in `tenant`'s chain then the platform's, or the platform's
/// only. A change made but not recorded is reported as such (503), never silently.
pub(crate) async fn record(
    sink: AuditSink<'_>,
    admin: &PlatformAdmin,
    tenant: Option<&TenantId>,
    event: EventType,
    detail: Value,
) -> Result<(), GatewayError> {
    let done = match tenant {
        Some(t) => super::record_step(sink, admin, t, event, detail).await,
        None => super::record_platform(sink, admin, event, detail).await,
    };
    done.map_err(|e| {
        tracing::error!(error = %e, "an incident command was carried out but not recorded in the audit chains");
        GatewayError::Unavailable(
            "the command was carried out but could not be recorded in the audit log".into(),
        )
    })
}

/// Places a freeze. The tenant of a tenant freeze is named by id in the freeze and both chains.
pub async fn freeze(
    sink: AuditSink<'_>,
    store: &Store,
    config: &crate::config::Config,
    admin: &PlatformAdmin,
    target: FreezeTarget,
    reason: &str,
) -> Result<Freeze, GatewayError> {
    reason_ok(reason)?;
    let (kind, value, tenant) = match target {
        FreezeTarget::Tenant(name) => {
            let t = live_tenant(store, admin, &name).await?;
            (FreezeKind::Tenant, t.id.as_str().to_owned(), Some(t.id))
        }
        FreezeTarget::Route(path) => {
            if !crate::pipeline::Operation::PATHS.contains(&path.as_str()) {
                return Err(GatewayError::invalid(
                    format!(
                        "route must be one of the model-call paths: {}",
                        crate::pipeline::Operation::PATHS.join(", ")
                    ),
                    "route",
                ));
            }
            (FreezeKind::Route, path, None)
        }
        FreezeTarget::Model(name) => {
            if !config.models.iter().any(|m| m.name == name) {
                return Err(GatewayError::invalid(
                    "model must be a configured model name",
                    "model",
                ));
            }
            (FreezeKind::Model, name, None)
        }
    };
    let f = store
        .platform(admin)
        .freeze(kind, &value, reason)
        .await
        .map_err(st)?;
    record(
        sink,
        admin,
        tenant.as_ref(),
        EventType::ConfigurationChange,
        json!({"action": "incident.freeze", "freeze": f.id, "kind": kind.as_str(),
               "target": f.target, "reason": reason}),
    )
    .await?;
    Ok(f)
}

/// Lifts a freeze (`NotFound` if there is none by that id).
pub async fn unfreeze(
    sink: AuditSink<'_>,
    store: &Store,
    admin: &PlatformAdmin,
    id: &str,
) -> Result<Freeze, GatewayError> {
    let f = store.platform(admin).unfreeze(id).await.map_err(st)?;
    let tenant = match f.kind {
        FreezeKind::Tenant => TenantId::parse(&f.target).ok(),
        FreezeKind::Route | FreezeKind::Model => None,
    };
    record(
        sink,
        admin,
        tenant.as_ref(),
        EventType::ConfigurationChange,
        json!({"action": "incident.unfreeze", "freeze": f.id, "kind": f.kind.as_str(),
               "target": f.target}),
    )
    .await?;
    Ok(f)
}

/// Drains a provider for an incident: the routing drain (`control::drain_provider`, which
/// records `provider.drain`), then the incident command in the platform's chain.
pub async fn drain(
    sink: AuditSink<'_>,
    store: &Store,
    config: &crate::config::Config,
    admin: &PlatformAdmin,
    provider: &str,
    reason: &str,
) -> Result<tenantgate_store::routing::Drain, GatewayError> {
    reason_ok(reason)?;
    let d = crate::control::drain_provider(sink, store, config, admin, provider, reason).await?;
    record(
        sink,
        admin,
        None,
        EventType::ConfigurationChange,
        json!({"action": "incident.drain", "provider": provider, "reason": reason}),
    )
    .await?;
    Ok(d)
}

/// Puts a drained provider back, recorded like [`drain`].
pub async fn undrain(
    sink: AuditSink<'_>,
    store: &Store,
    config: &crate::config::Config,
    admin: &PlatformAdmin,
    provider: &str,
) -> Result<(), GatewayError> {
    crate::control::undrain_provider(sink, store, config, admin, provider).await?;
    record(
        sink,
        admin,
        None,
        EventType::ConfigurationChange,
        json!({"action": "incident.undrain", "provider": provider}),
    )
    .await
}

/// What holds calls right now, from the store: freezes, drains, tenants' kill switches.
/// Circuit breakers live in each replica's memory: the API adds the answering replica's.
#[derive(Debug, Serialize)]
pub struct Status {
    pub freezes: Vec<Freeze>,
    pub drains: Vec<tenantgate_store::routing::Drain>,
    /// Tenants whose kill switch is on: (id, slug).
    pub kill_switches: Vec<Value>,
}

pub async fn status(store: &Store, admin: &PlatformAdmin) -> Result<Status, GatewayError> {
    let p = store.platform(admin);
    let snap = p.auth_snapshot().await.map_err(st)?;
    let kill_switches = snap
        .limits
        .iter()
        .filter(|(_, _, on)| *on)
        .map(|(id, _, _)| {
            let slug = snap
                .tenants
                .iter()
                .find(|t| &t.id == id)
                .map(|t| t.slug.clone());
            json!({"tenant": id.as_str(), "slug": slug})
        })
        .collect();
    Ok(Status {
        freezes: snap.freezes,
        drains: p.drains().await.map_err(st)?,
        kill_switches,
    })
}

/// One step of a containment and what it did.
#[derive(Debug, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub done: bool,
    pub detail: Value,
}

/// The containment of a tenant, step by step (each recorded in both chains as it is done):
/// kill switch on, a tenant freeze (the kill switch is the tenant admins' to turn off; the
/// freeze is not), every API key revoked, every active break-glass grant ended, every console
/// session ended, the tenant's encryption keys rotated, and what cannot be done here: OIDC
/// members sign in at the tenant's identity provider.
pub async fn contain(
    sink: AuditSink<'_>,
    store: &Store,
    keyring: &tenantgate_store::Keyring,
    admin: &PlatformAdmin,
    tenant: &str,
    reason: &str,
) -> Result<Vec<Step>, GatewayError> {
    reason_ok(reason)?;
    let t = live_tenant(store, admin, tenant).await?;
    let id = &t.id;
    let p = store.platform(admin);
    let mut steps = Vec::new();
    let mut step = |name: &'static str, done: bool, detail: Value| {
        let s = Step {
            step: name,
            done,
            detail,
        };
        let d = json!({"action": format!("incident.contain.{name}"), "done": s.done,
                       "reason": reason, "result": s.detail});
        steps.push(s);
        d
    };

    p.set_limits(id, None, Some(true)).await.map_err(st)?;
    let d = step("kill_switch", true, json!({"kill_switch": true}));
    record(sink, admin, Some(id), EventType::ConfigurationChange, d).await?;

    let d = match p.freeze(FreezeKind::Tenant, id.as_str(), reason).await {
        Ok(f) => step("freeze", true, json!({"freeze": f.id})),
        Err(tenantgate_store::StoreError::Conflict(_)) => {
            step("freeze", true, json!({"already_frozen": true}))
        }
        Err(e) => return Err(st(e)),
    };
    record(sink, admin, Some(id), EventType::ConfigurationChange, d).await?;

    let now = crate::clock::now_ms();
    let mut revoked = Vec::new();
    for k in p.list_keys(id).await.map_err(st)? {
        if k.revoked_at_ms.is_none() {
            p.revoke_tenant_key(id, &k.id).await.map_err(st)?;
            revoked.push(k.id.to_string());
        }
    }
    let d = step("api_keys", true, json!({"revoked": revoked}));
    record(sink, admin, Some(id), EventType::ConfigurationChange, d).await?;

    let mut ended = Vec::new();
    for g in p.grants(Some(id)).await.map_err(st)? {
        if g.is_active_at(now) {
            match p.revoke_grant(&g.id).await {
                // Expired between the listing and now: ended either way.
                Ok(_) | Err(tenantgate_store::StoreError::NotFound) => ended.push(g.id),
                Err(e) => return Err(st(e)),
            }
        }
    }
    let d = step("break_glass_grants", true, json!({"revoked": ended}));
    record(sink, admin, Some(id), EventType::ConfigurationChange, d).await?;

    let sessions = p.end_console_sessions(id).await.map_err(st)?;
    let d = step("console_sessions", true, json!({"ended": sessions}));
    record(sink, admin, Some(id), EventType::ConfigurationChange, d).await?;

    let rotated = keyring
        .rotate(admin, id)
        .await
        .map_err(crate::error::store_err)?;
    let d = step(
        "rotate_keys",
        true,
        json!({"kek_version": rotated.current_version, "wrapped_by": rotated.wrapped_by}),
    );
    record(sink, admin, Some(id), EventType::ConfigurationChange, d).await?;

    #[expect(
        clippy::disallowed_methods,
        reason = "the containment reads the tenant's member list, recorded in both chains"
    )]
    let scope = tenantgate_core::TenantScope::for_lifecycle(admin, id.clone());
    let members = store.tenant(&scope).members().await.map_err(st)?;
    let d = step(
        "oidc_members",
        false,
        json!({
            "members": members.len(),
            "note": "OIDC users sign in at the tenant's identity provider: tenantgate cannot \
                     revoke them there. Their model calls are held by the freeze; disable them \
                     (or the tenant's app) at the IdP, then remove their roles here.",
        }),
    );
    record(sink, admin, Some(id), EventType::ConfigurationChange, d).await?;
    Ok(steps)
}
