//! The console as a browser reaches it over HTTP: a cookie jar of the console's two cookies,
//! form posts from the console's own origin (or another), the CSP checked on every page.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use super::TestGateway;

/// A browser: one cookie jar entry (the session), requests from the console's origin.
pub struct Browser {
    http: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
    /// The sign-in flow's cookie (OIDC state, nonce and PKCE verifier, sealed).
    pub login_cookie: Option<String>,
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub overhead_ms: f64,
    pub body: String,
}

impl Browser {
    pub fn new(gw: &TestGateway) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: gw.url.clone(),
            cookie: None,
            login_cookie: None,
        }
    }

    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let mut cookies = Vec::new();
        if let Some(c) = &self.cookie {
            cookies.push(format!("__Host-tg_console={c}"));
        }
        if let Some(c) = &self.login_cookie {
            cookies.push(format!("__Host-tg_console_login={c}"));
        }
        let req = if cookies.is_empty() {
            req
        } else {
            req.header("cookie", cookies.join("; "))
        };
        let r = req.send().await.unwrap();
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            if let Some(rest) = v.strip_prefix("__Host-tg_console_login=") {
                let token = rest.split(';').next().unwrap();
                assert!(
                    v.contains("HttpOnly")
                        && v.contains("SameSite=Lax")
                        && v.contains("Secure")
                        && v.contains("Path=/;"),
                    "{v}"
                );
                self.login_cookie = (!token.is_empty()).then(|| token.to_owned());
            }
            if let Some(rest) = v.strip_prefix("__Host-tg_console=") {
                let token = rest.split(';').next().unwrap();
                assert!(
                    v.contains("HttpOnly")
                        && v.contains("SameSite=Lax")
                        && v.contains("Secure")
                        && v.contains("Path=/;"),
                    "{v}"
                );
                self.cookie = (!token.is_empty()).then(|| token.to_owned());
            }
        }
        let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
        let location = h("location");
        let overhead_ms = h("x-tenantgate-overhead-ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if r.headers()
            .get("content-type")
            .is_some_and(|c| c.to_str().unwrap().starts_with("text/html"))
        {
            let csp = h("content-security-policy").unwrap_or_default();
            assert!(
                csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
                "{csp}"
            );
        }
        let status = r.status().as_u16();
        Page {
            status,
            location,
            overhead_ms,
            body: r.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// A form POST from the console's own page (`Origin` is the console's).
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let origin = self.base.clone();
        self.post_from(path, form, Some(&origin)).await
    }

    pub async fn post_from(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Page {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        self.send(req).await
    }

    pub async fn sign_in(gw: &TestGateway, credential: &str) -> Browser {
        let mut b = Browser::new(gw);
        let p = b
            .post("/console/login/key", &[("api_key", credential)])
            .await;
        assert_eq!(p.status, 303, "{}", p.body);
        assert!(b.cookie.is_some());
        b
    }

    /// The CSRF token the page's forms carry.
    pub fn csrf(page: &Page) -> String {
        let at = page
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a csrf field")
            + 19;
        page.body[at..].split('"').next().unwrap().to_owned()
    }
}
