//! A tenant's leak-guard policy as the snapshot enforces it, and the one test-only way around it.
//! (Here, where the snapshot parses policies, so that `guard` keeps depending on nothing above it.)
//!
//! `cross_tenant` protects the *other* tenants' identifiers and canaries, so the tenant whose
//! traffic carries them cannot weaken it below redaction: a stored policy saying `flag` or
//! `off` (from before this floor, or an imported bundle) is enforced as `redact`, and the API
//! refuses to store one.
//!
//! A test deployment (`crate::bleed_switch`) with `cross-tenant-guard` switched off enforces
//! no cross-tenant detection at all, so `tenantgate bleed-test` can show that it notices.

use tenantgate_guard::{Action, Policy};

/// The policy a tenant's calls are guarded with.
pub fn enforced(p: Policy) -> Policy {
    let p = Policy {
        cross_tenant: floor(p.cross_tenant),
        ..p
    };
    #[cfg(all(feature = "bleed-switches", debug_assertions))]
    if crate::bleed_switch::disabled() == Some(crate::bleed_switch::Layer::CrossTenantGuard) {
        return Policy {
            cross_tenant: Action::Off,
            ..p
        };
    }
    p
}

/// What `cross_tenant` may be set to: block or redact, never let through.
pub fn floor(a: Action) -> Action {
    match a {
        Action::Block => Action::Block,
        Action::Redact | Action::Flag | Action::Off => Action::Redact,
    }
}
