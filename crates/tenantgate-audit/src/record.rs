//! The audit record and the per-tenant audit policy.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What happened. Closed set; the string forms are part of the export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A model call (chat, messages, embeddings), whatever its outcome.
    ApiCall,
    /// Tenant data read through an API (prompt bodies, audit export).
    DataAccess,
    ConfigurationChange,
    Deletion,
    /// A request refused by policy for a known tenant (role, model allow-list, suspension).
    AccessDenied,
    BreakGlass,
    /// A guard finding (leak, canary, secret, injection).
    Incident,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ApiCall => "api_call",
            EventType::DataAccess => "data_access",
            EventType::ConfigurationChange => "configuration_change",
            EventType::Deletion => "deletion",
            EventType::AccessDenied => "access_denied",
            EventType::BreakGlass => "break_glass",
            EventType::Incident => "incident",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
}

/// Who acted: always from a verified credential (or the local operator), never from the
/// client's say-so.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `api_key`, `platform` or `system`.
    pub kind: String,
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub role: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model name the caller asked for.
    pub requested: String,
    /// The provider model it resolved to.
    pub resolved: Option<String>,
    pub provider: Option<String>,
    /// The model version the provider reported in its response, when it did.
    pub version: Option<String>,
}

/// How a body is kept: `sealed` (full text, encrypted with the tenant's key, outside the
/// chain), `sha256` (digest only), `redacted` (guard-redacted text, sealed), `none`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyMode {
    Sealed,
    #[default]
    Sha256,
    Redacted,
    None,
}

/// A body's digest in the chain. The body itself (when kept) lives outside the chain, so a
/// crypto-shredded or pruned body leaves the chain verifiable, and an exported body is
/// checked against this digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyDigest {
    pub mode: BodyMode,
    /// SHA-256 (hex) of the kept text: the original for `sealed`/`sha256`, the redacted text
    /// for `redacted`.
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// One audit record. Its canonical form (with `tenant` and `seq`) is what the chain hashes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Format version of the record (1).
    pub v: u32,
    pub tenant: String,
    pub seq: u64,
    pub ts_ms: i64,
    /// The request id (`req_...`) or, for events without a request, an event id.
    pub id: String,
    pub event: EventType,
    pub actor: Actor,
    pub model: Option<ModelInfo>,
    pub prompt: Option<BodyDigest>,
    pub response: Option<BodyDigest>,
    /// Tool calls the model made: names (arguments are in the body, per body policy).
    pub tool_calls: Vec<String>,
    pub tokens: Option<Tokens>,
    /// Integer micro-dollars, when a price is known.
    pub cost_micros: Option<i64>,
    pub latency_ms: Option<u64>,
    /// The HTTP status the caller received (or would have).
    pub status: u16,
    pub error: Option<ErrorInfo>,
    pub client: Option<Client>,
    /// Event-specific details (a configuration change's target, an incident's detector, ...).
    /// Integers, strings, booleans only.
    pub detail: Value,
}

impl Record {
    /// The record's canonical bytes.
    pub fn canonical(&self) -> Result<Vec<u8>, crate::CanonError> {
        let v =
            serde_json::to_value(self).map_err(|e| crate::CanonError::Serialize(e.to_string()))?;
        crate::canonical(&v)
    }
}

/// What the audit log does when it cannot write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// The call fails with 503 (default): no call without its record.
    #[default]
    Closed,
    /// The call proceeds; the failure is counted and alerted.
    Open,
}

/// A tenant's audit policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditPolicy {
    pub prompt: BodyMode,
    pub response: BodyMode,
    pub on_failure: FailMode,
    pub retention_days: u32,
}

impl Default for AuditPolicy {
    fn default() -> Self {
        AuditPolicy {
            prompt: BodyMode::Sha256,
            response: BodyMode::Sha256,
            on_failure: FailMode::Closed,
            retention_days: 365,
        }
    }
}

impl AuditPolicy {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=3650).contains(&self.retention_days) {
            return Err("retention_days must be between 1 and 3650".into());
        }
        Ok(())
    }
}
