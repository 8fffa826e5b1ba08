//! OpenAI's files and fine-tuning APIs, faked: `POST /v1/files` (multipart, as the SDK sends
//! it), `GET /v1/files/{id}`, `POST /v1/fine_tuning/jobs`, `GET /v1/fine_tuning/jobs[/{id}]`,
//! `POST /v1/fine_tuning/jobs/{id}/cancel`, `GET .../events`, `GET .../checkpoints`.
//!
//! Jobs progress deterministically, one step per `GET /v1/fine_tuning/jobs/{id}`:
//! `validating_files -> running -> succeeded`, then report `trained_tokens` (the training
//! file's whitespace words) and `fine_tuned_model = "ft:<base>:mock::<job id>"`, a name the
//! chat endpoint accepts like any other. A `suffix` containing `mockfail` makes the job end
//! `failed` instead (with an `error` object).

use crate::{authorized, error_response, record, Dialect, Shared};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Default)]
pub(crate) struct FtState {
    next: u64,
    files: BTreeMap<String, (Value, String)>,
    jobs: BTreeMap<String, Value>,
}

const CREATED: u64 = 1_700_000_000;

fn not_found(what: &str, id: &str) -> Response {
    error_response(Dialect::OpenAi, 404, &format!("No such {what}: {id}"), None)
}

fn unauthorized() -> Response {
    error_response(Dialect::OpenAi, 401, "Incorrect API key provided", None)
}

/// One part of a `multipart/form-data` body: its field name, file name and bytes.
struct Part {
    name: String,
    filename: Option<String>,
    data: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn param(disposition: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=\"");
    let start = disposition.find(&pat)? + pat.len();
    let end = disposition[start..].find('"')? + start;
    Some(disposition[start..end].to_owned())
}

/// Parses a `multipart/form-data` body (RFC 7578), as an SDK sends it.
fn multipart(headers: &HeaderMap, body: &[u8]) -> Option<Vec<Part>> {
    let ct = headers.get("content-type")?.to_str().ok()?;
    let boundary = ct.split(';').find_map(|p| {
        p.trim()
            .strip_prefix("boundary=")
            .map(|b| b.trim_matches('"').to_owned())
    })?;
    let delim = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut at = find(body, &delim, 0)? + delim.len();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Some(parts);
        }
        let head_start = at + 2; // CRLF after the delimiter
        let head_end = find(body, b"\r\n\r\n", head_start)?;
        let head = std::str::from_utf8(&body[head_start..head_end]).ok()?;
        let next = find(body, &delim, head_end)?;
        let data = body[head_end + 4..next.checked_sub(2)?].to_vec();
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))?;
        parts.push(Part {
            name: param(disposition, "name")?,
            filename: param(disposition, "filename"),
            data,
        });
        at = next + delim.len();
    }
}

pub(crate) async fn upload(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let Some(parts) = multipart(&headers, &raw) else {
        record(&shared, "/v1/files", HashMap::new(), &headers, &Value::Null);
        return error_response(Dialect::OpenAi, 400, "expected multipart/form-data", None);
    };
    let field = |n: &str| parts.iter().find(|p| p.name == n);
    let purpose = field("purpose")
        .map(|p| String::from_utf8_lossy(&p.data).into_owned())
        .unwrap_or_default();
    let Some(file) = field("file") else {
        return error_response(Dialect::OpenAi, 400, "missing file", None);
    };
    let content = String::from_utf8_lossy(&file.data).into_owned();
    let filename = file.filename.clone().unwrap_or_else(|| "upload".into());
    let body = json!({"purpose": purpose, "filename": filename, "content": content});
    record(&shared, "/v1/files", HashMap::new(), &headers, &body);
    if !authorized(&shared.config, &headers) {
        return unauthorized();
    }
    let mut st = match shared.ft.lock() {
        Ok(s) => s,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    st.next += 1;
    let id = format!("file-mock{}", st.next);
    let obj = json!({"id": id, "object": "file", "bytes": file.data.len(), "created_at": CREATED,
        "filename": filename, "purpose": purpose, "status": "processed"});
    st.files.insert(id, (obj.clone(), content));
    Json(obj).into_response()
}

pub(crate) async fn get_file(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &shared,
        &format!("/v1/files/{id}"),
        HashMap::new(),
        &headers,
        &Value::Null,
    );
    if !authorized(&shared.config, &headers) {
        return unauthorized();
    }
    let st = shared.ft.lock();
    match st.ok().and_then(|s| s.files.get(&id).map(|f| f.0.clone())) {
        Some(f) => Json(f).into_response(),
        None => not_found("File", &id),
    }
}

