//! Isolation tiers on a live deployment: three `tenantgate serve` replicas on PostgreSQL and
//! Redis, one tenant per tier (namespace, schema, dedicated database). Each tenant makes chat
//! calls through every replica and uploads a knowledge-base document; then PostgreSQL itself
//! is asked where each tenant's rows are: audit records, chunks and keys of the namespace
//! tenant in the shared tables only, the schema tenant's in its schema only, the dedicated
//! tenant's in its own database only.
//!
//! Then the namespace tenant moves to the schema tier with `tenantgate tenant move` while
//! calls keep coming through all three replicas: every call answers 200, every call's record
//! is in the tenant's chain afterwards (by request id), the exported chain verifies under the
//! gateway's key, and the shared tables keep nothing of the tenant's.
//!
//! Needs `TENANTGATE_TEST_POSTGRES_URL` and `TENANTGATE_TEST_REDIS_URL` (skipped without).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{cli_json, serve_with, terminate};
use rand::Rng;
use serde_json::{json, Value};
use sqlx::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

const DATA_TABLES: &[&str] = &[
    "tenant_keks",
    "tenant_data_keys",
    "kb_documents",
    "kb_chunks",
    "audit_heads",
    "audit_records",
    "audit_bodies",
    "audit_checkpoints",
];

/// Rows per data table: of `tenant`, and of anyone else, in `schema` of `conn`'s database.
async fn counts(
    conn: &mut sqlx::PgConnection,
    schema: &str,
    tenant: &str,
) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for t in DATA_TABLES {
        let (own, other): (i64, i64) = sqlx::query_as(&format!(
            "SELECT COUNT(*) FILTER (WHERE tenant_id = $1), COUNT(*) FILTER (WHERE tenant_id <> $1) \
             FROM {schema}.{t}"
        ))
        .bind(tenant)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        out.push((t.to_string(), own, other));
    }
    out
}

fn expect(c: &[(String, i64, i64)], what: &str, own_rows: bool, others: bool) {
    for (t, own, other) in c {
        // Checkpoints are signed on the writer's interval; bodies need a body policy.
        if own_rows && !matches!(t.as_str(), "audit_checkpoints" | "audit_bodies") {
            assert!(*own > 0, "{what}: none of the tenant's rows in {t}");
        }
        if !own_rows {
            assert_eq!(*own, 0, "{what}: the tenant's rows in {t}");
        }
        if !others {
            assert_eq!(*other, 0, "{what}: another tenant's rows in {t}");
        }
    }
}

