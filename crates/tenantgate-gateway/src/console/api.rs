//! The console is a client of the control API, in process: every page reads, and every form
//! changes, through the same `/tenant/v1` and `/admin/v1` routes, extractors and audit layer
//! an SDK or `curl` reaches, with the session's own credential as the bearer. So the console
//! can show or do nothing the API would not let that credential see or do, and each action is
//! recorded in the tenant's chain as that API call (its detail says `via: console`).

use super::session::Session;
use super::Refusal;
use crate::http::{RequestId, ViaConsole};
use crate::state::AppState;
use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use tower_service::Service;

/// The API's answer to one console call.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub content_disposition: Option<String>,
    pub body: Bytes,
}

impl Answer {
    /// The JSON body of a success, or the refusal the page shows.
    pub(crate) fn json(self) -> Result<Value, Refusal> {
        if !self.status.is_success() {
            return Err(Refusal::Api {
                status: self.status,
                message: api_message(&self.body),
            });
        }
        serde_json::from_slice(&self.body).map_err(|_| Refusal::Unavailable)
    }
}

/// The `error.message` of an API refusal (already bounded and client-safe).
fn api_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "the request was refused".into())
}

/// One control-API call with the session's credential.
pub(crate) struct Api<'a> {
    pub app: &'a AppState,
    pub session: &'a Session,
    pub rid: &'a RequestId,
    pub user_agent: Option<&'a HeaderValue>,
    pub calls: &'a std::sync::atomic::AtomicU32,
}

impl Api<'_> {
    pub(crate) async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<Answer, Refusal> {
        let mut req = Request::builder().method(method).uri(path_and_query);
        let bearer = format!("Bearer {}", self.session.credential.as_str());
        req = req.header(
            header::AUTHORIZATION,
            HeaderValue::from_str(&bearer).map_err(|_| Refusal::SignedOut)?,
        );
        if let Some(ua) = self.user_agent {
            req = req.header(header::USER_AGENT, ua.clone());
        }
        let body = match body {
            Some((ct, b)) => {
                req = req.header(header::CONTENT_TYPE, ct);
                Body::from(b)
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).map_err(|_| Refusal::Unavailable)?;
        // Each API call of a page is its own record: the page's request id and a sequence.
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rid = RequestId(format!("{}.{n}", self.rid.0), self.rid.1);
        req.extensions_mut().insert(rid);
        req.extensions_mut().insert(ViaConsole);
        // The control API's routes and audit layer, exactly as `http::router` mounts them.
        let mut api = crate::http::control_router(self.app.clone());
        let resp = api.call(req).await.map_err(|_| Refusal::Unavailable)?;
        let status = resp.status();
        // The credential no longer authenticates (a revoked key, an expired token): the
        // session it opened ends here, on every replica.
        if status == StatusCode::UNAUTHORIZED {
            self.session.end(self.app).await;
            return Err(Refusal::SignedOut);
        }
        let (content_type, content_disposition) = {
            let header_of = |h: header::HeaderName| {
                resp.headers()
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            (
                header_of(header::CONTENT_TYPE),
                header_of(header::CONTENT_DISPOSITION),
            )
        };
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| Refusal::Unavailable)?
            .to_bytes();
        Ok(Answer {
            status,
            content_type,
            content_disposition,
            body,
        })
    }

    pub(crate) async fn get(&self, path_and_query: &str) -> Result<Value, Refusal> {
        self.call(Method::GET, path_and_query, None).await?.json()
    }

    /// A JSON change; the API's refusal comes back as the page's.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, Refusal> {
        let b = Bytes::from(serde_json::to_vec(body).map_err(|_| Refusal::Unavailable)?);
        self.call(method, path, Some(("application/json", b)))
            .await?
            .json()
    }
}
