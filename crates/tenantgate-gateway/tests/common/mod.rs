//! Test kit: a real gateway (`Server::bind` on 127.0.0.1:0, SQLite in a temp dir) in front of a
//! real mockllm, plus helpers to create tenants and keys the way the CLI does.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
#![allow(dead_code)]

pub mod browser;
pub mod idp;
pub mod skip;

use mockllm::{MockConfig, MockHandle};
use serde_json::Value;
use std::path::Path;
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, PlatformAdmin, Role, Tenant};
use tenantgate_gateway::config::{ModelConfig, ProviderConfig, ProviderKind};
use tenantgate_gateway::control::{create_key, KeySpec};
use tenantgate_gateway::identity::keys::ServerSecret;
use tenantgate_gateway::{AppState, Config, Server};

/// The current clock minute: rate windows are clock minutes, so a test that fills one checks
/// it did not straddle a boundary.
pub fn minute_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        / 60_000
}

pub const UPSTREAM_KEY: &str = "upstream-secret-key";

pub struct TestGateway {
    pub url: String,
    pub state: AppState,
    pub mock: MockHandle,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub config: Config,
    /// `/metrics`' own listener, when `[metrics] listen` is set.
    pub metrics_url: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// A provider of `kind` at `base_url`, its key read from `key_file`.
pub fn provider(
    name: &str,
    kind: ProviderKind,
    base_url: String,
    key_file: &Path,
) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        kind,
        base_url: Some(base_url),
        api_key_env: None,
        api_key_file: Some(key_file.to_path_buf()),
        api_version: (kind == ProviderKind::Azure).then(|| "2024-10-21".to_owned()),
        connect_timeout_ms: 2_000,
        request_timeout_ms: 30_000,
        read_timeout_ms: 30_000,
        pool_max_idle_per_host: 32,
        cache_salt: None,
    }
}

