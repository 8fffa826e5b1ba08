//! A tenant's leak-guard policy as the snapshot enforces it, and the one test-only way around it.
//! (Here, where the snapshot parses policies, so that `guard` keeps depending on nothing above it.)
//!
//! `cross_tenant` protects the *other* tenants' identifiers and canaries, so the tenant whose
//! traffic carries them cannot weaken it below redaction: a stored policy saying `flag` or
//! `off` (from before this floor, or an imported bundle) is enforced as `redact`, and the API
//! refuses to store one.
//!
//! Test deployments built with the `bleed-switches` feature (the `tenantgate` crate's
//! dev-dependency turns it on for `cargo test` builds only) read
//! `TENANTGATE_TEST_DISABLE_LAYER=cross-tenant-guard` and enforce no cross-tenant detection at
//! all, so `tenantgate bleed-test` can show that it notices a missing layer
//! (`crates/tenantgate/tests/bleed.rs`). Without the feature nothing here reads the
//! environment.

use tenantgate_guard::{Action, Policy};

/// The policy a tenant's calls are guarded with.
pub fn enforced(p: Policy) -> Policy {
    let p = Policy {
        cross_tenant: floor(p.cross_tenant),
        ..p
    };
    #[cfg(feature = "bleed-switches")]
    if disabled() == Some(Layer::CrossTenantGuard) {
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

/// An isolation layer a test deployment can switch off.
#[cfg(feature = "bleed-switches")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// The leak guard's detection of other tenants' identifiers and canaries.
    CrossTenantGuard,
}

#[cfg(feature = "bleed-switches")]
pub fn disabled() -> Option<Layer> {
    static LAYER: std::sync::OnceLock<Option<Layer>> = std::sync::OnceLock::new();
    *LAYER.get_or_init(|| {
        let layer = match std::env::var("TENANTGATE_TEST_DISABLE_LAYER")
            .ok()?
            .as_str()
        {
            "cross-tenant-guard" => Layer::CrossTenantGuard,
            other => {
                tracing::error!(
                    layer = other,
                    "TENANTGATE_TEST_DISABLE_LAYER names no layer"
                );
                return None;
            }
        };
        tracing::warn!(?layer, "TEST BUILD: an isolation layer is switched off");
        Some(layer)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_tenant_is_enforced_at_least_as_redact_and_nothing_else_changes() {
        for (asked, enforced_as) in [
            (Action::Block, Action::Block),
            (Action::Redact, Action::Redact),
            (Action::Flag, Action::Redact),
            (Action::Off, Action::Redact),
        ] {
            let p = Policy {
                cross_tenant: asked,
                canary: Action::Off,
                pii: Action::Off,
                ..Policy::default()
            };
            let e = enforced(p.clone());
            // A test build run with the layer switched off enforces none (the bleed test's).
            if std::env::var_os("TENANTGATE_TEST_DISABLE_LAYER").is_none() {
                assert_eq!(e.cross_tenant, enforced_as, "{asked:?}");
            }
            assert_eq!((e.canary, e.pii, e.secrets), (p.canary, p.pii, p.secrets));
        }
    }
}
