//! What the repository ships to install the gateway, checked against the gateway itself: the
//! Kubernetes manifests (every file parsed, each reference between them resolved, the
//! ConfigMap's TOML loaded by `Config::load`, the probes answering on a running `tenantgate
//! serve`, the Secret holding placeholders only), the container image's files, the systemd
//! unit (`systemd-analyze verify`), and the CLI's help and shell completions.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tenantgate_gateway::Config;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn k8s_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

/// `a.b.0.c`: mapping keys and sequence indexes.
fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| {
        let next = match k.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(k),
        };
        next.unwrap_or_else(|| panic!("no {k} in {path}"))
    })
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
        .collect()
}

fn selects(selector: &BTreeMap<String, String>, pod: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| pod.get(k) == Some(v))
}

/// Every manifest the kustomization lists, by kind; the directory holds no other YAML.
fn manifests() -> BTreeMap<String, Value> {
    let dir = k8s_dir();
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let listed: Vec<String> = get(&kustomization, "resources")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    on_disk.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        sorted, on_disk,
        "kustomization.yaml resources vs the directory"
    );
    let mut by_kind = BTreeMap::new();
    for file in listed {
        let v = yaml(&dir.join(&file));
        let kind = s(&v, "kind").to_owned();
        assert!(v.get("apiVersion").is_some(), "{file}: no apiVersion");
        assert!(
            by_kind.insert(kind.clone(), v).is_none(),
            "{file}: a second {kind}"
        );
    }
    by_kind
}

/// The ConfigMap's `tenantgate.toml`, loaded with the gateway's own loader.
fn load_toml(text: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(Some(&path)).unwrap_or_else(|e| panic!("the configuration does not load: {e}"))
}