fn model(name: &str, provider: &str, upstream: &str) -> ModelConfig {
    ModelConfig {
        name: name.into(),
        provider: provider.into(),
        upstream_model: Some(upstream.into()),
        default_max_tokens: 512,
        pricing: None,
        ..Default::default()
    }
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The audit signing keys, as a verifier pins them (fetched with a tenant `key`).
    pub async fn audit_keys(&self, key: &str) -> Vec<tenantgate_audit::PublicKey> {
        let v: Value = self
            .get("/tenant/v1/audit/public-key", key)
            .await
            .json()
            .await
            .unwrap();
        serde_json::from_value(v["keys"].clone()).unwrap()
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> String {
        let mut r = self.http.get(format!("{}/metrics", self.url));
        if let Some(t) = &self.config.metrics.token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap().text().await.unwrap()
    }

    /// One unlabelled metric's value; panics when it is missing.
    pub async fn metric(&self, name: &str) -> u64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    /// Tenant A (`acme-rockets`) with a prompt, hence a canary: (A's canary, tenant B's
    /// member key, A's admin key). B (`globex`) has no prompt, so no canary of its own.
    pub async fn canary_and_other_tenant(&self) -> (String, String, String) {
        let (ta, _) = self
            .tenant("acme-rockets", &["gpt-test", "claude-test"], None)
            .await;
        let a_admin = self.admin_key(&ta).await;
        let r = self
            .post(
                "/tenant/v1/prompts/p/versions",
                &a_admin,
                &serde_json::json!({"template": "A's rules"}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let s: Value = self
            .get("/tenant/v1/prompt-settings", &a_admin)
            .await
            .json()
            .await
            .unwrap();
        let canary = s["canary"].as_str().unwrap().to_owned();
        let (_, b) = self
            .tenant("globex", &["gpt-test", "claude-test"], None)
            .await;
        self.wait_for_revision().await;
        (canary, b, a_admin)
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let mock = mockllm::start(
            "127.0.0.1:0".parse().unwrap(),
            MockConfig {
                chunks: 4,
                api_key: Some(UPSTREAM_KEY.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("upstream.key");
        std::fs::write(&key_file, format!("{UPSTREAM_KEY}\n")).unwrap();
        let base = mock.base_url();
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.secret_file = dir.path().join("server.secret");
        config.encryption.master_key_file = dir.path().join("master.key");
        config.audit.signing_key_file = dir.path().join("audit-signing.key");
        config.audit.witness_dir = dir.path().join("audit-witness");
        config.rag.index_dir = dir.path().join("indexes");
        config.server.max_body_bytes = 64 * 1024;
        config.server.shutdown_grace_secs = 1;
        config.database.url = format!("sqlite:{}", dir.path().join("tg.db").display());
        config.demo.bootstrap_tenant = false;
        let mut slow = provider(
            "mock-slow",
            ProviderKind::OpenaiCompatible,
            format!("{base}/v1"),
            &key_file,
        );
        slow.request_timeout_ms = 300;
        config.providers = vec![
            provider(
                "mock-openai",
                ProviderKind::OpenaiCompatible,
                format!("{base}/v1"),
                &key_file,
            ),
            provider(
                "mock-openai-official",
                ProviderKind::Openai,
                format!("{base}/v1"),
                &key_file,
            ),
            provider("mock-azure", ProviderKind::Azure, base.clone(), &key_file),
            provider(
                "mock-anthropic",
                ProviderKind::Anthropic,
                base.clone(),
                &key_file,
            ),
            slow,
        ];
        config.models = vec![
            model("gpt-test", "mock-openai", "gpt-upstream"),
            model("gpt-official", "mock-openai-official", "gpt-4o-2024-08-06"),
            model("azure-gpt", "mock-azure", "dep1"),
            model("claude-test", "mock-anthropic", "claude-upstream"),
            model("slow-gpt", "mock-slow", "slow"),
        ];
        tweak(&mut config);
        let server = Server::bind(config.clone()).await.unwrap();
        let url = format!("http://{}", server.local_addr());
        let metrics_url = server.metrics_addr().map(|a| format!("http://{a}"));
        let state = server.state();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        #[expect(
            clippy::disallowed_methods,
            reason = "the test drives the server from outside; its tasks are not server background work"
        )]
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        TestGateway {
            url,
            state,
            mock,
            dir,
            http: reqwest::Client::new(),
            config,
            metrics_url,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the test kit plays the CLI operator"
    )]
    pub fn admin() -> PlatformAdmin {
        PlatformAdmin::local_operator("test")
    }

    pub fn secret(&self) -> ServerSecret {
        ServerSecret::load_or_create(&self.config.server.secret_file).unwrap()
    }

    /// Creates a tenant and a member key, as `tenantgate tenant create` + `key create` would,
    /// then waits until the gateway serves them.
    pub async fn tenant(
        &self,
        slug: &str,
        models: &[&str],
        max_tokens: Option<u32>,
    ) -> (Tenant, String) {
        let admin = Self::admin();
        let t = self
            .state
            .store()
            .platform(&admin)
            .create_tenant(&NewTenant {
                slug: slug.into(),
                display_name: slug.into(),
                plan: PlanTier::Pro,
                isolation: IsolationTier::Namespace,
                allowed_models: models.iter().map(|m| m.to_string()).collect(),
                max_tokens_per_request: max_tokens,
            })
            .await
            .unwrap();
        let key = self.key(&t, None).await;
        (t, key)
    }

    /// A `tenant_admin` key for `t`.
    pub async fn admin_key(&self, t: &Tenant) -> String {
        let admin = Self::admin();
        let (_, key) = create_key(
            self.state.store(),
            &admin,
            &self.secret(),
            &t.id,
            KeySpec {
                role: Role::TenantAdmin,
                name: None,
                end_user: Some("alice".into()),
                expires_at_ms: None,
            },
        )
        .await
        .unwrap();
        self.wait_for_revision().await;
        key
    }

    pub async fn key(&self, t: &Tenant, expires_at_ms: Option<i64>) -> String {
        let admin = Self::admin();
        let (_, key) = create_key(
            self.state.store(),
            &admin,
            &self.secret(),
            &t.id,
            KeySpec {
                role: Role::Member,
                name: None,
                end_user: Some("end-user-1".into()),
                expires_at_ms,
            },
        )
        .await
        .unwrap();
        self.wait_for_revision().await;
        key
    }

    /// Waits until the gateway's snapshot caught up with the store (the reload loop's job).
    pub async fn wait_for_revision(&self) {
        let target = self.state.store().revision().await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.state.auth_revision() < target {
            assert!(
                std::time::Instant::now() < deadline,
                "gateway did not pick up revision {target}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_raw(&self, path: &str, key: &str, body: &'static str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// Stops the server and starts a new one on the same configuration and database (a
    /// restart of the process, minus the process).
    pub async fn restart(mut self) -> Self {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let mut config = self.config.clone();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        let server = Server::bind(config.clone()).await.unwrap();
        let url = format!("http://{}", server.local_addr());
        let state = server.state();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        #[expect(
            clippy::disallowed_methods,
            reason = "the test drives the server from outside; its tasks are not server background work"
        )]
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        TestGateway {
            url,
            state,
            shutdown: Some(tx),
            task: Some(task),
            config,
            ..self
        }
    }

    /// Stops the server and hands back its directory (database, keys) for inspection.
    pub async fn stop_keeping_files(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.dir
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Data payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_owned)
        })
        .collect()
}

/// (event, data) pairs of an SSE body.
pub fn sse_events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter(|ev| !ev.trim().is_empty())
        .map(|ev| {
            let event = ev
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default()
                .to_owned();
            let data = ev
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_default()
                .to_owned();
            (event, data)
        })
        .collect()
}

pub fn chat(model: &str, text: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}
