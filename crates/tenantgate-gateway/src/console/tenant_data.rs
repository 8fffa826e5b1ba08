//! The tenant's data pages: prompts, knowledge bases, the audit log and incidents. Each read
//! and change is the `/tenant/v1` call named beside it, with the session's credential.

use super::tenant::{done, render, seg, with_query};
use super::{Refusal, Signed};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Form, Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use minijinja::context;
use serde::Deserialize;
use serde_json::{json, Value};

// ---- prompts

/// `GET /console/prompts` <- `GET /tenant/v1/prompts`.
pub(super) async fn prompts(State(app): State<AppState>, s: Signed) -> Response {
    let r = async {
        let list = s.api(&app).get("/tenant/v1/prompts").await?;
        render(&app, &s, "prompts.html", |_| {
            Ok(context! { prompts => list["data"] })
        })
        .await
    }
    .await;
    done(&s, r)
}

/// `GET /console/prompts/{name}` <- the prompt's versions (hashes, authors; no text).
pub(super) async fn prompt(
    State(app): State<AppState>,
    Path(name): Path<String>,
    s: Signed,
) -> Response {
    let r = async {
        let api = s.api(&app);
        let versions = api
            .get(&format!("/tenant/v1/prompts/{}/versions", seg(&name)))
            .await?;
        let list = api.get("/tenant/v1/prompts").await?;
        let active = list["data"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["name"] == json!(name)))
            .map(|p| p["active_version"].clone())
            .unwrap_or(Value::Null);
        render(&app, &s, "prompt.html", |_| {
            Ok(context! { name => name, active => active, versions => versions["data"] })
        })
        .await
    }
    .await;
    done(&s, r)
}

/// `GET /console/prompts/{name}/versions/{n}` <- the version's text (tenant admins).
pub(super) async fn prompt_version(
    State(app): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    s: Signed,
) -> Response {
    let r = async {
        let v = s
            .api(&app)
            .get(&format!(
                "/tenant/v1/prompts/{}/versions/{}",
                seg(&name),
                seg(&version)
            ))
            .await?;
        render(&app, &s, "prompt_version.html", |_| {
            Ok(context! { name => name, version => v })
        })
        .await
    }
    .await;
    done(&s, r)
}

#[derive(Deserialize)]
pub(super) struct DiffForm {
    from: String,
    to: String,
}

/// `GET /console/prompts/{name}/diff?from=&to=` <- the API's unified diff.
pub(super) async fn prompt_diff(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DiffForm>,
    s: Signed,
) -> Response {
    let r = async {
        let path = with_query(
            &format!("/tenant/v1/prompts/{}/diff", seg(&name)),
            &[("from", q.from.clone()), ("to", q.to.clone())],
        );
        let d = s.api(&app).get(&path).await?;
        let lines: Vec<Value> = d["diff"]
            .as_str()
            .unwrap_or("")
            .lines()
            .map(|l| {
                let kind = match l.as_bytes().first() {
                    Some(b'+') if !l.starts_with("+++") => "add",
                    Some(b'-') if !l.starts_with("---") => "del",
                    _ => "ctx",
                };
                json!({"kind": kind, "text": l})
            })
            .collect();
        render(&app, &s, "prompt_diff.html", |_| {
            Ok(context! { name => name, from => q.from, to => q.to, lines => lines })
        })
        .await
    }
    .await;
    done(&s, r)
}

#[derive(Deserialize)]
pub(super) struct ActivateForm {
    #[serde(default)]
    csrf: String,
    version: u32,
}

/// `POST /console/prompts/{name}/activate` -> `POST /tenant/v1/prompts/{name}/activate`
/// (activating an older version is the rollback).
pub(super) async fn activate_prompt(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    s: Signed,
    Form(f): Form<ActivateForm>,
) -> Response {
    let r = async {
        s.session.check_change(&app, &headers, Some(&f.csrf))?;
        let path = format!("/tenant/v1/prompts/{}/activate", seg(&name));
        s.api(&app)
            .send(Method::POST, &path, &json!({"version": f.version}))
            .await?;
        Ok(s.finish(Redirect::to(&format!("/console/prompts/{}", seg(&name)))))
    }
    .await;
    done(&s, r)
}