#[test]
fn kubernetes_manifests_parse_and_agree_with_each_other_and_the_gateway() {
    let m = manifests();
    for kind in [
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ] {
        assert!(m.contains_key(kind), "no {kind}");
    }
    let (dep, svc, cm, secret) = (
        &m["Deployment"],
        &m["Service"],
        &m["ConfigMap"],
        &m["Secret"],
    );
    let hpa = &m["HorizontalPodAutoscaler"];
    let pdb = &m["PodDisruptionBudget"];
    let pod = get(dep, "spec.template.spec");
    let pod_labels = labels(get(dep, "spec.template.metadata.labels"));
    assert!(selects(
        &labels(get(dep, "spec.selector.matchLabels")),
        &pod_labels
    ));
    assert!(selects(&labels(get(svc, "spec.selector")), &pod_labels));
    assert!(selects(
        &labels(get(pdb, "spec.selector.matchLabels")),
        &pod_labels
    ));

    // The HPA scales this Deployment; the PDB leaves a replica up at the HPA's minimum.
    assert_eq!(s(hpa, "spec.scaleTargetRef.kind"), "Deployment");
    assert_eq!(s(hpa, "spec.scaleTargetRef.name"), s(dep, "metadata.name"));
    let min = get(hpa, "spec.minReplicas").as_u64().unwrap();
    let max_unavailable = get(pdb, "spec.maxUnavailable").as_u64().unwrap();
    assert!(min >= 2 && max_unavailable < min, "{min} {max_unavailable}");

    let containers = get(pod, "containers").as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(
        c["args"].as_sequence().unwrap(),
        &vec![Value::from("serve")]
    );

    // Ports: the Service targets a named container port, which is the port the ConfigMap's
    // configuration listens on.
    let ports = get(c, "ports").as_sequence().unwrap();
    let port_of = |name: &str| -> u64 {
        ports
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
            .as_u64()
            .unwrap()
    };
    let target = &get(svc, "spec.ports.0")["targetPort"];
    let container_port = match target.as_str() {
        Some(name) => port_of(name),
        None => target.as_u64().unwrap(),
    };
    let toml = get(cm, "data")["tenantgate.toml"].as_str().unwrap();
    let config = load_toml(toml);
    assert_eq!(u64::from(config.server.listen.port()), container_port);
    assert!(
        config.server.listen.ip().is_unspecified(),
        "{}",
        config.server.listen
    );

    // Probes: /healthz for liveness, /readyz for readiness, on a named container port
    // (that they answer: `probe_paths_answer_on_a_running_gateway`).
    let probe = |name: &str| -> (String, u64) {
        let p = get(c, &format!("{name}.httpGet"));
        (s(p, "path").to_owned(), port_of(s(p, "port")))
    };
    assert_eq!(probe("livenessProbe"), ("/healthz".into(), container_port));
    assert_eq!(probe("readinessProbe"), ("/readyz".into(), container_port));
    assert_eq!(probe("startupProbe"), ("/healthz".into(), container_port));

    // The configuration file is the ConfigMap's key, mounted where TENANTGATE_CONFIG says.
    let env: BTreeMap<String, String> = get(c, "env")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (s(e, "name").to_owned(), s(e, "value").to_owned()))
        .collect();
    let volumes = get(pod, "volumes").as_sequence().unwrap();
    let mounts = get(c, "volumeMounts").as_sequence().unwrap();
    let mount_of = |volume: &str| -> &Value {
        mounts
            .iter()
            .find(|m| m["name"].as_str() == Some(volume))
            .unwrap_or_else(|| panic!("volume {volume} is not mounted"))
    };
    let config_volume = volumes
        .iter()
        .find(|v| v.get("configMap").is_some())
        .unwrap();
    assert_eq!(
        s(config_volume, "configMap.name"),
        s(cm, "metadata.name"),
        "the Deployment mounts another ConfigMap"
    );
    let config_mount = mount_of(s(config_volume, "name"));
    assert_eq!(config_mount["readOnly"].as_bool(), Some(true));
    assert_eq!(
        env["TENANTGATE_CONFIG"],
        format!("{}/tenantgate.toml", s(config_mount, "mountPath"))
    );

    // Everything the gateway writes is under the writable data volume (the root file system
    // is read-only).
    let data_volume = volumes
        .iter()
        .find(|v| v["name"].as_str() == Some("data"))
        .unwrap();
    assert!(
        data_volume.get("emptyDir").is_some() || data_volume.get("persistentVolumeClaim").is_some()
    );
    let data = s(mount_of("data"), "mountPath");
    for written in [
        &config.server.secret_file,
        &config.encryption.master_key_file,
        &config.audit.signing_key_file,
        &config.audit.witness_dir,
        &config.rag.index_dir,
    ] {
        assert!(
            written.starts_with(data),
            "{} is not under {data}",
            written.display()
        );
    }

    // Non-root, read-only, no privileges; resources bounded.
    let psc = get(pod, "securityContext");
    assert_eq!(psc["runAsNonRoot"].as_bool(), Some(true));
    let uid = psc["runAsUser"].as_u64().unwrap();
    assert!(uid > 0);
    let csc = get(c, "securityContext");
    assert_eq!(csc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(csc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(
        get(csc, "capabilities.drop").as_sequence().unwrap(),
        &vec![Value::from("ALL")]
    );
    for k in ["requests.cpu", "requests.memory", "limits.memory"] {
        get(c, &format!("resources.{k}"));
    }
    // The image's own user is the one the pod runs as.
    assert_eq!(dockerfile_user(), uid);

    // The Secret: referenced by name; placeholders only; it supplies what the configuration
    // leaves out (the owner's URL with its password, the keys, the providers' API keys).
    let from_secret: Vec<&str> = get(c, "envFrom")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| s(e, "secretRef.name"))
        .collect();
    assert_eq!(from_secret, vec![s(secret, "metadata.name")]);
    assert!(
        secret.get("data").is_none(),
        "base64 `data` could hide a real value"
    );
    let secret_values: BTreeMap<String, String> = get(secret, "stringData")
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
        .collect();
    for (k, v) in &secret_values {
        assert!(
            v.contains("REPLACE_ME"),
            "{k} holds a value: placeholders only"
        );
    }
    let mut needed = vec![
        "TENANTGATE_DATABASE__URL".to_owned(),
        "TENANTGATE_SERVER_SECRET".to_owned(),
        "TENANTGATE_MASTER_KEY".to_owned(),
        "TENANTGATE_AUDIT_SIGNING_KEY".to_owned(),
    ];
    needed.extend(
        config
            .providers
            .iter()
            .filter_map(|p| p.api_key_env.clone()),
    );
    for k in &needed {
        assert!(secret_values.contains_key(k), "the Secret has no {k}");
    }
    // The configuration names no password; the Secret's URL overrides it.
    let userinfo = config
        .database
        .url
        .strip_prefix("postgres://")
        .and_then(|rest| rest.split_once('@'))
        .map(|(u, _)| u)
        .unwrap();
    assert!(!userinfo.contains(':'), "a password in the ConfigMap");
    assert_eq!(
        config.limits.backend,
        tenantgate_gateway::limits::LimitsBackend::Redis,
        "replicas share their limits through Redis"
    );
    assert!(!config.demo.enabled);
    // A placeholder left in is refused, not used as a key: the start fails loudly.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin())
        .args(["audit", "public-key"])
        .current_dir(dir.path())
        .env_remove("TENANTGATE_CONFIG")
        .env(
            "TENANTGATE_AUDIT_SIGNING_KEY",
            &secret_values["TENANTGATE_AUDIT_SIGNING_KEY"],
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TENANTGATE_AUDIT_SIGNING_KEY"), "{err}");
}

#[test]
fn kustomize_renders_the_manifests() {
    let Ok(out) = Command::new("kubectl")
        .args(["kustomize"])
        .arg(k8s_dir())
        .output()
    else {
        common::skip::skip("kubectl is not installed");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), manifests().len());
    for d in &docs {
        // Everything lands in the kustomization's namespace, with the common labels.
        if s(d, "kind") != "Namespace" {
            assert_eq!(s(d, "metadata.namespace"), "tenantgate", "{d:?}");
        }
        let labels = labels(get(d, "metadata.labels"));
        assert_eq!(labels["app.kubernetes.io/name"], "tenantgate", "{d:?}");
    }
}

