//! The console in a real browser (issue 20): Debian's Chromium, headless, driven by
//! `playwright-core` (`tests/browser/console.mjs`) against this gateway, signing in with API
//! keys and through a real OpenID provider run locally (`oidc-provider`,
//! `tests/browser/oidc.mjs`). This test installs the pinned npm packages under the target
//! directory, starts the IdP and the gateway, seeds two tenants, runs the scenarios, and then
//! checks what they did on the server side: the kill switch, which prompt the model received,
//! and that the audit window the browser downloaded verifies.
//!
//! Without Chromium (`$CHROMIUM` or /usr/bin/chromium), Node.js >= 20.19 or the npm registry,
//! the test records a skip (`common::skip`) instead of running; `.ci/run` installs Chromium.
//! Screenshots of every page land in `$TENANTGATE_SCREENSHOTS` (default
//! `<target>/console-screenshots`).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{skip::skip, TestGateway};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tenantgate_gateway::config::OidcConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const V1: &str = "ACME-PROMPT-V1 You help acme's customers. <script>window.__pwned=1</script>";
const V2: &str = "ACME-PROMPT-V2 for {{ tenant.slug }}: be brief.";
const CALL_MARKER: &str = "browser-prompt-check";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn target_dir() -> PathBuf {
    // `<target>/tmp`, whatever the target directory is.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The browser to drive, if this machine has one.
fn chromium() -> Option<PathBuf> {
    let p = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    p.is_file().then_some(p)
}

/// Node.js, if it is at least 20.19 (what oidc-provider 9 needs).
async fn node_ok() -> Result<(), String> {
    let out = Command::new("node")
        .arg("--version")
        .output()
        .await
        .map_err(|e| format!("node is not installed ({e})"))?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let nums: Vec<u32> = v
        .trim_start_matches('v')
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    match nums.as_slice() {
        [major, minor, ..] if (*major, *minor) >= (20, 19) => Ok(()),
        _ => Err(format!("node {v} is older than 20.19")),
    }
}

/// `npm ci` of tests/browser's pinned packages into `<target>/browser-node`, once: reused
/// while its lock file is the one in the repository.
async fn npm_packages() -> Result<PathBuf, String> {
    let src = repo().join("tests/browser");
    let dir = target_dir().join("browser-node");
    let lock = std::fs::read(src.join("package-lock.json")).map_err(|e| e.to_string())?;
    let installed = dir.join("node_modules/.package-lock.json").is_file()
        && dir
            .join("node_modules/oidc-provider/package.json")
            .is_file()
        && dir
            .join("node_modules/playwright-core/package.json")
            .is_file()
        && std::fs::read(dir.join("package-lock.json")).ok().as_deref() == Some(&lock[..]);
    if installed {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(src.join(f), dir.join(f)).map_err(|e| e.to_string())?;
    }
    eprintln!(
        "installing the browser tests' npm packages into {}",
        dir.display()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        Command::new("npm")
            .args([
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ])
            .current_dir(&dir)
            .output(),
    )
    .await
    .map_err(|_| "npm ci took over 5 minutes".to_owned())?
    .map_err(|e| format!("npm is not installed ({e})"))?;
    if !out.status.success() {
        // `npm ci` removes node_modules first, so a failed install is not taken for a good one
        // (`node_modules/.package-lock.json` is written last).
        return Err(format!(
            "npm ci failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(500)
                .collect::<String>()
        ));
    }
    Ok(dir)
}

/// The local IdP: started before the gateway (its issuer goes into the gateway's
/// configuration), told the console's redirect URI once the gateway listens.
struct Idp {
    child: tokio::process::Child,
    issuer: String,
    log: PathBuf,
}

impl Idp {
    async fn start(node_dir: &Path, log: PathBuf) -> Idp {
        let mut child = Command::new("node")
            .arg(repo().join("tests/browser/oidc.mjs"))
            .env("TENANTGATE_BROWSER_NODE", node_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "oidc.mjs printed no issuer: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .unwrap()
            .unwrap_or_default();
        let v: Value = serde_json::from_str(&first).unwrap_or_else(|e| {
            panic!(
                "oidc.mjs: {e}: {first:?} {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Idp {
            issuer: v["issuer"].as_str().unwrap().to_owned(),
            child,
            log,
        }
    }

    async fn serve(&mut self, redirect_uri: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{redirect_uri}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        let disc = format!("{}/.well-known/openid-configuration", self.issuer);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(&disc).await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the IdP did not start serving: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// acme and initech, as the scenarios need them: console.mjs's environment, and acme's id.
async fn seed(gw: &TestGateway) -> (Vec<(&'static str, String)>, String) {
    let (acme, acme_member) = gw.tenant("acme", &["gpt-test", "demo"], None).await;
    let acme_admin = gw.admin_key(&acme).await;
    let (initech, _) = gw.tenant("initech", &["gpt-test", "demo"], None).await;
    let initech_admin = gw.admin_key(&initech).await;

    for (template, activate) in [(V1, true), (V2, true)] {
        let r = gw
            .post(
                "/tenant/v1/prompts/support/versions",
                &acme_admin,
                &json!({"template": template, "activate": activate}),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let r = gw
        .http
        .put(format!("{}/tenant/v1/prompt-settings", gw.url))
        .bearer_auth(&acme_admin)
        .json(&json!({"client_system": "append", "default_prompt": "support"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let r = gw
        .post(
            "/tenant/v1/knowledge-bases",
            &acme_admin,
            &json!({"name": "acme-handbook", "chunk_tokens": 32}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let kb: Value = r.json().await.unwrap();
    let kb_id = kb["id"]
        .as_str()
        .or(kb["name"].as_str())
        .unwrap()
        .to_owned();
    let r = gw
        .http
        .post(format!(
            "{}/tenant/v1/knowledge-bases/{kb_id}/documents?name=acme-refunds.md",
            gw.url
        ))
        .bearer_auth(&acme_admin)
        .header("content-type", "text/markdown")
        .body("# Refunds\n\nAcme refunds use the code ACME-REFUND-ZEPHYR within fourteen days.\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    let keys: Value = gw
        .get("/tenant/v1/keys", &acme_admin)
        .await
        .json()
        .await
        .unwrap();
    let key_id = keys["data"][0]["id"].as_str().unwrap().to_owned();
    let recs: Value = gw
        .get("/tenant/v1/audit/records?limit=1", &acme_admin)
        .await
        .json()
        .await
        .unwrap();
    let seq = recs["data"][0]["seq"].as_u64().unwrap();
    gw.wait_for_revision().await;

    let env = vec![
        ("TG_MODEL", "gpt-test".into()),
        ("TG_ACME_ADMIN_KEY", acme_admin),
        ("TG_ACME_MEMBER_KEY", acme_member),
        ("TG_INITECH_ADMIN_KEY", initech_admin),
        ("TG_PROMPT", "support".into()),
        ("TG_ACME_KB", kb_id),
        ("TG_ACME_KEY_ID", key_id),
        ("TG_ACME_AUDIT_SEQ", seq.to_string()),
        (
            "TG_ACME_MARKERS",
            "acme,ACME-PROMPT,acme-handbook,ACME-REFUND-ZEPHYR,acme-refunds".into(),
        ),
        ("TG_CALL_MARKER", CALL_MARKER.into()),
    ];
    (env, acme.id.as_str().to_owned())
}

/// The system prompt the mock model received with the call whose user text is `text`.
fn system_prompt_of(gw: &TestGateway, text: &str) -> String {
    let seen = gw.mock.stats.requests_seen();
    let req = seen
        .iter()
        .rev()
        .find(|r| {
            r.body["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["content"] == text))
        })
        .unwrap_or_else(|| panic!("the model never received {text:?}"));
    req.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "system")
        .filter_map(|m| m["content"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The two tests of this file each run a browser and a gateway: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A gateway configured for the console, its IdP, the seeded tenants, and what console.mjs
/// needs to run against them.
struct Run {
    gw: TestGateway,
    idp: Idp,
    env: Vec<(&'static str, String)>,
    acme_id: String,
    admin: String,
    node_dir: PathBuf,
    browser: PathBuf,
    work: tempfile::TempDir,
}

impl Run {
    /// `None` (a skip recorded) when this machine cannot run a browser test.
    async fn start(tweak: impl FnOnce(&mut tenantgate_gateway::Config)) -> Option<Run> {
        let Some(browser) = chromium() else {
            skip("no Chromium (set CHROMIUM or apt-get install chromium)");
            return None;
        };
        if let Err(why) = node_ok().await {
            skip(&why);
            return None;
        }
        let node_dir = match npm_packages().await {
            Ok(d) => d,
            Err(why) => {
                skip(&format!("the browser tests' npm packages: {why}"));
                return None;
            }
        };
        let work = tempfile::tempdir().unwrap();
        let mut idp = Idp::start(&node_dir, work.path().join("idp.log")).await;
        let issuer = idp.issuer.clone();
        let gw = TestGateway::start_with(|cfg| {
            cfg.auth.oidc = vec![OidcConfig {
                issuer,
                audience: "tenantgate-console".into(),
                tenant_claim: "tenant".into(),
                roles_claim: "roles".into(),
                platform_admins: true,
                console_client_id: Some("tenantgate-console".into()),
                console_label: Some("Local IdP".into()),
                console_scopes: "openid tenantgate".into(),
                ..Default::default()
            }];
            tweak(cfg);
        })
        .await;
        idp.serve(&format!("{}/console/login/oidc/0/callback", gw.url))
            .await;
        let (env, acme_id) = seed(&gw).await;
        let admin = env
            .iter()
            .find(|(k, _)| *k == "TG_ACME_ADMIN_KEY")
            .unwrap()
            .1
            .clone();
        Some(Run {
            gw,
            idp,
            env,
            acme_id,
            admin,
            node_dir,
            browser,
            work,
        })
    }

    /// Runs console.mjs (the scenarios `only` names, all when empty) and fails the test on
    /// any `not ok`. Its output is printed line by line as it comes.
    async fn scenarios(
        &self,
        only: &str,
        shots: &Path,
        artifacts: &Path,
        extra: &[(&str, String)],
    ) {
        let node_log = self.work.path().join("console-mjs.stderr");
        let mut run = Command::new("node")
            .arg(repo().join("tests/browser/console.mjs"))
            .env("TENANTGATE_BROWSER_NODE", &self.node_dir)
            .env("CHROMIUM", &self.browser)
            .env("TG_BASE", &self.gw.url)
            .env("SCREENSHOTS", shots)
            .env("TG_ARTIFACTS", artifacts)
            .env("TG_SCENARIOS", only)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&node_log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Line by line, so a run that hangs still shows the scenarios it finished.
        let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
        let mut report = Vec::new();
        let finished = tokio::time::timeout(Duration::from_secs(150), async {
            while let Ok(Some(line)) = lines.next_line().await {
                println!("{line}");
                report.push(line);
            }
            run.wait().await
        })
        .await;
        let failed: Vec<&String> = report.iter().filter(|l| l.starts_with("not ok")).collect();
        let stderr = std::fs::read_to_string(&node_log).unwrap_or_default();
        let ok = match finished {
            Ok(status) => status.unwrap().success(),
            Err(_) => {
                eprintln!(
                    "console.mjs ran over 150 s; it got this far:\n{}",
                    report.join("\n")
                );
                false
            }
        };
        assert!(
            ok && report.iter().any(|l| l.starts_with("ok - ")),
            "browser scenarios failed:\n{}\n--- console.mjs stderr:\n{stderr}\n--- IdP log:\n{}",
            failed
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            std::fs::read_to_string(&self.idp.log).unwrap_or_default()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_the_browser() {
    let _one = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let Some(run) = Run::start(|_| {}).await else {
        return;
    };
    let shots = std::env::var_os("TENANTGATE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("console-screenshots"));
    // Nothing is deleted there: each screenshot must be newer than this run's start.
    let run_start = std::time::SystemTime::now();
    let artifacts = run.work.path().join("artifacts");
    run.scenarios("", &shots, &artifacts, &[]).await;
    let (gw, admin) = (&run.gw, &run.admin);

    // The kill switch ended off, and no forged or member POST left it on.
    let limits: Value = gw
        .get("/tenant/v1/limits", admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(limits["kill_switch"], json!(false), "{limits}");

    // The rollback: the call before it got v2, the call after it v1 (as rendered for acme).
    let before = system_prompt_of(gw, &format!("{CALL_MARKER}-before"));
    assert!(before.starts_with("ACME-PROMPT-V2 for acme"), "{before}");
    let after = system_prompt_of(gw, &format!("{CALL_MARKER}-after"));
    assert!(after.starts_with("ACME-PROMPT-V1"), "{after}");
    let versions: Value = gw
        .get("/tenant/v1/prompts/support/versions", admin)
        .await
        .json()
        .await
        .unwrap();
    let active: Vec<u64> = versions["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["active"] == json!(true))
        .filter_map(|v| v["version"].as_u64())
        .collect();
    assert_eq!(active, [1], "{versions}");

    // The audit window the browser downloaded verifies against the pinned signing keys, as
    // `tenantgate audit verify --public-key` does it.
    let jsonl = std::fs::read_to_string(artifacts.join("audit-export.jsonl")).unwrap();
    let keys = gw.audit_keys(admin).await;
    let report = tenantgate_audit::verify_jsonl(&jsonl, Some(&keys)).unwrap();
    let window: Value =
        serde_json::from_slice(&std::fs::read(artifacts.join("audit-export.json")).unwrap())
            .unwrap();
    assert_eq!(report.tenant, run.acme_id);
    assert!(report.records > 0 && report.keys_pinned, "{window}");

    // Every page has its screenshot.
    for name in [
        "login",
        "overview",
        "keys",
        "members",
        "models",
        "prompts",
        "prompt",
        "knowledge",
        "audit",
        "incidents",
        "limits",
        "break-glass",
        "platform-tenants",
        "platform-onboard",
        "platform-plans",
        "platform-health",
        "platform-break-glass",
    ] {
        let f = shots.join(format!("{name}.png"));
        let fresh = std::fs::metadata(&f)
            .ok()
            .filter(|m| m.len() > 1000)
            .and_then(|m| m.modified().ok())
            .is_some_and(|t| t >= run_start);
        assert!(fresh, "no screenshot {} from this run", f.display());
    }
    println!(
        "screenshots in {}; {:.1} s in all",
        shots.display(),
        started.elapsed().as_secs_f64()
    );
    run.gw.stop().await;
}

/// Session ids rotate (`console.rotate_after_secs`, 15 minutes by default): a page loaded
/// before the rotation must still submit its forms after it, the kill switch's above all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_forms_survive_session_rotation() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(run) = Run::start(|cfg| cfg.console.rotate_after_secs = 2).await else {
        return;
    };
    let dir = run.work.path().join("rotation");
    run.scenarios(
        "rotation,no script errors",
        &dir,
        &dir,
        &[("TG_ROTATE_SECS", "2".into())],
    )
    .await;
    let limits: Value = run
        .gw
        .get("/tenant/v1/limits", &run.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(limits["kill_switch"], json!(false), "{limits}");
    run.gw.stop().await;
}