#[derive(Deserialize)]
pub(super) struct PushForm {
    #[serde(default)]
    csrf: String,
    template: String,
    #[serde(default)]
    activate: Option<String>,
}

/// `POST /console/prompts/{name}/versions` -> `POST /tenant/v1/prompts/{name}/versions`.
pub(super) async fn push_prompt(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    s: Signed,
    Form(f): Form<PushForm>,
) -> Response {
    let r = async {
        s.session.check_change(&app, &headers, Some(&f.csrf))?;
        let path = format!("/tenant/v1/prompts/{}/versions", seg(&name));
        let body = json!({"template": f.template, "activate": f.activate.is_some()});
        s.api(&app).send(Method::POST, &path, &body).await?;
        Ok(s.finish(Redirect::to(&format!("/console/prompts/{}", seg(&name)))))
    }
    .await;
    done(&s, r)
}

// ---- knowledge bases

/// `GET /console/knowledge` <- `GET /tenant/v1/knowledge-bases`.
pub(super) async fn knowledge(State(app): State<AppState>, s: Signed) -> Response {
    let r = async {
        let list = s.api(&app).get("/tenant/v1/knowledge-bases").await?;
        render(&app, &s, "knowledge.html", |_| {
            Ok(context! { kbs => list["data"] })
        })
        .await
    }
    .await;
    done(&s, r)
}

#[derive(Deserialize)]
pub(super) struct NewKbForm {
    #[serde(default)]
    csrf: String,
    name: String,
}

/// `POST /console/knowledge` -> `POST /tenant/v1/knowledge-bases`.
pub(super) async fn create_kb(
    State(app): State<AppState>,
    headers: HeaderMap,
    s: Signed,
    Form(f): Form<NewKbForm>,
) -> Response {
    let r = async {
        s.session.check_change(&app, &headers, Some(&f.csrf))?;
        s.api(&app)
            .send(
                Method::POST,
                "/tenant/v1/knowledge-bases",
                &json!({"name": f.name}),
            )
            .await?;
        Ok(s.finish(Redirect::to("/console/knowledge")))
    }
    .await;
    done(&s, r)
}

/// `GET /console/knowledge/{kb}` <- the knowledge base and its documents.
pub(super) async fn kb(State(app): State<AppState>, Path(id): Path<String>, s: Signed) -> Response {
    let r = async {
        let kb = s
            .api(&app)
            .get(&format!("/tenant/v1/knowledge-bases/{}", seg(&id)))
            .await?;
        render(&app, &s, "kb.html", |_| {
            Ok(context! { kb => kb, hits => Value::Null })
        })
        .await
    }
    .await;
    done(&s, r)
}

