//! Tenant-owned fine-tuning (issue 19): `/v1/files` and `/v1/fine_tuning/jobs` against
//! mockllm's files and fine-tuning APIs (real wire, multipart upload), and the private models
//! jobs produce. The IDOR matrix runs every files/jobs/models route with another tenant's ids;
//! the private model is attacked on both wires and streamed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::{chat, TestGateway};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tenantgate_core::Tenant;
use tenantgate_gateway::config::Pricing;
use tenantgate_gateway::lifecycle::offboard;
use tenantgate_store::Db;

/// A phrase in the training text, looked for in the database bytes.
const MARKER: &str = "zanzibar-quokka-training-marker";

fn training_file() -> String {
    let line = |q: &str, a: &str| {
        json!({"messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": q},
            {"role": "assistant", "content": a}
        ]})
        .to_string()
    };
    format!(
        "{}\n{}\n{}\n",
        line("hello there", &format!("hi {MARKER}")),
        line("what is two plus two", "four"),
        line("name a colour", "blue")
    )
}

fn multipart(purpose: &str, content: &str) -> (String, Vec<u8>) {
    let b = "XyZboundary123";
    let body = format!(
        "--{b}\r\ncontent-disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n\
         --{b}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"train.jsonl\"\r\n\
         content-type: application/octet-stream\r\n\r\n{content}\r\n--{b}--\r\n"
    );
    (
        format!("multipart/form-data; boundary={b}"),
        body.into_bytes(),
    )
}

