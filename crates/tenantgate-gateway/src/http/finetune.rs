//! OpenAI-compatible `/v1/files` and `/v1/fine_tuning/jobs` (issue 19): adapters over
//! `finetune/` (validation, guard, rewriting), the tenant-bound store handle and the provider's
//! files and fine-tuning APIs (`upstream/finetune.rs`). The tenant is the credential's; another
//! tenant's file or job id answers 404 with the same body as a missing one (the store handle
//! cannot see it), and lists show only the caller's own. Plan-gated: `fine_tuning` in the
//! tenant's limits (enterprise by default). Every step is recorded in the tenant's chain.

use super::{annotate, CallInfo, RequestId};
use crate::error::{GatewayError, Wire};
use crate::finetune as ft;
use crate::identity::TenantContext;
use crate::pipeline::authorize::{reach, Reach};
use crate::pipeline::compose::st;
use crate::state::AppState;
use crate::upstream::finetune::{FtBody, FtEndpoint};
use crate::upstream::Provider;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;
use tenantgate_audit::EventType;
use tenantgate_store::finetune::{Finished, FtFile, FtJob, FtPart, PrivateModel};
use tenantgate_store::StoreError;

type Res = Result<Response, GatewayError>;

fn done(ctx: Option<&TenantContext>, r: Res) -> Response {
    let resp = r.unwrap_or_else(|e| e.render(Wire::OpenAi));
    match ctx {
        Some(c) => annotate(
            resp,
            Duration::ZERO,
            CallInfo {
                tenant: c.tenant.slug.clone(),
                model: "-".into(),
                usage: None,
            },
        ),
        None => resp,
    }
}

/// The caller's tenant context, refused unless its plan (or limits override) has fine-tuning.
async fn gated(app: &AppState, headers: &HeaderMap) -> Result<TenantContext, GatewayError> {
    let ctx = app.tenant_context(headers).await?;
    let (overrides, _) = ctx.view.limits(ctx.principal.scope.tenant_id());
    let limits = app
        .recorder()
        .admission
        .config
        .plan(ctx.tenant.plan)
        .overlay(&overrides);
    match limits.fine_tuning {
        Some(true) => Ok(ctx),
        Some(false) | None => Err(GatewayError::FineTuningNotEnabled),
    }
}

/// Records one fine-tuning step in the tenant's chain (ids, sizes and names only: never
/// training text) and waits for it.
async fn audit(
    app: &AppState,
    ctx: &TenantContext,
    rid: &str,
    event: EventType,
    detail: Value,
) -> Result<(), GatewayError> {
    crate::audit::event(app.recorder(), ctx, rid, event, 200, detail).await
}

/// Where the tenant's files go: the configured fine-tuning provider, at the tenant's own
/// endpoint for it if it has one (never the platform's then).
async fn files_provider(
    app: &AppState,
    ctx: &TenantContext,
) -> Result<Arc<Provider>, GatewayError> {
    let cfg = &app.0.config;
    let unavailable =
        || GatewayError::Unavailable("no provider with a fine-tuning API is configured".into());
    let name = cfg
        .fine_tuning
        .provider(&cfg.providers)
        .ok_or_else(unavailable)?;
    let platform = app.0.catalog.provider(name).ok_or_else(unavailable)?;
    provider_for(app, ctx, platform).await
}

async fn provider_for(
    app: &AppState,
    ctx: &TenantContext,
    platform: &Arc<Provider>,
) -> Result<Arc<Provider>, GatewayError> {
    let own = ctx
        .view
        .own_endpoints(ctx.principal.scope.tenant_id())
        .iter()
        .any(|(p, _)| *p == platform.name);
    match reach(ctx.tenant.isolation, platform.kind, own) {
        Reach::Platform => Ok(platform.clone()),
        Reach::Own => app.deps().endpoints.provider(ctx, platform).await,
        Reach::InProcess | Reach::NotAvailable => Err(GatewayError::Unavailable(
            "fine-tuning is not available to this tenant: it has no endpoint of its own for the fine-tuning provider".into(),
        )),
    }
}

