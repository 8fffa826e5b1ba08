//! Structural rules that the type system alone does not enforce, checked over the source tree.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Dev-only crates that drive the library from outside (they stand in for the authentication
/// stage and the operator) and ship in no binary.
const DEV_ONLY: &[&str] = &["tenantgate-bench"];

/// Non-test source files of every shipped crate (`crates/*/src`).
fn sources() -> Vec<(PathBuf, String)> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for c in std::fs::read_dir(crates).unwrap().flatten() {
        if DEV_ONLY.iter().any(|d| c.file_name() == *d) {
            continue;
        }
        let src = c.path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    files
        .into_iter()
        .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap()))
        .collect()
}

/// Where `needle` is called (not defined, not mentioned in a comment) in shipped sources.
fn call_sites(needle: &str) -> Vec<String> {
    let mut sites = Vec::new();
    for (path, text) in sources() {
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if line.contains(needle) && !t.starts_with("pub fn") && !t.starts_with("//") {
                sites.push(format!("{}:{}", path.display(), i + 1));
            }
        }
    }
    sites
}

#[test]
fn tenant_scope_is_built_only_by_the_authentication_stage() {
    let sites = call_sites("TenantScope::from_verified_credential(");
    assert_eq!(
        sites.len(),
        1,
        "TenantScope constructor call sites: {sites:#?}"
    );
    assert!(
        sites[0].contains("tenantgate-gateway/src/identity/auth.rs"),
        "{sites:?}"
    );
}

#[test]
fn break_glass_scope_is_built_only_by_the_audited_break_glass_path() {
    let sites = call_sites("TenantScope::from_break_glass(");
    assert_eq!(sites.len(), 1, "break-glass scope call sites: {sites:#?}");
    assert!(
        sites[0].contains("tenantgate-gateway/src/http/admin.rs"),
        "{sites:?}"
    );
}

#[test]
fn lifecycle_scopes_are_built_only_by_the_recorded_lifecycle_operations() {
    let sites = call_sites("TenantScope::for_lifecycle(");
    assert!(
        !sites.is_empty(),
        "non-vacuity: onboarding, the export and the import build one"
    );
    for s in &sites {
        assert!(
            s.contains("tenantgate-gateway/src/lifecycle/"),
            "a lifecycle scope outside lifecycle/: {sites:#?}"
        );
    }
}

#[test]
fn platform_admins_from_tokens_are_made_only_by_the_authentication_stage() {
    let sites = call_sites("PlatformAdmin::from_verified_credential(");
    assert_eq!(sites.len(), 1, "{sites:#?}");
    assert!(
        sites[0].contains("tenantgate-gateway/src/identity/auth.rs"),
        "{sites:?}"
    );
}

#[test]
fn no_sql_outside_the_store_crate() {
    for (path, text) in sources() {
        if path.to_string_lossy().contains("tenantgate-store") {
            continue;
        }
        for kw in [
            "sqlx::",
            "SELECT ",
            "INSERT INTO",
            "UPDATE api_keys",
            "UPDATE tenants",
        ] {
            assert!(!text.contains(kw), "{} contains {kw:?}", path.display());
        }
    }
}

#[test]
fn core_does_no_io() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tenantgate-core/Cargo.toml"),
    )
    .unwrap();
    for dep in ["tokio", "sqlx", "axum", "reqwest", "hyper"] {
        assert!(!manifest.contains(dep), "tenantgate-core depends on {dep}");
    }
}

/// The gateway crate's source, one entry per file: its path under `src/`, and its code without
/// comments and without its `#[cfg(test)]` module.
fn gateway_code() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| format!("{l}\n"))
                .collect();
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (rel, code)
        })
        .collect()
}

/// A file's concern: its top-level folder, or its own name for a file at the top.
fn unit(rel: &str) -> String {
    match rel.split_once('/') {
        Some((dir, _)) => dir.to_owned(),
        None => rel.trim_end_matches(".rs").to_owned(),
    }
}

