//! The platform admin's pages: the fleet (tenants, plans, health, routing), onboarding and
//! break-glass. Each is the `/admin/v1` call named beside it; tenant data is not on any of
//! them (a platform admin reads it only through a break-glass grant, with the API or CLI).

use super::tenant::{done, render, seg, with_query, CsrfOnly};
use super::{Refusal, Signed};
use crate::state::AppState;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::context;
use serde::Deserialize;
use serde_json::{json, Value};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/platform/tenants", get(tenants))
        .route("/console/platform/tenants/{tenant}", get(tenant))
        .route("/console/platform/onboard", get(onboard_form).post(onboard))
        .route("/console/platform/plans", get(plans))
        .route("/console/platform/health", get(health))
        .route(
            "/console/platform/break-glass",
            get(grants).post(request_grant),
        )
        .route(
            "/console/platform/break-glass/{grant}/revoke",
            post(revoke_grant),
        )
}

const PAGE: u32 = 100;

#[derive(Deserialize)]
struct TenantsQuery {
    after: Option<String>,
    prefix: Option<String>,
}

/// `GET /console/platform/tenants?prefix=&after=` <- `GET /admin/v1/tenants?limit=100`: one
/// page by slug, so the page costs the same with ten tenants or ten thousand.
async fn tenants(
    State(app): State<AppState>,
    Query(q): Query<TenantsQuery>,
    s: Signed,
) -> Response {
    let r = async {
        let mut pairs = vec![("limit", PAGE.to_string())];
        let prefix = q.prefix.clone().unwrap_or_default();
        if !prefix.is_empty() {
            pairs.push(("prefix", prefix.clone()));
        }
        if let Some(a) = q.after.as_deref().filter(|a| !a.is_empty()) {
            pairs.push(("after", a.to_owned()));
        }
        let list = s
            .api(&app)
            .get(&with_query("/admin/v1/tenants", &pairs))
            .await?;
        let next = (list["has_more"] == json!(true))
            .then(|| {
                list["data"].as_array()?.last()?["slug"]
                    .as_str()
                    .map(str::to_owned)
            })
            .flatten()
            .map(|last| {
                with_query(
                    "/console/platform/tenants",
                    &[("prefix", prefix.clone()), ("after", last)],
                )
            });
        render(&app, &s, "platform_tenants.html", |_| {
            Ok(context! {
                tenants => list["data"], total => list["total"], prefix => prefix, next => next,
            })
        })
        .await
    }
    .await;
    done(&s, r)
}

/// `GET /console/platform/tenants/{tenant}` <- metadata only.
async fn tenant(State(app): State<AppState>, Path(t): Path<String>, s: Signed) -> Response {
    let r = async {
        let t = s
            .api(&app)
            .get(&format!("/admin/v1/tenants/{}", seg(&t)))
            .await?;
        render(&app, &s, "platform_tenant.html", |_| {
            Ok(context! { tenant => t })
        })
        .await
    }
    .await;
    done(&s, r)
}

async fn onboard_form(State(app): State<AppState>, s: Signed) -> Response {
    let r = async {
        let plans = s.api(&app).get("/admin/v1/plans").await?;
        render(&app, &s, "platform_onboard.html", |_| {
            Ok(context! { plans => plans["data"] })
        })
        .await
    }
    .await;
    done(&s, r)
}

#[derive(Deserialize)]
struct OnboardForm {
    #[serde(default)]
    csrf: String,
    slug: String,
    display_name: String,
    plan: String,
    isolation: String,
}

/// `POST /console/platform/onboard` -> `POST /admin/v1/tenants` (one call: a complete tenant
/// or nothing). Its first admin key is shown once, on this answer.
async fn onboard(
    State(app): State<AppState>,
    headers: HeaderMap,
    s: Signed,
    Form(f): Form<OnboardForm>,
) -> Response {
    let r = async {
        s.session.check_change(&app, &headers, Some(&f.csrf))?;
        // Its first admin key, shown once on the answer: the new tenant's way in.
        let mut body = json!({"slug": f.slug, "plan": f.plan, "isolation": f.isolation,
            "admin_key": true});
        if !f.display_name.is_empty() {
            body["display_name"] = json!(f.display_name);
        }
        let created = s
            .api(&app)
            .send(Method::POST, "/admin/v1/tenants", &body)
            .await?;
        render(&app, &s, "platform_onboarded.html", |_| {
            Ok(context! { created => created })
        })
        .await
    }
    .await;
    done(&s, r)
}

async fn plans(State(app): State<AppState>, s: Signed) -> Response {
    let r = async {
        let plans = s.api(&app).get("/admin/v1/plans").await?;
        render(&app, &s, "platform_plans.html", |_| {
            Ok(context! { plans => plans["data"] })
        })
        .await
    }
    .await;
    done(&s, r)
}

/// `GET /console/platform/health` <- `/admin/v1/health` and `/admin/v1/routing`.
async fn health(State(app): State<AppState>, s: Signed) -> Response {
    let r = async {
        let api = s.api(&app);
        // Health answers 503 with its body when degraded: show it rather than refuse.
        let h = api.call(Method::GET, "/admin/v1/health", None).await?;
        let health: Value = match h.status.as_u16() {
            200 | 503 => serde_json::from_slice(&h.body).map_err(|_| Refusal::Unavailable)?,
            _ => h.json()?,
        };
        let routing = api.get("/admin/v1/routing").await?;
        render(&app, &s, "platform_health.html", |_| {
            Ok(context! { health => health, routing => routing })
        })
        .await
    }
    .await;
    done(&s, r)
}

async fn grants(State(app): State<AppState>, s: Signed) -> Response {
    let r = async {
        let g = s.api(&app).get("/admin/v1/break-glass").await?;
        render(&app, &s, "platform_break_glass.html", |_| {
            Ok(context! { grants => g["data"] })
        })
        .await
    }
    .await;
    done(&s, r)
}

#[derive(Deserialize)]
struct GrantForm {
    #[serde(default)]
    csrf: String,
    tenant: String,
    reason: String,
    duration_secs: u64,
}

/// `POST /console/platform/break-glass` -> `POST /admin/v1/break-glass` (recorded in the
/// tenant's chain before the grant exists; the tenant's admins see it on their page).
async fn request_grant(
    State(app): State<AppState>,
    headers: HeaderMap,
    s: Signed,
    Form(f): Form<GrantForm>,
) -> Response {
    let r = async {
        s.session.check_change(&app, &headers, Some(&f.csrf))?;
        let body =
            json!({"tenant": f.tenant, "reason": f.reason, "duration_secs": f.duration_secs});
        s.api(&app)
            .send(Method::POST, "/admin/v1/break-glass", &body)
            .await?;
        Ok(s.finish(Redirect::to("/console/platform/break-glass")))
    }
    .await;
    done(&s, r)
}

async fn revoke_grant(
    State(app): State<AppState>,
    Path(grant): Path<String>,
    headers: HeaderMap,
    s: Signed,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let r = async {
        s.session.check_change(&app, &headers, Some(&f.csrf))?;
        let path = format!("/admin/v1/break-glass/{}", seg(&grant));
        s.api(&app)
            .call(Method::DELETE, &path, None)
            .await?
            .json()?;
        Ok(s.finish(Redirect::to("/console/platform/break-glass")))
    }
    .await;
    done(&s, r)
}
