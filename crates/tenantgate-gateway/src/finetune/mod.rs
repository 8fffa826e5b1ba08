//! Tenant-owned fine-tuning (issue 19), the parts that are not HTTP: the upload's multipart
//! body, the training file's line-by-line validation and leak guard, ids, and the rewriting of
//! provider answers into what the tenant sees (gateway ids, never the provider's). The
//! handlers are adapters in `http/finetune.rs`; the provider calls in `upstream/finetune.rs`.

use crate::error::GatewayError;
use crate::guard::Guard;
use serde_json::{json, Map, Value};
use tenantgate_guard::Direction;
use tenantgate_store::finetune::{FtFile, FtJob};

/// The longest `suffix` accepted (OpenAI's limit).
pub const MAX_SUFFIX: usize = 64;
/// The longest file name kept (it is listed back to the tenant).
pub const MAX_FILENAME: usize = 256;

/// The record kind a training file's parts are sealed under (AAD: tenant, kind, "{id}:{part}").
pub const SEAL_KIND: &str = "ft_file";

pub fn part_aad(file_id: &str, part: u32) -> String {
    format!("{file_id}:{part}")
}

/// A gateway id: a random UUID, so one tenant's id says nothing about another's.
pub fn new_file_id() -> String {
    format!("file-tg-{}", uuid::Uuid::new_v4().simple())
}

/// Job ids are ordered by creation (UUIDv7) for `after` pagination; the random part keeps them
/// unguessable.
pub fn new_job_id() -> String {
    format!("ftjob-tg-{}", uuid::Uuid::now_v7().simple())
}

/// The upload as the client sent it.
pub struct Upload {
    pub purpose: String,
    pub filename: String,
    pub content: bytes::Bytes,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn disposition_param(d: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=\"");
    let start = d.find(&pat)? + pat.len();
    let end = d[start..].find('"')? + start;
    Some(d[start..end].to_owned())
}

/// Parses a `multipart/form-data` upload (RFC 7578) with fields `purpose` and `file`, as the
/// OpenAI SDKs send it. Errors name the field.
pub fn parse_upload(content_type: &str, body: bytes::Bytes) -> Result<Upload, GatewayError> {
    let bad = |m: &str| GatewayError::invalid(m, "file");
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_owned())
        .filter(|b| !b.is_empty() && b.len() <= 200)
        .ok_or_else(|| bad("expected a multipart/form-data body with a boundary"))?;
    let delim = format!("--{boundary}").into_bytes();
    let mut at =
        find(&body, &delim, 0).ok_or_else(|| bad("malformed multipart body"))? + delim.len();
    let (mut purpose, mut file) = (None, None);
    for _ in 0..16 {
        if body.get(at..at + 2) == Some(b"--") {
            break;
        }
        let head_start = at + 2;
        let head_end =
            find(&body, b"\r\n\r\n", head_start).ok_or_else(|| bad("malformed multipart body"))?;
        let head = std::str::from_utf8(&body[head_start..head_end])
            .map_err(|_| bad("malformed multipart headers"))?;
        let next = find(&body, &delim, head_end).ok_or_else(|| bad("malformed multipart body"))?;
        let end = next
            .checked_sub(2)
            .filter(|e| *e >= head_end + 4)
            .ok_or_else(|| bad("malformed multipart body"))?;
        let data = body.slice(head_end + 4..end);
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .unwrap_or_default();
        match disposition_param(disposition, "name").as_deref() {
            Some("purpose") => {
                purpose = Some(String::from_utf8_lossy(&data).trim().to_owned());
            }
            Some("file") => {
                let name = disposition_param(disposition, "filename")
                    .unwrap_or_else(|| "training.jsonl".into());
                file = Some((name, data));
            }
            // Other form fields (the SDK sends none today) are ignored.
            _ => {}
        }
        at = next + delim.len();
    }
    let purpose = purpose.ok_or_else(|| GatewayError::invalid("purpose is required", "purpose"))?;
    let (filename, content) = file.ok_or_else(|| bad("file is required"))?;
    crate::bounds::check("filename", &filename, MAX_FILENAME)?;
    Ok(Upload {
        purpose,
        filename,
        content,
    })
}

