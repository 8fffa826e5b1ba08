//! The tenant's pages: adapters from control-API JSON to templates, and from forms to API
//! calls. Every read and change is the `/tenant/v1` call named beside it, made with the
//! session's credential (`api.rs`), so roles, tenant scope and audit are the API's.

use super::render::page;
use super::{Refusal, Signed};
use crate::identity::auth::Caller;
use crate::state::AppState;
use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::context;
use serde::Deserialize;
use serde_json::{json, Value};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/usage", get(usage_fragment))
        .route("/console/kill-switch", post(kill_switch))
        .route("/console/keys", get(keys).post(create_key))
        .route("/console/keys/{key}/revoke", post(revoke_key))
        .route("/console/members", get(members).post(put_member))
        .route("/console/members/{subject}/remove", post(remove_member))
        .route("/console/models", get(models).post(put_models))
        .route("/console/prompts", get(prompts))
        .route("/console/prompts/{name}", get(prompt))
        .route("/console/prompts/{name}/versions", post(push_prompt))
        .route(
            "/console/prompts/{name}/versions/{version}",
            get(prompt_version),
        )
        .route("/console/prompts/{name}/activate", post(activate_prompt))
        .route("/console/prompts/{name}/diff", get(prompt_diff))
        .route("/console/knowledge", get(knowledge).post(create_kb))
        .route("/console/knowledge/{kb}", get(kb))
        // The API bounds the document (`rag.max_document_bytes`); the form may carry that much.
        .route(
            "/console/knowledge/{kb}/documents",
            post(upload_document).layer(axum::extract::DefaultBodyLimit::max(64 << 20)),
        )
        .route("/console/knowledge/{kb}/search", post(search_kb))
        .route("/console/audit", get(audit))
        .route("/console/audit/export", get(audit_export))
        .route("/console/audit/records/{seq}", get(audit_record))
        .route("/console/incidents", get(incidents))
        .route("/console/limits", get(limits))
        .route("/console/break-glass", get(break_glass))
}

/// A form with nothing but the CSRF token.
#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

/// Who the session is, for the page header and navigation; also the check that its
/// credential still authenticates (a revoked key or an expired token signs the session out).
pub(super) async fn whoami(app: &AppState, s: &Signed) -> Result<Value, Refusal> {
    let mut h = HeaderMap::new();
    let bearer = format!("Bearer {}", s.session.credential.as_str());
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&bearer).map_err(|_| Refusal::SignedOut)?,
    );
    match app.caller(&h).await {
        Ok(Caller::Tenant(t)) => Ok(json!({
            "kind": "tenant",
            "tenant": t.tenant.slug,
            "role": t.principal.role,
            "user": t.principal.user,
            "admin": !matches!(t.principal.role, tenantgate_core::Role::Member),
        })),
        Ok(Caller::Platform(p)) => Ok(json!({
            "kind": "platform", "role": "platform_admin", "user": p.actor(), "admin": false,
        })),
        // The credential is refused (revoked, expired): the session ends. Anything else (the
        // IdP's keys unreachable, the store down) is a failure to answer, not a sign-out.
        Err(e) if e.status() == axum::http::StatusCode::UNAUTHORIZED => {
            s.session.end(app).await;
            Err(Refusal::SignedOut)
        }
        Err(_) => Err(Refusal::Unavailable),
    }
}

/// Renders a tenant page: refuses a platform session (it has no tenant; its pages are under
/// `/console/platform`), adds the header's context.
pub(super) async fn render(
    app: &AppState,
    s: &Signed,
    template: &str,
    body: impl FnOnce(Value) -> Result<minijinja::Value, Refusal>,
) -> Result<Response, Refusal> {
    let me = whoami(app, s).await?;
    render_as(app, s, me, template, body)
}

/// [`render`] for a caller already resolved on this request.
pub(super) fn render_as(
    app: &AppState,
    s: &Signed,
    me: Value,
    template: &str,
    body: impl FnOnce(Value) -> Result<minijinja::Value, Refusal>,
) -> Result<Response, Refusal> {
    let ctx = body(me.clone())?;
    let full = context! { me => me, csrf => s.session.csrf(app), ..ctx };
    Ok(s.finish(page(template, full)))
}

