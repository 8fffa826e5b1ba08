//! Templates, security headers and the embedded static files.
//!
//! Templates are minijinja with HTML auto-escaping on every `.html` template, so a value a
//! tenant wrote (a prompt, a key name, a document title) is text wherever it appears; nothing
//! is marked safe. Pages carry no inline script or style, so the Content-Security-Policy can
//! forbid both: an injected `<script>` would not run even if escaping were bypassed.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use std::sync::OnceLock;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

macro_rules! templates {
    ($($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!("templates/", $name)))),+]
    };
}

const TEMPLATES: &[(&str, &str)] = templates!(
    "base.html",
    "macros.html",
    "error.html",
    "login.html",
    "overview.html",
    "usage.html",
    "keys.html",
    "key_created.html",
    "members.html",
    "models.html",
    "prompts.html",
    "prompt.html",
    "prompt_version.html",
    "prompt_diff.html",
    "knowledge.html",
    "kb.html",
    "audit.html",
    "record.html",
    "incidents.html",
    "limits.html",
    "break_glass.html",
    "platform_tenants.html",
    "platform_tenant.html",
    "platform_onboard.html",
    "platform_onboarded.html",
    "platform_plans.html",
    "platform_health.html",
    "platform_break_glass.html",
);

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, src) in TEMPLATES {
            // Compiled into the binary and each rendered by the tests: a failure here is a
            // build of a broken template, answered as an error page, never a panic.
            if let Err(e) = env.add_template(name, src) {
                tracing::error!(template = name, error = %e, "console template does not parse");
            }
        }
        env.add_filter("when", when);
        env.add_filter("money", money);
        env.add_filter("seg", seg);
        env
    })
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn when(ms: minijinja::Value) -> String {
    match i64::try_from(ms) {
        Ok(ms) if ms > 0 => {
            let s = tenantgate_audit::rfc3339(ms);
            format!("{} UTC", s.get(..19).unwrap_or(&s).replace('T', " "))
        }
        _ => "—".into(),
    }
}

/// A URL path segment: every byte but the unreserved ones percent-encoded (minijinja's
/// `urlencode` keeps `/`, and a name like `x/../alice` would then address `alice`).
fn seg(s: String) -> String {
    super::tenant::seg(&s)
}

/// Micro-dollars as `$1.234567`.
fn money(micros: minijinja::Value) -> String {
    let m = i64::try_from(micros).unwrap_or(0);
    format!("${}.{:06}", m / 1_000_000, (m % 1_000_000).abs())
}

/// A rendered page; a template that fails is a 500 (which every page test would see).
pub(crate) fn page(name: &str, ctx: minijinja::Value) -> Response {
    match env().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "console template failed");
            let body = "<!doctype html><title>Error</title><h1>Unavailable</h1>";
            (StatusCode::INTERNAL_SERVER_ERROR, Html(body)).into_response()
        }
    }
}

/// The headers every console answer carries (applied once, as the console router's layer).
pub(crate) fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    // Pages hold tenant data: never in a shared or disk cache.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");

/// `GET /console/static/{file}`: the two embedded files.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (ct, body) = match file.as_str() {
        "console.css" => ("text/css; charset=utf-8", CSS),
        "console.js" => ("text/javascript; charset=utf-8", JS),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    let mut resp = ([(header::CONTENT_TYPE, ct)], body).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every template parses and renders with an empty context (undefined values are chainable,
    /// so a page with no data renders its empty states).
    #[test]
    fn every_template_parses_and_renders() {
        for (name, src) in TEMPLATES {
            let mut env = Environment::new();
            for (n, s) in TEMPLATES {
                env.add_template(n, s)
                    .unwrap_or_else(|e| panic!("{n}: {e}"));
            }
            let _ = src;
            env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
            env.add_filter("when", when);
            env.add_filter("money", money);
            env.add_filter("seg", seg);
            let t = env.get_template(name).unwrap();
            t.render(minijinja::context! {})
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    fn body(r: Response) -> (u16, String) {
        let status = r.status().as_u16();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let b = rt.block_on(axum::body::to_bytes(r.into_body(), 1 << 20));
        (status, String::from_utf8(b.unwrap().to_vec()).unwrap())
    }

    #[test]
    fn limits_show_money_as_money() {
        let (status, html) = body(page(
            "limits.html",
            minijinja::context! { limits => serde_json::json!({"plan": "pro", "kill_switch": false,
            "effective": {"monthly_spend_micros": 12_500_000, "daily_tokens": 1000, "monthly_tokens": null},
            "overrides": {"monthly_spend_micros": 12_500_000},
            "counted": {"day_tokens": 1, "month_tokens": 2, "month_spend_micros": 3}}) },
        ));
        assert_eq!(status, 200, "{html}");
        assert!(
            html.contains("<td>$12.500000</td><td>$12.500000</td>"),
            "{html}"
        );
        assert!(
            html.contains("<td>1000</td>") && html.contains("unlimited"),
            "{html}"
        );
    }

    #[test]
    fn values_a_tenant_wrote_are_escaped() {
        let html = page(
            "prompt_version.html",
            minijinja::context! { name => "<b>x</b>",
            version => serde_json::json!({"version": 1, "template": "<script>alert(1)</script>"}) },
        );
        let (_, html) = body(html);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
        assert!(!html.contains("<b>x</b>"));
    }
}
