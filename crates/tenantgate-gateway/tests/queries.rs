//! A warm chat call, knowledge-base retrieval included, makes no database query outside the
//! audit writer (the call's record is the only database work it causes, and that is one group
//! commit shared with every other call).
//!
//! The counter is real: the store traces every statement at TRACE under target `sqlx::query`
//! (SQLite's worker thread enters the caller's span), and a layer installed for this test
//! binary counts each one, telling the audit writer's apart by the span the writer runs in
//! (`tenantgate_gateway::audit::WRITER_SPAN`). Background loops would query on their own
//! schedule, so the gateway runs with them far apart and the test reloads its snapshot itself:
//! every statement outside the writer in the measured window is the calls'.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::TestGateway;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, Role};
use tenantgate_gateway::control::{create_key, KeySpec};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Statements seen: outside the audit writer (their SQL summaries) and inside it (a count).
#[derive(Default)]
struct Seen {
    outside: Vec<String>,
    writer: u64,
}

#[derive(Clone, Default)]
struct Queries(Arc<Mutex<Seen>>);

impl Queries {
    /// Whether a statement outside the writer containing `text` was seen (nothing is taken).
    fn seen(&self, text: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .outside
            .iter()
            .any(|q| q.contains(text))
    }

    fn take(&self) -> Seen {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The statement's text, as sqlx reports it.
struct Statement(String);

impl Visit for Statement {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "db.statement" || (field.name() == "summary" && self.0.is_empty()) {
            self.0 = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "db.statement" || (field.name() == "summary" && self.0.is_empty()) {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S> Layer<S> for Queries
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let in_writer = ctx.event_scope(event).is_some_and(|mut scope| {
            scope.any(|s| s.name() == tenantgate_gateway::audit::WRITER_SPAN)
        });
        let mut seen = self.0.lock().unwrap();
        if in_writer {
            seen.writer += 1;
        } else {
            let mut text = Statement(String::new());
            event.record(&mut text);
            seen.outside
                .push(text.0.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
}

fn install() -> Queries {
    let queries = Queries::default();
    let only = tracing_subscriber::filter::filter_fn(|m| {
        m.target() == "sqlx::query" || m.name() == tenantgate_gateway::audit::WRITER_SPAN
    });
    let subscriber = tracing_subscriber::registry().with(queries.clone().with_filter(only));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    queries
}

#[tokio::test]
async fn a_warm_chat_with_retrieval_queries_nothing_outside_the_audit_writer() {
    // Installed before the gateway starts, so every statement's callsite sees it.
    let queries = install();
    let gw = TestGateway::start_with(|c| {
        // No background loop queries inside the measured window: the snapshot is reloaded by
        // this test (and by the handlers that change it), key maintenance and retention run
        // once at start.
        c.auth.reload_interval_ms = 3_600_000;
        c.encryption.maintenance_interval_secs = 3_600;
    })
    .await;
    // That first maintenance tick runs on its own task: wait for its last statement (the
    // console-session sweep), or a slow start lands it inside the measured window.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !queries.seen("DELETE FROM console_sessions") {
        assert!(
            std::time::Instant::now() < deadline,
            "the start-up maintenance tick did not run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let admin = TestGateway::admin();
    let t = gw
        .state
        .store()
        .platform(&admin)
        .create_tenant(&NewTenant {
            slug: "acme".into(),
            display_name: "acme".into(),
            plan: PlanTier::Pro,
            isolation: IsolationTier::Namespace,
            allowed_models: vec!["*".into()],
            max_tokens_per_request: None,
        })
        .await
        .unwrap();
    let mut keys = Vec::new();
    for role in [Role::TenantAdmin, Role::Member] {
        let spec = KeySpec {
            role,
            name: None,
            end_user: Some("end-user-1".into()),
            expires_at_ms: None,
        };
        let (_, key) = create_key(gw.state.store(), &admin, &gw.secret(), &t.id, spec)
            .await
            .unwrap();
        keys.push(key);
    }
    let (tenant_admin, key) = (&keys[0], &keys[1]);
    gw.state.reload_auth(false).await.unwrap();

    let r = gw
        .post(
            "/tenant/v1/knowledge-bases",
            tenant_admin,
            &json!({"name": "handbook", "chunk_tokens": 32, "default": true}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = gw
        .http
        .post(format!(
            "{}/tenant/v1/knowledge-bases/handbook/documents?name=handbook.md",
            gw.url
        ))
        .bearer_auth(tenant_admin)
        .header("content-type", "text/markdown")
        .body(
            "# Refunds\n\nAcme refunds are paid within fourteen days. The refund code is \
             ZEPHYR-RIVER-42.\n\n# Shipping\n\nParcels leave the Lisbon warehouse every Monday.\n",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    let openai = json!({"model": "gpt-test", "messages": [
        {"role": "user", "content": "What is the refund code?"}]});
    let anthropic = json!({"model": "claude-test", "max_tokens": 50,
        "messages": [{"role": "user", "content": "Which days do parcels leave?"}]});
    let call = |path: &'static str, body: Value| {
        let gw = &gw;
        async move {
            let r = gw.post(path, key, &body).await;
            assert_eq!(r.status(), 200, "{path}");
            assert!(
                r.headers().contains_key("x-tenantgate-sources"),
                "{path}: the call retrieved from the knowledge base"
            );
            r.text().await.unwrap();
        }
    };

    // Cold: the index is built from the stored chunks, so the counter sees queries (it is
    // not blind) and tells the writer's apart.
    queries.take();
    call("/v1/chat/completions", openai.clone()).await;
    call("/v1/messages", anthropic.clone()).await;
    let cold = queries.take();
    assert!(
        cold.outside.iter().any(|q| q.contains("kb_chunks")),
        "a cold retrieval reads the chunks: {:#?} (writer: {})",
        cold.outside,
        cold.writer
    );

    // Warm: nothing but the audit writer touches the database.
    for _ in 0..5 {
        call("/v1/chat/completions", openai.clone()).await;
        call("/v1/messages", anthropic.clone()).await;
    }
    let warm = queries.take();
    assert!(
        warm.outside.is_empty(),
        "warm chat calls with retrieval queried the database outside the audit writer: {:#?}",
        warm.outside
    );
    assert!(
        warm.writer > 0,
        "the calls' records were written, and the writer's statements were seen"
    );

    // A new document moves the knowledge base's revision. The replica that took the upload
    // adds it to the resident index in the upload request (it reads the new document's chunks:
    // the counter sees them there), so the very next call is warm and retrieves the new text.
    queries.take();
    let r = gw
        .http
        .post(format!(
            "{}/tenant/v1/knowledge-bases/handbook/documents?name=returns.md",
            gw.url
        ))
        .bearer_auth(tenant_admin)
        .header("content-type", "text/markdown")
        .body("# Returns\n\nReturns are accepted at the Porto depot with code AMBER-FJORD-7.\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let uploaded = queries.take();
    assert!(
        uploaded.outside.iter().any(|q| q.contains("kb_chunks")),
        "{:#?}",
        uploaded.outside
    );
    let returns = json!({"model": "gpt-test", "messages": [
        {"role": "user", "content": "Where are returns accepted, and with which code?"}]});
    call("/v1/chat/completions", returns).await;
    let context = gw.mock.stats.last_request().unwrap().body["messages"][0]["content"].clone();
    assert!(
        context.as_str().unwrap().contains("AMBER-FJORD-7"),
        "{context}"
    );
    assert!(queries.take().outside.is_empty());

    // The tenant's own provider endpoint: its first call after the change opens the sealed
    // endpoint (the counter sees the secret read), every call after that reads nothing.
    let own = mockllm::start(
        "127.0.0.1:0".parse().unwrap(),
        mockllm::MockConfig {
            api_key: Some("sk-acme-own".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    gw.state
        .keyring()
        .endpoints(gw.state.store(), &admin)
        .set(
            &t.id,
            "mock-openai",
            &tenantgate_gateway::control::EndpointSecret {
                base_url: format!("{}/v1", own.base_url()),
                api_key: "sk-acme-own".into(),
                api_version: None,
            },
        )
        .await
        .unwrap();
    gw.state.reload_auth(false).await.unwrap();
    queries.take();
    call("/v1/chat/completions", openai.clone()).await;
    let first = queries.take();
    assert!(
        first.outside.iter().any(|q| q.contains("tenant_secrets")),
        "{:#?}",
        first.outside
    );
    for _ in 0..5 {
        call("/v1/chat/completions", openai.clone()).await;
    }
    let warm = queries.take();
    assert!(
        warm.outside.is_empty(),
        "warm calls to the tenant's own endpoint queried the database: {:#?}",
        warm.outside
    );
    let chats = own
        .stats
        .requests_seen()
        .iter()
        .filter(|r| {
            r.path == "/v1/chat/completions" && r.headers["authorization"] == "Bearer sk-acme-own"
        })
        .count();
    assert_eq!(chats, 6, "the calls went to the tenant's own endpoint");
    own.stop().await;
    gw.stop().await;
}
