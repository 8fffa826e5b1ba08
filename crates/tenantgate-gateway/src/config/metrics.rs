//! `[metrics]` (who may read `/metrics`, and how many tenants it names) and `[telemetry]`
//! (OpenTelemetry traces over OTLP/HTTP, off unless an endpoint is set).

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Most tenants `tenant_top_n` may name: each is a series per family that carries a tenant.
pub const MAX_TENANT_TOP_N: usize = 100;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` on this address only (the main listener then answers it 404), e.g. a
    /// port reachable from the monitoring network and nothing else. Unset: the main listener.
    pub listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer <token>` on `/metrics` (401 otherwise), compared in
    /// constant time. Unset: no token (then keep `/metrics` off the public network).
    pub token: Option<String>,
    /// Tenants named in the per-tenant series: the N with the most calls, the rest summed as
    /// `tenant="other"`. 0: no tenant label at all. Applies only where `/metrics` is protected
    /// (`listen` or `token` set): an open page never names tenants ([`Self::tenant_labels`]).
    pub tenant_top_n: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: None,
            token: None,
            tenant_top_n: 10,
        }
    }
}

impl MetricsConfig {
    /// How many tenants the page names: `tenant_top_n` when the page is protected, else none.
    /// Tenant ids and their call volumes are the platform's customers' business, and an open
    /// `/metrics` on the public listener answers anyone.
    pub fn tenant_labels(&self) -> usize {
        if self.listen.is_some() || self.token.is_some() {
            self.tenant_top_n
        } else {
            0
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.tenant_top_n > MAX_TENANT_TOP_N {
            return Err(invalid(
                "metrics.tenant_top_n",
                format!("must be at most {MAX_TENANT_TOP_N}"),
            ));
        }
        if self.token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(invalid("metrics.token", "must be at least 16 characters"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP receiver (protobuf), e.g. `http://collector:4318`; spans go
    /// to `<endpoint>/v1/traces`. Unset: no traces are exported (the default).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "tenantgate".into(),
        }
    }
}

impl TelemetryConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(e) = &self.otlp_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(invalid(
                    "telemetry.otlp_endpoint",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if self.service_name.is_empty() {
            return Err(invalid("telemetry.service_name", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_with_the_key_named() {
        assert!(MetricsConfig::default().validate().is_ok());
        assert!(TelemetryConfig::default().validate().is_ok());
        let many = MetricsConfig {
            tenant_top_n: MAX_TENANT_TOP_N + 1,
            ..Default::default()
        };
        let e = many.validate().unwrap_err().to_string();
        assert!(e.starts_with("metrics.tenant_top_n"), "{e}");
        let short = MetricsConfig {
            token: Some("short".into()),
            ..Default::default()
        };
        let e = short.validate().unwrap_err().to_string();
        assert!(e.starts_with("metrics.token"), "{e}");
        let grpc = TelemetryConfig {
            otlp_endpoint: Some("collector:4317".into()),
            ..Default::default()
        };
        let e = grpc.validate().unwrap_err().to_string();
        assert!(e.starts_with("telemetry.otlp_endpoint"), "{e}");
    }

    #[test]
    fn an_open_metrics_page_names_no_tenant() {
        let mut m = MetricsConfig::default();
        assert_eq!(m.tenant_labels(), 0);
        m.token = Some("0123456789abcdef".into());
        assert_eq!(m.tenant_labels(), 10);
        m.token = None;
        m.listen = Some("127.0.0.1:9464".parse().unwrap());
        assert_eq!(m.tenant_labels(), 10);
    }
}