fn line_err(n: usize, m: impl std::fmt::Display) -> GatewayError {
    GatewayError::invalid(format!("line {n}: {m}"), "file")
}

/// Checks one chat-format example: roles system/user/assistant/tool, content a string or
/// parts, at least one assistant message.
fn check_chat(n: usize, messages: &Value) -> Result<(), GatewayError> {
    let Value::Array(ms) = messages else {
        return Err(line_err(n, "`messages` must be an array"));
    };
    let mut assistant = false;
    for (i, m) in ms.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        match role {
            "system" | "user" | "tool" => {}
            "assistant" => assistant = true,
            other => {
                return Err(line_err(
                    n,
                    format!(
                        "messages[{i}].role {:?} is not one of system, user, assistant, tool",
                        crate::bounds::echo(other)
                    ),
                ))
            }
        }
        match &m["content"] {
            Value::String(_) | Value::Array(_) => {}
            // An assistant message may carry tool calls instead of content.
            Value::Null if role == "assistant" && m.get("tool_calls").is_some() => {}
            _ => {
                return Err(line_err(
                    n,
                    format!("messages[{i}].content must be a string or an array of parts"),
                ))
            }
        }
    }
    if !assistant {
        return Err(line_err(
            n,
            "an example needs at least one assistant message",
        ));
    }
    Ok(())
}

/// Validates a training file line by line before anything is stored or sent: each non-empty
/// line a JSON object, in the chat format (`messages`) or the legacy `prompt`/`completion`
/// shape. Errors name the line (`line 17: ...`). Returns the examples.
pub fn validate_jsonl(
    content: &[u8],
    max_lines: usize,
) -> Result<Vec<Map<String, Value>>, GatewayError> {
    let text = std::str::from_utf8(content).map_err(|e| {
        GatewayError::invalid(
            format!("the file is not UTF-8 (at byte {})", e.valid_up_to()),
            "file",
        )
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if out.len() == max_lines {
            return Err(line_err(
                n,
                format!("the file has more than {max_lines} examples"),
            ));
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| line_err(n, format!("not valid JSON ({e})")))?;
        let Value::Object(o) = v else {
            return Err(line_err(n, "each line must be a JSON object"));
        };
        if let Some(m) = o.get("messages") {
            check_chat(n, m)?;
        } else if o.contains_key("prompt") || o.contains_key("completion") {
            if !(o["prompt"].is_string() && o["completion"].is_string()) {
                return Err(line_err(
                    n,
                    "`prompt` and `completion` must both be strings",
                ));
            }
        } else {
            return Err(line_err(
                n,
                "expected `messages` (chat format) or `prompt` and `completion`",
            ));
        }
        out.push(o);
    }
    if out.is_empty() {
        return Err(GatewayError::invalid("the file has no examples", "file"));
    }
    Ok(out)
}

/// Runs the inbound leak guard over every example, as over a chat request the tenant sent: a
/// blocked finding refuses the file (naming the line), redactions change the example. Returns
/// the file to keep and send: the original bytes, or the examples re-serialized if any text
/// was redacted.
pub fn guard_examples(
    guard: &Guard<'_>,
    mut examples: Vec<Map<String, Value>>,
    original: bytes::Bytes,
) -> Result<bytes::Bytes, GatewayError> {
    let mut changed = false;
    for (i, ex) in examples.iter_mut().enumerate() {
        let before = (!changed).then(|| ex.clone());
        let r = if ex.contains_key("messages") {
            guard.guard_openai_request(ex)
        } else {
            let mut v = Value::Object(std::mem::take(ex));
            let r = guard.guard_values(&mut v, Direction::Inbound);
            if let Value::Object(o) = v {
                *ex = o;
            }
            r
        };
        r.map_err(|e| match e {
            GatewayError::InputBlocked(d) => GatewayError::InvalidRequest {
                message: format!("example {}: {}", i + 1, GatewayError::InputBlocked(d)),
                param: Some("file".into()),
            },
            e => e,
        })?;
        if before.is_some_and(|b| &b != ex) {
            changed = true;
        }
    }
    if !changed {
        return Ok(original);
    }
    let mut out = Vec::with_capacity(original.len());
    for ex in &examples {
        serde_json::to_writer(&mut out, ex).map_err(|_| GatewayError::Internal)?;
        out.push(b'\n');
    }
    Ok(out.into())
}

/// A file as the tenant sees it (OpenAI's file object, the gateway's id).
pub fn file_object(f: &FtFile) -> Value {
    json!({"id": f.id, "object": "file", "bytes": f.bytes, "created_at": f.created_at_ms / 1000,
        "filename": f.filename, "purpose": f.purpose, "status": "processed"})
}

/// The status strings OpenAI's jobs take; anything else from a provider is kept as `running`.
pub fn known_status(s: &str) -> &'static str {
    match s {
        "validating_files" => "validating_files",
        "queued" => "queued",
        "succeeded" => "succeeded",
        "failed" => "failed",
        "cancelled" => "cancelled",
        _ => "running",
    }
}

