//! Server-side sessions: the cookie holds a random token only; the row (found by an HMAC of
//! the token under the server secret) holds the credential the session acts with, sealed
//! under a key derived from the same secret, so every replica sharing the secret and the store
//! serves the session, and neither a database reader nor a log learns a usable cookie.
//!
//! The CSRF token of a session is an HMAC of its sign-in's id (the "HMAC-based synchronizer"
//! of the OWASP cheat sheet; the sign-in id is random and never leaves the server): forms
//! carry it, a change without it is refused, and it is never stored. It stays the same when
//! the cookie's token is rotated, so a form loaded before a rotation still submits. A change must also come from the console's own origin (`Origin`, `Sec-Fetch-Site`).

use super::Refusal;
use crate::state::AppState;
use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rand::RngCore;
use tenantgate_crypto::{aead, Aad, Key};
use tenantgate_store::console::ConsoleSession;
use zeroize::Zeroizing;

/// The cookies' names. With `Secure`, the `__Host-` prefix: the browser keeps such a cookie
/// only if it is `Secure`, host-only and `Path=/`, so a sibling subdomain cannot plant or
/// shadow it (session fixation into the planter's tenant).
pub(super) fn cookie_name(app: &AppState, base: &'static str) -> String {
    if app.0.config.console.secure_cookies {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// `name=value` (or a removal when `None`) with the attributes every console cookie has.
pub(super) fn cookie_value(
    app: &AppState,
    base: &'static str,
    value: Option<&str>,
    max_age_secs: u64,
) -> HeaderValue {
    let secure = if app.0.config.console.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let name = cookie_name(app, base);
    let (v, age) = match value {
        Some(v) => (v, max_age_secs),
        None => ("", 0),
    };
    let c = format!("{name}={v}; Path=/; HttpOnly; SameSite=Lax; Max-Age={age}{secure}");
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

const COOKIE: &str = "tg_console";
/// A rotated-out id keeps working this long, for requests already in flight.
const ROTATION_GRACE_MS: i64 = 30_000;
/// `last_seen` is written at most this often (a page load is several requests).
const TOUCH_EVERY_MS: i64 = 30_000;

/// A signed-in browser: the credential the console calls the API with, and the tokens of
/// this request.
pub(crate) struct Session {
    id_hash: String,
    sign_in_id: String,
    pub credential: Zeroizing<String>,
    pub tenant_id: Option<String>,
    created_at_ms: i64,
    /// A new cookie to set (the session's id was rotated on this request).
    pub set_cookie: Option<HeaderValue>,
}

fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    B64.encode(raw)
}

fn id_hash(app: &AppState, token: &str) -> String {
    hex::encode(app.0.secret.derive(&[b"console-session", token.as_bytes()]))
}

fn seal_key(app: &AppState) -> Key {
    Key::from_array(app.0.secret.derive(&[b"console-seal"]))
}

/// The session cookie that sets `token`, or clears the cookie when `None`.
pub(super) fn cookie(app: &AppState, token: Option<&str>, max_age_secs: u64) -> HeaderValue {
    cookie_value(app, COOKIE, token, max_age_secs)
}

/// The value of the named cookie in the request, if any (a duplicate name is refused as no
/// cookie, so a cookie planted on a parent path cannot shadow ours), at most 1 KiB (the
/// sign-in flow's sealed cookie is about 320 bytes, a session token 43).
pub(super) fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for v in headers.get_all(header::COOKIE) {
        for pair in v.to_str().ok()?.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == name {
                    if found.is_some() {
                        return None;
                    }
                    found = Some(v);
                }
            }
        }
    }
    found.filter(|v| v.len() <= 1024)
}

impl Session {
    /// Starts a session acting with `credential`, ending at `expires_at_ms`: a new sign-in,
    /// or the next id of `sign_in_id` (rotation).
    pub(super) async fn create(
        app: &AppState,
        credential: &str,
        tenant_id: Option<String>,
        expires_at_ms: i64,
        sign_in_id: Option<String>,
    ) -> Result<Session, Refusal> {
        let sign_in_id = sign_in_id.unwrap_or_else(random_token);
        let token = random_token();
        let id_hash = id_hash(app, &token);
        let now = crate::clock::now_ms();
        let sealed = aead::seal(
            &seal_key(app),
            &Aad::new("console-session", &[id_hash.as_bytes()]),
            credential.as_bytes(),
        );
        let row = ConsoleSession {
            id_hash: id_hash.clone(),
            sign_in_id: sign_in_id.clone(),
            credential: sealed,
            tenant_id: tenant_id.clone(),
            created_at_ms: now,
            last_seen_ms: now,
            expires_at_ms,
        };
        app.store()
            .console_sessions()
            .insert(&row)
            .await
            .map_err(|_| Refusal::Unavailable)?;
        let max_age = ((expires_at_ms - now).max(0) / 1000) as u64;
        Ok(Session {
            set_cookie: Some(cookie(app, Some(&token), max_age)),
            id_hash,
            sign_in_id,
            credential: Zeroizing::new(credential.to_owned()),
            tenant_id,
            created_at_ms: now,
        })
    }