pub(super) fn done(s: &Signed, r: Result<Response, Refusal>) -> Response {
    match r {
        Ok(resp) => resp,
        Err(e) => s.finish(e),
    }
}

/// A path segment, percent-encoded (names are the tenant's: any character may be in one).
pub(super) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `path?k=v&...` with the values encoded.
pub(super) fn with_query(path: &str, pairs: &[(&str, String)]) -> String {
    let mut q = String::new();
    for (k, v) in pairs {
        q.push(if q.is_empty() { '?' } else { '&' });
        q.push_str(k);
        q.push('=');
        q.push_str(&seg(v));
    }
    format!("{path}{q}")
}

/// Changes: the CSRF token and origin first, then the API call, then back to `to`.
async fn change(
    app: &AppState,
    s: &Signed,
    headers: &HeaderMap,
    csrf: &str,
    call: impl std::future::Future<Output = Result<Value, Refusal>>,
    to: &str,
) -> Response {
    if let Err(r) = s.session.check_change(app, headers, Some(csrf)) {
        return s.finish(r);
    }
    match call.await {
        Ok(_) => s.finish(Redirect::to(to)),
        Err(e) => s.finish(e),
    }
}

// ---- overview and usage

/// Requests, tokens and spend per minute over the last hour, as bars (server-drawn SVG: no
/// chart script, readable without JavaScript).
async fn usage_context(app: &AppState, s: &Signed) -> Result<Value, Refusal> {
    let api = s.api(app);
    let now = crate::clock::now_ms();
    // Sixty minutes, this one last.
    let from = (now / 60_000 - 59) * 60_000;
    let per_minute = api
        .get(&with_query(
            "/tenant/v1/usage",
            &[("group_by", "minute".into()), ("from", from.to_string())],
        ))
        .await?;
    let by_model = api
        .get(&with_query(
            "/tenant/v1/usage",
            &[
                ("group_by", "model".into()),
                ("from", crate::limits::month_start_ms(now).to_string()),
            ],
        ))
        .await?;
    let rows = per_minute["data"].as_array().cloned().unwrap_or_default();
    let count = |r: &Value, k: &str| r[k].as_i64().unwrap_or(0);
    let requests: i64 = rows.iter().map(|r| count(r, "requests")).sum();
    let tokens: i64 = rows
        .iter()
        .map(|r| count(r, "input_tokens") + count(r, "output_tokens"))
        .sum();
    let cost: i64 = rows.iter().map(|r| count(r, "cost_micros")).sum();
    let peak = rows
        .iter()
        .map(|r| count(r, "requests"))
        .max()
        .unwrap_or(0)
        .max(1);
    // One bar per minute that had calls, placed by its minute (60 slots of 10 px).
    let first = from / 60_000;
    let bars: Vec<Value> = rows
        .iter()
        .filter_map(|r| {
            let minute = minute_of(r["group"].as_str()?)?;
            let slot = minute - first;
            let n = count(r, "requests");
            let h = (n * 100 / peak).max(2);
            (0..60).contains(&slot).then(
                || json!({"x": slot * 10, "y": 110 - h, "h": h, "n": n, "minute": r["group"]}),
            )
        })
        .collect();
    Ok(json!({
        "requests": requests, "tokens": tokens, "cost_micros": cost, "bars": bars,
        "peak": peak, "by_model": by_model["data"],
    }))
}

/// Unix minute of `YYYY-MM-DDTHH:MMZ`.
fn minute_of(s: &str) -> Option<i64> {
    Some(parse_utc(s.strip_suffix('Z')?)? / 60_000)
}

/// Unix milliseconds of `YYYY-MM-DDTHH:MM[:SS]` in UTC (the `datetime-local` form value).
pub(super) fn parse_utc(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm) = (t.next()??, t.next()??);
    let ss = t.next().flatten().unwrap_or(0);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000)
}

