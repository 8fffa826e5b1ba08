//! OIDC bearer tokens: signature verification against each trusted issuer's JWKS, then the
//! standard checks (issuer, audience, `exp`, `nbf` with a configured skew) and claim extraction.
//!
//! Keys come from a JWKS URL, a file, or OIDC discovery. They are cached; a token whose `kid` is
//! unknown triggers a refetch (an IdP rotated its keys), at most once per
//! `jwks_min_refresh_secs` per issuer, so a flood of forged `kid`s cannot turn the gateway into
//! a request amplifier against the IdP.
//!
//! Algorithms are an allow-list of asymmetric ones (RS256, ES256, EdDSA). `alg: none` does not
//! parse, HMAC is never allowed, and a key is only ever used with the algorithm family of its
//! own JWK type, so a token "signed" with HS256 over the RSA public key fails twice over.

use crate::config::OidcConfig;
use arc_swap::ArcSwap;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a token was refused. The message goes back to the caller (it reveals nothing the
/// caller did not send) and into the audit of denied access.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    #[error("the token's algorithm {0} is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("no key of the issuer matches the token")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is not meant for this gateway (audience)")]
    WrongAudience,
    #[error("the token's issuer claim does not match")]
    WrongIssuer,
    #[error("the token lacks the claim {0}")]
    MissingClaim(String),
    /// A user or tenant claim longer than `bounds` accepts (it would become audit and
    /// counter data).
    #[error("the token's claim {0} is too long")]
    ClaimTooLong(String),
    #[error("the issuer's keys could not be fetched")]
    JwksUnavailable,
}

/// A token whose signature and standard claims verified.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Index of the issuer in the configuration.
    pub provider: usize,
    pub issuer: String,
    pub subject: String,
    pub tenant: Option<String>,
    pub roles: Vec<String>,
    /// The token's `exp` (Unix seconds).
    pub expires_at: u64,
}

/// Verified tokens are remembered this long at most (and never past their `exp`), so a busy
/// client pays for one signature check per minute instead of one per request. A key the IdP
/// withdraws stops admitting cached tokens within this time.
const VERIFIED_TTL_SECS: u64 = 60;
const VERIFIED_CACHE: usize = 10_000;

struct Key {
    kid: Option<String>,
    /// The one algorithm this key may verify, from its JWK type (and `alg`, when given).
    alg: Algorithm,
    key: DecodingKey,
}

struct KeySet {
    keys: Vec<Key>,
    fetched: Option<Instant>,
}

struct Provider {
    cfg: OidcConfig,
    algorithms: Vec<Algorithm>,
    keys: ArcSwap<KeySet>,
    /// Time of the last fetch attempt; the lock also makes concurrent refreshes one fetch.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    fetches: std::sync::atomic::AtomicU64,
}

/// The trusted issuers, chosen by the token's `iss`.
pub struct Verifier {
    providers: Vec<Provider>,
    http: reqwest::Client,
    /// SHA-256 of a token -> what it verified as, and until when that may be reused.
    verified: std::sync::Mutex<lru::LruCache<[u8; 32], (VerifiedToken, u64)>>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// The algorithm a JWK can verify, or `None` for keys we never use (symmetric `oct` keys,
/// other curves, encryption keys).
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| !matches!(u, jsonwebtoken::jwk::PublicKeyUse::Signature))
    {
        return None;
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    // A JWK that names its algorithm must name this one.
    match jwk.common.key_algorithm.map(|a| a.to_string()) {
        Some(a) if algorithm(&a) != Some(by_type) => None,
        _ => Some(by_type),
    }
}

fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, TokenError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| TokenError::JwksUnavailable)?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(TokenError::JwksUnavailable)?;
    // Keys we cannot use are skipped one by one, so one odd key does not hide the others.
    Ok(keys
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter_map(|jwk| {
            let alg = key_algorithm(&jwk)?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            })
        })
        .collect())
}

/// Reads a claim by dotted path (`realm_access.roles`).
fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

