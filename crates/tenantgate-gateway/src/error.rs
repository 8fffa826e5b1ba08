//! Every failure a caller can see, with one exhaustive table from error to status, type and
//! retry advice, and one renderer per wire format so a caller always gets its own SDK's shape.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The wire format of the route that failed, which decides the error body's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GatewayError {
    #[error("We could not parse the JSON body of your request: {0}")]
    BadJson(String),
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error("max tokens {requested} exceeds this tenant's limit of {cap} per request")]
    MaxTokensExceeded {
        requested: u64,
        cap: u32,
        param: &'static str,
    },
    #[error("{message}")]
    UnsupportedForModel {
        message: String,
        param: Option<String>,
    },
    #[error("You didn't provide an API key. Send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.")]
    MissingKey,
    #[error("Incorrect API key provided. The key may be invalid, revoked or expired.")]
    InvalidKey,
    /// A bearer token that did not verify, or verified but admits nobody here (unknown
    /// tenant, not a member).
    #[error("Invalid bearer token: {0}")]
    InvalidToken(String),
    #[error("This tenant is suspended; contact your platform administrator.")]
    TenantSuspended,
    /// Offboarding was requested: every call is refused until the deletion is cancelled or
    /// finalized.
    #[error(
        "This tenant is scheduled for deletion; contact your platform administrator to restore it."
    )]
    TenantPendingDeletion,
    /// An unknown model and a model outside the tenant's allow-list are one error: a
    /// different answer would let a key probe the platform's catalogue (other tenants' models).
    #[error("The model `{0}` does not exist.")]
    ModelNotFound(String),
    #[error("The prompt `{0}` does not exist.")]
    PromptNotFound(String),
    #[error("The knowledge base `{0}` does not exist.")]
    KnowledgeBaseNotFound(String),
    /// A training file id that is not the tenant's: missing or another tenant's, one answer.
    #[error("No such File object: {0}")]
    FileNotFound(String),
    /// A fine-tuning job id that is not the tenant's: missing or another tenant's, one answer.
    #[error("No such fine-tuning job: {0}")]
    FineTuningJobNotFound(String),
    /// The tenant's plan (or its limits override) does not include fine-tuning.
    #[error("Fine-tuning is not enabled for this tenant's plan; ask your platform administrator to enable it.")]
    FineTuningNotEnabled,
    #[error("The tenant's prompt could not be rendered: {0}")]
    PromptRender(String),
    #[error("This tenant does not accept a client system message; its system prompt is applied by the gateway.")]
    ClientSystemRefused,
    #[error("{0}")]
    Forbidden(String),
    #[error("The request was blocked by this tenant's leak-prevention policy ({0}).")]
    InputBlocked(&'static str),
    #[error("The response was withheld by this tenant's leak-prevention policy ({0}).")]
    OutputBlocked(&'static str),
    /// A platform operator's incident freeze holds this call (its tenant, its route or its
    /// model). Only a platform admin lifts it (`incident unfreeze`): not the tenant's admins,
    /// not its kill switch.
    #[error("This call is held by the platform's incident freeze {id} on this {what}; calls resume when the platform operator lifts it. Contact your platform administrator.")]
    Frozen { what: &'static str, id: String },
    #[error("Not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("Unknown route {0}")]
    RouteNotFound(String),
    #[error("Method not allowed")]
    MethodNotAllowed,
    #[error("Request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The body did not arrive within `server.body_read_timeout_ms`.
    #[error("The request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    /// A `content-type` or `content-encoding` the route does not take (named in the message).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The provider refused the request for a reason in the request itself (its 4xx).
    #[error("Upstream provider rejected the request: {message}")]
    UpstreamRejected { status: u16, message: String },
    #[error("Upstream provider is rate limiting: {message}")]
    UpstreamRateLimited {
        message: String,
        retry_after: Option<String>,
    },
    #[error("Upstream provider failed: {0}")]
    UpstreamFailed(String),
    #[error("Upstream provider timed out")]
    UpstreamTimeout,
    #[error("Service unavailable: {0}")]
    Unavailable(String),
    /// No target of the model answered: each failed, or its circuit is open, or its provider
    /// is drained (`upstream::failover`). `retry_after_s` is when one may be tried again.
    #[error(
        "No provider could serve model {model:?} right now ({why}); retry after {retry_after_s} s"
    )]
    NoUpstream {
        model: String,
        why: String,
        retry_after_s: u64,
    },
    /// The tenant's stored policy (which ones: the payload) cannot be read by this gateway;
    /// its calls are refused rather than run on defaults.
    #[error("This tenant's {0} policy cannot be read by this gateway (written by a newer version, or damaged); its calls are refused until it is readable. Contact your platform administrator.")]
    PolicyUnreadable(String),
    /// The tenant's data is encrypted under a key in its own KMS, and that key does not
    /// answer: its calls fail closed (customer-controlled crypto-shredding).
    #[error("{}", .0.message())]
    TenantKeyUnavailable(KeyFault),
    /// A tenant, key or end-user rate or concurrency limit of this gateway; `rate` is what the
    /// `x-ratelimit-*` headers of the 429 say (remaining 0 until the reset).
    #[error("Rate limit reached: {message}")]
    RateLimited {
        message: String,
        retry_after_s: u64,
        rate: crate::rate::RateState,
    },
    /// A token or spend budget is used up, or the tenant's kill switch is on.
    #[error("{0}")]
    InsufficientQuota(String),
    #[error("Internal error (request id in x-request-id)")]
    Internal,
    /// The tenant's audit chain no longer extends the last signed checkpoint: nothing more is
    /// signed or exported until an operator investigates.
    #[error("The audit chain is broken: {0}")]
    AuditChainBroken(String),
}