async fn chat(http: &reqwest::Client, url: &str, key: &str, n: usize) -> (u16, String) {
    let r = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "demo", "max_tokens": 16,
            "messages": [{"role": "user", "content": format!("question {n}")}]}))
        .send()
        .await
        .unwrap();
    let id = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (r.status().as_u16(), id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_keep_each_tiers_rows_in_place_and_move_a_tenant_under_load() {
    let Some(pg) = common::skip::backend_url("TENANTGATE_TEST_POSTGRES_URL") else {
        return;
    };
    let Some(redis) = common::skip::backend_url("TENANTGATE_TEST_REDIS_URL") else {
        return;
    };
    let tag = format!("{:016x}", rand::thread_rng().gen::<u64>());
    let schema = format!("tg_tiers_{tag}");
    let ded_db = format!("tg_ded_{tag}");
    let mut owner = sqlx::PgConnection::connect(&pg).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {ded_db}"))
        .execute(&mut owner)
        .await
        .unwrap();
    let base = pg.rsplit_once('/').unwrap().0.to_owned();
    let ded_url = format!("{base}/{ded_db}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tenantgate.toml"),
        format!(
            r#"
[database]
url = "{pg}"
pg_schema = "{schema}"
[demo]
enabled = true
bootstrap_tenant = false
[limits]
backend = "redis"
redis_url = "{redis}"
redis_prefix = "tgtest:{tag}:"
"#
        ),
    )
    .unwrap();
    let cfg = dir.path().join("tenantgate.toml");
    let cfg = cfg.to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut all = vec!["--config", cfg];
        all.extend_from_slice(args);
        cli_json(dir.path(), &all)
    };
    let ns = cli(&["tenant", "create", "--slug", "ns", "--plan", "enterprise"]);
    let sch = cli(&[
        "tenant",
        "create",
        "--slug",
        "sch",
        "--plan",
        "enterprise",
        "--isolation",
        "schema",
    ]);
    let ded = cli(&[
        "tenant",
        "create",
        "--slug",
        "ded",
        "--plan",
        "enterprise",
        "--isolation",
        "dedicated",
        "--database",
        &ded_url,
    ]);
    let mut keys = Vec::new();
    for slug in ["ns", "sch", "ded"] {
        let k = cli(&["key", "create", "--tenant", slug, "--role", "tenant_admin"]);
        keys.push(k["key"].as_str().unwrap().to_owned());
    }
    // `tenant show`: where each layer is.
    let show = cli(&["tenant", "show", "sch"]);
    assert_eq!(show["placement"]["tier"], "schema", "{show}");
    let sch_schema = show["placement"]["place"]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        cli(&["tenant", "show", "ded"])["placement"]["tier"],
        "dedicated"
    );
    assert_eq!(
        cli(&["tenant", "show", "ns"])["placement"]["tier"],
        "namespace"
    );

    let mut replicas = Vec::new();
    for i in 0..3 {
        let idx = dir.path().join(format!("indexes-{i}"));
        let wit = dir.path().join(format!("witness-{i}"));
        let env = [
            ("TENANTGATE_CONFIG", cfg),
            ("TENANTGATE_RAG__INDEX_DIR", idx.to_str().unwrap()),
            ("TENANTGATE_AUDIT__WITNESS_DIR", wit.to_str().unwrap()),
        ];
        replicas.push(serve_with(dir.path(), &env).await);
    }
    let urls: Vec<String> = replicas.iter().map(|r| r.1.clone()).collect();
    let http = reqwest::Client::new();
    for (t, key) in keys.iter().enumerate() {
        let r = http
            .post(format!("{}/tenant/v1/knowledge-bases", urls[t % 3]))
            .bearer_auth(key)
            .json(&json!({"name": "handbook", "chunk_tokens": 32, "default": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let r = http
            .post(format!(
                "{}/tenant/v1/knowledge-bases/handbook/documents?name=policy.md",
                urls[(t + 1) % 3]
            ))
            .bearer_auth(key)
            .header("content-type", "text/markdown")
            .body("# Refunds\n\nRefunds are paid within fourteen days.\n\n# Shipping\n\nParcels leave on Mondays.\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        for (i, url) in urls.iter().enumerate() {
            assert_eq!(chat(&http, url, key, i).await.0, 200);
        }
    }

    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let (ns_id, sch_id, ded_id) = (id(&ns), id(&sch), id(&ded));
    // The shared schema: the namespace tenant's rows only.
    expect(
        &counts(&mut owner, &schema, &ns_id).await,
        "shared/ns",
        true,
        true,
    );
    expect(
        &counts(&mut owner, &schema, &sch_id).await,
        "shared/sch",
        false,
        true,
    );
    expect(
        &counts(&mut owner, &schema, &ded_id).await,
        "shared/ded",
        false,
        true,
    );
    // The schema tenant's schema: its rows and nobody else's.
    expect(
        &counts(&mut owner, &sch_schema, &sch_id).await,
        "schema/sch",
        true,
        false,
    );
    // The dedicated database: its rows and nobody else's; the shared database has no such
    // schema's rows of it (above) and the dedicated one no other tenant's.
    let mut ded_conn = sqlx::PgConnection::connect(&ded_url).await.unwrap();
    expect(
        &counts(&mut ded_conn, &schema, &ded_id).await,
        "dedicated/ded",
        true,
        false,
    );
    ded_conn.close().await.unwrap();

    // The namespace tenant moves to the schema tier while calls keep coming.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for w in 0..6usize {
        let (http, urls, key, stop) = (http.clone(), urls.clone(), keys[0].clone(), stop.clone());
        #[expect(
            clippy::disallowed_methods,
            reason = "the test drives the server from outside; its tasks are not server background work"
        )]
        load.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut n = w;
            while !stop.load(Ordering::Relaxed) {
                let (status, id) = chat(&http, &urls[n % 3], &key, n).await;
                assert_eq!(status, 200, "a call failed during the move");
                ids.push(id);
                n += 6;
            }
            ids
        }));
    }
    // Let the load run before, during and after the move.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = Instant::now();
    let (dir2, cfg2) = (dir.path().to_owned(), cfg.to_owned());
    let moved = tokio::task::spawn_blocking(move || {
        cli_json(
            &dir2,
            &["--config", &cfg2, "tenant", "move", "ns", "--to", "schema"],
        )
    })
    .await
    .unwrap();
    let move_ms = started.elapsed().as_millis();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut ids = Vec::new();
    for t in load {
        ids.extend(t.await.unwrap());
    }
    eprintln!(
        "moved ns to the schema tier in {move_ms} ms under {} calls (fenced {} ms, copy {} ms)",
        ids.len(),
        moved["switch"]["fenced_ms"],
        moved["copy_ms"]
    );
    assert!(ids.len() > 10, "too little load: {}", ids.len());
    let ns_schema = cli(&["tenant", "show", "ns"])["placement"]["place"]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    // Every call's record is in the chain, at its new place; none is left in the shared tables.
    let found: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT request_id FROM {ns_schema}.audit_records WHERE tenant_id = $1"
    ))
    .bind(&ns_id)
    .fetch_all(&mut owner)
    .await
    .unwrap();
    let found: std::collections::HashSet<String> = found.into_iter().collect();
    let missing: Vec<&String> = ids.iter().filter(|i| !found.contains(*i)).collect();
    assert!(
        missing.is_empty(),
        "{} calls have no record: {missing:?}",
        missing.len()
    );
    expect(
        &counts(&mut owner, &schema, &ns_id).await,
        "shared/ns after the move",
        false,
        true,
    );
    expect(
        &counts(&mut owner, &ns_schema, &ns_id).await,
        "schema/ns after the move",
        true,
        false,
    );

    // The chain verifies across the move, under the gateway's pinned key.
    let export = http
        .get(format!("{}/tenant/v1/audit/export?format=jsonl", urls[2]))
        .bearer_auth(&keys[0])
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    let path = dir.path().join("ns.jsonl");
    std::fs::write(&path, export.bytes().await.unwrap()).unwrap();
    let pk = cli(&["audit", "public-key"])["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = cli_json(
        dir.path(),
        &[
            "audit",
            "verify",
            path.to_str().unwrap(),
            "--public-key",
            &pk,
        ],
    );
    assert_eq!(v["valid"], true, "{v}");

    for r in &mut replicas {
        terminate(&mut r.0).await;
    }
    for s in [&schema, &sch_schema, &ns_schema] {
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
            .execute(&mut owner)
            .await;
    }
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {ded_db} WITH (FORCE)"))
        .execute(&mut owner)
        .await;
}