/// The numeric `USER` of the Dockerfile's last stage.
fn dockerfile_user() -> u64 {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let user = text
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .unwrap();
    user.split(':').next().unwrap().trim().parse().unwrap()
}

#[test]
fn the_container_image_configuration_loads_and_listens_on_the_exposed_port() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let exposed: u16 = text
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let config =
        load_toml(&std::fs::read_to_string(repo().join("deploy/docker/tenantgate.toml")).unwrap());
    assert_eq!(config.server.listen.port(), exposed);
    assert!(config.server.listen.ip().is_unspecified());
    // The file the image sets TENANTGATE_CONFIG to is the one copied there.
    assert!(text.contains(
        "COPY --chown=0:0 deploy/docker/tenantgate.toml /etc/tenantgate/tenantgate.toml"
    ));
    assert!(text.contains("TENANTGATE_CONFIG=/etc/tenantgate/tenantgate.toml"));
    assert!(dockerfile_user() > 0);
    // The build context keeps what the build copies.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for kept in ["!Cargo.toml", "!Cargo.lock", "!crates/", "!deploy/docker/"] {
        assert!(ignore.lines().any(|l| l == kept), "{kept}");
    }
    // Every workspace crate's manifest is copied for the dependency layer.
    for e in std::fs::read_dir(repo().join("crates")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        let line = format!("COPY crates/{name}/Cargo.toml crates/{name}/");
        assert!(text.contains(&line), "the Dockerfile misses {line}");
    }
}

