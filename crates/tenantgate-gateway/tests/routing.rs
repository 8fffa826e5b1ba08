//! Resilient routing (issue 19): a model's targets across providers and regions, retries with
//! jittered backoff, a circuit breaker per endpoint, provider drains, the route policy's
//! fallback model, and the 503 with a retry hint when nothing can serve a call. Each fault is
//! injected for real: the regions are separate mock provider servers whose outage is switched
//! on and off while the gateway runs (`mockllm::Stats::outage`), and each test counts the
//! requests every region actually received.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::idp::{self, Idp};
use common::{chat, provider, sse_data, sse_events, TestGateway, UPSTREAM_KEY};
use mockllm::{MockConfig, MockHandle};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tenantgate_gateway::config::{
    Config, ModelConfig, Pricing, ProviderKind, Strategy, TargetConfig,
};

async fn region() -> MockHandle {
    mockllm::start(
        "127.0.0.1:0".parse().unwrap(),
        MockConfig {
            chunks: 3,
            api_key: Some(UPSTREAM_KEY.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn requests(m: &MockHandle) -> u64 {
    m.stats.requests.load(Ordering::Relaxed)
}

fn outage(m: &MockHandle, status: u64) {
    m.stats.outage.store(status, Ordering::Relaxed);
}

/// Three regions: `east` and `west` serve `ha-gpt` (OpenAI wire) in that order, with
/// `claude-test` (the default mock, Anthropic wire) as the fallback; `ha-solo` has the same
/// two regions and no fallback; `ha-priced` is priced differently per region.
struct Regions {
    gw: TestGateway,
    east: MockHandle,
    west: MockHandle,
    key: String,
    admin: String,
    platform: String,
    _idp: Idp,
}

async fn regions(tweak: impl FnOnce(&mut Config) + Send + 'static) -> Regions {
    let east = region().await;
    let west = region().await;
    let (e, w) = (east.base_url(), west.base_url());
    let idp = Idp::start(&["rsa1"]).await;
    let mut oidc = idp.config();
    oidc.platform_admins = true;
    let gw = TestGateway::start_with(move |c| {
        c.auth.oidc = vec![oidc];
        let key_file = c.providers[0].api_key_file.clone().unwrap();
        c.providers.push(provider(
            "east",
            ProviderKind::OpenaiCompatible,
            format!("{e}/v1"),
            &key_file,
        ));
        c.providers.push(provider(
            "west",
            ProviderKind::OpenaiCompatible,
            format!("{w}/v1"),
            &key_file,
        ));
        c.providers.push(provider(
            "west-anthropic",
            ProviderKind::Anthropic,
            w.clone(),
            &key_file,
        ));
        let west_target = |provider: &str, pricing| TargetConfig {
            provider: provider.into(),
            upstream_model: None,
            weight: 1,
            pricing,
        };
        c.models.push(ModelConfig {
            name: "ha-gpt".into(),
            provider: "east".into(),
            upstream_model: Some("gpt-upstream".into()),
            targets: vec![west_target("west", None)],
            fallback: Some("claude-test".into()),
            ..Default::default()
        });
        c.models.push(ModelConfig {
            name: "ha-solo".into(),
            provider: "east".into(),
            upstream_model: Some("gpt-upstream".into()),
            // The second region speaks the other wire: failover translates.
            targets: vec![west_target("west-anthropic", None)],
            ..Default::default()
        });
        c.models.push(ModelConfig {
            name: "ha-priced".into(),
            provider: "east".into(),
            pricing: Some(Pricing {
                input_per_mtok: 50_000_000,
                output_per_mtok: 50_000_000,
                cached_input_per_mtok: 0,
                ..Default::default()
            }),
            targets: vec![west_target(
                "west",
                Some(Pricing {
                    input_per_mtok: 1_000_000,
                    output_per_mtok: 1_000_000,
                    cached_input_per_mtok: 0,
                    ..Default::default()
                }),
            )],
            ..Default::default()
        });
        c.routing.backoff_base_ms = 5;
        c.routing.backoff_max_ms = 20;
        tweak(c);
    })
    .await;
    let (t, key) = gw
        .tenant(
            "acme",
            &["ha-gpt", "ha-solo", "ha-priced", "claude-test"],
            None,
        )
        .await;
    let admin = gw.admin_key(&t).await;
    let platform = idp::mint("rsa1", &idp.claims("ops", None, &["platform_admin"]));
    Regions {
        gw,
        east,
        west,
        key,
        admin,
        platform,
        _idp: idp,
    }
}

impl Regions {
    /// The call's audit record, by its request id.
    async fn record(&self, resp: &reqwest::Response) -> Value {
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        self.record_of(&id).await
    }

    async fn record_of(&self, id: &str) -> Value {
        let page: Value = self
            .gw
            .get("/tenant/v1/audit/records?limit=200", &self.admin)
            .await
            .json()
            .await
            .unwrap();
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["record"].clone())
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no record {id}: {page}"))
    }

    async fn routing(&self) -> Value {
        let r = self
            .gw
            .http
            .get(format!("{}/admin/v1/routing", self.gw.url))
            .bearer_auth(&self.platform)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    fn circuit<'a>(v: &'a Value, endpoint: &str) -> &'a str {
        v["circuits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["endpoint"] == endpoint)
            .map_or("closed", |c| c["state"].as_str().unwrap())
    }

    async fn stop(self) {
        self.gw.stop().await;
        self.east.stop().await;
        self.west.stop().await;
    }
}

fn messages(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

/// The body of a streamed answer, read whole.
async fn text(r: reqwest::Response) -> String {
    r.text().await.unwrap()
}

#[tokio::test]
async fn a_failed_region_fails_over_on_both_wires_plain_and_streamed_and_is_recorded() {
    let r = regions(|_| {}).await;
    outage(&r.east, 503);
    let east0 = requests(&r.east);
    // OpenAI wire, plain.
    let resp =
        r.gw.post(
            "/v1/chat/completions",
            &r.key,
            &chat("ha-gpt", "hello east"),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let rec = r.record(&resp).await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "mock reply to: hello east"
    );
    assert_eq!(rec["model"]["provider"], "west", "{rec}");
    let attempts = rec["detail"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{rec}");
    assert_eq!(attempts[0]["provider"], "east");
    assert_eq!(attempts[0]["outcome"], "upstream_error");
    assert_eq!(attempts[1]["outcome"], "ok");
    // OpenAI wire, streamed.
    let mut s = chat("ha-gpt", "stream east");
    s["stream"] = json!(true);
    let resp = r.gw.post("/v1/chat/completions", &r.key, &s).await;
    assert_eq!(resp.status(), 200);
    let body = text(resp).await;
    let joined: String = sse_data(&body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(joined, "mock reply to: stream east");
    // Anthropic wire to an OpenAI-wire model (translated), plain and streamed; and the
    // model whose second region speaks Anthropic: OpenAI caller, failover translates.
    let resp =
        r.gw.post(
            "/v1/messages",
            &r.key,
            &messages("ha-gpt", "hi there", false),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "mock reply to: hi there");
    let resp =
        r.gw.post(
            "/v1/messages",
            &r.key,
            &messages("ha-gpt", "hi stream", true),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(&text(resp).await);
    assert_eq!(events.last().unwrap().0, "message_stop", "{events:?}");
    let resp =
        r.gw.post(
            "/v1/chat/completions",
            &r.key,
            &chat("ha-solo", "cross wire"),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let rec = r.record(&resp).await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply to: cross wire"
    );
    assert_eq!(rec["model"]["provider"], "west-anthropic");
    // East saw every call (and refused it); west answered them.
    assert_eq!(requests(&r.east) - east0, 5);
    r.stop().await;
}

#[tokio::test]
async fn retries_back_off_on_the_same_region_before_failing_over() {
    let r = regions(|c| c.routing.retries = 2).await;
    outage(&r.east, 500);
    let (e0, w0) = (requests(&r.east), requests(&r.west));
    let resp =
        r.gw.post("/v1/chat/completions", &r.key, &chat("ha-gpt", "retry me"))
            .await;
    assert_eq!(resp.status(), 200);
    // One attempt and two retries at east, then west.
    assert_eq!(requests(&r.east) - e0, 3);
    assert_eq!(requests(&r.west) - w0, 1);
    let rec = r.record(&resp).await;
    assert_eq!(
        rec["detail"]["attempts"].as_array().unwrap().len(),
        4,
        "{rec}"
    );
    // A 4xx about the request is the answer: not retried, not failed over.
    outage(&r.east, 0);
    let (e0, w0) = (requests(&r.east), requests(&r.west));
    let resp =
        r.gw.post(
            "/v1/chat/completions",
            &r.key,
            &chat("ha-gpt", "bad mock:status=400"),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!((requests(&r.east) - e0, requests(&r.west) - w0), (1, 0));
    r.stop().await;
}

#[tokio::test]
async fn nothing_is_retried_after_the_first_streamed_byte() {
    let r = regions(|c| c.routing.retries = 2).await;
    let (e0, w0) = (requests(&r.east), requests(&r.west));
    let mut s = chat("ha-gpt", "a b c d e f mock:drop_after=2");
    s["stream"] = json!(true);
    let resp = r.gw.post("/v1/chat/completions", &r.key, &s).await;
    assert_eq!(resp.status(), 200);
    let body = text(resp).await;
    // The client got the first pieces, then the failure in the stream, from east alone.
    assert!(body.contains("\"error\""), "{body}");
    assert_eq!(requests(&r.east) - e0, 1);
    assert_eq!(requests(&r.west) - w0, 0);
    // The same on the Anthropic wire (translated stream).
    let resp =
        r.gw.post(
            "/v1/messages",
            &r.key,
            &messages("ha-gpt", "a b c d e f mock:stream_error_after=3", true),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(&text(resp).await);
    assert!(events.iter().any(|(e, _)| e == "error"), "{events:?}");
    assert_eq!(requests(&r.east) - e0, 2);
    assert_eq!(requests(&r.west) - w0, 0);
    r.stop().await;
}

#[tokio::test]
async fn the_breaker_opens_skips_the_region_then_a_probe_closes_it() {
    let r = regions(|c| {
        c.routing.breaker_failures = 2;
        c.routing.breaker_open_ms = 300;
    })
    .await;
    outage(&r.east, 502);
    let e0 = requests(&r.east);
    for i in 0..2 {
        let resp =
            r.gw.post(
                "/v1/chat/completions",
                &r.key,
                &chat("ha-gpt", &format!("trip {i}")),
            )
            .await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(requests(&r.east) - e0, 2);
    let v = r.routing().await;
    assert_eq!(Regions::circuit(&v, "east"), "open", "{v}");
    // Open: east is not called at all; west serves, and the record says why east was skipped.
    let resp =
        r.gw.post(
            "/v1/chat/completions",
            &r.key,
            &chat("ha-gpt", "while open"),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(requests(&r.east) - e0, 2);
    let rec = r.record(&resp).await;
    assert_eq!(
        rec["detail"]["attempts"][0]["outcome"], "circuit_open",
        "{rec}"
    );
    // East recovers; once the circuit's time is up one probe goes there and closes it.
    outage(&r.east, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp =
            r.gw.post("/v1/chat/completions", &r.key, &chat("ha-gpt", "probe"))
                .await;
        assert_eq!(resp.status(), 200);
        if requests(&r.east) - e0 == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no probe reached east");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = r.routing().await;
    assert_eq!(Regions::circuit(&v, "east"), "closed", "{v}");
    // Visible to platform admins only (the matrix covers the rest): a tenant key is refused.
    let resp = r.gw.get("/admin/v1/routing", &r.admin).await;
    assert_eq!(resp.status(), 403);
    r.stop().await;
}

#[tokio::test]
async fn a_frozen_fallback_model_is_not_taken() {
    let r = regions(|_| {}).await;
    outage(&r.east, 503);
    outage(&r.west, 503);
    // The incident hold on claude-test: ha-gpt's fallback is claude-test, so the call that
    // would have reached it is not served by it.
    let resp =
        r.gw.http
            .post(format!("{}/admin/v1/incidents/freezes", r.gw.url))
            .bearer_auth(&r.platform)
            .json(&json!({"model": "claude-test", "reason": "INC-7 suspect model"}))
            .send()
            .await
            .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let freeze: Value = resp.json().await.unwrap();
    let resp =
        r.gw.post("/v1/chat/completions", &r.key, &chat("ha-gpt", "anyone"))
            .await;
    assert_eq!(resp.status(), 503, "{}", resp.text().await.unwrap());
    let direct =
        r.gw.post(
            "/v1/chat/completions",
            &r.key,
            &chat("claude-test", "anyone"),
        )
        .await;
    assert_eq!(direct.status(), 403);
    // Lifted: the fallback serves again.
    let id = freeze["id"].as_str().unwrap();
    let resp =
        r.gw.http
            .delete(format!("{}/admin/v1/incidents/freezes/{id}", r.gw.url))
            .bearer_auth(&r.platform)
            .send()
            .await
            .unwrap();
    assert!(resp.status().is_success());
    let resp =
        r.gw.post("/v1/chat/completions", &r.key, &chat("ha-gpt", "anyone"))
            .await;
    assert_eq!(resp.status(), 200);
    r.stop().await;
}

#[tokio::test]
async fn with_every_region_down_the_fallback_serves_and_without_one_a_503_says_when_to_retry() {
    let r = regions(|_| {}).await;
    outage(&r.east, 503);
    outage(&r.west, 503);
    // ha-gpt falls back to claude-test (the Anthropic wire, on the default mock).
    let resp =
        r.gw.post("/v1/chat/completions", &r.key, &chat("ha-gpt", "anyone"))
            .await;
    assert_eq!(resp.status(), 200);
    let rec = r.record(&resp).await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply to: anyone"
    );
    assert_eq!(v["model"], "ha-gpt", "the caller's model name is kept");
    assert_eq!(rec["model"]["provider"], "mock-anthropic", "{rec}");
    assert_eq!(rec["model"]["requested"], "ha-gpt");
    // ha-solo has no fallback: a 503 in each wire's shape, with Retry-After.
    let resp =
        r.gw.post("/v1/chat/completions", &r.key, &chat("ha-solo", "anyone"))
            .await;
    assert_eq!(resp.status(), 503);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(resp.headers()["x-should-retry"], "true");
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "upstream_unavailable", "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("ha-solo"),
        "{e}"
    );
    let resp =
        r.gw.post("/v1/messages", &r.key, &messages("ha-solo", "anyone", true))
            .await;
    assert_eq!(resp.status(), 503);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "overloaded_error", "{e}");
    r.stop().await;
}

#[tokio::test]
async fn a_drained_provider_gets_no_calls_until_it_is_put_back() {
    let r = regions(|_| {}).await;
    let drain = |method: reqwest::Method| {
        r.gw.http
            .request(method, format!("{}/admin/v1/routing/drains/east", r.gw.url))
            .bearer_auth(&r.platform)
    };
    let resp = drain(reqwest::Method::PUT)
        .json(&json!({"reason": "east region incident"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let e0 = requests(&r.east);
    let mut s = chat("ha-gpt", "drained");
    for stream in [false, true] {
        s["stream"] = json!(stream);
        let resp = r.gw.post("/v1/chat/completions", &r.key, &s).await;
        assert_eq!(resp.status(), 200);
        let rec_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let _ = text(resp).await;
        let rec = r.record_of(&rec_id).await;
        assert_eq!(rec["detail"]["attempts"][0]["outcome"], "drained", "{rec}");
    }
    // Embeddings never fail over (another model's vectors are not comparable): a drained
    // provider's embedding model answers 503 with a retry hint, and nothing is sent there.
    let resp =
        r.gw.post(
            "/v1/embeddings",
            &r.key,
            &json!({"model": "ha-gpt", "input": "x"}),
        )
        .await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "upstream_unavailable", "{e}");
    // A model whose next target speaks the other wire: the request is prepared for it, not
    // the drained first target's sent there.
    let resp =
        r.gw.post(
            "/v1/chat/completions",
            &r.key,
            &chat("ha-solo", "skip to west"),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply to: skip to west"
    );
    let last = r.west.stats.last_request().unwrap();
    assert_eq!(last.path, "/v1/messages", "{last:?}");
    assert_eq!(last.body["model"], "gpt-upstream");
    assert_eq!(requests(&r.east), e0);
    let v = r.routing().await;
    let east = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "east")
        .unwrap();
    assert_eq!(east["drain"]["reason"], "east region incident", "{v}");
    // A drain that names no configured provider is a 404, and one with no reason a 400.
    let resp =
        r.gw.http
            .put(format!("{}/admin/v1/routing/drains/nowhere", r.gw.url))
            .bearer_auth(&r.platform)
            .json(&json!({"reason": "x"}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = drain(reqwest::Method::PUT)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Put back: east serves again.
    let resp = drain(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp =
        r.gw.post("/v1/chat/completions", &r.key, &chat("ha-gpt", "back"))
            .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(requests(&r.east), e0 + 1);
    // Both steps are in the platform's chain.
    let export =
        r.gw.http
            .get(format!("{}/admin/v1/audit/export", r.gw.url))
            .bearer_auth(&r.platform)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert!(
        export.contains("provider.drain") && export.contains("provider.undrain"),
        "{export}"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_call_is_admitted_at_its_dearest_target_and_settled_at_the_one_that_answered() {
    let r = regions(|_| {}).await;
    outage(&r.east, 503);
    let resp =
        r.gw.post(
            "/v1/chat/completions",
            &r.key,
            &chat("ha-priced", "one two three four"),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let rec = r.record(&resp).await;
    let body: Value = resp.json().await.unwrap();
    let tokens = body["usage"]["prompt_tokens"].as_u64().unwrap()
        + body["usage"]["completion_tokens"].as_u64().unwrap();
    // West's price: 1 USD per million tokens = 1 micro-dollar per token.
    assert_eq!(rec["cost_micros"].as_u64().unwrap(), tokens, "{rec}");
    r.stop().await;
}

#[tokio::test]
async fn weighted_targets_share_the_traffic() {
    let r = regions(|c| {
        let m = c.models.iter_mut().find(|m| m.name == "ha-gpt").unwrap();
        m.strategy = Strategy::Weighted;
    })
    .await;
    let (e0, w0) = (requests(&r.east), requests(&r.west));
    for i in 0..40 {
        let resp =
            r.gw.post(
                "/v1/chat/completions",
                &r.key,
                &chat("ha-gpt", &format!("spread {i}")),
            )
            .await;
        assert_eq!(resp.status(), 200);
    }
    let (e, w) = (requests(&r.east) - e0, requests(&r.west) - w0);
    assert_eq!(e + w, 40);
    // 1:1 over 40 calls: fewer than 6 on either side has a chance below one in 10^6.
    assert!(e >= 6 && w >= 6, "east {e}, west {w}");
    r.stop().await;
}

#[tokio::test]
async fn a_drain_made_on_one_replica_reaches_the_others() {
    let r = regions(|_| {}).await;
    let config = r.gw.config.clone();
    let elsewhere = tempfile::tempdir().unwrap();
    let index_dir = elsewhere.path().join("indexes");
    // A second replica: the same database, secrets and providers, its own index files.
    let b = TestGateway::start_with(move |c| {
        *c = config;
        c.rag.index_dir = index_dir;
    })
    .await;
    b.wait_for_revision().await;
    let body = chat("ha-gpt", "which region");
    let call = || b.post("/v1/chat/completions", &r.key, &body);
    let e0 = requests(&r.east);
    assert_eq!(call().await.status(), 200);
    assert_eq!(requests(&r.east), e0 + 1, "before the drain, east serves");
    // Drained through replica A's admin API.
    let resp =
        r.gw.http
            .put(format!("{}/admin/v1/routing/drains/east", r.gw.url))
            .bearer_auth(&r.platform)
            .json(&json!({"reason": "region incident"}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = requests(&r.east);
        assert_eq!(call().await.status(), 200);
        if requests(&r.east) == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica B still sends to the drained provider"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e1 = requests(&r.east);
    for _ in 0..5 {
        assert_eq!(call().await.status(), 200);
    }
    assert_eq!(requests(&r.east), e1);
    b.stop().await;
    r.stop().await;
}