impl GatewayError {
    /// A 400 naming the offending parameter.
    pub(crate) fn invalid(message: impl std::fmt::Display, param: &str) -> Self {
        GatewayError::InvalidRequest {
            message: message.to_string(),
            param: Some(param.to_owned()),
        }
    }
}

/// Why a tenant's own key could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFault {
    /// The key refuses: disabled, scheduled for deletion, or the gateway's access revoked. The
    /// tenant's decision; retrying does not help until the tenant restores the key.
    Refused,
    /// The tenant's KMS did not answer (network, throttling): retrying may help.
    Unreachable,
}

impl KeyFault {
    fn message(self) -> &'static str {
        match self {
            KeyFault::Refused => "This tenant's own encryption key is unavailable (disabled, scheduled for deletion, or the gateway's access to it was revoked), so its data cannot be read; its calls are refused until the key is restored in the tenant's KMS.",
            KeyFault::Unreachable => "This tenant's own encryption key could not be reached (its KMS did not answer), so its data cannot be read; retry later.",
        }
    }
}

impl From<tenantgate_crypto::KmsError> for KeyFault {
    fn from(e: tenantgate_crypto::KmsError) -> Self {
        use tenantgate_crypto::KmsError as K;
        match e {
            K::KeyUnavailable(_) | K::Undecryptable | K::NoKey => KeyFault::Refused,
            K::Backend(_) => KeyFault::Unreachable,
        }
    }
}

/// How one error presents itself.
struct Row {
    status: StatusCode,
    openai_type: &'static str,
    anthropic_type: &'static str,
    code: Option<&'static str>,
    /// `Some(false)` for policy denials: the official SDKs must not retry them.
    should_retry: Option<bool>,
}