/// `GET /console`: usage now, the budget and the kill switch (admins), or the platform home.
pub(super) async fn overview(State(app): State<AppState>, s: Signed) -> Response {
    if s.session.tenant_id.is_none() {
        return s.finish(Redirect::to("/console/platform/tenants"));
    }
    let r = async {
        let usage = usage_context(&app, &s).await?;
        let me = whoami(&app, &s).await?;
        // `/tenant/v1/limits` is for admins; a member's overview has no budget or switch.
        let limits = if me["admin"] == json!(true) {
            Some(s.api(&app).get("/tenant/v1/limits").await?)
        } else {
            None
        };
        let budget = limits.as_ref().map(|l| {
            let spent = l["counted"]["month_spend_micros"].as_i64().unwrap_or(0);
            let cap = l["effective"]["monthly_spend_micros"].as_i64();
            json!({"spent": spent, "cap": cap,
                "percent": cap.filter(|c| *c > 0).map(|c| (spent * 100 / c).min(100))})
        });
        let month = month_breakdown(&app, &s, budget.as_ref()).await?;
        render_as(&app, &s, me, "overview.html", |_| {
            Ok(context! { limits => limits, budget => budget, usage => usage, month => month })
        })
    }
    .await;
    done(&s, r)
}

/// This month by day (with the budget burn-down: cumulative spend per day against the
/// monthly limit, as SVG bars under a limit line), by key and by user. A member's are its own
/// (the API filters them).
async fn month_breakdown(
    app: &AppState,
    s: &Signed,
    budget: Option<&Value>,
) -> Result<Value, Refusal> {
    let api = s.api(app);
    let from = crate::limits::month_start_ms(crate::clock::now_ms()).to_string();
    let mut out = json!({});
    for group in ["day", "key", "user"] {
        let v = api
            .get(&with_query(
                "/tenant/v1/usage",
                &[("group_by", group.into()), ("from", from.clone())],
            ))
            .await?;
        out[group] = v["data"].clone();
    }
    let cap = budget.and_then(|b| b["cap"].as_i64()).filter(|c| *c > 0);
    let days = out["day"].as_array().cloned().unwrap_or_default();
    let total: i64 = days
        .iter()
        .map(|d| d["cost_micros"].as_i64().unwrap_or(0))
        .sum();
    let scale = cap.unwrap_or(total).max(total).max(1);
    let mut running = 0;
    let bars: Vec<Value> = days
        .iter()
        .filter_map(|d| {
            let day: i64 = d["group"].as_str()?.get(8..10)?.parse().ok()?;
            running += d["cost_micros"].as_i64().unwrap_or(0);
            let h = (running * 100 / scale).max(1);
            Some(json!({"x": (day - 1) * 19, "y": 110 - h, "h": h, "day": d["group"], "spent": running}))
        })
        .collect();
    out["burn"] = json!({"bars": bars, "cap_y": cap.map(|c| 110 - c * 100 / scale)});
    Ok(out)
}

/// `GET /console/usage`: the live part of the overview (fetched every few seconds by
/// `console.js`).
async fn usage_fragment(State(app): State<AppState>, s: Signed) -> Response {
    let r = async {
        let usage = usage_context(&app, &s).await?;
        Ok(s.finish(page("usage.html", context! { usage => usage })))
    }
    .await;
    done(&s, r)
}

#[derive(Deserialize)]
struct KillSwitchForm {
    #[serde(default)]
    csrf: String,
    enabled: bool,
}

/// `POST /console/kill-switch` -> `PUT /tenant/v1/kill-switch`.
async fn kill_switch(
    State(app): State<AppState>,
    headers: HeaderMap,
    s: Signed,
    Form(f): Form<KillSwitchForm>,
) -> Response {
    let body = json!({"enabled": f.enabled});
    let api = s.api(&app);
    let call = api.send(Method::PUT, "/tenant/v1/kill-switch", &body);
    change(&app, &s, &headers, &f.csrf, call, "/console").await
}

// ---- keys and members

async fn keys(State(app): State<AppState>, s: Signed) -> Response {
    let r = async {
        let keys = s.api(&app).get("/tenant/v1/keys").await?;
        render(&app, &s, "keys.html", |_| {
            Ok(context! { keys => keys["data"] })
        })
        .await
    }
    .await;
    done(&s, r)
}

#[derive(Deserialize)]
struct NewKeyForm {
    #[serde(default)]
    csrf: String,
    name: String,
    role: String,
}

