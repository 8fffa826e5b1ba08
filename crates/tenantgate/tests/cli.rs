//! The real binary: admin CLI commands, config errors, and a CLI process changing what a
//! separately running `tenantgate serve` accepts.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tenantgate");

fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("TENANTGATE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_json(dir: &Path, args: &[&str]) -> Value {
    let (ok, out, err) = cli(dir, args);
    assert!(ok, "tenantgate {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

struct Serving {
    child: Child,
    url: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tenantgate serve` on an ephemeral port and reads the address from its JSON log.
fn serve(dir: &Path) -> Serving {
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir)
        .env_remove("TENANTGATE_CONFIG")
        .env("TENANTGATE_SERVER__LISTEN", "127.0.0.1:0")
        .env("TENANTGATE_LOG_FORMAT", "json")
        // Offboarding's finalizer looks for tenants past their window this often.
        .env("TENANTGATE_LIFECYCLE__FINALIZE_INTERVAL_MS", "50")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "tenantgate listening" {
            break format!("http://{}", v["fields"]["addr"].as_str().unwrap());
        }
    };
    // keep draining the log so the child never blocks on a full pipe
    std::thread::spawn(move || for _ in lines {});
    Serving { child, url }
}

/// Status of one demo chat call (0 if the gateway could not be reached).
fn chat_status(url: &str, key: &str) -> u16 {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            ::reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&serde_json::json!({"model":"demo","messages":[{"role":"user","content":"hi"}]}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
}

/// Status of one POST (0 if the gateway could not be reached).
fn post_status(url: &str, key: &str, path: &str, ctype: &str, body: &'static str) -> u16 {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            ::reqwest::Client::new()
                .post(format!("{url}{path}"))
                .bearer_auth(key)
                .header("content-type", ctype)
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
}

fn wait_status(url: &str, key: &str, want: u16) -> Duration {
    let t = Instant::now();
    loop {
        let s = chat_status(url, key);
        if s == want {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "status {s}, wanted {want}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn first_start_bootstraps_a_demo_tenant_whose_key_works() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());
    let key_file = dir.path().join("data/demo-key.txt");
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("data/server.secret"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    assert_eq!(chat_status(&s.url, &key), 200);
    let tenants = cli_json(dir.path(), &["tenant", "list"]);
    assert_eq!(tenants.as_array().unwrap().len(), 1);
    assert_eq!(tenants[0]["slug"], "demo");
}

#[test]
fn cli_changes_reach_a_running_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let t = cli_json(
        dir.path(),
        &[
            "tenant",
            "create",
            "--slug",
            "acme",
            "--name",
            "Acme Corp",
            "--plan",
            "pro",
            "--models",
            "demo",
            "--max-tokens",
            "500",
        ],
    );
    assert_eq!(t["display_name"], "Acme Corp");
    assert_eq!(t["allowed_models"], json!(["demo"]));
    let k = cli_json(
        dir.path(),
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--role",
            "tenant_admin",
            "--name",
            "ci",
        ],
    );
    let key = k["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(k["prefix"].as_str().unwrap()));
    let k2 = cli_json(dir.path(), &["key", "create", "--tenant", "acme"]);
    let key2 = k2["key"].as_str().unwrap().to_owned();
    let listed = cli_json(dir.path(), &["key", "list", "--tenant", "acme"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(
        !listed.to_string().contains(&key),
        "key list must not show keys"
    );

    let s = serve(dir.path());
    assert_eq!(chat_status(&s.url, &key), 200);

    cli_json(
        dir.path(),
        &["key", "revoke", k["prefix"].as_str().unwrap()],
    );
    let took = wait_status(&s.url, &key, 401);
    assert!(
        took < Duration::from_secs(1),
        "revocation reached the gateway after {took:?}"
    );
    assert_eq!(chat_status(&s.url, &key2), 200);

    cli_json(dir.path(), &["tenant", "suspend", "acme"]);
    let took = wait_status(&s.url, &key2, 403);
    assert!(
        took < Duration::from_secs(1),
        "suspension reached the gateway after {took:?}"
    );
    assert_eq!(
        cli_json(dir.path(), &["tenant", "show", "acme"])["status"],
        "suspended"
    );
    cli_json(dir.path(), &["tenant", "resume", "acme"]);
    wait_status(&s.url, &key2, 200);
}

#[test]
fn bad_input_is_refused_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[server]\nlisten = \"not-an-address\"\n",
    )
    .unwrap();
    let (ok, _, err) = cli(dir.path(), &["--config", "bad.toml", "config", "check"]);
    assert!(!ok);
    assert!(err.contains("listen"), "{err}");
    std::fs::write(dir.path().join("p.toml"), "[[providers]]\nname = \"openai\"\nkind = \"openai\"\napi_key_env = \"TG_TEST_UNSET_KEY\"\n").unwrap();
    let (ok, _, err) = cli(dir.path(), &["--config", "p.toml", "config", "check"]);
    assert!(!ok);
    assert!(
        err.contains("providers[0].api_key_env") && err.contains("TG_TEST_UNSET_KEY"),
        "{err}"
    );
    let (ok, out, _) = cli(dir.path(), &["config", "check"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["database"],
        "sqlite"
    );

    let (ok, _, err) = cli(dir.path(), &["tenant", "create", "--slug", "Bad Slug"]);
    assert!(!ok && err.contains("invalid slug"), "{err}");
    let (ok, _, err) = cli(
        dir.path(),
        &["tenant", "create", "--slug", "acme", "--plan", "gold"],
    );
    assert!(!ok && err.contains("free, pro, enterprise"), "{err}");
    cli_json(dir.path(), &["tenant", "create", "--slug", "acme"]);
    let (ok, _, err) = cli(dir.path(), &["tenant", "create", "--slug", "acme"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = cli(dir.path(), &["key", "create", "--tenant", "nope"]);
    assert!(!ok && err.contains("nope"), "{err}");
    assert_eq!(
        cli_json(dir.path(), &["tenant", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// `--set` changes the limits it names and keeps the others; it used to replace the whole
/// override set, silently dropping a budget the operator had set before.
#[test]
fn tenant_limits_set_merges_into_the_overrides() {
    let dir = tempfile::tempdir().unwrap();
    cli_json(dir.path(), &["tenant", "create", "--slug", "acme"]);
    let limits = |args: &[&str]| {
        let mut all = vec!["tenant", "limits", "acme"];
        all.extend_from_slice(args);
        cli_json(dir.path(), &all)["overrides"].clone()
    };
    let set = |v: Value| limits(&["--set", &v.to_string()]);
    let o = set(json!({"monthly_spend_micros": 50_000_000}));
    assert_eq!(o["monthly_spend_micros"], 50_000_000);
    let o = set(json!({"requests_per_minute": 600}));
    assert_eq!(
        (&o["monthly_spend_micros"], &o["requests_per_minute"]),
        (&json!(50_000_000), &json!(600)),
        "the budget set before survives: {o}"
    );
    // A null removes one override; the others stay.
    let o = set(json!({"requests_per_minute": null}));
    assert_eq!(
        (&o["monthly_spend_micros"], &o["requests_per_minute"]),
        (&json!(50_000_000), &Value::Null)
    );
    // A bad name or value is refused and changes nothing.
    let (ok, _, err) = cli(
        dir.path(),
        &[
            "tenant",
            "limits",
            "acme",
            "--set",
            r#"{"requests_per_hour": 5}"#,
        ],
    );
    assert!(!ok && err.contains("requests_per_hour"), "{err}");
    assert_eq!(limits(&[])["monthly_spend_micros"], 50_000_000);
    // --clear removes them all.
    let o = limits(&["--clear"]);
    assert!(o.as_object().unwrap().values().all(Value::is_null), "{o}");
}

#[test]
fn encryption_keys_rotate_and_tenant_deletion_shreds() {
    let dir = tempfile::tempdir().unwrap();
    let t = cli_json(
        dir.path(),
        &["tenant", "create", "--slug", "acme", "--models", "demo"],
    );
    let k = cli_json(
        dir.path(),
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--role",
            "tenant_admin",
        ],
    );
    let key = k["key"].as_str().unwrap().to_owned();
    let st = cli_json(dir.path(), &["keys", "status", "--tenant", "acme"]);
    // Onboarding made the tenant's first KEK version.
    assert_eq!(st[0]["current_version"], 1);
    let st = cli_json(dir.path(), &["keys", "rotate", "--tenant", "acme"]);
    // Re-wrapped at once; version 1 is kept for encryption.retire_grace_secs before it is destroyed.
    assert_eq!(
        (
            st["current_version"].clone(),
            st["versions"].clone(),
            st["pending_rewrap"].clone()
        ),
        (json!(2), json!([1, 2]), json!(0)),
        "rotated from onboarding's version 1"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(dir.path().join("data/master.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    let s = serve(dir.path());
    assert_eq!(chat_status(&s.url, &key), 200);
    // A knowledge base the running gateway has an index file for.
    let index_dir = dir
        .path()
        .join("data/indexes")
        .join(t["id"].as_str().unwrap());
    for (path, ctype, body) in [
        (
            "/tenant/v1/knowledge-bases",
            "application/json",
            r#"{"name":"kb"}"#,
        ),
        (
            "/tenant/v1/knowledge-bases/kb/documents?name=d.txt",
            "text/plain",
            "Parcels leave on Mondays.",
        ),
        (
            "/tenant/v1/knowledge-bases/kb/search",
            "application/json",
            r#"{"query":"parcels"}"#,
        ),
    ] {
        assert!(post_status(&s.url, &key, path, ctype, body) < 300, "{path}");
    }
    assert!(index_dir.exists());
    let (ok, _, err) = cli(dir.path(), &["tenant", "delete", "acme"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    // --now: no window; the CLI shreds the keys at once (no restore from here) and the
    // running gateway's finalizer removes the rest and writes the certificate.
    let d = cli_json(dir.path(), &["tenant", "delete", "acme", "--yes", "--now"]);
    assert_eq!(d["tenant"]["status"], "pending_deletion", "{d}");
    // (by id: the finalizer may already have made the slug the id)
    let id = t["id"].as_str().unwrap();
    let st = cli_json(dir.path(), &["keys", "status", "--tenant", id]);
    assert_eq!(st[0]["versions"], json!([]));
    let (ok, _, err) = cli(dir.path(), &["tenant", "restore", id]);
    assert!(!ok, "a tenant whose keys are shredded was restored: {err}");
    wait_status(&s.url, &key, 401);
    // The gateway that served nothing of the deletion removes the tenant's index files.
    let started = Instant::now();
    while index_dir.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the running gateway kept the deleted tenant's index files"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The tombstone's slug is its id; the certificate verifies offline with the pinned key.
    let shown = cli_json(dir.path(), &["tenant", "show", id]);
    assert_eq!(
        shown["tenant"]["slug"].as_str().or(shown["slug"].as_str()),
        Some(id),
        "{shown}"
    );
    let out = dir.path().join("certificate.jsonl");
    let c = cli_json(
        dir.path(),
        &["tenant", "certificate", id, "--out", out.to_str().unwrap()],
    );
    assert_eq!(c["certificate"]["detail"]["tenant"], id, "{c}");
    let pk = cli_json(dir.path(), &["audit", "public-key"]);
    let v = cli_json(
        dir.path(),
        &[
            "audit",
            "verify",
            out.to_str().unwrap(),
            "--public-key",
            pk["public_key"].as_str().unwrap(),
        ],
    );
    assert_eq!(v["valid"], true, "{v}");
}

fn cli_as(dir: &Path, url: &str, key: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("TENANTGATE_CONFIG")
        .env("TENANTGATE_URL", url)
        .env("TENANTGATE_API_KEY", key)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn prompt_commands_work_through_the_tenant_api() {
    let dir = tempfile::tempdir().unwrap();
    cli_json(
        dir.path(),
        &["tenant", "create", "--slug", "acme", "--models", "demo"],
    );
    cli_json(
        dir.path(),
        &["tenant", "create", "--slug", "beta", "--models", "demo"],
    );
    let admin = cli_json(
        dir.path(),
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--role",
            "tenant_admin",
        ],
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let member = cli_json(dir.path(), &["key", "create", "--tenant", "acme"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let beta = cli_json(
        dir.path(),
        &[
            "key",
            "create",
            "--tenant",
            "beta",
            "--role",
            "tenant_admin",
        ],
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = serve(dir.path());
    std::fs::write(dir.path().join("v1.j2"), "You help {{ tenant.name }}.\n").unwrap();
    std::fs::write(
        dir.path().join("v2.j2"),
        "You help {{ tenant.name }} briefly.\n",
    )
    .unwrap();

    let run = |key: &str, args: &[&str]| {
        let (ok, out, err) = cli_as(dir.path(), &s.url, key, args);
        assert!(ok, "{args:?}: {err}");
        out
    };
    run(&admin, &["prompt", "push", "support", "--file", "v1.j2"]);
    run(
        &admin,
        &["prompt", "push", "support", "--file", "v2.j2", "--activate"],
    );
    assert_eq!(
        run(&admin, &["prompt", "show", "support"]),
        "You help {{ tenant.name }} briefly.\n"
    );
    run(&admin, &["prompt", "activate", "support", "--version", "1"]);
    assert_eq!(
        run(&admin, &["prompt", "show", "support"]),
        "You help {{ tenant.name }}.\n"
    );
    assert!(run(
        &admin,
        &["prompt", "diff", "support", "--from", "1", "--to", "2"]
    )
    .contains("+You help {{ tenant.name }} briefly."));
    let st: Value = serde_json::from_str(&run(
        &admin,
        &[
            "prompt",
            "settings",
            "--default",
            "support",
            "--client-system",
            "refuse",
        ],
    ))
    .unwrap();
    assert_eq!(
        (st["default_prompt"].as_str(), st["client_system"].as_str()),
        (Some("support"), Some("refuse"))
    );
    let (ok, _, err) = cli_as(
        dir.path(),
        &s.url,
        &member,
        &["prompt", "show", "support", "--version", "1"],
    );
    assert!(
        !ok && err.contains("403"),
        "members cannot read bodies: {err}"
    );

    run(&admin, &["prompt", "export", "--out", "p.zip"]);
    run(&beta, &["prompt", "import", "p.zip"]);
    assert_eq!(
        run(&beta, &["prompt", "show", "support"]),
        "You help {{ tenant.name }}.\n"
    );
    let listed: Value =
        serde_json::from_str(&run(&beta, &["prompt", "versions", "support"])).unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
}

#[test]
fn operator_changes_are_recorded_in_the_tenants_audit_chain() {
    let dir = tempfile::tempdir().unwrap();
    cli_json(
        dir.path(),
        &["tenant", "create", "--slug", "acme", "--models", "demo"],
    );
    cli_json(
        dir.path(),
        &["tenant", "set-models", "acme", "--models", "demo,other"],
    );
    cli_json(dir.path(), &["tenant", "kill-switch", "acme", "on"]);
    cli_json(dir.path(), &["keys", "rotate", "--tenant", "acme"]);
    let admin = cli_json(
        dir.path(),
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--role",
            "tenant_admin",
        ],
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = serve(dir.path());
    let body: Value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            ::reqwest::Client::new()
                .get(format!(
                    "{}/tenant/v1/audit/records?event=configuration_change",
                    s.url
                ))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
    let actions: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["record"]["actor"]["kind"] == "platform")
        .filter_map(|r| r["record"]["detail"]["action"].as_str())
        .collect();
    // Newest first.
    assert_eq!(
        actions,
        [
            "key.create",
            "keys.rotate",
            "tenant.kill_switch.on",
            "tenant.set_models",
            "tenant.onboard"
        ],
        "{body}"
    );
}

/// A signed export of tenant `t1` from the genesis: one record per status, a checkpoint at the
/// head, signed with `signer` (as the gateway would have signed whatever chain it found).
fn signed_export(signer: &tenantgate_audit::Signer, statuses: &[u16]) -> String {
    let mut prev = tenantgate_audit::GENESIS;
    let mut records = Vec::new();
    for (i, status) in statuses.iter().enumerate() {
        let seq = i as u64 + 1;
        let r = tenantgate_audit::Record {
            v: 1,
            tenant: "t1".into(),
            seq,
            ts_ms: seq as i64,
            id: format!("req_{seq}"),
            event: tenantgate_audit::EventType::ApiCall,
            actor: tenantgate_audit::Actor {
                kind: "api_key".into(),
                key_id: Some("k1".into()),
                user: None,
                role: None,
            },
            model: None,
            prompt: None,
            response: None,
            tool_calls: vec![],
            tokens: None,
            cost_micros: None,
            latency_ms: None,
            status: *status,
            error: None,
            client: None,
            detail: json!({}),
        };
        let canon = r.canonical_as("t1", seq).unwrap();
        prev = tenantgate_audit::link(&prev, &canon);
        records.push(tenantgate_audit::ExportRecord {
            hash: hex::encode(prev),
            record: serde_json::from_slice(&canon).unwrap(),
            prompt: None,
            response: None,
        });
    }
    let cp = signer.checkpoint("t1", statuses.len() as u64, &prev, 10);
    let lines = tenantgate_audit::assemble(
        "t1",
        tenantgate_audit::Window {
            from_ms: 0,
            to_ms: i64::MAX,
        },
        tenantgate_audit::Anchor {
            seq: 0,
            hash: hex::encode(tenantgate_audit::GENESIS),
        },
        records,
        vec![cp],
        signer,
        11,
    );
    tenantgate_audit::jsonl(&lines)
}

/// `audit verify` trusts only a key given to it (the keys an export lists prove nothing), and
/// `--since` catches a history rewritten between two exports that are each validly signed.
#[test]
fn audit_verify_needs_a_pinned_key_and_since_catches_a_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let signer = tenantgate_audit::Signer::from_seed(&[5; 32]);
    let key = signer.public_key().public_key;
    let write = |name: &str, statuses: &[u16]| {
        let p = dir.path().join(name);
        std::fs::write(&p, signed_export(&signer, statuses)).unwrap();
        p.display().to_string()
    };
    let old = write("old.jsonl", &[200, 200, 200]);
    let extended = write("extended.jsonl", &[200, 200, 200, 200, 200]);
    let rewritten = write("rewritten.jsonl", &[200, 500, 200, 200, 200]);

    let out = Command::new(BIN)
        .args(["audit", "verify", &old])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no pinned key must not pass");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);

    let v = cli_json(
        dir.path(),
        &[
            "audit",
            "verify",
            &extended,
            "--public-key",
            &key,
            "--since",
            &old,
        ],
    );
    assert_eq!(v["valid"], true, "{v}");

    // On its own the rewritten export verifies (its signer signed what it found) ...
    let v = cli_json(
        dir.path(),
        &["audit", "verify", &rewritten, "--public-key", &key],
    );
    assert_eq!(v["valid"], true, "{v}");
    // ... but it does not extend the earlier export: seq 2 differs.
    let (ok, out, _) = cli(
        dir.path(),
        &[
            "audit",
            "verify",
            &rewritten,
            "--public-key",
            &key,
            "--since",
            &old,
        ],
    );
    assert!(!ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["first_bad_seq"], 2, "{v}");
}