/// `POST /console/knowledge/{kb}/documents` (multipart: `csrf`, `file`) ->
/// `POST /tenant/v1/knowledge-bases/{kb}/documents?name=` with the file's type and bytes.
pub(super) async fn upload_document(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    s: Signed,
    mut form: Multipart,
) -> Response {
    let r = async {
        // A forged upload is refused before its body is read.
        super::session::same_origin(&app, &headers)?;
        let bad = |m: &str| Refusal::BadInput(m.to_owned());
        let (mut csrf, mut file) = (None, None);
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|_| bad("the upload is not a valid form"))?
        {
            match field.name() {
                Some("csrf") => csrf = Some(field.text().await.map_err(|_| bad("bad csrf"))?),
                Some("file") => {
                    let name = field.file_name().unwrap_or("document").to_owned();
                    let ct = field.content_type().unwrap_or("text/plain").to_owned();
                    let bytes: Bytes = field
                        .bytes()
                        .await
                        .map_err(|_| bad("the file could not be read (too large?)"))?;
                    file = Some((name, ct, bytes));
                }
                _ => {}
            }
        }
        s.session.check_change(&app, &headers, csrf.as_deref())?;
        let (name, ct, bytes) = file.ok_or_else(|| bad("choose a file"))?;
        let path = with_query(
            &format!("/tenant/v1/knowledge-bases/{}/documents", seg(&id)),
            &[("name", name)],
        );
        let ct: &'static str = match ct.as_str() {
            "application/pdf" => "application/pdf",
            "text/html" => "text/html",
            "text/markdown" => "text/markdown",
            _ => "text/plain",
        };
        s.api(&app)
            .call(Method::POST, &path, Some((ct, bytes)))
            .await?
            .json()?;
        Ok(s.finish(Redirect::to(&format!("/console/knowledge/{}", seg(&id)))))
    }
    .await;
    done(&s, r)
}

#[derive(Deserialize)]
pub(super) struct SearchForm {
    #[serde(default)]
    csrf: String,
    query: String,
}

/// `POST /console/knowledge/{kb}/search` -> `POST /tenant/v1/knowledge-bases/{kb}/search`
/// (a POST: the query is the tenant's text, kept out of URLs and their logs).
pub(super) async fn search_kb(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    s: Signed,
    Form(f): Form<SearchForm>,
) -> Response {
    let r = async {
        s.session.check_change(&app, &headers, Some(&f.csrf))?;
        let api = s.api(&app);
        let base = format!("/tenant/v1/knowledge-bases/{}", seg(&id));
        let hits = api
            .send(
                Method::POST,
                &format!("{base}/search"),
                &json!({"query": f.query, "top_k": 5}),
            )
            .await?;
        let kb = api.get(&base).await?;
        render(&app, &s, "kb.html", |_| {
            Ok(context! { kb => kb, hits => hits["data"], query => f.query })
        })
        .await
    }
    .await;
    done(&s, r)
}

// ---- audit and incidents

#[derive(Deserialize, Default)]
pub(super) struct AuditFilter {
    from: Option<String>,
    to: Option<String>,
    event: Option<String>,
    model: Option<String>,
    before_seq: Option<String>,
}

impl AuditFilter {
    /// The API's query pairs; `datetime-local` values are read as UTC.
    fn pairs(&self) -> Result<Vec<(&'static str, String)>, Refusal> {
        let mut p = Vec::new();
        let time = |v: &str, k: &str| {
            super::tenant::parse_utc(v)
                .ok_or_else(|| Refusal::BadInput(format!("{k}: use YYYY-MM-DDTHH:MM (UTC)")))
        };
        if let Some(v) = self.from.as_deref().filter(|v| !v.is_empty()) {
            p.push(("from", time(v, "from")?.to_string()));
        }
        if let Some(v) = self.to.as_deref().filter(|v| !v.is_empty()) {
            p.push(("to", time(v, "to")?.to_string()));
        }
        for (k, v) in [
            ("event", &self.event),
            ("model", &self.model),
            ("before_seq", &self.before_seq),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                p.push((k, v.to_owned()));
            }
        }
        Ok(p)
    }
}