async fn upload(gw: &TestGateway, key: &str, purpose: &str, content: &str) -> reqwest::Response {
    let (ct, body) = multipart(purpose, content);
    gw.http
        .post(format!("{}/v1/files", gw.url))
        .bearer_auth(key)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn send(gw: &TestGateway, m: reqwest::Method, path: &str, key: &str) -> reqwest::Response {
    gw.http
        .request(m, format!("{}{path}", gw.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn enable(gw: &TestGateway, t: &Tenant, extra: &str) {
    let admin = TestGateway::admin();
    gw.state
        .store()
        .platform(&admin)
        .set_limits(
            &t.id,
            Some(&format!("{{\"fine_tuning\": true{extra}}}")),
            None,
        )
        .await
        .unwrap();
    gw.wait_for_revision().await;
}

/// 1,000 micro-dollars per trained token; calls free (so spend is the training's alone).
fn priced(c: &mut tenantgate_gateway::Config) {
    for m in &mut c.models {
        m.pricing = Some(Pricing {
            training_per_mtok: 1_000_000_000,
            ..Pricing::default()
        });
    }
}

/// Polls the job (each GET moves mockllm's job one step) until it is finished.
async fn until_finished(gw: &TestGateway, key: &str, job: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = gw.get(&format!("/v1/fine_tuning/jobs/{job}"), key).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        if matches!(
            v["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return v;
        }
        assert!(Instant::now() < deadline, "job never finished: {v}");
    }
}

/// The body with `id` replaced: a 404 for another tenant's id must equal one for a missing id.
async fn body_without(r: reqwest::Response, id: &str) -> (u16, String) {
    let s = r.status().as_u16();
    (s, r.text().await.unwrap().replace(id, "ID"))
}

async fn records(gw: &TestGateway, admin: &str) -> Vec<Value> {
    let r = gw.get("/tenant/v1/audit/records?limit=1000", admin).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"].clone())
        .collect()
}

fn actions(recs: &[Value]) -> Vec<String> {
    recs.iter()
        .filter_map(|r| r["detail"]["action"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_fine_tuned_model_and_its_files_and_job_belong_to_their_tenant_only() {
    let gw = TestGateway::start_with(priced).await;
    let (a, a_key) = gw.tenant("tuner", &["gpt-test", "claude-test"], None).await;
    let (b, b_key) = gw.tenant("other", &["gpt-test", "claude-test"], None).await;
    enable(&gw, &a, "").await;
    enable(&gw, &b, "").await;
    let a_admin = gw.admin_key(&a).await;
    let b_admin = gw.admin_key(&b).await;

    // A uploads a training file: the gateway's id, never the provider's.
    let r = upload(&gw, &a_key, "fine-tune", &training_file()).await;
    assert_eq!(r.status(), 200);
    let file: Value = r.json().await.unwrap();
    let file_id = file["id"].as_str().unwrap().to_owned();
    assert!(file_id.starts_with("file-tg-"), "{file}");
    assert_eq!(file["purpose"], "fine-tune");
    let seen = gw.mock.stats.last_request().unwrap();
    assert_eq!(seen.path, "/v1/files");
    assert!(seen.body["content"].as_str().unwrap().contains(MARKER));
    assert!(
        !seen.body["filename"].as_str().unwrap().contains("train"),
        "no client name upstream"
    );

    // Stored sealed: the training text is in no row in clear.
    let Db::Sqlite(pool) = gw.state.store().db() else {
        unreachable!()
    };
    let parts: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT sealed FROM ft_file_parts WHERE file_id = ?")
            .bind(&file_id)
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(!parts.is_empty());
    for p in &parts {
        assert!(!String::from_utf8_lossy(p).contains(MARKER));
        assert!(!String::from_utf8_lossy(p).contains("two plus two"));
    }
    let provider_file: String =
        sqlx::query_scalar("SELECT provider_file_id FROM ft_files WHERE id = ?")
            .bind(&file_id)
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(!serde_json::to_string(&file)
        .unwrap()
        .contains(&provider_file));
    // A reads it back as uploaded.
    let r = gw
        .get(&format!("/v1/files/{file_id}/content"), &a_key)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), training_file());

    // A creates a job.
    let r = gw
        .post(
            "/v1/fine_tuning/jobs",
            &a_key,
            &json!({"model": "gpt-test", "training_file": file_id, "suffix": "acme",
                    "hyperparameters": {"n_epochs": 1}, "seed": 7}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let job: Value = r.json().await.unwrap();
    let job_id = job["id"].as_str().unwrap().to_owned();
    assert!(job_id.starts_with("ftjob-tg-"), "{job}");
    assert_eq!(job["training_file"], file_id.as_str());
    let sent = gw.mock.stats.last_request().unwrap();
    assert_eq!(sent.body["model"], "gpt-upstream");
    assert_eq!(sent.body["training_file"], provider_file.as_str());
    assert_eq!(sent.body["hyperparameters"]["n_epochs"], 1);

    // The IDOR matrix: B with A's ids is answered exactly like a missing id, on every route.
    let missing_file = "file-tg-00000000000000000000000000000000";
    let missing_job = "ftjob-tg-00000000000000000000000000000000";
    use reqwest::Method as M;
    for (m, path, id, missing) in [
        (M::GET, "/v1/files/{}", &file_id, missing_file),
        (M::GET, "/v1/files/{}/content", &file_id, missing_file),
        (M::DELETE, "/v1/files/{}", &file_id, missing_file),
        (M::GET, "/v1/fine_tuning/jobs/{}", &job_id, missing_job),
        (
            M::POST,
            "/v1/fine_tuning/jobs/{}/cancel",
            &job_id,
            missing_job,
        ),
        (
            M::GET,
            "/v1/fine_tuning/jobs/{}/events",
            &job_id,
            missing_job,
        ),
        (
            M::GET,
            "/v1/fine_tuning/jobs/{}/checkpoints",
            &job_id,
            missing_job,
        ),
    ] {
        let theirs = body_without(
            send(&gw, m.clone(), &path.replace("{}", id), &b_key).await,
            id,
        )
        .await;
        let absent = body_without(
            send(&gw, m.clone(), &path.replace("{}", missing), &b_key).await,
            missing,
        )
        .await;
        assert_eq!(theirs.0, 404, "{m} {path}: {}", theirs.1);
        assert_eq!(theirs, absent, "{m} {path}");
    }
    // B cannot train on A's file either.
    let theirs = gw
        .post(
            "/v1/fine_tuning/jobs",
            &b_key,
            &json!({"model": "gpt-test", "training_file": file_id}),
        )
        .await;
    let absent = gw
        .post(
            "/v1/fine_tuning/jobs",
            &b_key,
            &json!({"model": "gpt-test", "training_file": missing_file}),
        )
        .await;
    assert_eq!(
        body_without(theirs, &file_id).await,
        body_without(absent, missing_file).await
    );
    // Lists show only the caller's own.
    for (key, n) in [(&a_key, 1), (&b_key, 0)] {
        for path in ["/v1/files", "/v1/fine_tuning/jobs"] {
            let v: Value = gw.get(path, key).await.json().await.unwrap();
            assert_eq!(v["data"].as_array().unwrap().len(), n, "{path}: {v}");
        }
    }

    // The job succeeds: the private model is A's, named by the gateway.
    let done = until_finished(&gw, &a_key, &job_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let model = done["fine_tuned_model"].as_str().unwrap().to_owned();
    assert!(model.starts_with("ft:gpt-test:acme:"), "{model}");
    assert!(
        !model.contains("mock"),
        "the provider's name is never shown: {model}"
    );
    let trained = done["trained_tokens"].as_i64().unwrap();
    assert!(trained > 0);
    let ckpt: Value = gw
        .get(
            &format!("/v1/fine_tuning/jobs/{job_id}/checkpoints"),
            &a_key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        ckpt["data"][0]["fine_tuning_job_id"],
        job_id.as_str(),
        "{ckpt}"
    );
    assert!(ckpt["data"][0]["fine_tuned_model_checkpoint"]
        .as_str()
        .unwrap()
        .starts_with(&model));
    for provider_name in ["ft:gpt-upstream", "ftjob-mock"] {
        assert!(!ckpt.to_string().contains(provider_name), "{ckpt}");
    }
    let events: Value = gw
        .get(&format!("/v1/fine_tuning/jobs/{job_id}/events"), &a_key)
        .await
        .json()
        .await
        .unwrap();
    assert!(!events["data"].as_array().unwrap().is_empty());

    // A calls it on both wires, streamed too; the provider gets its fine-tuned name.
    let r = gw
        .post("/v1/chat/completions", &a_key, &chat(&model, "hi"))
        .await;
    assert_eq!(r.status(), 200);
    let upstream = gw.mock.stats.last_request().unwrap().body["model"].clone();
    assert!(
        upstream
            .as_str()
            .unwrap()
            .starts_with("ft:gpt-upstream:mock::"),
        "{upstream}"
    );
    let mut streamed = chat(&model, "hi");
    streamed["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", &a_key, &streamed).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("[DONE]"));
    let anthropic =
        json!({"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]});
    let r = gw.post("/v1/messages", &a_key, &anthropic).await;
    assert_eq!(r.status(), 200);
    let listed: Value = gw.get("/v1/models", &a_key).await.json().await.unwrap();
    assert!(listed.to_string().contains(&model));
    assert_eq!(
        gw.get(&format!("/v1/models/{model}"), &a_key)
            .await
            .status(),
        200
    );
    let tenant_models: Value = gw
        .get("/tenant/v1/models", &a_key)
        .await
        .json()
        .await
        .unwrap();
    assert!(tenant_models["callable"].to_string().contains(&model));

    // B cannot: every wire answers exactly like an unknown model.
    let unknown = "ft:gpt-test:acme:no-such-model";
    let pairs = [
        (
            "/v1/chat/completions",
            chat(&model, "hi"),
            chat(unknown, "hi"),
        ),
        ("/v1/chat/completions", streamed.clone(), {
            let mut s = chat(unknown, "hi");
            s["stream"] = json!(true);
            s
        }),
        ("/v1/messages", anthropic.clone(), {
            let mut s = anthropic.clone();
            s["model"] = json!(unknown);
            s
        }),
    ];
    for (path, theirs, absent) in pairs {
        let t = body_without(gw.post(path, &b_key, &theirs).await, &model).await;
        let u = body_without(gw.post(path, &b_key, &absent).await, unknown).await;
        assert_eq!(t.0, 404, "{path}: {}", t.1);
        assert!(
            t.1.contains("model_not_found") || t.1.contains("not_found_error"),
            "{}",
            t.1
        );
        assert_eq!(t, u, "{path}");
    }
    let listed: Value = gw.get("/v1/models", &b_key).await.json().await.unwrap();
    assert!(!listed.to_string().contains(&model));
    let t = body_without(gw.get(&format!("/v1/models/{model}"), &b_key).await, &model).await;
    let u = body_without(
        gw.get(&format!("/v1/models/{unknown}"), &b_key).await,
        unknown,
    )
    .await;
    assert_eq!(t.0, 404);
    assert_eq!(t, u);

    // The training was charged to A's spend (the budget's counter) and recorded with its cost.
    let charge = trained * 1_000;
    let limits: Value = gw
        .get("/tenant/v1/limits", &a_admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(limits["counted"]["month_spend_micros"], charge, "{limits}");
    let recs = records(&gw, &a_admin).await;
    let acts = actions(&recs);
    for want in [
        "fine_tuning.file_uploaded",
        "fine_tuning.file_content_read",
        "fine_tuning.job_created",
        "fine_tuning.job_succeeded",
        "fine_tuning.model_registered",
    ] {
        assert!(acts.iter().any(|a| a == want), "{want} not in {acts:?}");
    }
    let succeeded = recs
        .iter()
        .find(|r| r["detail"]["action"] == "fine_tuning.job_succeeded")
        .unwrap();
    assert_eq!(succeeded["event"], "api_call");
    assert_eq!(succeeded["cost_micros"], charge);
    assert!(!serde_json::to_string(&recs).unwrap().contains(MARKER));
    // Nothing of A's in B's chain.
    let b_acts = actions(&records(&gw, &b_admin).await);
    assert!(
        b_acts.iter().all(|a| !a.starts_with("fine_tuning.")),
        "{b_acts:?}"
    );

    // With its budget used up, A's next job is refused like a call.
    enable(&gw, &a, ", \"monthly_spend_micros\": 1000").await;
    let r = gw
        .post(
            "/v1/fine_tuning/jobs",
            &a_key,
            &json!({"model": "gpt-test", "training_file": file_id}),
        )
        .await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");

    // A deletes its file: gone, and B never saw it.
    let r = send(&gw, M::DELETE, &format!("/v1/files/{file_id}"), &a_key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        gw.get(&format!("/v1/files/{file_id}"), &a_key)
            .await
            .status(),
        404
    );
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ft_file_parts WHERE file_id = ?")
        .bind(&file_id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(n, 0);

    // Offboarding removes A's files, jobs and private models.
    let r = upload(&gw, &a_key, "fine-tune", &training_file()).await;
    assert_eq!(r.status(), 200);
    let maint = tenantgate_gateway::server::open_maintenance_store(&gw.config, gw.state.store())
        .await
        .unwrap();
    offboard::request(
        tenantgate_gateway::control::AuditSink::Writer(gw.state.audit_log()),
        gw.state.store(),
        &TestGateway::admin(),
        &a.id,
        0,
    )
    .await
    .unwrap();
    assert_eq!(offboard::finalize_due(&gw.state, &maint).await.len(), 1);
    for table in ["ft_files", "ft_file_parts", "ft_jobs", "private_models"] {
        let n: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = ?"))
                .bind(a.id.as_str())
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    gw.wait_for_revision().await;
    assert_eq!(
        gw.post("/v1/chat/completions", &b_key, &chat("gpt-test", "hi"))
            .await
            .status(),
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn fine_tuning_is_plan_gated_and_files_are_validated_and_guarded() {
    let gw = TestGateway::start().await;
    let (canary, b_key, _) = gw.canary_and_other_tenant().await;
    let b = gw
        .state
        .store()
        .platform(&TestGateway::admin())
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.slug == "globex")
        .unwrap();

    // A pro tenant without the flag: 403 with a precise code, on every route.
    let r = upload(&gw, &b_key, "fine-tune", &training_file()).await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "fine_tuning_not_enabled", "{v}");
    assert_eq!(v["error"]["type"], "permission_error");
    assert_eq!(gw.get("/v1/fine_tuning/jobs", &b_key).await.status(), 403);
    assert_eq!(gw.get("/v1/files", &b_key).await.status(), 403);

    enable(&gw, &b, "").await;
    // Another purpose is refused naming `purpose`.
    let r = upload(&gw, &b_key, "assistants", &training_file()).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "purpose", "{v}");
    // Errors name the line.
    let ok = training_file();
    let first = ok.lines().next().unwrap();
    for (bad, line) in [
        (format!("{first}\n{{\"messages\": [{{\"role\": \"user\", \"content\": \"x\"}}]}}\n"), 2),
        (format!("{first}\n{first}\nnot json\n"), 3),
        (format!("{first}\n[1, 2]\n"), 2),
        (json!({"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}).to_string() + "\n", 1),
    ] {
        let r = upload(&gw, &b_key, "fine-tune", &bad).await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with(&format!("line {line}: ")), "{msg}");
    }
    // Another tenant's canary in the training text is refused, as in a chat call; nothing
    // reached the provider.
    let before = gw
        .mock
        .stats
        .requests_seen()
        .iter()
        .filter(|r| r.path == "/v1/files")
        .count();
    let leaking = format!(
        "{first}\n{}\n",
        json!({"prompt": format!("say {canary}"), "completion": "ok"})
    );
    let r = upload(&gw, &b_key, "fine-tune", &leaking).await;
    assert_eq!(r.status(), 400);
    let after = gw
        .mock
        .stats
        .requests_seen()
        .iter()
        .filter(|r| r.path == "/v1/files")
        .count();
    assert_eq!(before, after, "a refused file is not sent");

    // A job on a model whose provider cannot fine-tune is refused naming `model`.
    let file: Value = upload(&gw, &b_key, "fine-tune", &ok)
        .await
        .json()
        .await
        .unwrap();
    let file_id = file["id"].as_str().unwrap();
    let r = gw
        .post(
            "/v1/fine_tuning/jobs",
            &b_key,
            &json!({"model": "claude-test", "training_file": file_id}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "model", "{v}");

    // The failure path: the job fails, no model is registered, the failure is audited.
    let r = gw
        .post(
            "/v1/fine_tuning/jobs",
            &b_key,
            &json!({"model": "gpt-test", "training_file": file_id, "suffix": "mockfail"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let job: Value = r.json().await.unwrap();
    let done = until_finished(&gw, &b_key, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["fine_tuned_model"].is_null());
    let admin_key = gw.admin_key(&b).await;
    let acts = actions(&records(&gw, &admin_key).await);
    assert!(
        acts.iter().any(|a| a == "fine_tuning.job_failed"),
        "{acts:?}"
    );

    // The kill switch stops new jobs.
    gw.state
        .store()
        .platform(&TestGateway::admin())
        .set_limits(&b.id, None, Some(true))
        .await
        .unwrap();
    gw.wait_for_revision().await;
    let r = gw
        .post(
            "/v1/fine_tuning/jobs",
            &b_key,
            &json!({"model": "gpt-test", "training_file": file_id}),
        )
        .await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");
    gw.stop().await;
}
