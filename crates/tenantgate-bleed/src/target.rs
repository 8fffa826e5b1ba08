//! The deployment under test, as an outsider reaches it: its replicas' base URLs (requests go
//! round-robin, so every attack meets several replicas) and the credentials the run holds.

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How a request authenticates.
#[derive(Clone, Debug)]
pub enum Cred {
    None,
    /// `Authorization: Bearer` (API keys and JWTs; the OpenAI SDK's way).
    Bearer(String),
    /// `x-api-key` (the Anthropic SDK's way).
    XApiKey(String),
}

/// One answer, read whole (streams included: the attack judges everything that was sent).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct Target {
    pub urls: Vec<String>,
    http: reqwest::Client,
    next: AtomicUsize,
}

/// What to send besides the credential.
#[derive(Default)]
pub struct Extra<'a> {
    pub headers: &'a [(&'a str, &'a str)],
    pub json: Option<&'a Value>,
    /// A raw body and its content type.
    pub raw: Option<(&'a str, String)>,
}

impl Target {
    pub fn new(urls: Vec<String>, timeout: Duration) -> anyhow::Result<Target> {
        anyhow::ensure!(!urls.is_empty(), "at least one --target is needed");
        let urls = urls
            .into_iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Target {
            urls,
            http,
            next: AtomicUsize::new(0),
        })
    }

    /// The next replica's base URL.
    pub fn base(&self) -> &str {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len();
        &self.urls[i]
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        extra: Extra<'_>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base());
        let mut req = self.http.request(method.clone(), &url);
        req = match cred {
            Cred::None => req,
            Cred::Bearer(t) => req.bearer_auth(t),
            Cred::XApiKey(k) => req.header("x-api-key", k),
        };
        if path.starts_with("/v1/messages") {
            req = req.header("anthropic-version", "2023-06-01");
        }
        for (k, v) in extra.headers {
            req = req.header(*k, *v);
        }
        if let Some(j) = extra.json {
            req = req.json(j);
        } else if let Some((ct, body)) = extra.raw {
            req = req.header("content-type", ct).body(body);
        }
        let r = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r
            .text()
            .await
            .map_err(|e| anyhow::anyhow!("{method} {path}: reading the answer: {e}"))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str, cred: &Cred) -> anyhow::Result<Answer> {
        self.send(Method::GET, path, cred, Extra::default()).await
    }

    pub async fn post(&self, path: &str, cred: &Cred, body: &Value) -> anyhow::Result<Answer> {
        self.json(Method::POST, path, cred, body).await
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        body: &Value,
    ) -> anyhow::Result<Answer> {
        self.send(
            method,
            path,
            cred,
            Extra {
                json: Some(body),
                ..Default::default()
            },
        )
        .await
    }

    /// A setup step that must succeed: its JSON, or an error naming the step.
    pub async fn must(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let a = self
            .send(
                method.clone(),
                path,
                cred,
                Extra {
                    json: body,
                    ..Default::default()
                },
            )
            .await?;
        anyhow::ensure!(
            a.ok(),
            "setup step {method} {path} answered {}: {}",
            a.status,
            a.body.chars().take(400).collect::<String>()
        );
        Ok(a.json())
    }
}