/// `GET /console/audit` <- `GET /tenant/v1/audit/records` (50 a page, newest first).
pub(super) async fn audit(
    State(app): State<AppState>,
    Query(f): Query<AuditFilter>,
    s: Signed,
) -> Response {
    let r =
        async {
            let mut pairs = f.pairs()?;
            pairs.push(("limit", "50".into()));
            let recs = s
                .api(&app)
                .get(&with_query("/tenant/v1/audit/records", &pairs))
                .await?;
            let window: Vec<(&str, String)> = f
                .pairs()?
                .into_iter()
                .filter(|(k, _)| *k == "from" || *k == "to")
                .collect();
            let export = |fmt: &str| {
                let mut w = window.clone();
                w.push(("format", fmt.to_owned()));
                with_query("/console/audit/export", &w)
            };
            // The next page keeps the filter as the form had it.
            let mut older: Vec<(&str, String)> = [
                ("from", &f.from),
                ("to", &f.to),
                ("event", &f.event),
                ("model", &f.model),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.clone().filter(|v| !v.is_empty())?)))
            .collect();
            older.push(("before_seq", recs["next_before_seq"].to_string()));
            let older = with_query("/console/audit", &older);
            render(&app, &s, "audit.html", |_| {
            Ok(context! { records => recs["data"], next => recs["next_before_seq"], older => older,
                filter => json!({"from": f.from, "to": f.to, "event": f.event, "model": f.model}),
                export_jsonl => export("jsonl"), export_csv => export("csv") })
        })
        .await
        }
        .await;
    done(&s, r)
}

#[derive(Deserialize)]
pub(super) struct ExportQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// `GET /console/audit/export?from=&to=&format=` <- `GET /tenant/v1/audit/export`, the
/// API's bytes unchanged (so the download verifies like the API's).
pub(super) async fn audit_export(
    State(app): State<AppState>,
    Query(q): Query<ExportQuery>,
    s: Signed,
) -> Response {
    let r = async {
        let mut pairs = Vec::new();
        for (k, v) in [("from", &q.from), ("to", &q.to)] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                pairs.push((k, v.to_owned()));
            }
        }
        pairs.push(("format", q.format.clone().unwrap_or_else(|| "jsonl".into())));
        let a = s
            .api(&app)
            .call(
                Method::GET,
                &with_query("/tenant/v1/audit/export", &pairs),
                None,
            )
            .await?;
        if !a.status.is_success() {
            return Err(a.json().err().unwrap_or(Refusal::Unavailable));
        }
        let mut resp = Body::from(a.body).into_response();
        let h = resp.headers_mut();
        for (name, v) in [
            (header::CONTENT_TYPE, a.content_type),
            (header::CONTENT_DISPOSITION, a.content_disposition),
        ] {
            if let Some(v) = v.and_then(|v| v.parse().ok()) {
                h.insert(name, v);
            }
        }
        Ok(s.finish(resp))
    }
    .await;
    done(&s, r)
}

/// `GET /console/audit/records/{seq}` <- the one record (`before_seq = seq + 1, limit = 1`).
pub(super) async fn audit_record(
    State(app): State<AppState>,
    Path(seq): Path<u64>,
    s: Signed,
) -> Response {
    let r = async {
        let recs = s
            .api(&app)
            .get(&with_query(
                "/tenant/v1/audit/records",
                &[
                    (
                        "before_seq",
                        seq.checked_add(1).ok_or(Refusal::NotFound)?.to_string(),
                    ),
                    ("limit", "1".into()),
                ],
            ))
            .await?;
        let rec = recs["data"]
            .as_array()
            .and_then(|d| d.first())
            .filter(|r| r["seq"].as_u64() == Some(seq))
            .cloned()
            .ok_or(Refusal::NotFound)?;
        let pretty = serde_json::to_string_pretty(&rec["record"]).unwrap_or_default();
        render(&app, &s, "record.html", |_| {
            Ok(context! { rec => rec, pretty => pretty })
        })
        .await
    }
    .await;
    done(&s, r)
}

/// `GET /console/incidents` <- the audit log's `incident` records (leak-guard findings).
pub(super) async fn incidents(State(app): State<AppState>, s: Signed) -> Response {
    let r = async {
        let recs = s
            .api(&app)
            .get("/tenant/v1/audit/records?event=incident&limit=100")
            .await?;
        render(&app, &s, "incidents.html", |_| {
            Ok(context! { records => recs["data"] })
        })
        .await
    }
    .await;
    done(&s, r)
}
