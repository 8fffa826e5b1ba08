//! The `x-ratelimit-*` headers a caller reads its rate windows from: on an admitted call and on
//! a 429 alike (below both `limits`, which fills them, and `error`, which renders the 429).

/// The tenant's rate-limit state after admission, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateState {
    pub limit_requests: Option<u64>,
    pub remaining_requests: u64,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: u64,
    /// Seconds until the minute windows reset.
    pub reset_secs: u64,
}

/// The `x-ratelimit-*` headers OpenAI's SDKs read.
pub fn rate_headers(h: &mut axum::http::HeaderMap, r: &RateState) {
    use axum::http::HeaderValue;
    let mut put = |name: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(name, v);
        }
    };
    if let Some(l) = r.limit_requests {
        put("x-ratelimit-limit-requests", l.to_string());
        put(
            "x-ratelimit-remaining-requests",
            r.remaining_requests.to_string(),
        );
        put("x-ratelimit-reset-requests", format!("{}s", r.reset_secs));
    }
    if let Some(l) = r.limit_tokens {
        put("x-ratelimit-limit-tokens", l.to_string());
        put(
            "x-ratelimit-remaining-tokens",
            r.remaining_tokens.to_string(),
        );
        put("x-ratelimit-reset-tokens", format!("{}s", r.reset_secs));
    }
}
