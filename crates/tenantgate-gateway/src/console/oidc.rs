//! Sign-in: with an API key (deployments without an IdP), or at an OIDC issuer with the
//! authorization code flow and PKCE (RFC 7636, S256), as a public client.
//!
//! The flow's state (`state`, `nonce`, the PKCE verifier, the issuer) travels in a short-lived
//! cookie sealed under a key derived from the server secret, so any replica can finish a flow
//! another began, and a callback is accepted only in the browser that started it (login CSRF).
//! Each issuer has its own callback path (`/console/login/oidc/{i}/callback`), and a code is
//! redeemed only at the issuer whose path it came back to, which must be the one the flow
//! started with: otherwise a malicious issuer could bounce the browser to an honest one and
//! receive the honest issuer's code at its own token endpoint (the OIDC mix-up attack). The
//! discovery document must name the configured issuer, and an `iss` answer (RFC 9207) too.
//! The ID token that comes back is verified by the same verifier bearer tokens meet
//! (`identity::oidc`: signature, issuer, audience, expiry) and must carry the flow's nonce;
//! the session then acts with that token, so it ends when the token does.

use super::session::{read_cookie, same_origin, Session};
use super::Refusal;
use crate::identity::auth::Caller;
use crate::state::AppState;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tenantgate_crypto::{aead, Aad, Key};

const LOGIN_COOKIE: &str = "tg_console_login";
/// How long the IdP round trip may take.
const LOGIN_TTL_MS: i64 = 10 * 60 * 1000;

#[derive(Serialize, Deserialize)]
struct Pending {
    issuer: usize,
    state: String,
    nonce: String,
    verifier: String,
    expires_at_ms: i64,
}

fn random(n: usize) -> String {
    let mut raw = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    B64.encode(raw)
}

fn login_key(app: &AppState) -> Key {
    Key::from_array(app.0.secret.derive(&[b"console-login"]))
}

fn login_cookie(app: &AppState, value: Option<&str>) -> HeaderValue {
    super::session::cookie_value(app, LOGIN_COOKIE, value, (LOGIN_TTL_MS / 1000) as u64)
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

async fn discover(issuer: &str) -> Result<Discovery, Refusal> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|_| Refusal::Unavailable)?;
    let d: Discovery = client
        .get(url)
        .send()
        .await
        .map_err(|_| Refusal::Unavailable)?
        .json()
        .await
        .map_err(|_| Refusal::Unavailable)?;
    // A discovery document naming another issuer is not this issuer's (OIDC Discovery 4.3).
    if d.issuer != issuer {
        return Err(Refusal::Unavailable);
    }
    Ok(d)
}

/// Issuer `i`'s own callback (register it at that IdP).
fn redirect_uri(app: &AppState, headers: &HeaderMap, i: usize) -> String {
    format!(
        "{}/console/login/oidc/{i}/callback",
        super::session::origin(app, headers)
    )
}

/// `GET /console/login/oidc/{issuer}`: to the IdP's authorization endpoint.
pub(super) async fn start(
    State(app): State<AppState>,
    Path(issuer): Path<usize>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let cfg = app.0.oidc.config(issuer).ok_or(Refusal::NotFound)?;
        let client_id = cfg.console_client_id.as_deref().ok_or(Refusal::NotFound)?;
        let disc = discover(&cfg.issuer).await?;
        let pending = Pending {
            issuer,
            state: random(24),
            nonce: random(24),
            verifier: random(48),
            expires_at_ms: crate::clock::now_ms() + LOGIN_TTL_MS,
        };
        let challenge = B64.encode(Sha256::digest(pending.verifier.as_bytes()));
        let sealed = aead::seal(
            &login_key(&app),
            &Aad::new("console-login", &[]),
            &serde_json::to_vec(&pending).map_err(|_| Refusal::Unavailable)?,
        );
        let scope = cfg.console_scopes.as_str();
        let mut url =
            reqwest::Url::parse(&disc.authorization_endpoint).map_err(|_| Refusal::Unavailable)?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &redirect_uri(&app, &headers, issuer))
            .append_pair("scope", scope)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let mut resp = Redirect::to(url.as_str()).into_response();
        resp.headers_mut().append(
            header::SET_COOKIE,
            login_cookie(&app, Some(&B64.encode(sealed))),
        );
        Ok::<_, Refusal>(resp)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    /// RFC 9207: the issuer that answered, when it says.
    iss: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: String,
}