fn claim_str(claims: &Value, path: &str) -> Option<String> {
    match claim(claims, path)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn roles(claims: &Value, path: &str) -> Vec<String> {
    match claim(claims, path) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// Whether a bearer value is a JWT (three base64url parts) rather than an API key.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

impl Verifier {
    pub fn new(configs: &[OidcConfig]) -> Self {
        let providers = configs
            .iter()
            .map(|cfg| Provider {
                algorithms: cfg.algorithms.iter().filter_map(|a| algorithm(a)).collect(),
                cfg: cfg.clone(),
                keys: ArcSwap::from_pointee(KeySet {
                    keys: Vec::new(),
                    fetched: None,
                }),
                last_fetch: tokio::sync::Mutex::new(None),
                fetches: Default::default(),
            })
            .collect();
        Self {
            providers,
            verified: std::sync::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(VERIFIED_CACHE).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The configuration of issuer `i` (as in [`VerifiedToken::provider`]).
    pub fn config(&self, i: usize) -> Option<&OidcConfig> {
        self.providers.get(i).map(|p| &p.cfg)
    }

    /// How many JWKS fetches issuer `i` has made (metrics and tests).
    pub fn fetches(&self, i: usize) -> u64 {
        self.providers
            .get(i)
            .map_or(0, |p| p.fetches.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Verifies a token, or returns what the same token verified as within the last minute
    /// (and before its `exp`).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = unix_now();
        if let Ok(mut c) = self.verified.lock() {
            match c.get(&digest) {
                Some((v, until)) if now < *until => return Ok(v.clone()),
                Some(_) => {
                    c.pop(&digest);
                }
                None => {}
            }
        }
        let v = self.verify_signed(token).await?;
        let until = v.expires_at.min(now + VERIFIED_TTL_SECS);
        if let Ok(mut c) = self.verified.lock() {
            c.put(digest, (v.clone(), until));
        }
        Ok(v)
    }

    async fn verify_signed(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        // `none`, HMAC and anything unlisted stop here, before any key is looked at.
        let alg = unverified_alg(token).ok_or(TokenError::Malformed)?;
        if algorithm(&alg).is_none() {
            return Err(TokenError::AlgorithmNotAllowed(alg));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        // The issuer picks the keys; it is checked again, signed, by the validation below.
        let iss = unverified_issuer(token).ok_or(TokenError::Malformed)?;
        let (index, p) = self
            .providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.cfg.issuer == iss)
            .ok_or(TokenError::UnknownIssuer)?;
        if !p.algorithms.contains(&header.alg) {
            return Err(TokenError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
        }
        let max_age = Duration::from_secs(p.cfg.jwks_max_age_secs);
        let stale = p.keys.load().fetched.is_none_or(|t| t.elapsed() > max_age);
        if stale {
            self.refresh(p).await;
        }
        let claims = match self.try_keys(p, &header, token) {
            Err(TokenError::UnknownKey) => {
                // The IdP may have rotated: refetch (rate-bounded) and try once more.
                if self.refresh(p).await {
                    self.try_keys(p, &header, token)
                } else {
                    Err(TokenError::UnknownKey)
                }
            }
            r => r,
        }?;
        let subject = claim_str(&claims, &p.cfg.user_claim)
            .ok_or_else(|| TokenError::MissingClaim(p.cfg.user_claim.clone()))?;
        let tenant = claim_str(&claims, &p.cfg.tenant_claim);
        for (claim, v) in [
            (&p.cfg.user_claim, Some(&subject)),
            (&p.cfg.tenant_claim, tenant.as_ref()),
        ] {
            if v.is_some_and(|v| v.len() > crate::bounds::MAX_USER_BYTES) {
                return Err(TokenError::ClaimTooLong(claim.clone()));
            }
        }
        Ok(VerifiedToken {
            provider: index,
            issuer: iss,
            subject,
            tenant,
            roles: roles(&claims, &p.cfg.roles_claim),
            // Validated as present and numeric above.
            expires_at: claims["exp"].as_u64().unwrap_or(0),
        })
    }

    fn try_keys(
        &self,
        p: &Provider,
        header: &jsonwebtoken::Header,
        token: &str,
    ) -> Result<Value, TokenError> {
        let set = p.keys.load();
        let candidates = set
            .keys
            .iter()
            .filter(|k| k.alg == header.alg && (header.kid.is_none() || k.kid == header.kid));
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&p.cfg.issuer]);
        validation.set_audience(&[&p.cfg.audience]);
        validation.leeway = p.cfg.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let mut last = TokenError::UnknownKey;
        for k in candidates {
            match jsonwebtoken::decode::<Value>(token, &k.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match e.kind() {
                        K::ExpiredSignature => TokenError::Expired,
                        K::ImmatureSignature => TokenError::NotYetValid,
                        K::InvalidAudience => TokenError::WrongAudience,
                        K::InvalidIssuer => TokenError::WrongIssuer,
                        K::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
                        K::InvalidSignature => TokenError::BadSignature,
                        K::InvalidAlgorithm => {
                            TokenError::AlgorithmNotAllowed(format!("{:?}", header.alg))
                        }
                        _ => TokenError::Malformed,
                    };
                    // A claim failure is final; a bad signature may be another key's token.
                    if last != TokenError::BadSignature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    /// Refetches the issuer's keys unless it fetched within `jwks_min_refresh_secs`. Returns
    /// whether new keys were installed. A failed fetch keeps the previous keys.
    async fn refresh(&self, p: &Provider) -> bool {
        let mut last = p.last_fetch.lock().await;
        let min = Duration::from_secs(p.cfg.jwks_min_refresh_secs);
        if last.is_some_and(|t| t.elapsed() < min) {
            return false;
        }
        *last = Some(Instant::now());
        p.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.fetch(&p.cfg).await {
            Ok(keys) => {
                tracing::info!(issuer = %p.cfg.issuer, keys = keys.len(), "JWKS fetched");
                p.keys.store(Arc::new(KeySet {
                    keys,
                    fetched: Some(Instant::now()),
                }));
                true
            }
            Err(e) => {
                tracing::warn!(issuer = %p.cfg.issuer, error = %e, "JWKS fetch failed");
                false
            }
        }
    }

    async fn fetch(&self, cfg: &OidcConfig) -> Result<Vec<Key>, TokenError> {
        if let Some(file) = &cfg.jwks_file {
            let body = tokio::fs::read(file)
                .await
                .map_err(|_| TokenError::JwksUnavailable)?;
            return parse_jwks(&body);
        }
        let url = match &cfg.jwks_url {
            Some(u) => u.clone(),
            None => {
                let discovery = format!(
                    "{}/.well-known/openid-configuration",
                    cfg.issuer.trim_end_matches('/')
                );
                let doc: Value = serde_json::from_slice(&self.get(&discovery).await?)
                    .map_err(|_| TokenError::JwksUnavailable)?;
                doc.get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or(TokenError::JwksUnavailable)?
                    .to_owned()
            }
        };
        parse_jwks(&self.get(&url).await?)
    }

    async fn get(&self, url: &str) -> Result<bytes::Bytes, TokenError> {
        const MAX: usize = 1 << 20;
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|_| TokenError::JwksUnavailable)?;
        let body = resp
            .bytes()
            .await
            .map_err(|_| TokenError::JwksUnavailable)?;
        if body.len() > MAX {
            return Err(TokenError::JwksUnavailable);
        }
        Ok(body)
    }
}

fn unverified_part(token: &str, i: usize) -> Option<Value> {
    let part = token.split('.').nth(i)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unverified_issuer(token: &str) -> Option<String> {
    unverified_part(token, 1)?
        .get("iss")?
        .as_str()
        .map(str::to_owned)
}

fn unverified_alg(token: &str) -> Option<String> {
    unverified_part(token, 0)
        .and_then(|h| h.get("alg")?.as_str().map(|a| a.chars().take(16).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_by_dotted_path_and_roles_as_array_or_string() {
        let c = serde_json::json!({"sub": "u1", "org": {"id": "acme"},
            "realm_access": {"roles": ["tenant_admin", 7]}, "scope": "member extra"});
        assert_eq!(claim_str(&c, "org.id").as_deref(), Some("acme"));
        assert_eq!(claim_str(&c, "org.missing"), None);
        assert_eq!(roles(&c, "realm_access.roles"), vec!["tenant_admin"]);
        assert_eq!(roles(&c, "scope"), vec!["member", "extra"]);
        assert!(roles(&c, "nope").is_empty());
    }

    #[test]
    fn jwt_shape_is_told_from_api_keys() {
        assert!(looks_like_jwt("eyJhbGciOi.eyJzdWIi.c2ln"));
        assert!(!looks_like_jwt("tgk_abcdefghijklmnop"));
        assert!(!looks_like_jwt("eyJhbGciOi.eyJzdWIi"));
    }

    #[test]
    fn symmetric_and_mismatched_jwks_entries_are_skipped() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "P-256", "alg": "RS256", "kid": "lying",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "ec",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird"}
        ]});
        let keys = parse_jwks(jwks.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ec"));
        assert_eq!(keys[0].alg, Algorithm::ES256);
    }
}