fn file_not_found(id: &str) -> impl Fn(StoreError) -> GatewayError + '_ {
    move |e| match e {
        StoreError::NotFound => GatewayError::FileNotFound(crate::bounds::echo(id)),
        e => st(e),
    }
}

fn job_not_found(id: &str) -> impl Fn(StoreError) -> GatewayError + '_ {
    move |e| match e {
        StoreError::NotFound => GatewayError::FineTuningJobNotFound(crate::bounds::echo(id)),
        e => st(e),
    }
}

/// `POST /v1/files` (multipart: `purpose=fine-tune`, `file`): validated line by line and
/// guarded before anything is stored or sent; uploaded to the provider, then kept sealed
/// with the tenant's keys in its place. The tenant sees the gateway's id only.
pub(super) async fn upload(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = match gated(&app, &headers).await {
        Ok(c) => c,
        Err(e) => return done(None, Err(e)),
    };
    let r = async {
        let cfg = &app.0.config.fine_tuning;
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
            return Err(GatewayError::UnsupportedMediaType(
                "send the file as multipart/form-data (fields purpose and file)".into(),
            ));
        }
        let raw = super::read_body(body, cfg.max_file_bytes).await?;
        let up = ft::parse_upload(&ct, raw)?;
        if up.purpose != "fine-tune" {
            return Err(GatewayError::invalid(
                format!(
                    "purpose {:?} is not supported: only \"fine-tune\"",
                    crate::bounds::echo(&up.purpose)
                ),
                "purpose",
            ));
        }
        let max_lines = cfg.max_lines;
        let content = up.content.clone();
        // Parsing a large file is CPU work: off the async workers.
        let examples = tokio::task::spawn_blocking(move || ft::validate_jsonl(&content, max_lines))
            .await
            .map_err(|_| GatewayError::Internal)??;
        let lines = examples.len() as i64;
        let guard = crate::guard::Guard::new(&ctx, &app.0.incidents);
        let content = ft::guard_examples(&guard, examples, up.content)?;
        let provider = files_provider(&app, &ctx).await?;
        let id = ft::new_file_id();
        let answer = provider
            .fine_tuning(
                FtEndpoint::UploadFile,
                &[],
                FtBody::File {
                    filename: &format!("{id}.jsonl"),
                    purpose: "fine-tune",
                    content: &content,
                },
            )
            .await?;
        let provider_file_id = answer["id"]
            .as_str()
            .ok_or_else(|| GatewayError::UpstreamFailed("the provider returned no file id".into()))?
            .to_owned();
        let scope = &ctx.principal.scope;
        let mut parts = Vec::with_capacity(content.len().div_ceil(1 << 20));
        for (i, chunk) in content.chunks(1 << 20).enumerate() {
            let part = i as u32;
            let sealed = app
                .keyring()
                .seal(scope, ft::SEAL_KIND, &ft::part_aad(&id, part), chunk)
                .await
                .map_err(|_| GatewayError::Internal)?;
            parts.push(FtPart { part, sealed });
        }
        let f = FtFile {
            id: id.clone(),
            filename: up.filename,
            purpose: up.purpose,
            bytes: content.len() as i64,
            lines,
            sha256: hex::encode(sha2::Sha256::digest(&content)),
            provider: provider.name.clone(),
            provider_file_id,
            created_at_ms: crate::clock::now_ms(),
        };
        app.store()
            .tenant(scope)
            .add_ft_file(&f, &parts)
            .await
            .map_err(st)?;
        audit(
            &app,
            &ctx,
            &rid.0,
            EventType::ConfigurationChange,
            json!({
                "action": "fine_tuning.file_uploaded", "file": f.id, "bytes": f.bytes,
                "lines": f.lines, "sha256": f.sha256, "provider": f.provider,
            }),
        )
        .await?;
        Ok((StatusCode::OK, Json(ft::file_object(&f))).into_response())
    }
    .await;
    done(Some(&ctx), r)
}

