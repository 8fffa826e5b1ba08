//! Test deployments only: one isolation layer switched off by
//! `TENANTGATE_TEST_DISABLE_LAYER`, so `tenantgate bleed-test` can show it notices the layer
//! missing (`crates/tenantgate/tests/bleed.rs`). Compiled only with the `bleed-switches` feature,
//! which only the `tenantgate` crate's dev-dependency enables, and only in debug builds: a
//! release build never reads the variable, whatever its features.

/// An isolation layer a test deployment can switch off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// The leak guard's detection of other tenants' identifiers and canaries.
    CrossTenantGuard,
    /// The tenant id in the response cache's key.
    CacheTenantKey,
}

/// The layer switched off in this process, if any (read once; a warning says so).
pub fn disabled() -> Option<Layer> {
    static LAYER: std::sync::OnceLock<Option<Layer>> = std::sync::OnceLock::new();
    *LAYER.get_or_init(|| {
        let layer = match std::env::var("TENANTGATE_TEST_DISABLE_LAYER")
            .ok()?
            .as_str()
        {
            "cross-tenant-guard" => Layer::CrossTenantGuard,
            "cache-tenant-key" => Layer::CacheTenantKey,
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