/// The dependency rule: the pipeline and its stages take narrow dependencies; none names the
/// server's state or the HTTP layer (the handlers are adapters around the pipeline, never the
/// other way round).
#[test]
fn the_pipeline_names_neither_the_server_state_nor_the_http_layer() {
    let code = gateway_code();
    let forbidden = ["AppState", "crate::http", "crate::state", "crate::server"];
    let mut stages = 0;
    let mut found = Vec::new();
    for (rel, text) in &code {
        if unit(rel) != "pipeline" {
            continue;
        }
        stages += 1;
        for f in forbidden {
            if text.contains(f) {
                found.push(format!("src/{rel} names {f}"));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
    // Non-vacuity: the pipeline's files are where this test looks, and the same scan does see
    // the state where it is named (the adapters).
    assert!(stages >= 8, "only {stages} files under src/pipeline");
    assert!(code
        .iter()
        .any(|(rel, t)| rel == "http/model.rs" && t.contains("AppState")));
}

/// The folders (and top-level files) of the gateway crate import each other without a cycle:
/// the graph of `crate::<unit>` references between them is acyclic.
#[test]
fn no_import_cycle_between_the_gateway_folders() {
    use std::collections::{BTreeMap, BTreeSet};
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in gateway_code() {
        let from = unit(&rel);
        let deps = edges.entry(from.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let to: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !to.is_empty() && to != from {
                deps.insert(to);
            }
        }
    }
    // Non-vacuity: the adapters do depend on the pipeline, and the pipeline on its parts.
    assert!(edges["http"].contains("pipeline"));
    assert!(edges["pipeline"].contains("audit"));
    // Depth-first search for a back edge; the cycle found is reported.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for next in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(cycle) = visit(n, &edges, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

/// The control-plane handlers resolve their caller only through the role extractors of
/// `http/roles.rs` (which the route table checks against each route's declared access), never
/// by hand: a hand-written `tenant_context` call next to a role extractor would be a second,
/// unchecked authorization decision.
#[test]
fn control_plane_handlers_resolve_callers_only_through_role_extractors() {
    let http = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let read = |f: &str| std::fs::read_to_string(http.join(f)).unwrap();
    let resolvers = ["tenant_context(", ".caller("];
    let mut handlers = 0;
    for f in [
        "tenant.rs",
        "admin.rs",
        "members.rs",
        "audit.rs",
        "knowledge.rs",
        "usage.rs",
        "api.rs",
    ] {
        let text = read(f);
        handlers += text.matches("pub(super) async fn ").count();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for r in resolvers {
                assert!(!code.contains(r), "http/{f}:{}: {r} by hand", i + 1);
            }
        }
    }
    // not vacuous: the files hold the handlers, and roles.rs is where callers are resolved
    assert!(handlers >= 50, "{handlers} handlers found");
    let roles = read("roles.rs");
    for r in resolvers {
        assert!(roles.contains(r), "roles.rs does not call {r}");
    }
}

/// Crates that do I/O or bring a runtime: async runtimes and their reactors, network clients
/// and servers, TLS, database drivers.
const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio-util",
    "tokio-stream",
    "mio",
    "async-std",
    "async-io",
    "smol",
    "reqwest",
    "hyper",
    "hyper-util",
    "h2",
    "axum",
    "tower",
    "ureq",
    "curl",
    "isahc",
    "socket2",
    "rustls",
    "tokio-rustls",
    "native-tls",
    "openssl",
    "sqlx",
    "sqlx-core",
    "redis",
    "rusqlite",
    "libsqlite3-sys",
    "tokio-postgres",
    "postgres",
    "hickory-resolver",
    "trust-dns-resolver",
];

/// The crates that must stay pure (ARCHITECTURE: "no I/O").
const PURE_CRATES: &[&str] = &[
    "tenantgate-core",
    "tenantgate-crypto",
    "tenantgate-audit",
    "tenantgate-guard",
    "tenantgate-rag",
    "tenantgate-providers",
];

/// The workspace's resolved dependency graph, from `cargo metadata` (offline, for this host:
/// other platforms' crates are not downloaded).
struct Graph {
    names: std::collections::HashMap<String, String>,
    /// package id -> ids of its normal (not dev, not build) dependencies.
    normal: std::collections::HashMap<String, Vec<String>>,
}

impl Graph {
    fn load() -> Graph {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let host = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
            .arg("-vV")
            .output()
            .unwrap();
        let host = String::from_utf8(host.stdout).unwrap();
        let host = host
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .unwrap()
            .to_owned();
        let out = std::process::Command::new(env!("CARGO"))
            .current_dir(&root)
            .args(["metadata", "--format-version", "1", "--offline", "--locked"])
            .args(["--filter-platform", &host])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo metadata: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let names = m["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_owned(),
                    p["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let normal = m["resolve"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let deps = n["deps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    // `kind` is null for a normal dependency, "dev" or "build" otherwise.
                    .filter(|d| {
                        d["dep_kinds"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|k| k["kind"].is_null())
                    })
                    .map(|d| d["pkg"].as_str().unwrap().to_owned())
                    .collect();
                (n["id"].as_str().unwrap().to_owned(), deps)
            })
            .collect();
        Graph { names, normal }
    }

    /// Every I/O crate reachable from `krate` through normal dependencies, each with the
    /// path that reaches it.
    fn io_reached_from(&self, krate: &str) -> Vec<String> {
        let start = self
            .names
            .iter()
            .find(|(_, n)| n.as_str() == krate)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("{krate} is not in the workspace graph"));
        let mut parent: std::collections::HashMap<String, String> = Default::default();
        let mut stack = vec![start.clone()];
        let mut found = Vec::new();
        while let Some(id) = stack.pop() {
            for dep in &self.normal[&id] {
                if *dep == start || parent.contains_key(dep) {
                    continue;
                }
                parent.insert(dep.clone(), id.clone());
                if IO_CRATES.contains(&self.names[dep].as_str()) {
                    let mut path = vec![self.names[dep].clone()];
                    let mut at = dep;
                    while let Some(p) = parent.get(at) {
                        path.push(self.names[p].clone());
                        at = p;
                    }
                    path.reverse();
                    found.push(path.join(" -> "));
                }
                stack.push(dep.clone());
            }
        }
        found.sort();
        found
    }
}

#[test]
fn pure_crates_depend_on_no_io_crate() {
    let graph = Graph::load();
    for krate in PURE_CRATES {
        let reached = graph.io_reached_from(krate);
        assert!(
            reached.is_empty(),
            "{krate} reaches I/O crates through its dependencies: {reached:#?}"
        );
    }
    // Not vacuous: the same walk from the gateway finds the runtime, the server and the
    // database driver.
    let gateway = graph.io_reached_from("tenantgate-gateway");
    for io in ["tokio", "hyper", "sqlx"] {
        assert!(
            gateway.iter().any(|p| p.ends_with(&format!(" -> {io}"))),
            "the walk from tenantgate-gateway does not find {io}: {gateway:#?}"
        );
    }
}

/// Store-level audit appends in shipped sources, per file (whitespace removed, so a call split
/// over lines is still one call): `Store::audit_append`, `Platform::audit_append`,
/// `TenantAudit::append`.
fn store_audit_appends() -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (path, text) in sources() {
        let p = path.to_string_lossy().replace('\\', "/");
        if p.contains("tenantgate-store/src") {
            continue; // the definitions
        }
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .flat_map(|l| l.chars())
            .filter(|c| !c.is_whitespace())
            .collect();
        let n = code.matches(".audit_append(").count() + code.matches(".audit().append(").count();
        if n > 0 {
            out.push((p, n));
        }
    }
    out.sort();
    out
}

