//! A provider's files and fine-tuning APIs (OpenAI's, Azure's under `/openai/...`), through the
//! provider's pooled client and credential like every other call ([`Provider`]): the platform's,
//! or the tenant's own endpoint's when it has one (`endpoints.rs`).

use super::{status_error, transport_error, Provider};
use crate::config::ProviderKind;
use crate::error::GatewayError;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::Value;

/// The largest provider answer read (a job list, events): bounded like any upstream body.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// One call of the files or fine-tuning API.
#[derive(Debug, Clone, Copy)]
pub enum FtEndpoint<'a> {
    /// `POST /files` (multipart).
    UploadFile,
    /// `POST /fine_tuning/jobs`.
    CreateJob,
    /// `GET /fine_tuning/jobs/{id}`.
    GetJob(&'a str),
    /// `POST /fine_tuning/jobs/{id}/cancel`.
    CancelJob(&'a str),
    /// `GET /fine_tuning/jobs/{id}/events`.
    Events(&'a str),
    /// `GET /fine_tuning/jobs/{id}/checkpoints`.
    Checkpoints(&'a str),
}

impl FtEndpoint<'_> {
    fn method_and_path(self) -> (Method, String) {
        // Provider ids go into a path: only characters a provider id has pass.
        let safe = |id: &str| -> String {
            id.chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
                .collect()
        };
        match self {
            FtEndpoint::UploadFile => (Method::POST, "files".into()),
            FtEndpoint::CreateJob => (Method::POST, "fine_tuning/jobs".into()),
            FtEndpoint::GetJob(id) => (Method::GET, format!("fine_tuning/jobs/{}", safe(id))),
            FtEndpoint::CancelJob(id) => (
                Method::POST,
                format!("fine_tuning/jobs/{}/cancel", safe(id)),
            ),
            FtEndpoint::Events(id) => {
                (Method::GET, format!("fine_tuning/jobs/{}/events", safe(id)))
            }
            FtEndpoint::Checkpoints(id) => (
                Method::GET,
                format!("fine_tuning/jobs/{}/checkpoints", safe(id)),
            ),
        }
    }
}

/// What to send.
pub enum FtBody<'a> {
    None,
    Json(Vec<u8>),
    /// A training file as `multipart/form-data` (`purpose`, `file`).
    File {
        filename: &'a str,
        purpose: &'a str,
        content: &'a [u8],
    },
}

fn multipart(filename: &str, purpose: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = format!("tenantgate-{}", uuid::Uuid::new_v4().simple());
    // The file name is the gateway's own (its file id): no client string in a header here.
    let mut b = Vec::with_capacity(content.len() + 512);
    b.extend_from_slice(
        format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n\
             --{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             content-type: application/jsonl\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend_from_slice(content);
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), b)
}

impl Provider {
    fn ft_url(&self, path: &str, query: &[(&str, String)]) -> Result<reqwest::Url, GatewayError> {
        let raw = match self.kind {
            ProviderKind::Azure => format!("{}/openai/{path}", self.base_url),
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                format!("{}/{path}", self.base_url)
            }
            ProviderKind::Anthropic | ProviderKind::Demo => {
                return Err(GatewayError::invalid(
                    "this model's provider has no fine-tuning API",
                    "model",
                ))
            }
        };
        let mut url = reqwest::Url::parse(&raw).map_err(|_| GatewayError::Internal)?;
        {
            let mut q = url.query_pairs_mut();
            if let (ProviderKind::Azure, Some(v)) = (self.kind, &self.api_version) {
                q.append_pair("api-version", v);
            }
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    /// One call of the provider's files or fine-tuning API; its JSON answer, or the error the
    /// caller sees (a provider 4xx passes through with the provider's message).
    pub async fn fine_tuning(
        &self,
        ep: FtEndpoint<'_>,
        query: &[(&str, String)],
        body: FtBody<'_>,
    ) -> Result<Value, GatewayError> {
        let (method, path) = ep.method_and_path();
        let mut rb = self.client.request(method, self.ft_url(&path, query)?);
        rb = match body {
            FtBody::None => rb,
            FtBody::Json(b) => rb.header("content-type", "application/json").body(b),
            FtBody::File {
                filename,
                purpose,
                content,
            } => {
                let (ct, b) = multipart(filename, purpose, content);
                rb.header("content-type", ct).body(b)
            }
        };
        rb = match (self.kind, self.api_key.as_ref().map(|k| k.expose_secret())) {
            (ProviderKind::Azure, Some(k)) => rb.header("api-key", k),
            (_, Some(k)) => rb.bearer_auth(k),
            (_, None) => rb,
        };
        let resp = rb
            .send()
            .await
            .map_err(|e| transport_error(&self.name, &e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(GatewayError::UpstreamFailed(format!(
                "provider {:?}: answer too large",
                self.name
            )));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(&self.name, &e))?;
        if !(200..300).contains(&status) {
            return Err(status_error(&self.name, status, retry_after, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|_| {
            GatewayError::UpstreamFailed(format!("provider {:?}: not JSON", self.name))
        })
    }
}