/// `GET /v1/files`: the tenant's own files only.
pub(super) async fn list_files(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let ctx = match gated(&app, &headers).await {
        Ok(c) => c,
        Err(e) => return done(None, Err(e)),
    };
    let r = async {
        let files = app
            .store()
            .tenant(&ctx.principal.scope)
            .ft_files()
            .await
            .map_err(st)?;
        let data: Vec<Value> = files.iter().map(ft::file_object).collect();
        Ok(Json(json!({"object": "list", "data": data, "has_more": false})).into_response())
    }
    .await;
    done(Some(&ctx), r)
}

/// `GET /v1/files/{file_id}`.
pub(super) async fn get_file(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = match gated(&app, &headers).await {
        Ok(c) => c,
        Err(e) => return done(None, Err(e)),
    };
    let r = async {
        let f = app
            .store()
            .tenant(&ctx.principal.scope)
            .ft_file(&id)
            .await
            .map_err(file_not_found(&id))?;
        Ok(Json(ft::file_object(&f)).into_response())
    }
    .await;
    done(Some(&ctx), r)
}

/// `GET /v1/files/{file_id}/content`: the file as kept (opened from its sealed parts).
pub(super) async fn file_content(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = match gated(&app, &headers).await {
        Ok(c) => c,
        Err(e) => return done(None, Err(e)),
    };
    let r = async {
        let store = app.store().tenant(&ctx.principal.scope);
        let f = store.ft_file(&id).await.map_err(file_not_found(&id))?;
        let mut out = Vec::with_capacity(f.bytes.max(0) as usize);
        for p in store.ft_file_parts(&f.id).await.map_err(st)? {
            let plain = app
                .keyring()
                .open(
                    &ctx.principal.scope,
                    ft::SEAL_KIND,
                    &ft::part_aad(&f.id, p.part),
                    &p.sealed,
                )
                .await
                .map_err(|_| GatewayError::Internal)?;
            out.extend_from_slice(&plain);
        }
        audit(
            &app,
            &ctx,
            &rid.0,
            EventType::DataAccess,
            json!({
                "action": "fine_tuning.file_content_read", "file": f.id,
            }),
        )
        .await?;
        Ok(([("content-type", "application/octet-stream")], out).into_response())
    }
    .await;
    done(Some(&ctx), r)
}