#[tokio::test]
async fn probe_paths_answer_on_a_running_gateway() {
    let m = manifests();
    let c = get(&m["Deployment"], "spec.template.spec.containers.0");
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = common::serve(dir.path()).await;
    let http = reqwest::Client::new();
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let path = s(c, &format!("{probe}.httpGet.path"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let status = http
                .get(format!("{url}{path}"))
                .send()
                .await
                .unwrap()
                .status();
            if status == 200 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{probe} {path}: {status}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    // A path that is not a route is not 200: the probes above hit real routes.
    let r = http.get(format!("{url}/healthzz")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    common::terminate(&mut child).await;
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let path = repo().join("deploy/systemd/tenantgate.service");
    let text = std::fs::read_to_string(&path).unwrap();
    let settings: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect();
    let has = |k: &str, v: &str| settings.iter().any(|(a, b)| *a == k && *b == v);
    for (k, v) in [
        ("ExecStart", "/usr/local/bin/tenantgate serve"),
        ("User", "tenantgate"),
        ("StateDirectory", "tenantgate"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("KillSignal", "SIGTERM"),
    ] {
        assert!(has(k, v), "{k}={v}");
    }
    // The sysusers file creates the unit's user.
    let sysusers =
        std::fs::read_to_string(repo().join("deploy/systemd/tenantgate.sysusers")).unwrap();
    assert!(sysusers.lines().any(|l| l.starts_with("u tenantgate ")));
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        common::skip::skip("systemd-analyze is not installed");
        return;
    };
    assert!(out.status.success());
    // Verified as installed, with ExecStart on the binary this test built.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("tenantgate.service");
    std::fs::write(
        &unit,
        text.replace("/usr/local/bin/tenantgate", &common::bin()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unreadable_tls_certificate_fails_config_check_and_serve_naming_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("tls.crt");
    for args in [&["config", "check"][..], &["serve"]] {
        let out = Command::new(common::bin())
            .args(args)
            .current_dir(dir.path())
            .env_remove("TENANTGATE_CONFIG")
            .env("TENANTGATE_SERVER__LISTEN", "127.0.0.1:0")
            .env("TENANTGATE_SERVER__TLS__CERT_FILE", &missing)
            .env(
                "TENANTGATE_SERVER__TLS__KEY_FILE",
                dir.path().join("tls.key"),
            )
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let expected = format!(
            "server.tls.cert_file {}: cannot read it: No such file or directory",
            missing.display()
        );
        assert!(err.contains(&expected), "{args:?}: {err}");
        assert_eq!(err.matches("server.tls.cert_file").count(), 1, "{err}");
    }
    // Nothing was created: the certificate is checked before the store is opened.
    assert!(!dir.path().join("data/tenantgate.db").exists());
}

fn tenantgate(args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .args(args)
        .env_remove("TENANTGATE_CONFIG")
        .output()
        .unwrap()
}

/// The subcommands `help` lists under "Commands:" (without `help` itself).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A command's line, not a wrapped description's (deeper indented).
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_commands_help_names_the_environment_it_reads() {
    let mut queue = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = tenantgate(&args);
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        seen += 1;
        // Each variable opens an indented line of the block.
        let line = |var: &str| format!("\n  {var} ");
        for var in [
            "TENANTGATE_LOG",
            "TENANTGATE_LOG_FORMAT",
            "MIMALLOC_ALLOW_THP",
        ] {
            assert!(help.contains(&line(var)), "{args:?} does not name {var}");
        }
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let offline = matches!(
            p.as_slice(),
            ["prompt", ..] | ["audit", "verify"] | ["completions"] | ["bleed-test"]
        );
        // (--config is global: its own `[env: TENANTGATE_CONFIG=]` shows in every help; the
        // block's line is what tells a command that reads the configuration.)
        for var in [
            "TENANTGATE_CONFIG",
            "TENANTGATE_<SECTION>__<KEY>",
            "TENANTGATE_SERVER_SECRET",
            "TENANTGATE_MASTER_KEY",
            "TENANTGATE_AUDIT_SIGNING_KEY",
        ] {
            assert_eq!(help.contains(&line(var)), !offline, "{args:?} and {var}");
        }
        assert_eq!(
            help.contains("providers[].api_key_env"),
            !offline,
            "{args:?}"
        );
        for sub in subcommands(&help) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
    }
    assert!(seen > 30, "only {seen} commands found");
    // The prompt client's own variables.
    let help = String::from_utf8(tenantgate(&["prompt", "--help"]).stdout).unwrap();
    assert!(help.contains("TENANTGATE_URL") && help.contains("TENANTGATE_API_KEY"));
    // The bleed test's platform credential may come from the environment (kept out of `ps`).
    let help = String::from_utf8(tenantgate(&["bleed-test", "--help"]).stdout).unwrap();
    assert!(
        help.contains("TENANTGATE_BLEED_PLATFORM_CREDENTIAL"),
        "{help}"
    );

    // The override syntax the help gives is the loader's: a bad value through it is refused
    // naming the key.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin())
        .args(["config", "check"])
        .current_dir(dir.path())
        .env_remove("TENANTGATE_CONFIG")
        .env("TENANTGATE_SERVER__LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("server.listen"), "{err}");
}

#[test]
fn closed_sets_list_their_allowed_values_and_refuse_others() {
    let help = |args: &[&str]| String::from_utf8(tenantgate(args).stdout).unwrap();
    let plans = "[possible values: free, pro, enterprise]";
    let tiers = "[possible values: namespace, schema, dedicated]";
    for (args, lists) in [
        (&["tenant", "create", "--help"][..], &[plans, tiers][..]),
        (&["tenant", "import", "--help"], &[plans, tiers]),
        (&["tenant", "set-plan", "--help"], &[plans]),
        (&["tenant", "move", "--help"], &[tiers]),
        (
            &["key", "create", "--help"],
            &["[possible values: tenant_admin, member]"],
        ),
        (
            &["tenant", "kill-switch", "--help"],
            &["[possible values: on, off]"],
        ),
        (
            &["completions", "--help"],
            &["[possible values: bash, elvish, fish, powershell, zsh]"],
        ),
    ] {
        let text = help(args);
        for l in lists {
            assert!(text.contains(l), "{args:?} does not list {l}:\n{text}");
        }
    }
    let out = tenantgate(&["tenant", "set-plan", "acme", "gold"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'gold'") && err.contains("free, pro, enterprise"),
        "{err}"
    );
    let out = tenantgate(&[
        "key",
        "create",
        "--tenant",
        "acme",
        "--role",
        "platform_admin",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn completion_scripts_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = tenantgate(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in [
            "tenantgate",
            "serve",
            "tenant",
            "set-plan",
            "kill-switch",
            "completions",
        ] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let bash = tenantgate(&["completions", "bash"]).stdout;
    let script = String::from_utf8(bash).unwrap();
    // The allowed values complete too.
    assert!(script.contains("free pro enterprise"), "no plan values");
    // And bash reads it: sourcing it defines the completion function.
    if Command::new("bash").arg("--version").output().is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tenantgate.bash");
        std::fs::write(&file, &script).unwrap();
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {} && complete -p tenantgate",
                file.display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("tenantgate"));
    }
}