impl GatewayError {
    fn row(&self) -> Row {
        use GatewayError as E;
        let r = |status, openai_type, anthropic_type, code, should_retry| Row {
            status,
            openai_type,
            anthropic_type,
            code,
            should_retry,
        };
        match self {
            E::BadJson(_) => r(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request_error",
                None,
                None,
            ),
            E::InvalidRequest { .. } => r(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request_error",
                None,
                None,
            ),
            E::MaxTokensExceeded { .. } => r(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request_error",
                Some("max_tokens_exceeded"),
                Some(false),
            ),
            E::UnsupportedForModel { .. } => r(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request_error",
                Some("unsupported_parameter"),
                None,
            ),
            E::MissingKey => r(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "authentication_error",
                Some("missing_api_key"),
                Some(false),
            ),
            E::InvalidKey => r(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "authentication_error",
                Some("invalid_api_key"),
                Some(false),
            ),
            E::InvalidToken(_) => r(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "authentication_error",
                Some("invalid_token"),
                Some(false),
            ),
            E::TenantSuspended => r(
                StatusCode::FORBIDDEN,
                "permission_error",
                "permission_error",
                Some("tenant_suspended"),
                Some(false),
            ),
            E::TenantPendingDeletion => r(
                StatusCode::FORBIDDEN,
                "permission_error",
                "permission_error",
                Some("tenant_pending_deletion"),
                Some(false),
            ),
            E::ModelNotFound(_) => r(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found_error",
                Some("model_not_found"),
                Some(false),
            ),
            E::PromptNotFound(_) => r(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found_error",
                Some("prompt_not_found"),
                Some(false),
            ),
            E::KnowledgeBaseNotFound(_) => r(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found_error",
                Some("knowledge_base_not_found"),
                Some(false),
            ),
            E::FileNotFound(_) => r(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found_error",
                Some("file_not_found"),
                Some(false),
            ),
            E::FineTuningJobNotFound(_) => r(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found_error",
                Some("fine_tuning_job_not_found"),
                Some(false),
            ),
            E::FineTuningNotEnabled => r(
                StatusCode::FORBIDDEN,
                "permission_error",
                "permission_error",
                Some("fine_tuning_not_enabled"),
                Some(false),
            ),
            E::PromptRender(_) => r(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request_error",
                Some("prompt_render_error"),
                Some(false),
            ),
            E::ClientSystemRefused => r(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request_error",
                Some("client_system_not_allowed"),
                Some(false),
            ),
            E::Forbidden(_) => r(
                StatusCode::FORBIDDEN,
                "permission_error",
                "permission_error",
                Some("forbidden"),
                Some(false),
            ),
            E::Frozen { .. } => r(
                StatusCode::FORBIDDEN,
                "permission_error",
                "permission_error",
                Some("incident_freeze"),
                Some(false),
            ),
            E::InputBlocked(_) => r(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request_error",
                Some("content_blocked"),
                Some(false),
            ),
            E::OutputBlocked(_) => r(
                StatusCode::FORBIDDEN,
                "permission_error",
                "permission_error",
                Some("response_blocked"),
                Some(false),
            ),
            E::NotFound => r(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found_error",
                Some("not_found"),
                Some(false),
            ),
            E::Conflict(_) => r(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "invalid_request_error",
                Some("conflict"),
                Some(false),
            ),
            E::RouteNotFound(_) => r(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found_error",
                Some("unknown_url"),
                Some(false),
            ),
            E::MethodNotAllowed => r(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "invalid_request_error",
                Some("method_not_allowed"),
                Some(false),
            ),
            E::BodyTooLarge(_) => r(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
                Some("request_too_large"),
                Some(false),
            ),
            E::BodyTimeout(_) => r(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                "invalid_request_error",
                Some("request_timeout"),
                None,
            ),
            E::UnsupportedMediaType(_) => r(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                "invalid_request_error",
                Some("unsupported_media_type"),
                Some(false),
            ),
            E::UpstreamRejected { status, .. } => r(
                StatusCode::from_u16(*status)
                    .ok()
                    .filter(StatusCode::is_client_error)
                    .unwrap_or(StatusCode::BAD_REQUEST),
                "invalid_request_error",
                "invalid_request_error",
                Some("upstream_rejected"),
                None,
            ),
            E::UpstreamRateLimited { .. } => r(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "rate_limit_error",
                Some("upstream_rate_limited"),
                None,
            ),
            E::UpstreamFailed(_) => r(
                StatusCode::BAD_GATEWAY,
                "server_error",
                "api_error",
                Some("upstream_error"),
                None,
            ),
            E::UpstreamTimeout => r(
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                "api_error",
                Some("upstream_timeout"),
                None,
            ),
            E::RateLimited { .. } => r(
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                "rate_limit_error",
                Some("rate_limit_exceeded"),
                Some(true),
            ),
            E::InsufficientQuota(_) => r(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "rate_limit_error",
                Some("insufficient_quota"),
                Some(false),
            ),
            E::Unavailable(_) => r(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "overloaded_error",
                Some("unavailable"),
                None,
            ),
            E::NoUpstream { .. } => r(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "overloaded_error",
                Some("upstream_unavailable"),
                Some(true),
            ),
            E::PolicyUnreadable(_) => r(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "api_error",
                Some("tenant_policy_unreadable"),
                None,
            ),
            E::TenantKeyUnavailable(KeyFault::Refused) => r(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "api_error",
                Some("tenant_key_unavailable"),
                Some(false),
            ),
            E::TenantKeyUnavailable(KeyFault::Unreachable) => r(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "api_error",
                Some("tenant_key_unavailable"),
                Some(true),
            ),
            E::Internal => r(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "api_error",
                Some("internal_error"),
                None,
            ),
            E::AuditChainBroken(_) => r(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "api_error",
                Some("audit_chain_broken"),
                Some(false),
            ),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.row().status
    }

    /// The machine-readable code (the OpenAI `code`, else its `type`), for audit records.
    pub fn code(&self) -> &'static str {
        let row = self.row();
        row.code.unwrap_or(row.openai_type)
    }