/// `DELETE /v1/files/{file_id}`: the sealed copy and its row.
pub(super) async fn delete_file(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = match gated(&app, &headers).await {
        Ok(c) => c,
        Err(e) => return done(None, Err(e)),
    };
    let r = async {
        app.store()
            .tenant(&ctx.principal.scope)
            .delete_ft_file(&id)
            .await
            .map_err(file_not_found(&id))?;
        audit(
            &app,
            &ctx,
            &rid.0,
            EventType::Deletion,
            json!({
                "action": "fine_tuning.file_deleted", "file": id,
            }),
        )
        .await?;
        Ok(Json(json!({"id": id, "object": "file", "deleted": true})).into_response())
    }
    .await;
    done(Some(&ctx), r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewJob {
    model: String,
    training_file: String,
    validation_file: Option<String>,
    suffix: Option<String>,
    hyperparameters: Option<serde_json::Map<String, Value>>,
    method: Option<serde_json::Map<String, Value>>,
    seed: Option<i64>,
    /// Accepted for the SDK's sake; integrations are not forwarded.
    integrations: Option<Value>,
    metadata: Option<Value>,
}

/// Spend stopped or the monthly spend budget used up: the job is refused like a call.
async fn budget_open(app: &AppState, ctx: &TenantContext) -> Result<(), GatewayError> {
    let tenant = ctx.principal.scope.tenant_id();
    let (overrides, kill) = ctx.view.limits(tenant);
    if kill {
        return Err(GatewayError::InsufficientQuota(
            "Spending is stopped: this tenant's kill switch is on.".into(),
        ));
    }
    let admission = &app.recorder().admission;
    let limits = admission.config.plan(ctx.tenant.plan).overlay(&overrides);
    if let Some(max) = limits.monthly_spend_micros {
        let month = crate::limits::month(crate::clock::now_ms());
        let used = admission
            .counter(tenant, &crate::limits::Counter::MonthlySpend { month })
            .await
            .map_err(|_| {
                GatewayError::Unavailable("the limits backend cannot be reached".into())
            })?;
        if used.max(0) as u64 >= max {
            return Err(GatewayError::InsufficientQuota(format!(
                "This tenant's monthly spend is used up ({used} of {max} micro-dollars)."
            )));
        }
    }
    Ok(())
}

fn check_hyper(v: &serde_json::Map<String, Value>, param: &str) -> Result<(), GatewayError> {
    // Only small scalar settings (numbers, "auto", nested method objects of them) pass.
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.len() > 4096 {
        return Err(GatewayError::invalid(
            format!("{param} is too large"),
            param,
        ));
    }
    Ok(())
}

/// `POST /v1/fine_tuning/jobs`: the model must be a base model the tenant may call on a
/// provider with a fine-tuning API (the files' provider); the files the tenant's own.
pub(super) async fn create_job(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = match gated(&app, &headers).await {
        Ok(c) => c,
        Err(e) => return done(None, Err(e)),
    };
    let r = async {
        super::require_json(&headers)?;
        let bytes = super::read_body(body, app.0.config.server.max_body_bytes).await?;
        let b: NewJob = serde_json::from_slice(&bytes).map_err(|e| GatewayError::BadJson(e.to_string()))?;
        let _ = (&b.integrations, &b.metadata);
        crate::bounds::check("model", &b.model, crate::bounds::MAX_MODEL_BYTES)?;
        if let Some(s) = &b.suffix {
            let ok = s.len() <= ft::MAX_SUFFIX
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(GatewayError::invalid(
                    format!("suffix must be at most {} characters of a-z, A-Z, 0-9, - and _", ft::MAX_SUFFIX),
                    "suffix",
                ));
            }
        }
        for (p, v) in [("hyperparameters", &b.hyperparameters), ("method", &b.method)] {
            if let Some(v) = v {
                check_hyper(v, p)?;
            }
        }
        let is_private = ctx
            .view
            .private_models(ctx.principal.scope.tenant_id())
            .iter()
            .any(|m| m.name == b.model);
        if is_private {
            return Err(GatewayError::invalid("model must be a base model, not a fine-tuned one", "model"));
        }
        let deps = app.deps();
        let call = crate::pipeline::authorize::model(deps.catalog, &deps.endpoints, ctx.clone(), &b.model).await?;
        let provider = call.route.provider.clone();
        let files_provider = app.0.config.fine_tuning.provider(&app.0.config.providers);
        if !crate::config::supports_fine_tuning(provider.kind) || files_provider != Some(provider.name.as_str()) {
            return Err(GatewayError::invalid(
                format!("model {:?} cannot be fine-tuned here: its provider has no fine-tuning API this gateway drives", crate::bounds::echo(&b.model)),
                "model",
            ));
        }
        let store = app.store().tenant(&ctx.principal.scope);
        let training = store.ft_file(&b.training_file).await.map_err(|e| match e {
            StoreError::NotFound => GatewayError::FileNotFound(crate::bounds::echo(&b.training_file)),
            e => st(e),
        })?;
        let validation = match &b.validation_file {
            Some(v) => Some(store.ft_file(v).await.map_err(|e| match e {
                StoreError::NotFound => GatewayError::FileNotFound(crate::bounds::echo(v)),
                e => st(e),
            })?),
            None => None,
        };
        budget_open(&app, &ctx).await?;
        let mut up = serde_json::Map::new();
        up.insert("model".into(), json!(call.route.upstream_model));
        up.insert("training_file".into(), json!(training.provider_file_id));
        if let Some(v) = &validation {
            up.insert("validation_file".into(), json!(v.provider_file_id));
        }
        if let Some(s) = &b.suffix {
            up.insert("suffix".into(), json!(s));
        }
        if let Some(h) = b.hyperparameters {
            up.insert("hyperparameters".into(), Value::Object(h));
        }
        if let Some(m) = b.method {
            up.insert("method".into(), Value::Object(m));
        }
        if let Some(s) = b.seed {
            up.insert("seed".into(), json!(s));
        }
        let body = serde_json::to_vec(&up).map_err(|_| GatewayError::Internal)?;
        let answer = provider.fine_tuning(FtEndpoint::CreateJob, &[], FtBody::Json(body)).await?;
        let provider_job_id = answer["id"]
            .as_str()
            .ok_or_else(|| GatewayError::UpstreamFailed("the provider returned no job id".into()))?
            .to_owned();
        let now = crate::clock::now_ms();
        let job = FtJob {
            id: ft::new_job_id(),
            provider: provider.name.clone(),
            provider_job_id,
            model: b.model,
            training_file: training.id,
            validation_file: validation.map(|v| v.id),
            suffix: b.suffix,
            status: ft::known_status(answer["status"].as_str().unwrap_or_default()).to_owned(),
            fine_tuned_model: None,
            trained_tokens: None,
            charged_micros: None,
            created_at_ms: now,
            updated_at_ms: now,
        };
        store.add_ft_job(&job).await.map_err(st)?;
        audit(&app, &ctx, &rid.0, EventType::ConfigurationChange, json!({
            "action": "fine_tuning.job_created", "job": job.id, "model": job.model,
            "training_file": job.training_file, "provider": job.provider,
        }))
        .await?;
        Ok(Json(ft::job_object(&job, Some(&answer))).into_response())
    }
    .await;
    done(Some(&ctx), r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Page {
    after: Option<String>,
    limit: Option<u32>,
    metadata: Option<String>,
}

fn limit_of(p: &Page) -> Result<u32, GatewayError> {
    let limit = p.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(GatewayError::invalid(
            "limit must be between 1 and 100",
            "limit",
        ));
    }
    if let Some(a) = &p.after {
        crate::bounds::check("after", a, 128)?;
    }
    Ok(limit)
}

/// `GET /v1/fine_tuning/jobs?after=&limit=`: the tenant's own jobs, newest first, as stored.
pub(super) async fn list_jobs(
    State(app): State<AppState>,
    Query(p): Query<Page>,
    headers: HeaderMap,
) -> Response {
    let ctx = match gated(&app, &headers).await {
        Ok(c) => c,
        Err(e) => return done(None, Err(e)),
    };
    let r = async {
        let _ = &p.metadata;
        let limit = limit_of(&p)?;
        let mut jobs = app
            .store()
            .tenant(&ctx.principal.scope)
            .ft_jobs(p.after.as_deref(), limit + 1)
            .await
            .map_err(st)?;
        let has_more = jobs.len() > limit as usize;
        jobs.truncate(limit as usize);
        let data: Vec<Value> = jobs.iter().map(|j| ft::job_object(j, None)).collect();
        Ok(Json(json!({"object": "list", "data": data, "has_more": has_more})).into_response())
    }
    .await;
    done(Some(&ctx), r)
}

async fn job_and_provider(
    app: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<(FtJob, Arc<Provider>), GatewayError> {
    let job = app
        .store()
        .tenant(&ctx.principal.scope)
        .ft_job(id)
        .await
        .map_err(job_not_found(id))?;
    let platform = app.0.catalog.provider(&job.provider).ok_or_else(|| {
        GatewayError::Unavailable("this job's provider is no longer configured".into())
    })?;
    let provider = provider_for(app, ctx, platform).await?;
    Ok((job, provider))
}

/// Brings the stored job up to the provider's answer. The first call to see it finished
/// (a conditional update: one call, one replica) charges the training, registers the private
/// model and records each step.
async fn sync(
    app: &AppState,
    ctx: &TenantContext,
    rid: &str,
    mut job: FtJob,
    answer: &Value,
) -> Result<FtJob, GatewayError> {
    let status = ft::known_status(answer["status"].as_str().unwrap_or_default());
    if ft::is_terminal(&job.status) || status == job.status {
        return Ok(job);
    }
    let store = app.store().tenant(&ctx.principal.scope);
    if !ft::is_terminal(status) {
        store.set_ft_job_status(&job.id, status).await.map_err(st)?;
        job.status = status.to_owned();
        return Ok(job);
    }
    let trained = answer["trained_tokens"].as_u64();
    let upstream_model = answer["fine_tuned_model"]
        .as_str()
        .filter(|m| !m.is_empty());
    let (model, charge) = match (status, upstream_model) {
        ("succeeded", Some(up)) => {
            let pricing = app
                .0
                .catalog
                .get(&job.model)
                .map(|r| r.pricing)
                .unwrap_or_default();
            let charge = pricing.training_cost(trained.unwrap_or(0));
            let pm = PrivateModel {
                name: ft::private_model_name(&job),
                base_model: job.model.clone(),
                upstream_model: up.to_owned(),
                job_id: job.id.clone(),
                created_at_ms: crate::clock::now_ms(),
            };
            (Some(pm), Some(charge))
        }
        _ => (None, None),
    };
    let finished = Finished {
        status,
        trained_tokens: trained.map(|t| t as i64),
        charged_micros: charge.map(|c| c as i64),
        model: model.clone(),
    };
    if !store.finish_ft_job(&job.id, &finished).await.map_err(st)? {
        // Another call finished it first: read what it stored.
        return store.ft_job(&job.id).await.map_err(st);
    }
    job.status = status.to_owned();
    job.trained_tokens = finished.trained_tokens;
    job.charged_micros = finished.charged_micros;
    job.fine_tuned_model = model.as_ref().map(|m| m.name.clone());
    match (&model, charge) {
        (Some(pm), Some(charge)) => {
            charge_training(app, ctx, rid, &job, pm, charge).await?;
            audit(
                app,
                ctx,
                rid,
                EventType::ConfigurationChange,
                json!({
                    "action": "fine_tuning.model_registered", "job": job.id, "model": pm.name,
                    "base_model": pm.base_model,
                }),
            )
            .await?;
            app.reload_auth(false).await.ok();
        }
        _ => {
            let action = match status {
                "cancelled" => "fine_tuning.job_cancelled",
                _ => "fine_tuning.job_failed",
            };
            audit(
                app,
                ctx,
                rid,
                EventType::ConfigurationChange,
                json!({
                    "action": action, "job": job.id,
                }),
            )
            .await?;
        }
    }
    Ok(job)
}

/// The training's cost on the tenant's spend: the same counters the monthly budget uses
/// (never refused: the work is done), and an `api_call` record carrying the cost, so the
/// usage API and the counters rebuilt at start count it like any call.
async fn charge_training(
    app: &AppState,
    ctx: &TenantContext,
    rid: &str,
    job: &FtJob,
    pm: &PrivateModel,
    charge: u64,
) -> Result<(), GatewayError> {
    let tenant = ctx.principal.scope.tenant_id();
    let admission = &app.recorder().admission;
    let key = ctx.principal.credential.to_string();
    let unlimited = crate::limits::LimitSet::default();
    let request_id = format!("{rid}:{}", job.id);
    let ask = crate::limits::Ask {
        tenant,
        key: &key,
        user: None,
        request_id: &request_id,
        limits: &unlimited,
        tokens: 0,
        prompt_tokens: 0,
        cost: 0,
        now_ms: crate::clock::now_ms(),
    };
    let reservation = admission.reserve_within(ask).await?;
    admission.settle(&reservation, 0, charge).await;
    let mut entry = crate::audit::event_record(
        rid,
        EventType::ApiCall,
        crate::audit::actor(ctx),
        json!({"action": "fine_tuning.job_succeeded", "job": job.id,
            "trained_tokens": job.trained_tokens.unwrap_or(0)}),
    );
    entry.record.cost_micros = Some(charge as i64);
    entry.record.model = Some(tenantgate_audit::ModelInfo {
        provider: Some(job.provider.clone()),
        requested: job.model.clone(),
        resolved: Some(pm.name.clone()),
        version: None,
    });
    let policy = ctx.view.audit_policy(tenant);
    crate::audit::write(app.recorder(), &ctx.principal.scope, &policy, entry).await
}

/// `GET /v1/fine_tuning/jobs/{id}`: the provider's current state, with the gateway's ids.
pub(super) async fn get_job(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = match gated(&app, &headers).await {
        Ok(c) => c,
        Err(e) => return done(None, Err(e)),
    };
    let r = async {
        let (job, provider) = job_and_provider(&app, &ctx, &id).await?;
        let answer = provider
            .fine_tuning(FtEndpoint::GetJob(&job.provider_job_id), &[], FtBody::None)
            .await?;
        let job = sync(&app, &ctx, &rid.0, job, &answer).await?;
        Ok(Json(ft::job_object(&job, Some(&answer))).into_response())
    }
    .await;
    done(Some(&ctx), r)
}

/// `POST /v1/fine_tuning/jobs/{id}/cancel`.
pub(super) async fn cancel_job(
    State(app): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = match gated(&app, &headers).await {
        Ok(c) => c,
        Err(e) => return done(None, Err(e)),
    };
    let r = async {
        let (job, provider) = job_and_provider(&app, &ctx, &id).await?;
        let answer = provider
            .fine_tuning(
                FtEndpoint::CancelJob(&job.provider_job_id),
                &[],
                FtBody::None,
            )
            .await?;
        let job = sync(&app, &ctx, &rid.0, job, &answer).await?;
        Ok(Json(ft::job_object(&job, Some(&answer))).into_response())
    }
    .await;
    done(Some(&ctx), r)
}

async fn job_list(
    app: &AppState,
    headers: &HeaderMap,
    id: &str,
    p: &Page,
    checkpoints: bool,
) -> Response {
    let ctx = match gated(app, headers).await {
        Ok(c) => c,
        Err(e) => return done(None, Err(e)),
    };
    let r = async {
        let limit = limit_of(p)?;
        let (job, provider) = job_and_provider(app, &ctx, id).await?;
        let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
        if let Some(a) = &p.after {
            q.push(("after", a.clone()));
        }
        let ep = match checkpoints {
            true => FtEndpoint::Checkpoints(&job.provider_job_id),
            false => FtEndpoint::Events(&job.provider_job_id),
        };
        let answer = provider.fine_tuning(ep, &q, FtBody::None).await?;
        let upstream = ctx
            .view
            .private_models(ctx.principal.scope.tenant_id())
            .iter()
            .find(|m| m.job_id == job.id)
            .map(|m| m.upstream_model.clone());
        Ok(Json(ft::rewrite_list(answer, &job, upstream.as_deref())).into_response())
    }
    .await;
    done(Some(&ctx), r)
}

/// `GET /v1/fine_tuning/jobs/{id}/events`.
pub(super) async fn events(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<Page>,
    headers: HeaderMap,
) -> Response {
    job_list(&app, &headers, &id, &p, false).await
}

/// `GET /v1/fine_tuning/jobs/{id}/checkpoints`.
pub(super) async fn checkpoints(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<Page>,
    headers: HeaderMap,
) -> Response {
    job_list(&app, &headers, &id, &p, true).await
}
