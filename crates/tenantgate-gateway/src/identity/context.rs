//! The product of authentication: who is calling, for which tenant, under which view of
//! the tenant's configuration.

use crate::identity::auth::AuthIndex;
use std::sync::Arc;
use tenantgate_core::{Principal, Tenant};

/// A verified principal, its tenant, and the configuration snapshot the call was authenticated
/// against. Every later stage reads the tenant's policies (guard, audit, limits, prompts,
/// default knowledge bases) from `view`, so one call never sees two policies even if the
/// snapshot is reloaded while it runs.
#[derive(Clone)]
pub struct TenantContext {
    pub principal: Principal,
    pub tenant: Arc<Tenant>,
    pub view: Arc<AuthIndex>,
}