/// `GET /console/login/oidc/{issuer}/callback`: the code for an ID token, then a session.
pub(super) async fn callback(
    State(app): State<AppState>,
    Path(issuer): Path<usize>,
    Query(q): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        if let Some(e) = q.error {
            return Err(Refusal::Api {
                status: axum::http::StatusCode::UNAUTHORIZED,
                message: format!(
                    "the identity provider refused the sign-in: {}",
                    crate::bounds::echo(&e)
                ),
            });
        }
        let forged = || Refusal::Api {
            status: axum::http::StatusCode::UNAUTHORIZED,
            message: "this sign-in was not started in this browser, or took too long; start again"
                .into(),
        };
        let sealed = read_cookie(&headers, &super::session::cookie_name(&app, LOGIN_COOKIE))
            .and_then(|c| B64.decode(c).ok())
            .ok_or_else(forged)?;
        let pending: Pending =
            aead::open(&login_key(&app), &Aad::new("console-login", &[]), &sealed)
                .ok()
                .and_then(|p| serde_json::from_slice(&p).ok())
                .ok_or_else(forged)?;
        if pending.expires_at_ms < crate::clock::now_ms()
            || q.state.as_deref() != Some(pending.state.as_str())
            || issuer != pending.issuer
        {
            return Err(forged());
        }
        let code = q.code.filter(|c| c.len() < 2048).ok_or_else(forged)?;
        let cfg = app.0.oidc.config(pending.issuer).ok_or(Refusal::NotFound)?;
        if q.iss.as_deref().is_some_and(|i| i != cfg.issuer) {
            return Err(forged());
        }
        let client_id = cfg.console_client_id.clone().ok_or(Refusal::NotFound)?;
        let disc = discover(&cfg.issuer).await?;
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|_| Refusal::Unavailable)?;
        let answer = client
            .post(&disc.token_endpoint)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", &redirect_uri(&app, &headers, issuer)),
                ("client_id", client_id.as_str()),
                ("code_verifier", pending.verifier.as_str()),
            ])
            .send()
            .await
            .map_err(|_| Refusal::Unavailable)?;
        if !answer.status().is_success() {
            return Err(Refusal::Api {
                status: axum::http::StatusCode::UNAUTHORIZED,
                message: "the identity provider did not exchange the code".into(),
            });
        }
        let token: TokenAnswer = answer.json().await.map_err(|_| Refusal::Unavailable)?;
        let verified = app
            .0
            .oidc
            .verify(&token.id_token)
            .await
            .map_err(|e| Refusal::Api {
                status: axum::http::StatusCode::UNAUTHORIZED,
                message: e.to_string(),
            })?;
        if verified.provider != pending.issuer || nonce_of(&token.id_token) != Some(pending.nonce) {
            return Err(forged());
        }
        let ttl_end =
            crate::clock::now_ms() + (app.0.config.console.session_ttl_secs as i64) * 1000;
        let expires = ttl_end.min((verified.expires_at as i64).saturating_mul(1000));
        let mut resp = begin(&app, &token.id_token, expires).await?;
        resp.headers_mut()
            .append(header::SET_COOKIE, login_cookie(&app, None));
        Ok(resp)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The `nonce` claim of a token whose signature was verified.
fn nonce_of(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
    claims["nonce"].as_str().map(str::to_owned)
}

#[derive(Deserialize)]
pub(super) struct KeyForm {
    #[serde(default)]
    api_key: String,
}

/// `POST /console/login/key`: signs in with an API key. Only from the console's own page
/// (`Origin`), so another site cannot sign a browser into its attacker's account.
pub(super) async fn sign_in_with_key(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<KeyForm>,
) -> Response {
    let result = async {
        same_origin(&app, &headers)?;
        let key = form.api_key.trim();
        // An API key, or a bearer token an operator pastes (a JWT is a few KB).
        if key.is_empty() || key.len() > 8192 {
            return Err(Refusal::BadInput("enter an API key".into()));
        }
        let ttl_end =
            crate::clock::now_ms() + (app.0.config.console.session_ttl_secs as i64) * 1000;
        begin(&app, key, ttl_end).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Opens a session for a credential the API accepts (checked exactly as a bearer), and
/// sends the browser to its home page.
async fn begin(app: &AppState, credential: &str, expires_at_ms: i64) -> Result<Response, Refusal> {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {credential}")).map_err(|_| Refusal::SignedOut)?,
    );
    let (tenant, home) = match app.caller(&h).await {
        Ok(Caller::Tenant(t)) => (Some(t.tenant.id.to_string()), "/console"),
        Ok(Caller::Platform(_)) => (None, "/console/platform/tenants"),
        Err(e) => {
            return Err(Refusal::Api {
                status: axum::http::StatusCode::UNAUTHORIZED,
                message: format!("sign-in refused: {e}"),
            })
        }
    };
    let session = Session::create(app, credential, tenant, expires_at_ms, None).await?;
    let mut resp = Redirect::to(home).into_response();
    if let Some(c) = &session.set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    Ok(resp)
}
