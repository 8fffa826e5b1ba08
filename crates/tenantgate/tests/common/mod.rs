//! Running the real binary from async tests: CLI calls and `serve` processes.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

#[path = "../../../tenantgate-gateway/tests/common/skip.rs"]
pub mod skip;

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub fn bin() -> String {
    std::env::var("TENANTGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tenantgate").into())
}

pub fn cli_json(dir: &Path, args: &[&str]) -> Value {
    let out = std::process::Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("TENANTGATE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `tenantgate serve` on an ephemeral port (read from its JSON log), with extra environment.
pub async fn serve_with(dir: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("serve")
        .current_dir(dir)
        .env_remove("TENANTGATE_CONFIG")
        .env("TENANTGATE_SERVER__LISTEN", "127.0.0.1:0")
        .env("TENANTGATE_LOG_FORMAT", "json")
        .env("TENANTGATE_LOG", "warn,tenantgate=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("no listening line within 30 s")
            .unwrap()
            .expect("serve exited before listening");
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "tenantgate listening" {
            break format!("http://{}", v["fields"]["addr"].as_str().unwrap());
        }
    };
    #[expect(
        clippy::disallowed_methods,
        reason = "the test drives the server from outside; its tasks are not server background work"
    )]
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

pub async fn serve(dir: &Path) -> (Child, String) {
    serve_with(dir, &[]).await
}

/// SIGTERM: a graceful stop (in-flight calls finish, the audit queue drains).
pub async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
}