    /// The audit event a call that ended in this error is: a refusal by the tenant's policy is
    /// `access_denied`, a guard block an `incident`, anything else a failed `api_call`.
    pub fn audit_event(&self) -> tenantgate_audit::EventType {
        use tenantgate_audit::EventType;
        match self {
            GatewayError::TenantSuspended
            | GatewayError::TenantPendingDeletion
            | GatewayError::Forbidden(_)
            | GatewayError::Frozen { .. }
            | GatewayError::FineTuningNotEnabled
            | GatewayError::MaxTokensExceeded { .. }
            | GatewayError::ClientSystemRefused => EventType::AccessDenied,
            GatewayError::InputBlocked(_) | GatewayError::OutputBlocked(_) => EventType::Incident,
            GatewayError::RateLimited { .. } | GatewayError::InsufficientQuota(_) => {
                EventType::AccessDenied
            }
            _ => EventType::ApiCall,
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest { param, .. }
            | GatewayError::UnsupportedForModel { param, .. } => param.as_deref(),
            GatewayError::MaxTokensExceeded { param, .. } => Some(param),
            GatewayError::ModelNotFound(_) => Some("model"),
            GatewayError::PromptNotFound(_) => Some("tenantgate.prompt"),
            GatewayError::KnowledgeBaseNotFound(_) => Some("tenantgate.knowledge_bases"),
            GatewayError::FileNotFound(_) => Some("file_id"),
            GatewayError::FineTuningJobNotFound(_) => Some("fine_tuning_job_id"),
            GatewayError::PromptRender(_) => Some("tenantgate.variables"),
            GatewayError::ClientSystemRefused => Some("messages"),
            _ => None,
        }
    }

    /// The error object alone, as OpenAI nests it (`{"message","type","param","code"}`); also
    /// used for in-stream errors after a 200.
    pub fn openai_object(&self) -> serde_json::Value {
        let row = self.row();
        json!({"message": self.to_string(), "type": row.openai_type, "param": self.param(), "code": row.code})
    }

    pub fn anthropic_body(&self) -> serde_json::Value {
        json!({"type": "error", "error": {"type": self.row().anthropic_type, "message": self.to_string()}})
    }