/// `POST /console/keys` -> `POST /tenant/v1/keys`; the key is shown once, on this answer
/// (never a redirect: it would have to be stored to be shown again).
async fn create_key(
    State(app): State<AppState>,
    headers: HeaderMap,
    s: Signed,
    Form(f): Form<NewKeyForm>,
) -> Response {
    let r = async {
        s.session.check_change(&app, &headers, Some(&f.csrf))?;
        let body = json!({"name": f.name, "role": f.role});
        let created = s
            .api(&app)
            .send(Method::POST, "/tenant/v1/keys", &body)
            .await?;
        render(&app, &s, "key_created.html", |_| {
            Ok(context! { created => created })
        })
        .await
    }
    .await;
    done(&s, r)
}

async fn revoke_key(
    State(app): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    s: Signed,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let path = format!("/tenant/v1/keys/{}", seg(&key));
    let call = async { s.api(&app).call(Method::DELETE, &path, None).await?.json() };
    change(&app, &s, &headers, &f.csrf, call, "/console/keys").await
}

async fn members(State(app): State<AppState>, s: Signed) -> Response {
    let r = async {
        let members = s.api(&app).get("/tenant/v1/members").await?;
        render(&app, &s, "members.html", |_| {
            Ok(context! { members => members["data"] })
        })
        .await
    }
    .await;
    done(&s, r)
}

#[derive(Deserialize)]
struct MemberForm {
    #[serde(default)]
    csrf: String,
    subject: String,
    role: String,
}

async fn put_member(
    State(app): State<AppState>,
    headers: HeaderMap,
    s: Signed,
    Form(f): Form<MemberForm>,
) -> Response {
    let path = format!("/tenant/v1/members/{}", seg(&f.subject));
    let body = json!({"role": f.role});
    let api = s.api(&app);
    let call = api.send(Method::PUT, &path, &body);
    change(&app, &s, &headers, &f.csrf, call, "/console/members").await
}

async fn remove_member(
    State(app): State<AppState>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    s: Signed,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let path = format!("/tenant/v1/members/{}", seg(&subject));
    let call = async { s.api(&app).call(Method::DELETE, &path, None).await?.json() };
    change(&app, &s, &headers, &f.csrf, call, "/console/members").await
}

async fn models(State(app): State<AppState>, s: Signed) -> Response {
    let r = async {
        let models = s.api(&app).get("/tenant/v1/models").await?;
        render(&app, &s, "models.html", |_| {
            Ok(context! { models => models })
        })
        .await
    }
    .await;
    done(&s, r)
}

#[derive(Deserialize)]
struct ModelsForm {
    #[serde(default)]
    csrf: String,
    /// One model per line; empty: everything the platform allows.
    #[serde(default)]
    enabled: String,
}

/// `POST /console/models` -> `PUT /tenant/v1/models` (the tenant's narrowing of the
/// platform's allow-list; the API refuses a model the platform does not allow).
async fn put_models(
    State(app): State<AppState>,
    headers: HeaderMap,
    s: Signed,
    Form(f): Form<ModelsForm>,
) -> Response {
    let list: Vec<&str> = f
        .enabled
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let body = if list.is_empty() {
        json!({"enabled": null})
    } else {
        json!({"enabled": list})
    };
    let api = s.api(&app);
    let call = api.send(Method::PUT, "/tenant/v1/models", &body);
    change(&app, &s, &headers, &f.csrf, call, "/console/models").await
}

// ---- limits, break-glass

async fn limits(State(app): State<AppState>, s: Signed) -> Response {
    let r = async {
        let limits = s.api(&app).get("/tenant/v1/limits").await?;
        render(&app, &s, "limits.html", |_| {
            Ok(context! { limits => limits })
        })
        .await
    }
    .await;
    done(&s, r)
}

async fn break_glass(State(app): State<AppState>, s: Signed) -> Response {
    let r = async {
        let grants = s.api(&app).get("/tenant/v1/break-glass").await?;
        render(&app, &s, "break_glass.html", |_| {
            Ok(context! { grants => grants["data"] })
        })
        .await
    }
    .await;
    done(&s, r)
}

use super::tenant_data::{
    activate_prompt, audit, audit_export, audit_record, create_kb, incidents, kb, knowledge,
    prompt, prompt_diff, prompt_version, prompts, push_prompt, search_kb, upload_document,
};
