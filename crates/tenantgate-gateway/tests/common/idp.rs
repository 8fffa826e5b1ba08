//! A real OIDC identity provider on loopback for the tests: discovery document and JWKS over
//! HTTP (counting fetches), and token minting with the test-only keys in `tests/data/oidc`.

use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tenantgate_gateway::config::OidcConfig;

pub const AUDIENCE: &str = "tenantgate";

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/oidc")
        .join(name)
}

/// Every test key's public JWK, by name (`rsa1`, `rsa2`, `ec1`, `ed1`, `attacker`).
pub fn jwks() -> Value {
    serde_json::from_slice(&std::fs::read(data("jwks.json")).unwrap()).unwrap()
}

pub struct Idp {
    pub url: String,
    published: Arc<Mutex<Vec<String>>>,
    fetches: Arc<AtomicUsize>,
    /// The user `/authorize` signs in (`login_as`), as claims.
    login: Arc<Mutex<Option<Value>>>,
}

/// An authorization code's binding: what `/token` checks before it answers.
struct Issued {
    challenge: String,
    client_id: String,
    redirect_uri: String,
    claims: Value,
}

impl Idp {
    /// Serves discovery and a JWKS publishing `keys`.
    pub async fn start(keys: &[&str]) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let published: Arc<Mutex<Vec<String>>> =
            Arc::new(Mutex::new(keys.iter().map(|k| k.to_string()).collect()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let all = jwks();
        let (p, f, u) = (published.clone(), fetches.clone(), url.clone());
        let login: Arc<Mutex<Option<Value>>> = Arc::new(Mutex::new(None));
        let codes: Arc<Mutex<std::collections::HashMap<String, Issued>>> = Arc::default();
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let u = u.clone();
                    async move {
                        Json(json!({"issuer": u, "jwks_uri": format!("{u}/jwks"),
                            "authorization_endpoint": format!("{u}/authorize"),
                            "token_endpoint": format!("{u}/token")}))
                    }
                }),
            )
            .route(
                "/jwks",
                get(move || {
                    f.fetch_add(1, Ordering::SeqCst);
                    let keys: Vec<Value> =
                        p.lock().unwrap().iter().map(|k| all[k].clone()).collect();
                    async move { Json(json!({ "keys": keys })) }
                }),
            );
        let app = app.merge(login_routes(login.clone(), codes));
        #[expect(
            clippy::disallowed_methods,
            reason = "the test drives the server from outside; its tasks are not server background work"
        )]
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Idp {
            url,
            published,
            fetches,
            login,
        }
    }

    /// Replaces the published key set (key rotation at the IdP).
    pub fn publish(&self, keys: &[&str]) {
        *self.published.lock().unwrap() = keys.iter().map(|k| k.to_string()).collect();
    }

    /// The user the next `/authorize` signs in without asking (claims from [`Idp::claims`];
    /// `aud`, `nonce` and the times are set when the ID token is made).
    pub fn login_as(&self, claims: Value) {
        *self.login.lock().unwrap() = Some(claims);
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Standard claims from this issuer, valid for five minutes.
    pub fn claims(&self, sub: &str, tenant: Option<&str>, roles: &[&str]) -> Value {
        let now = now();
        let mut c = json!({"iss": self.url, "aud": AUDIENCE, "sub": sub, "iat": now,
            "nbf": now, "exp": now + 300, "roles": roles});
        if let Some(t) = tenant {
            c["tenant"] = json!(t);
        }
        c
    }

    /// Discovery-based configuration for this issuer.
    pub fn config(&self) -> OidcConfig {
        OidcConfig {
            issuer: self.url.clone(),
            audience: AUDIENCE.into(),
            ..Default::default()
        }
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token signed with test key `key`, its `kid` set to `kid`.
pub fn mint_with_kid(key: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(data(&format!("{key}.pem"))).unwrap();
    let (alg, enc) = match key {
        "ec1" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem).unwrap()),
        "ed1" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem).unwrap()),
        _ => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem).unwrap()),
    };
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &enc).unwrap()
}

/// A token signed with test key `key` under its own kid.
pub fn mint(key: &str, claims: &Value) -> String {
    mint_with_kid(key, Some(key), claims)
}

/// An HS256 token whose HMAC secret is `secret` (the classic key-confusion forgery when the
/// secret is the issuer's public key).
pub fn mint_hs256(secret: &[u8], kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// A token with `alg: none` and no signature.
pub fn mint_none(claims: &Value) -> String {
    use base64::Engine;
    let b = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    format!(
        "{}.{}.",
        b(&json!({"alg": "none", "typ": "JWT", "kid": "rsa1"})),
        b(claims)
    )
}

/// The PEM of a test key's public half.
pub fn public_pem(key: &str) -> Vec<u8> {
    std::fs::read(data(&format!("{key}.pub.pem"))).unwrap()
}

/// The authorization code flow with PKCE (RFC 6749 4.1, RFC 7636), as an IdP runs it: the
/// code is bound to the client, the redirect URI and the S256 challenge, used once, and the
/// ID token carries the request's nonce and the client as its audience.
fn login_routes(
    login: Arc<Mutex<Option<Value>>>,
    codes: Arc<Mutex<std::collections::HashMap<String, Issued>>>,
) -> Router {
    use axum::extract::{Form, Query};
    use axum::response::{IntoResponse, Redirect};
    use std::collections::HashMap;
    let c2 = codes.clone();
    Router::new()
        .route(
            "/authorize",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let (login, codes) = (login.clone(), codes.clone());
                async move {
                    let Some(mut claims) = login.lock().unwrap().clone() else {
                        return (axum::http::StatusCode::UNAUTHORIZED, "no user").into_response();
                    };
                    assert_eq!(q["response_type"], "code");
                    assert_eq!(q["code_challenge_method"], "S256");
                    claims["nonce"] = json!(q["nonce"]);
                    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
                    codes.lock().unwrap().insert(
                        code.clone(),
                        Issued {
                            challenge: q["code_challenge"].clone(),
                            client_id: q["client_id"].clone(),
                            redirect_uri: q["redirect_uri"].clone(),
                            claims,
                        },
                    );
                    let to = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
                    Redirect::to(&to).into_response()
                }
            }),
        )
        .route(
            "/token",
            axum::routing::post(move |Form(f): Form<HashMap<String, String>>| {
                let codes = c2.clone();
                async move {
                    use base64::Engine;
                    use sha2::Digest;
                    let bad = || (axum::http::StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
                    let Some(issued) = codes.lock().unwrap().remove(&f["code"]) else {
                        return bad();
                    };
                    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(sha2::Sha256::digest(verifier.as_bytes()));
                    if f["grant_type"] != "authorization_code"
                        || challenge != issued.challenge
                        || f["client_id"] != issued.client_id
                        || f["redirect_uri"] != issued.redirect_uri
                    {
                        return bad();
                    }
                    let mut claims = issued.claims;
                    claims["aud"] = json!(issued.client_id);
                    let id_token = mint("rsa1", &claims);
                    Json(json!({"id_token": id_token, "access_token": "opaque", "token_type": "Bearer"}))
                        .into_response()
                }
            }),
        )
}