    pub fn render(&self, wire: Wire) -> Response {
        let row = self.row();
        let body = match wire {
            Wire::OpenAi => json!({"error": self.openai_object()}),
            Wire::Anthropic => self.anthropic_body(),
        };
        let mut resp = (row.status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        if let Some(retry) = row.should_retry {
            h.insert(
                "x-should-retry",
                HeaderValue::from_static(if retry { "true" } else { "false" }),
            );
        }
        if let GatewayError::UpstreamRateLimited {
            retry_after: Some(ra),
            ..
        } = self
        {
            if let Ok(v) = HeaderValue::from_str(ra) {
                h.insert("retry-after", v);
            }
        }
        if let GatewayError::NoUpstream { retry_after_s, .. } = self {
            h.insert("retry-after", HeaderValue::from(*retry_after_s));
        }
        if let GatewayError::RateLimited {
            retry_after_s,
            rate,
            ..
        } = self
        {
            h.insert("retry-after", HeaderValue::from(*retry_after_s));
            // The same header family as an admitted call's, so a client's backoff reads one set.
            crate::rate::rate_headers(h, rate);
        }
        resp
    }
}

/// A request the codecs refuse, as the caller's 400.
pub(crate) fn codec(e: tenantgate_providers::CodecError) -> GatewayError {
    GatewayError::InvalidRequest {
        message: e.message,
        param: e.param,
    }
}

/// A store failure as the caller sees it (absent: 404, conflict: 409, invalid: 400, else 500).
pub(crate) fn st(e: tenantgate_store::StoreError) -> GatewayError {
    store_err(e.into())
}

pub(crate) fn store_err(e: tenantgate_store::KeyringError) -> GatewayError {
    match e {
        tenantgate_store::KeyringError::NotFound => GatewayError::NotFound,
        tenantgate_store::KeyringError::Store(tenantgate_store::StoreError::NotFound) => {
            GatewayError::NotFound
        }
        tenantgate_store::KeyringError::Store(tenantgate_store::StoreError::Conflict(m)) => {
            GatewayError::Conflict(m)
        }
        tenantgate_store::KeyringError::Store(tenantgate_store::StoreError::Invalid(m)) => {
            GatewayError::InvalidRequest {
                message: m.0,
                param: None,
            }
        }
        tenantgate_store::KeyringError::KeyUnavailable(_) => {
            GatewayError::TenantKeyUnavailable(KeyFault::Refused)
        }
        other => {
            tracing::error!(error = %other, "template store failure");
            GatewayError::Unavailable("prompt store".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_denials_are_never_5xx_and_say_do_not_retry() {
        for e in [
            GatewayError::TenantSuspended,
            GatewayError::TenantPendingDeletion,
            GatewayError::ModelNotFound("m".into()),
            GatewayError::MaxTokensExceeded {
                requested: 9,
                cap: 1,
                param: "max_tokens",
            },
            GatewayError::InvalidKey,
        ] {
            let r = e.render(Wire::OpenAi);
            assert!(r.status().is_client_error(), "{e:?}");
            assert_eq!(r.headers()["x-should-retry"], "false", "{e:?}");
        }
    }

    #[test]
    fn a_refused_tenant_key_is_a_503_not_to_be_retried_and_an_unreachable_one_may_be() {
        let refused = GatewayError::TenantKeyUnavailable(KeyFault::Refused);
        let r = refused.render(Wire::OpenAi);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["x-should-retry"], "false");
        assert_eq!(refused.code(), "tenant_key_unavailable");
        let unreachable = GatewayError::TenantKeyUnavailable(KeyFault::Unreachable);
        let r = unreachable.render(Wire::Anthropic);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["x-should-retry"], "true");
        assert_ne!(refused.to_string(), unreachable.to_string());
    }

    #[test]
    fn both_shapes_carry_the_message() {
        let e = GatewayError::ModelNotFound("x".into());
        assert_eq!(e.openai_object()["code"], "model_not_found");
        assert_eq!(e.openai_object()["param"], "model");
        assert_eq!(e.anthropic_body()["error"]["type"], "not_found_error");
    }
}
