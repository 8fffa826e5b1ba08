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
    /// A control-plane request of a known caller that did not complete: refused for its
    /// content (invalid, not found, conflicting) or failed. It changed nothing; its `status`
    /// says which. (A refusal by role or policy is `access_denied`.)
    RequestFailed,
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
            EventType::RequestFailed => "request_failed",
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
    pub key_id: Option<String>,
    /// `api_key`, `platform` or `system`.
    pub kind: String,
    pub role: Option<String>,
    pub user: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub provider: Option<String>,
    /// The model name the caller asked for.
    pub requested: String,
    /// The provider model it resolved to.
    pub resolved: Option<String>,
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
    pub bytes: u64,
    pub mode: BodyMode,
    /// SHA-256 (hex) of the kept text: the original for `sealed`/`sha256`, the redacted text
    /// for `redacted`.
    pub sha256: String,
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
    pub actor: Actor,
    pub client: Option<Client>,
    /// Integer micro-dollars, when a price is known.
    pub cost_micros: Option<i64>,
    /// Event-specific details (a configuration change's target, an incident's detector, ...).
    /// Integers, strings, booleans only.
    pub detail: Value,
    pub error: Option<ErrorInfo>,
    pub event: EventType,
    /// The request id (`req_...`) or, for events without a request, an event id.
    pub id: String,
    pub latency_ms: Option<u64>,
    pub model: Option<ModelInfo>,
    pub prompt: Option<BodyDigest>,
    pub response: Option<BodyDigest>,
    pub seq: u64,
    /// The HTTP status the caller received (or would have).
    pub status: u16,
    pub tenant: String,
    pub tokens: Option<Tokens>,
    /// Tool calls the model made: names (arguments are in the body, per body policy).
    pub tool_calls: Vec<String>,
    pub ts_ms: i64,
    /// Format version of the record (1).
    pub v: u32,
}

impl Record {
    /// The record's canonical bytes. The fields of `Record` and of every struct in it are
    /// declared in sorted order, so serializing the struct directly yields the canonical form
    /// without building a JSON tree (a test holds this equal to [`crate::canonical`]); `detail`
    /// is written with its keys sorted.
    pub fn canonical(&self) -> Result<Vec<u8>, crate::CanonError> {
        self.canonical_as(&self.tenant, self.seq)
    }

    /// The canonical bytes this record has once placed in `tenant`'s chain at `seq`.
    pub fn canonical_as(&self, tenant: &str, seq: u64) -> Result<Vec<u8>, crate::CanonError> {
        serde_json::to_vec(&RecordCanon(self, tenant, seq)).map_err(|e| {
            let m = e.to_string();
            if m.contains("integers only") {
                crate::CanonError::Float(m)
            } else {
                crate::CanonError::Serialize(m)
            }
        })
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

/// `Record` in canonical form: its own field order, `detail` through [`Sorted`].
struct RecordCanon<'a>(&'a Record, &'a str, u64);

impl serde::Serialize for RecordCanon<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let r = self.0;
        let mut st = s.serialize_struct("Record", 18)?;
        st.serialize_field("actor", &r.actor)?;
        st.serialize_field("client", &r.client)?;
        st.serialize_field("cost_micros", &r.cost_micros)?;
        st.serialize_field("detail", &Sorted(&r.detail))?;
        st.serialize_field("error", &r.error)?;
        st.serialize_field("event", &r.event)?;
        st.serialize_field("id", &r.id)?;
        st.serialize_field("latency_ms", &r.latency_ms)?;
        st.serialize_field("model", &r.model)?;
        st.serialize_field("prompt", &r.prompt)?;
        st.serialize_field("response", &r.response)?;
        st.serialize_field("seq", &self.2)?;
        st.serialize_field("status", &r.status)?;
        st.serialize_field("tenant", self.1)?;
        st.serialize_field("tokens", &r.tokens)?;
        st.serialize_field("tool_calls", &r.tool_calls)?;
        st.serialize_field("ts_ms", &r.ts_ms)?;
        st.serialize_field("v", &r.v)?;
        st.end()
    }
}

/// A JSON value serialized with object keys in sorted (byte) order whatever the map type's
/// own order, refusing floats: the canonical form of `detail`.
struct Sorted<'a>(&'a Value);

impl serde::Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap, SerializeSeq};
        match self.0 {
            Value::Number(n) if !(n.is_i64() || n.is_u64()) => Err(S::Error::custom(format!(
                "canonical form allows integers only; found {n}"
            ))),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for x in a {
                    seq.serialize_element(&Sorted(x))?;
                }
                seq.end()
            }
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                let mut map = s.serialize_map(Some(keys.len()))?;
                for k in keys {
                    map.serialize_entry(k, &Sorted(&m[k]))?;
                }
                map.end()
            }
            v => v.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use serde_json::json;

    fn sample(detail: Value) -> Record {
        Record {
            v: 1,
            tenant: "t".into(),
            seq: 7,
            ts_ms: -5,
            id: "req_\"x\"\n".into(),
            event: EventType::ApiCall,
            actor: Actor {
                kind: "api_key".into(),
                key_id: Some("k".into()),
                user: None,
                role: Some("member".into()),
            },
            model: Some(ModelInfo {
                requested: "m".into(),
                resolved: None,
                provider: Some("p".into()),
                version: Some("v\u{e9}".into()),
            }),
            prompt: Some(BodyDigest {
                mode: BodyMode::Sealed,
                sha256: "ab".into(),
                bytes: 3,
            }),
            response: None,
            tool_calls: vec!["f".into(), "g".into()],
            tokens: Some(Tokens {
                input: 1,
                output: 2,
            }),
            cost_micros: Some(-1),
            latency_ms: None,
            status: 200,
            error: Some(ErrorInfo {
                code: "c".into(),
                message: "m, \"q\"".into(),
            }),
            client: Some(Client {
                ip: None,
                user_agent: Some("ua".into()),
            }),
            detail,
        }
    }

    #[test]
    fn the_direct_form_is_the_canonical_form() {
        for d in [
            json!({}),
            json!({"z": 1, "a": {"y": [true, null, "s"], "b": -3}}),
            json!(null),
        ] {
            let r = sample(d);
            let generic = crate::canonical(&serde_json::to_value(&r).unwrap()).unwrap();
            assert_eq!(
                String::from_utf8(r.canonical().unwrap()).unwrap(),
                String::from_utf8(generic).unwrap()
            );
        }
    }

    #[test]
    fn a_float_in_detail_is_refused() {
        assert!(sample(json!({"x": 0.5})).canonical().is_err());
    }
}