#[test]
fn audit_records_are_appended_only_through_the_group_commit_writer() {
    let sites = store_audit_appends();
    // Not vacuous: the writer's own appends are found (its group commit, the per-tenant retry,
    // and operators' actions).
    assert!(
        sites
            .iter()
            .any(|(p, n)| p.ends_with("tenantgate-gateway/src/audit/writer.rs") && *n >= 2),
        "{sites:#?}"
    );
    for (path, n) in &sites {
        let writer = path.ends_with("tenantgate-gateway/src/audit/writer.rs");
        // The CLI's path (`AuditSink::Cli`): one append, for a process that runs no writer.
        let cli = path.ends_with("tenantgate-gateway/src/control.rs") && *n == 1;
        assert!(
            writer || cli,
            "{path} appends audit records without the group-commit writer ({n} calls); \
             use AuditLog::append / append_operator"
        );
    }
    // Only the CLI binary takes the direct path (the match arm in control.rs is not a use).
    let cli_uses: Vec<String> = call_sites("AuditSink::Cli(")
        .into_iter()
        .filter(|s| !s.contains("tenantgate-gateway/src/control.rs"))
        .collect();
    assert!(!cli_uses.is_empty(), "the CLI's sites are found");
    for s in &cli_uses {
        assert!(
            s.contains("crates/tenantgate/src/"),
            "{s} writes audit records around the server's writer"
        );
    }
}

/// The console reads and changes tenant data only through the control API (`console/api.rs`:
/// the same routes, role extractors and audit layer as `/tenant/v1` and `/admin/v1`), never
/// the store: its one store use is its own session rows.
#[test]
fn the_console_reaches_tenant_data_only_through_the_api() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console");
    let mut files = 0;
    let mut api_calls = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices("store()") {
            let rest = &text[i..];
            assert!(
                rest.trim_start_matches("store()")
                    .trim_start()
                    .starts_with(".console_sessions()"),
                "{}: the console uses the store for something other than its sessions",
                path.display()
            );
        }
        for banned in ["keyring()", "TenantScope", ".platform(&", "tenant_context("] {
            assert!(!text.contains(banned), "{}: {banned}", path.display());
        }
        api_calls += text.matches("/tenant/v1/").count() + text.matches("/admin/v1/").count();
    }
    // Non-vacuity: the files were read and they do call the API.
    assert!(
        files >= 6 && api_calls >= 20,
        "{files} files, {api_calls} API calls"
    );
}