pub(crate) async fn create_job(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or_default();
    record(
        &shared,
        "/v1/fine_tuning/jobs",
        HashMap::new(),
        &headers,
        &body,
    );
    if !authorized(&shared.config, &headers) {
        return unauthorized();
    }
    let Ok(mut st) = shared.ft.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let training = body["training_file"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !st.files.contains_key(&training) {
        return error_response(
            Dialect::OpenAi,
            400,
            &format!("invalid training_file: {training}"),
            None,
        );
    }
    st.next += 1;
    let id = format!("ftjob-mock{}", st.next);
    let job = json!({
        "object": "fine_tuning.job", "id": id, "model": body["model"], "created_at": CREATED,
        "finished_at": null, "fine_tuned_model": null, "organization_id": "org-mock",
        "result_files": [], "status": "validating_files", "validation_file": body["validation_file"],
        "training_file": training, "hyperparameters": body.get("hyperparameters").cloned()
            .unwrap_or_else(|| json!({"n_epochs": "auto"})),
        "trained_tokens": null, "error": null, "seed": body.get("seed").cloned().unwrap_or(json!(42)),
        "suffix": body["suffix"], "method": body.get("method").cloned().unwrap_or(Value::Null),
        "estimated_finish": null, "integrations": [], "user_provided_suffix": body["suffix"],
    });
    st.jobs.insert(id, job.clone());
    Json(job).into_response()
}

/// One step of the job's deterministic progress (see the module's documentation).
fn advance(st: &mut FtState, id: &str) {
    let words = {
        let Some(job) = st.jobs.get(id) else { return };
        let tf = job["training_file"].as_str().unwrap_or_default();
        st.files
            .get(tf)
            .map_or(0, |f| f.1.split_whitespace().count() as u64)
    };
    let Some(job) = st.jobs.get_mut(id) else {
        return;
    };
    let fails = job["suffix"]
        .as_str()
        .is_some_and(|s| s.contains("mockfail"));
    let next = match (job["status"].as_str().unwrap_or_default(), fails) {
        ("validating_files", _) => "running",
        ("running", false) => "succeeded",
        ("running", true) => "failed",
        (other, _) => other,
    }
    .to_owned();
    match next.as_str() {
        "succeeded" => {
            let base = job["model"].as_str().unwrap_or("mock").to_owned();
            job["fine_tuned_model"] = json!(format!("ft:{base}:mock::{id}"));
            job["trained_tokens"] = json!(words);
            job["finished_at"] = json!(CREATED + 60);
        }
        "failed" => {
            job["error"] = json!({"code": "invalid_training_file", "message": "mock failure", "param": "training_file"});
            job["finished_at"] = json!(CREATED + 60);
        }
        _ => {}
    }
    job["status"] = json!(next);
}

pub(crate) async fn get_job(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &shared,
        &format!("/v1/fine_tuning/jobs/{id}"),
        HashMap::new(),
        &headers,
        &Value::Null,
    );
    if !authorized(&shared.config, &headers) {
        return unauthorized();
    }
    let Ok(mut st) = shared.ft.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    advance(&mut st, &id);
    match st.jobs.get(&id) {
        Some(j) => Json(j.clone()).into_response(),
        None => not_found("fine-tuning job", &id),
    }
}

pub(crate) async fn list_jobs(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    record(
        &shared,
        "/v1/fine_tuning/jobs",
        q.clone(),
        &headers,
        &Value::Null,
    );
    if !authorized(&shared.config, &headers) {
        return unauthorized();
    }
    let st = shared.ft.lock();
    let data: Vec<Value> = st
        .map(|s| s.jobs.values().rev().cloned().collect())
        .unwrap_or_default();
    Json(json!({"object": "list", "data": data, "has_more": false})).into_response()
}

pub(crate) async fn cancel_job(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &shared,
        &format!("/v1/fine_tuning/jobs/{id}/cancel"),
        HashMap::new(),
        &headers,
        &Value::Null,
    );
    if !authorized(&shared.config, &headers) {
        return unauthorized();
    }
    let Ok(mut st) = shared.ft.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Some(job) = st.jobs.get_mut(&id) else {
        return not_found("fine-tuning job", &id);
    };
    if matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    ) {
        return error_response(Dialect::OpenAi, 400, "Job has already completed", None);
    }
    job["status"] = json!("cancelled");
    Json(job.clone()).into_response()
}

pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &shared,
        &format!("/v1/fine_tuning/jobs/{id}/events"),
        HashMap::new(),
        &headers,
        &Value::Null,
    );
    if !authorized(&shared.config, &headers) {
        return unauthorized();
    }
    let st = shared.ft.lock();
    let Some(status) = st.ok().and_then(|s| {
        s.jobs
            .get(&id)
            .map(|j| j["status"].as_str().unwrap_or_default().to_owned())
    }) else {
        return not_found("fine-tuning job", &id);
    };
    let event = |n: u32, msg: &str| {
        json!({"object": "fine_tuning.job.event", "id": format!("ftevent-mock-{id}-{n}"),
            "created_at": CREATED + u64::from(n), "level": "info", "message": msg,
            "data": {}, "type": "message"})
    };
    let mut data = vec![event(0, "Validating training file")];
    if status != "validating_files" {
        data.push(event(1, &format!("Job is {status}")));
    }
    data.reverse();
    Json(json!({"object": "list", "data": data, "has_more": false})).into_response()
}

pub(crate) async fn checkpoints(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &shared,
        &format!("/v1/fine_tuning/jobs/{id}/checkpoints"),
        HashMap::new(),
        &headers,
        &Value::Null,
    );
    if !authorized(&shared.config, &headers) {
        return unauthorized();
    }
    let st = shared.ft.lock();
    let Some(job) = st.ok().and_then(|s| s.jobs.get(&id).cloned()) else {
        return not_found("fine-tuning job", &id);
    };
    let data: Vec<Value> = match job["fine_tuned_model"].as_str() {
        Some(m) => vec![json!({"object": "fine_tuning.job.checkpoint",
            "id": format!("ftckpt-mock-{id}"), "created_at": CREATED + 50,
            "fine_tuned_model_checkpoint": format!("{m}:ckpt-step-10"), "step_number": 10,
            "metrics": {"step": 10, "train_loss": 0.5}, "fine_tuning_job_id": id})],
        None => Vec::new(),
    };
    Json(json!({"object": "list", "data": data, "has_more": false})).into_response()
}