    /// The request's session: `SignedOut` when there is no cookie, or it is unknown, expired
    /// or idle too long. An old session gets a new id (and cookie) here.
    /// `used` is false for the live refresh, which is not use: it must not keep an unattended
    /// tab's session from its idle timeout.
    pub(super) async fn resolve(
        app: &AppState,
        headers: &HeaderMap,
        used: bool,
    ) -> Result<Session, Refusal> {
        let token = read_cookie(headers, &cookie_name(app, COOKIE)).ok_or(Refusal::SignedOut)?;
        let hash = id_hash(app, token);
        let now = crate::clock::now_ms();
        let sessions = app.store().console_sessions();
        let row = sessions
            .get(&hash, now)
            .await
            .map_err(|_| Refusal::Unavailable)?
            .ok_or(Refusal::SignedOut)?;
        let cfg = &app.0.config.console;
        if now - row.last_seen_ms > (cfg.idle_timeout_secs as i64) * 1000 {
            sessions.remove(&hash).await.ok();
            return Err(Refusal::SignedOut);
        }
        let credential = aead::open(
            &seal_key(app),
            &Aad::new("console-session", &[hash.as_bytes()]),
            &row.credential,
        )
        .ok()
        .and_then(|c| String::from_utf8(c.to_vec()).ok())
        .map(Zeroizing::new)
        // Sealed under another secret (the server secret changed): signed out.
        .ok_or(Refusal::SignedOut)?;
        if used && now - row.last_seen_ms > TOUCH_EVERY_MS {
            sessions.touch(&hash, now).await.ok();
        }
        let session = Session {
            id_hash: hash,
            sign_in_id: row.sign_in_id,
            credential,
            tenant_id: row.tenant_id,
            created_at_ms: row.created_at_ms,
            set_cookie: None,
        };
        if now - session.created_at_ms > (cfg.rotate_after_secs as i64) * 1000 {
            return session.rotate(app, row.expires_at_ms).await;
        }
        Ok(session)
    }

    /// A new id for the same sign-in; the old one ends after a short grace.
    async fn rotate(self, app: &AppState, expires_at_ms: i64) -> Result<Session, Refusal> {
        let next = Session::create(
            app,
            &self.credential,
            self.tenant_id.clone(),
            expires_at_ms,
            Some(self.sign_in_id.clone()),
        )
        .await?;
        let grace = crate::clock::now_ms() + ROTATION_GRACE_MS;
        app.store()
            .console_sessions()
            .expire_at(&self.id_hash, grace)
            .await
            .map_err(|_| Refusal::Unavailable)?;
        Ok(next)
    }

    /// The CSRF token forms of this session carry.
    pub(crate) fn csrf(&self, app: &AppState) -> String {
        B64.encode(
            app.0
                .secret
                .derive(&[b"console-csrf", self.sign_in_id.as_bytes()]),
        )
    }

    /// Ends the sign-in (sign-out): this id and every id it was rotated through.
    pub(crate) async fn end(&self, app: &AppState) {
        let sessions = app.store().console_sessions();
        sessions.remove_sign_in(&self.sign_in_id).await.ok();
        sessions.remove(&self.id_hash).await.ok();
    }

    /// Refuses a change that does not carry this session's CSRF token, or that a page of
    /// another origin sent.
    pub(super) fn check_change(
        &self,
        app: &AppState,
        headers: &HeaderMap,
        csrf: Option<&str>,
    ) -> Result<(), Refusal> {
        same_origin(app, headers)?;
        let want = self.csrf(app);
        let given = csrf.unwrap_or("");
        // Constant time: the comparison must not tell an attacker how much of it matched.
        let equal = want.len() == given.len()
            && want
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if equal {
            Ok(())
        } else {
            Err(Refusal::Forged)
        }
    }
}

/// The console's own origin: `console.public_url`, or `http://{Host}`.
pub(super) fn origin(app: &AppState, headers: &HeaderMap) -> String {
    match &app.0.config.console.public_url {
        Some(u) => u.clone(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| h.len() < 256 && !h.contains(['/', '@', ' ']))
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    }
}

/// A state-changing request must say it came from the console's own pages: a browser sends
/// `Origin` on every POST, and `Sec-Fetch-Site` when it knows it. Both, where present, must
/// agree; a POST with neither is refused (no browser sends that).
pub(super) fn same_origin(app: &AppState, headers: &HeaderMap) -> Result<(), Refusal> {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(s) = site {
        if s != "same-origin" {
            return Err(Refusal::Forged);
        }
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(o) if origin_matches(app, headers, o) => Ok(()),
        Some(_) => Err(Refusal::Forged),
        None if site.is_some() => Ok(()),
        None => Err(Refusal::Forged),
    }
}

/// `Origin` is the console's: `console.public_url` exactly when it is set; otherwise the
/// request's own host, over either scheme (behind a TLS terminator the browser says `https`
/// while the gateway hears plain HTTP; the host is what another site cannot forge).
fn origin_matches(app: &AppState, headers: &HeaderMap, given: &str) -> bool {
    if app.0.config.console.public_url.is_some() {
        return given == origin(app, headers);
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let given_host = given
        .strip_prefix("https://")
        .or_else(|| given.strip_prefix("http://"));
    matches!((host, given_host), (Some(h), Some(g)) if h.eq_ignore_ascii_case(g))
}