pub fn is_terminal(s: &str) -> bool {
    matches!(s, "succeeded" | "failed" | "cancelled")
}

/// A job as the tenant sees it: the provider's job object with the gateway's ids (job, files,
/// model) in place of the provider's, and nothing that names the provider's organisation or
/// result files.
pub fn job_object(j: &FtJob, provider: Option<&Value>) -> Value {
    let p = provider.cloned().unwrap_or(Value::Null);
    let pick = |k: &str| p.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "object": "fine_tuning.job",
        "id": j.id,
        "model": j.model,
        "created_at": j.created_at_ms / 1000,
        "finished_at": pick("finished_at"),
        "fine_tuned_model": j.fine_tuned_model,
        "organization_id": "tenantgate",
        "result_files": [],
        "status": j.status,
        "validation_file": j.validation_file,
        "training_file": j.training_file,
        "hyperparameters": pick("hyperparameters"),
        "trained_tokens": j.trained_tokens,
        "error": pick("error"),
        "seed": pick("seed"),
        "suffix": j.suffix,
        "method": pick("method"),
        "estimated_finish": pick("estimated_finish"),
        "integrations": [],
    })
}

/// The private model's tenant-facing name: the base, the suffix and the gateway's job id (the
/// provider's name, which names its organisation, is never shown).
pub fn private_model_name(j: &FtJob) -> String {
    let id = j.id.trim_start_matches("ftjob-tg-");
    format!("ft:{}:{}:{id}", j.model, j.suffix.as_deref().unwrap_or(""))
}

/// Rewrites a provider's events or checkpoints list for the tenant: the provider's model
/// name becomes the private model's, and the provider's job id the gateway's, wherever they
/// appear (ids derived from them included).
pub fn rewrite_list(v: Value, j: &FtJob, provider_model: Option<&str>) -> Value {
    let mut s = v.to_string();
    if let (Some(pm), Some(ours)) = (provider_model, j.fine_tuned_model.as_deref()) {
        s = s.replace(pm, ours);
    }
    if !j.provider_job_id.is_empty() {
        s = s.replace(&j.provider_job_id, &j.id);
    }
    let v: Value = serde_json::from_str(&s).unwrap_or(Value::Null);
    let data = v.get("data").cloned().unwrap_or(json!([]));
    let has_more = v.get("has_more").cloned().unwrap_or(json!(false));
    json!({"object": "list", "data": data, "has_more": has_more})
}

#[cfg(test)]
mod tests {
    use super::validate_jsonl;

    #[test]
    fn errors_name_the_line() {
        let ok =
            r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}"#;
        let f = format!("{ok}\n{ok}\n{{\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}]}}\n");
        let e = validate_jsonl(f.as_bytes(), 10).unwrap_err().to_string();
        assert!(e.starts_with("line 3: "), "{e}");
        let e = validate_jsonl(format!("{ok}\nnot json\n").as_bytes(), 10)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 2: not valid JSON"), "{e}");
        let e = validate_jsonl(format!("{ok}\n{ok}\n").as_bytes(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 2: "), "{e}");
        assert_eq!(
            validate_jsonl(b"{\"prompt\":\"a\",\"completion\":\"b\"}\n", 1)
                .unwrap()
                .len(),
            1
        );
    }
}
