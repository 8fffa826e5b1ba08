//! TLS on the listener (`[server.tls]`): a real HTTPS call on the OpenAI-shaped chat route with
//! a self-signed certificate made for the run; plain HTTP on the TLS port gets no answer; a
//! certificate or key that cannot be used stops start-up naming the setting, file and reason.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, TestGateway};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tenantgate_gateway::config::TlsConfig;
use tenantgate_gateway::{Config, Server};

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files in `dir`:
/// (certificate PEM, TLS settings naming the two files).
fn self_signed(dir: &Path, name: &str) -> (String, TlsConfig) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert_pem = ck.cert.pem();
    let cert_file = dir.join(format!("{name}.crt"));
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&cert_file, &cert_pem).unwrap();
    std::fs::write(&key_file, ck.key_pair.serialize_pem()).unwrap();
    (
        cert_pem,
        TlsConfig {
            cert_file,
            key_file,
        },
    )
}

/// A client that trusts only `cert_pem`.
fn client_trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

async fn tls_gateway() -> (TestGateway, String, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    let (cert_pem, tls) = self_signed(certs.path(), "server");
    let gw = TestGateway::start_with(|c| c.server.tls = Some(tls)).await;
    (gw, cert_pem, certs)
}

#[tokio::test]
async fn chat_completions_are_served_over_https_with_the_configured_certificate() {
    let (gw, cert_pem, _certs) = tls_gateway().await;
    let (_, key) = gw.tenant("acme", &["gpt-test"], None).await;
    let https = gw.url.replacen("http://", "https://", 1);
    let client = client_trusting(&cert_pem);

    let r = client
        .post(format!("{https}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat("gpt-test", "hello over tls"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply to: hello over tls"
    );
    // The probes answer over TLS too (what a Kubernetes HTTPS probe calls).
    for path in ["/healthz", "/readyz"] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let r = client.get(format!("{https}{path}")).send().await.unwrap();
            if r.status() == 200 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path}: {}",
                r.status()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    // The certificate the client checked is the configured one: a client trusting another
    // certificate refuses the connection.
    let other = tempfile::tempdir().unwrap();
    let (other_pem, _) = self_signed(other.path(), "other");
    let e = client_trusting(&other_pem)
        .get(format!("{https}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    gw.stop().await;
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let (gw, _cert_pem, _certs) = tls_gateway().await;
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", gw.url))
        .send()
        .await;
    assert!(r.is_err(), "plain HTTP was answered: {r:?}");
    // At the byte level: whatever comes back (a TLS alert, or nothing) is not HTTP.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut got),
    )
    .await
    .expect("the server kept a plain-HTTP connection open");
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    gw.stop().await;
}

/// `Server::bind` with `tls`, everything else in `dir`; the start-up error's text.
async fn bind_error(dir: &Path, tls: TlsConfig) -> String {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.secret_file = dir.join("server.secret");
    config.encryption.master_key_file = dir.join("master.key");
    config.audit.signing_key_file = dir.join("audit-signing.key");
    config.audit.witness_dir = dir.join("audit-witness");
    config.rag.index_dir = dir.join("indexes");
    config.database.url = format!("sqlite:{}", dir.join("tg.db").display());
    config.demo.bootstrap_tenant = false;
    config.server.tls = Some(tls);
    match Server::bind(config).await {
        Ok(_) => panic!("started with an unusable certificate"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn an_unusable_certificate_or_key_stops_start_up_naming_setting_file_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = self_signed(dir.path(), "good");
    let (_, other) = self_signed(dir.path(), "other");
    let missing: PathBuf = dir.path().join("missing.crt");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();

    let e = bind_error(
        dir.path(),
        TlsConfig {
            cert_file: missing.clone(),
            key_file: good.key_file.clone(),
        },
    )
    .await;
    assert!(
        e.starts_with(&format!(
            "server.tls.cert_file {}: cannot read it:",
            missing.display()
        )),
        "{e}"
    );
    assert!(e.contains("No such file"), "{e}");

    let e = bind_error(
        dir.path(),
        TlsConfig {
            cert_file: good.cert_file.clone(),
            key_file: dir.path().join("missing.key"),
        },
    )
    .await;
    assert!(e.starts_with("server.tls.key_file "), "{e}");
    assert!(e.contains("missing.key: cannot read it:"), "{e}");

    let e = bind_error(
        dir.path(),
        TlsConfig {
            cert_file: garbage.clone(),
            key_file: good.key_file.clone(),
        },
    )
    .await;
    assert!(e.starts_with("server.tls.cert_file "), "{e}");
    assert!(e.contains("no certificate in it"), "{e}");

    // A certificate where the key should be: no private key in it.
    let e = bind_error(
        dir.path(),
        TlsConfig {
            cert_file: good.cert_file.clone(),
            key_file: good.cert_file.clone(),
        },
    )
    .await;
    assert!(e.starts_with("server.tls.key_file "), "{e}");
    assert!(e.contains("no private key in it"), "{e}");

    // Another certificate's key.
    let e = bind_error(
        dir.path(),
        TlsConfig {
            cert_file: good.cert_file.clone(),
            key_file: other.key_file.clone(),
        },
    )
    .await;
    assert!(e.starts_with("server.tls: the key in "), "{e}");
    assert!(e.contains("does not fit the certificate"), "{e}");

    // Nothing was opened before the certificate was checked.
    assert!(!dir.path().join("tg.db").exists());
    assert!(!dir.path().join("server.secret").exists());
}
