//! The browser console under `/console`: server-rendered pages for tenant admins, members and
//! platform admins, served by the gateway itself (no separate server, no Node build).
//!
//! - `session.rs`: sign-in sessions (cookie token -> store row), CSRF tokens, origin checks.
//! - `oidc.rs`: sign-in at the tenant's or the platform's IdP (authorization code + PKCE).
//! - `api.rs`: the console is a client of the control API, in process, with the session's
//!   credential: what a page shows and a form changes is what the API allows that credential.
//! - `render.rs`: templates (minijinja, HTML auto-escaped), the security headers of every
//!   answer, the embedded static files.
//! - `tenant.rs`, `platform.rs`: the pages, adapters from API JSON to templates.
//!
//! Architecture Invariant: the console reads and changes tenant data only through the
//! control API (`console::api`), never through the store: `tests/structure.rs` checks that no
//! file here names the store's tenant handle.

mod api;
mod oidc;
mod platform;
mod render;
mod session;
mod tenant;
mod tenant_data;

use crate::http::RequestId;
use crate::state::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use session::Session;

/// Why a console request did not get its page.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No live session: to the sign-in page.
    SignedOut,
    /// A change without this session's CSRF token, or from another origin.
    Forged,
    /// The API refused the session's credential (its status and message are shown).
    Api {
        status: StatusCode,
        message: String,
    },
    /// A form field the console itself checks.
    BadInput(String),
    NotFound,
    /// The store or the API could not answer.
    Unavailable,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::SignedOut => StatusCode::SEE_OTHER,
            Refusal::Forged => StatusCode::FORBIDDEN,
            Refusal::Api { status, .. } => *status,
            Refusal::BadInput(_) => StatusCode::BAD_REQUEST,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn title(&self) -> &'static str {
        match self.status().as_u16() {
            401 | 403 => "Not allowed",
            404 => "Not found",
            400 | 409 | 422 => "Not done",
            _ => "Unavailable",
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::SignedOut => "Sign in first.".into(),
            Refusal::Forged => {
                "This change did not come from this console's own page (missing or wrong form token, or another site sent it). Nothing was changed.".into()
            }
            Refusal::Api { message, .. } => message.clone(),
            Refusal::BadInput(m) => m.clone(),
            Refusal::NotFound => "There is no such page.".into(),
            Refusal::Unavailable => "The gateway could not answer; try again.".into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        if let Refusal::SignedOut = self {
            return Redirect::to("/console/login").into_response();
        }
        let html = render::page(
            "error.html",
            minijinja::context! { title => self.title(), message => self.message(),
            status => self.status().as_u16() },
        );
        let mut resp = html;
        *resp.status_mut() = self.status();
        resp
    }
}

/// A signed-in request: its session and the API client acting with it.
pub(crate) struct Signed {
    pub session: Session,
    pub rid: RequestId,
    user_agent: Option<HeaderValue>,
    /// API calls made for this request so far (each gets its own record id).
    calls: std::sync::atomic::AtomicU32,
}

impl Signed {
    pub(crate) fn api<'a>(&'a self, app: &'a AppState) -> api::Api<'a> {
        api::Api {
            app,
            session: &self.session,
            rid: &self.rid,
            user_agent: self.user_agent.as_ref(),
            calls: &self.calls,
        }
    }

    /// Sets the rotated session cookie, if this request rotated it.
    pub(crate) fn finish(&self, resp: impl IntoResponse) -> Response {
        let mut resp = resp.into_response();
        if let Some(c) = &self.session.set_cookie {
            resp.headers_mut().append("set-cookie", c.clone());
        }
        resp
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Refusal> {
        // The live refresh (`console.js`) is not use of the session.
        let used = parts.uri.path() != "/console/usage";
        let session = Session::resolve(app, &parts.headers, used).await?;
        let rid = parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .ok_or(Refusal::Unavailable)?;
        Ok(Signed {
            session,
            rid,
            user_agent: parts.headers.get("user-agent").cloned(),
            calls: std::sync::atomic::AtomicU32::new(0),
        })
    }
}

/// Every console route (mounted by the server when `console.enabled`). Pages are GETs; changes are POSTs carrying the CSRF token (HTML forms
/// have no PUT or DELETE), each turned into the API call it stands for.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(tenant::overview))
        .route(
            "/console/",
            get(|| async { Redirect::permanent("/console") }),
        )
        .route("/console/static/{file}", get(render::asset))
        .route("/console/login", get(login_page))
        .route("/console/login/key", post(oidc::sign_in_with_key))
        .route("/console/login/oidc/{issuer}/callback", get(oidc::callback))
        .route("/console/login/oidc/{issuer}", get(oidc::start))
        .route("/console/logout", post(sign_out))
        .merge(tenant::routes())
        .merge(platform::routes())
        // An unknown console page is the console's own 404 (HTML, with its headers), not the
        // API's JSON one.
        .route("/console/{*rest}", get(not_found).post(not_found))
        // The security headers on every answer, axum's own extractor refusals included.
        .layer(axum::middleware::map_response(secure_all))
}

async fn secure_all(resp: Response) -> Response {
    render::secure(resp)
}

async fn not_found() -> Response {
    Refusal::NotFound.into_response()
}

async fn login_page(State(app): State<AppState>) -> Response {
    let issuers: Vec<_> = app
        .0
        .config
        .auth
        .oidc
        .iter()
        .enumerate()
        .filter(|(_, o)| o.console_client_id.is_some())
        .map(|(i, o)| {
            minijinja::context! { index => i,
            label => o.console_label.clone().unwrap_or_else(|| o.issuer.clone()) }
        })
        .collect();
    render::page("login.html", minijinja::context! { issuers })
}

/// `POST /console/logout`: the session's row is removed (the cookie is worthless from here,
/// on every replica) and the cookie cleared.
async fn sign_out(
    State(app): State<AppState>,
    headers: HeaderMap,
    signed: Signed,
    form: axum::extract::Form<tenant::CsrfOnly>,
) -> Response {
    if let Err(r) = signed
        .session
        .check_change(&app, &headers, Some(&form.csrf))
    {
        return r.into_response();
    }
    signed.session.end(&app).await;
    let mut resp = Redirect::to("/console/login").into_response();
    resp.headers_mut()
        .append("set-cookie", session::cookie(&app, None, 0));
    resp
}

/// Removes expired sessions (run by the server's housekeeping loop).
pub async fn sweep_sessions(app: &AppState) {
    let now = crate::clock::now_ms();
    if let Ok(n) = app.store().console_sessions().sweep(now).await {
        if n > 0 {
            tracing::debug!(removed = n, "expired console sessions swept");
        }
    }
}
