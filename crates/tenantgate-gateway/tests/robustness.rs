//! The edge against hostile and careless clients: oversize names bounded before they reach the
//! audit chain, a model of another tenant indistinguishable from an unknown one, 429s that
//! carry the rate-limit headers, stalled and oversize uploads cut off, media types enforced,
//! precise validation messages, and early refusals that keep a kept-alive connection.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, minute_now, TestGateway};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes of the SQLite database and its WAL: what a request can make the store grow by.
fn db_bytes(gw: &TestGateway) -> u64 {
    std::fs::read_dir(gw.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("tg.db"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[tokio::test]
async fn a_3mb_model_name_is_refused_short_and_reaches_no_storage() {
    let gw = TestGateway::start_with(|c| c.server.max_body_bytes = 8 * 1024 * 1024).await;
    let (t, key) = gw.tenant("acme", &["gpt-test", "claude-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let huge = "m".repeat(3 * 1024 * 1024);
    // One normal call first, so the store has its steady-state pages.
    assert_eq!(
        gw.post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
            .await
            .status(),
        200
    );
    let before = db_bytes(&gw);
    let bodies = [
        ("/v1/chat/completions", chat(&huge, "hi")),
        (
            "/v1/messages",
            json!({"model": huge, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        ("/v1/embeddings", json!({"model": huge, "input": "hi"})),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-test", "user": huge, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-test", "metadata": {"k": huge}, "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ];
    for i in 0..10 {
        let (path, body) = &bodies[i % bodies.len()];
        let r = gw.post(path, &key, body).await;
        assert_eq!(r.status(), 400, "{path}");
        let text = r.text().await.unwrap();
        assert!(
            text.len() < 1024,
            "the refusal echoes the input: {} bytes",
            text.len()
        );
        assert!(!text.contains(&"m".repeat(100)), "{text}");
    }
    let grown = db_bytes(&gw).saturating_sub(before);
    eprintln!("10 refused 3 MB names: store grew by {grown} bytes");
    assert!(
        grown < 1024 * 1024,
        "10 refused 3 MB names grew the store by {grown} bytes"
    );
    // The records of the refusals exist (the key authenticated) and are small.
    let recs: Value = gw
        .get("/tenant/v1/audit/records?limit=100", &admin)
        .await
        .json()
        .await
        .unwrap();
    let recs = recs["data"].as_array().unwrap();
    assert!(recs.len() >= 11, "{}", recs.len());
    for r in recs {
        let s = r.to_string();
        assert!(s.len() < 8 * 1024, "a record of {} bytes", s.len());
        assert!(!s.contains(&"m".repeat(100)));
    }
    let usage: Value = gw
        .get("/tenant/v1/usage?group_by=model", &admin)
        .await
        .json()
        .await
        .unwrap();
    for g in usage["data"].as_array().unwrap() {
        assert!(g["group"].as_str().unwrap_or_default().len() <= 256, "{g}");
    }
    // A model name at the bound is an ordinary unknown model, named in full.
    let at_bound = "m".repeat(256);
    let r = gw
        .post("/v1/chat/completions", &key, &chat(&at_bound, "hi"))
        .await;
    assert_eq!(r.status(), 404);
    gw.stop().await;
}

#[tokio::test]
async fn another_tenants_model_is_not_found_like_an_unknown_one() {
    let gw = TestGateway::start().await;
    let (ta, key_a) = gw.tenant("acme", &["gpt-test"], None).await;
    let (_, _key_b) = gw.tenant("globex", &["claude-test", "demo"], None).await;
    let admin_a = gw.admin_key(&ta).await;
    // The attack: is `claude-test` (globex's) in the catalogue? Compare with a made-up name.
    let probe = |model: &'static str| {
        let gw = &gw;
        let key = key_a.clone();
        async move {
            let oa = gw
                .post("/v1/chat/completions", &key, &chat(model, "hi"))
                .await;
            let oa = (oa.status().as_u16(), oa.json::<Value>().await.unwrap());
            let an = gw
                .http
                .post(format!("{}/v1/messages", gw.url))
                .header("x-api-key", &key)
                .json(&json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            let an = (an.status().as_u16(), an.json::<Value>().await.unwrap());
            let em = gw
                .post(
                    "/v1/embeddings",
                    &key,
                    &json!({"model": model, "input": "hi"}),
                )
                .await;
            let em = (em.status().as_u16(), em.json::<Value>().await.unwrap());
            let get = gw
                .get(&format!("/v1/models/{model}"), &key)
                .await
                .status()
                .as_u16();
            (oa, an, em, get)
        }
    };
    for model in ["claude-test", "demo"] {
        let (oa, an, em, get) = probe(model).await;
        let (uoa, uan, uem, uget) = probe("no-such-model").await;
        assert_eq!(oa.0, 404, "{}", oa.1);
        assert_eq!(oa.1["error"]["code"], "model_not_found");
        assert_eq!(oa.1["error"]["type"], uoa.1["error"]["type"]);
        assert_eq!(oa.1["error"]["param"], uoa.1["error"]["param"]);
        assert_eq!(
            oa.1["error"]["message"]
                .as_str()
                .unwrap()
                .replace(model, "X"),
            uoa.1["error"]["message"]
                .as_str()
                .unwrap()
                .replace("no-such-model", "X")
        );
        assert_eq!(
            (an.0, &an.1["error"]["type"]),
            (uan.0, &uan.1["error"]["type"])
        );
        assert_eq!(an.0, 404);
        assert_eq!(
            (em.0, &em.1["error"]["code"]),
            (uem.0, &uem.1["error"]["code"])
        );
        assert_eq!(em.0, 404);
        assert_eq!((get, uget), (404, 404));
    }
    // Knowledge-base model choice: the same answer.
    let r = gw
        .post(
            "/tenant/v1/knowledge-bases",
            &admin_a,
            &json!({"name": "kb", "embedding_model": "demo"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "model_not_found"
    );
    // The tenant's own audit chain does not tell them apart either.
    let recs: Value = gw
        .get("/tenant/v1/audit/records?limit=1000", &admin_a)
        .await
        .json()
        .await
        .unwrap();
    for r in recs["data"].as_array().unwrap() {
        if r["status"] == 404 {
            assert_eq!(r["event"], "api_call", "{r}");
            assert_eq!(r["error"]["code"], "model_not_found", "{r}");
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_429_carries_the_rate_limit_headers_on_both_wires() {
    let gw = TestGateway::start().await;
    // The window is the clock minute: a run straddling a boundary starts over with a fresh tenant.
    for attempt in 0..2 {
        let (t, key) = gw
            .tenant(
                &format!("acme-{attempt}"),
                &["gpt-test", "claude-test"],
                None,
            )
            .await;
        gw.state
            .store()
            .platform(&TestGateway::admin())
            .set_limits(&t.id, Some(r#"{"requests_per_minute": 1}"#), None)
            .await
            .unwrap();
        gw.wait_for_revision().await;
        let m = minute_now();
        let ok = gw
            .post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
            .await;
        let openai = gw
            .post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
            .await;
        let anthropic = gw
            .http
            .post(format!("{}/v1/messages", gw.url))
            .header("x-api-key", &key)
            .json(&json!({"model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        if minute_now() != m {
            continue;
        }
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()["x-ratelimit-limit-requests"], "1");
        for r in [&openai, &anthropic] {
            assert_eq!(r.status(), 429);
            let h = r.headers();
            assert_eq!(h["x-ratelimit-limit-requests"], "1");
            assert_eq!(h["x-ratelimit-remaining-requests"], "0");
            let reset = h["x-ratelimit-reset-requests"].to_str().unwrap();
            let secs: u64 = reset.trim_end_matches('s').parse().unwrap();
            assert!((1..=60).contains(&secs), "{reset}");
            assert_eq!(h["retry-after"].to_str().unwrap(), secs.to_string());
        }
        let body: Value = openai.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        let body: Value = anthropic.json().await.unwrap();
        assert_eq!(body["error"]["type"], "rate_limit_error");
        gw.stop().await;
        return;
    }
    panic!("two attempts straddled a minute boundary");
}

/// One HTTP/1.1 response from a raw socket: status and body (`content-length` framed), or
/// status 0 if the server closed the connection first.
async fn read_response(s: &mut TcpStream, within: Duration) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head[9..12].parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                return (status, body);
            }
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("no response in time")
            .unwrap_or(0);
        if n == 0 {
            return (0, String::new());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn addr(gw: &TestGateway) -> String {
    gw.url.trim_start_matches("http://").to_owned()
}

/// Slowloris on the request head: a client that sends part of its headers and then trickles
/// or stalls has its connection closed once `server.header_read_timeout_ms` is over, and a
/// prompt client on another connection is served meanwhile.
#[tokio::test]
async fn a_stalled_request_head_is_cut_off() {
    let gw = TestGateway::start_with(|c| c.server.header_read_timeout_ms = 1_000).await;
    let (_, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    let started = Instant::now();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // One more header byte now and then, never the blank line that ends the head.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if s.write_all(b"x").await.is_err() {
            break;
        }
    }
    let (status, _) = read_response(&mut s, Duration::from_secs(10)).await;
    let waited = started.elapsed();
    assert!(status == 0 || status == 408, "got {status}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(8),
        "closed after {waited:?}"
    );
    let ok = gw
        .post("/v1/chat/completions", &key, &chat("gpt-test", "hi"))
        .await;
    assert_eq!(ok.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_stalled_body_is_cut_off_and_an_oversize_declared_length_refused_at_once() {
    let gw = TestGateway::start_with(|c| c.server.body_read_timeout_ms = 3_000).await;
    let (_, key) = gw.tenant("acme", &["gpt-test"], None).await;
    // Slowloris: 1,000 bytes declared, 8 sent, then silence.
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    let started = Instant::now();
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\""
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (status, body) = read_response(&mut s, Duration::from_secs(20)).await;
    let waited = started.elapsed();
    assert_eq!(status, 408, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "request_timeout"
    );
    assert!(
        waited >= Duration::from_millis(2_500) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    // The connection is not kept for a client that stalled.
    assert_eq!(read_response(&mut s, Duration::from_secs(5)).await.0, 0);

    // A declared length over max_body_bytes (64 KiB here): 413 without sending a byte of body,
    // long before the read deadline.
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    let started = Instant::now();
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: 100000000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (status, body) = read_response(&mut s, Duration::from_secs(20)).await;
    assert_eq!(status, 413, "{body}");
    assert!(started.elapsed() < Duration::from_millis(2_500));
    gw.stop().await;
}

#[tokio::test]
async fn content_type_and_encoding_are_enforced() {
    let gw = TestGateway::start().await;
    let (t, key) = gw.tenant("acme", &["gpt-test", "claude-test"], None).await;
    let admin = gw.admin_key(&t).await;
    let body = chat("gpt-test", "hi").to_string();
    let send = |path: &'static str, ctype: Option<&'static str>, enc: Option<&'static str>| {
        let mut r = gw
            .http
            .post(format!("{}{path}", gw.url))
            .bearer_auth(&key)
            .header("x-api-key", &key)
            .body(body.clone());
        if let Some(c) = ctype {
            r = r.header("content-type", c);
        }
        if let Some(e) = enc {
            r = r.header("content-encoding", e);
        }
        r.send()
    };
    let r = send("/v1/chat/completions", Some("text/plain"), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unsupported_media_type");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("text/plain"));
    let r = send(
        "/v1/chat/completions",
        Some("application/json"),
        Some("gzip"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 415);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("gzip"),
        "{v}"
    );
    for ok in [
        Some("application/json; charset=utf-8"),
        Some("Application/JSON"),
        None,
    ] {
        let r = send("/v1/chat/completions", ok, Some("identity"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{ok:?}");
    }
    // The Anthropic wire answers in its own shape.
    let r = send("/v1/messages", Some("text/plain"), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // Control-plane JSON routes too; document uploads keep their own types.
    let r = gw
        .http
        .post(format!("{}/tenant/v1/keys", gw.url))
        .bearer_auth(&admin)
        .header("content-type", "text/plain")
        .body(r#"{"name":"ci"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    gw.stop().await;
}

#[tokio::test]
async fn validation_messages_name_the_actual_fault() {
    let gw = TestGateway::start().await;
    let (_, key) = gw
        .tenant("acme", &["gpt-test", "claude-test", "demo"], None)
        .await;
    let err = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        (status, v)
    };
    // content: null, on a passthrough model and on a translated one.
    for model in ["gpt-test", "demo"] {
        let (s, v) = err(gw
            .post(
                "/v1/chat/completions",
                &key,
                &json!({"model": model, "messages": [{"role": "user", "content": null}]}),
            )
            .await)
        .await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["param"], "messages[0].content", "{v}");
        assert!(!v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("non-empty array"));
    }
    let r = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .json(&json!({"model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": null}]}))
        .send()
        .await
        .unwrap();
    let (s, v) = err(r).await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages.0.content"),
        "{v}"
    );
    // max_tokens: too large is "too large", not "not a positive integer".
    for (mt, says) in [
        (json!(1e20), "too large"),
        (json!(99_999_999_999u64), "too large"),
        (json!(0), "at least 1"),
        (json!(-3), "at least 1"),
        (json!(1.5), "integer"),
        (json!("64"), "not a string"),
    ] {
        let (s, v) = err(
            gw.post(
                "/v1/chat/completions",
                &key,
                &json!({"model": "gpt-test", "max_tokens": mt, "messages": [{"role": "user", "content": "x"}]}),
            )
            .await,
        )
        .await;
        assert_eq!(s, 400, "{mt}: {v}");
        assert_eq!(v["error"]["param"], "max_tokens");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{mt}: {msg}");
    }
    // Embeddings dimensions: each wrong value refused, none ignored.
    for dims in [json!(-1), json!(1.5), json!("64"), json!(null), json!(0)] {
        for model in ["demo", "gpt-test"] {
            let (s, v) = err(gw
                .post(
                    "/v1/embeddings",
                    &key,
                    &json!({"model": model, "input": "hi", "dimensions": dims}),
                )
                .await)
            .await;
            assert_eq!(s, 400, "{dims} {model}: {v}");
            assert_eq!(v["error"]["param"], "dimensions");
        }
    }
    let (s, v) = err(gw
        .post(
            "/v1/embeddings",
            &key,
            &json!({"model": "demo", "input": "hi", "dimensions": 64}),
        )
        .await)
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 64);
    gw.stop().await;
}

#[tokio::test]
async fn a_request_refused_before_its_body_keeps_the_kept_alive_connection() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.tenant("acme", &["gpt-test"], None).await;
    // A body well past what hyper reads along with the head (60 KB, under the 64 KiB limit).
    let pad = "x".repeat(60 * 1024);
    let body =
        json!({"model": "gpt-test", "messages": [{"role": "user", "content": pad}]}).to_string();
    let refused = [
        // 401: the credential is checked before the body is read.
        ("/v1/chat/completions", "tgk_wrong", "application/json", ""),
        // 415 from the edge (content-encoding), before the handler.
        (
            "/v1/chat/completions",
            key.as_str(),
            "application/json",
            "content-encoding: br\r\n",
        ),
        // 415 on a JSON route after authentication.
        ("/v1/chat/completions", key.as_str(), "text/plain", ""),
    ];
    for (path, k, ctype, extra) in refused {
        let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {k}\r\n\
             content-type: {ctype}\r\n{extra}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let (status, _) = read_response(&mut s, Duration::from_secs(20)).await;
        assert!((400..500).contains(&status), "{path} {extra}: {status}");
        // The next request on the same connection is served.
        s.write_all(
            format!("GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let (status, models) = read_response(&mut s, Duration::from_secs(20)).await;
        assert_eq!(
            status, 200,
            "connection dropped after a {path} {extra} refusal"
        );
        assert!(models.contains("gpt-test"));
    }
    // The same with a pooled client: one idle connection, reused, no "server disconnected".
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    for i in 0..4 {
        let k = if i % 2 == 0 {
            "tgk_wrong"
        } else {
            key.as_str()
        };
        let r = client
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(k)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status() == 401 || r.status() == 200, "{}", r.status());
        r.bytes().await.unwrap();
    }
    gw.stop().await;
}
