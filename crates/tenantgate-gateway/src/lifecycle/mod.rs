//! A tenant's lifecycle, from the platform's side: onboarding in one operation that leaves a
//! complete tenant or nothing (`onboard`), the export bundle and its import (`export`,
//! `import`), and offboarding with a deletion window and a certificate (`offboard`).
//!
//! Every step of every lifecycle operation is recorded twice: in the tenant's own chain, while
//! the tenant exists, and in the platform's chain ([`tenantgate_core::PLATFORM_CHAIN`]), which
//! outlives every tenant. Platform-chain records name a tenant by its id only: a slug, a
//! display name or anything else the customer chose would survive the tenant's deletion there.

pub mod export;
pub mod import;
pub mod incident;
pub mod offboard;
pub mod onboard;
pub(crate) mod tar;

use crate::control::AuditSink;
use serde_json::{json, Value};
use tenantgate_audit::EventType;
use tenantgate_core::{PlatformAdmin, TenantId};

/// Records a platform-level event in the platform's chain only (a tenant that no longer
/// exists, or an operation on no tenant). `detail` names tenants by id.
pub async fn record_platform(
    sink: AuditSink<'_>,
    admin: &PlatformAdmin,
    event: EventType,
    detail: Value,
) -> Result<(), String> {
    crate::control::record_operator_event(sink, admin, &TenantId::platform_chain(), event, detail)
        .await
}

/// Records one step of a lifecycle operation on `tenant`: in the tenant's chain, then in the
/// platform's chain with `"tenant": id` added. The tenant's record is written first, so a step
/// the platform chain shows is always in the tenant's chain too.
pub async fn record_step(
    sink: AuditSink<'_>,
    admin: &PlatformAdmin,
    tenant: &TenantId,
    event: EventType,
    detail: Value,
) -> Result<(), String> {
    crate::control::record_operator_event(sink, admin, tenant, event, detail.clone()).await?;
    record_platform(sink, admin, event, platform_detail(tenant, detail)).await
}

/// `detail` with the tenant's id first: the platform chain's form of a tenant's step.
pub fn platform_detail(tenant: &TenantId, detail: Value) -> Value {
    let mut d = json!({ "tenant": tenant.as_str() });
    if let (Some(d), Value::Object(x)) = (d.as_object_mut(), detail) {
        d.extend(x);
    }
    d
}
