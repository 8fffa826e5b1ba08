//! The tenant export bundle (issue 18): `GET /tenant/v1/export` against a real gateway (real
//! SQLite, real crypto, mockllm and the demo embedder), checked from the outside: the manifest's
//! signature under the gateway's audit key, every file's checksum, the contents against what
//! was uploaded byte for byte, the audit file through the offline verifier; isolation between
//! tenants; the import into another deployment (and its refusal of a tampered bundle); and the
//! export's memory against the size of the documents.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{chat, TestGateway};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tenantgate_audit::{verify_jsonl, PublicKey};
use tenantgate_core::{IsolationTier, NewTenant, PlanTier, TenantId, TenantScope};
use tenantgate_gateway::control::AuditSink;
use tenantgate_gateway::lifecycle::import;

const HANDBOOK: &str = "# Refunds\n\nAcme refunds are paid within fourteen days to the original card. \
The refund code is ZEPHYR-RIVER-42.\n\n# Shipping\n\nAcme parcels leave the Lisbon warehouse every Monday \
and Thursday by courier.\n";
const PDF: &[u8] = include_bytes!("data/acme-policy.pdf");
const NOTES: &str = "Globex notes: the launch is in Springfield.\n";

/// One tar entry: where its data starts in the archive and how long it is.
struct Entry {
    offset: usize,
    size: usize,
}

/// The archive's entries by path, in order (a test-side reader: nothing shared with the
/// writer but the POSIX format).
fn entries(tar: &[u8]) -> Vec<(String, Entry)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() {
        let h = &tar[at..at + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8(h[..name_end].to_vec()).unwrap();
        let size_s = std::str::from_utf8(&h[124..135]).unwrap();
        let size = usize::from_str_radix(size_s.trim_matches(char::from(0)), 8).unwrap();
        out.push((
            name,
            Entry {
                offset: at + 512,
                size,
            },
        ));
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

fn files(tar: &[u8]) -> HashMap<String, Vec<u8>> {
    entries(tar)
        .into_iter()
        .map(|(n, e)| (n, tar[e.offset..e.offset + e.size].to_vec()))
        .collect()
}

async fn upload(
    gw: &TestGateway,
    key: &str,
    kb: &str,
    name: &str,
    ctype: &str,
    body: Vec<u8>,
) -> Value {
    let r = gw
        .http
        .post(format!(
            "{}/tenant/v1/knowledge-bases/{kb}/documents?name={name}",
            gw.url
        ))
        .bearer_auth(key)
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn create_kb(gw: &TestGateway, key: &str, name: &str) {
    let r = gw
        .post(
            "/tenant/v1/knowledge-bases",
            key,
            &json!({"name": name, "chunk_tokens": 32}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

async fn push(gw: &TestGateway, key: &str, name: &str, text: &str) {
    let r = gw
        .post(
            &format!("/tenant/v1/prompts/{name}/versions"),
            key,
            &json!({"template": text}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

async fn export(gw: &TestGateway, key: &str) -> (u16, Vec<u8>) {
    let r = gw.get("/tenant/v1/export", key).await;
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

/// Checks the manifest's signature under `keys` and every file against it; the manifest.
fn verified_manifest(tar: &[u8], keys: &[PublicKey]) -> Value {
    let all = entries(tar);
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    // The manifest comes last, then its signature.
    assert_eq!(&names[names.len() - 2..], ["manifest.json", "manifest.sig"]);
    let f = files(tar);
    let manifest_bytes = &f["manifest.json"];
    let sig: Value = serde_json::from_slice(&f["manifest.sig"]).unwrap();
    let key = keys
        .iter()
        .find(|k| k.public_key == sig["public_key"].as_str().unwrap())
        .expect("signed by the gateway's audit key");
    key.verify(manifest_bytes, sig["sig"].as_str().unwrap())
        .unwrap();
    let manifest: Value = serde_json::from_slice(manifest_bytes).unwrap();
    let listed = manifest["files"].as_array().unwrap();
    assert_eq!(
        listed.len(),
        all.len() - 2,
        "every file but the manifest's own"
    );
    for l in listed {
        let data = &f[l["path"].as_str().unwrap()];
        assert_eq!(l["size"].as_u64().unwrap() as usize, data.len());
        assert_eq!(
            l["sha256"].as_str().unwrap(),
            hex::encode(Sha256::digest(data))
        );
    }
    manifest
}

/// A tenant with prompts (several versions, one rolled back), two knowledge bases (Markdown,
/// and a PDF), a member, keys and model calls. Returns (tenant, admin key, member key).
async fn acme(gw: &TestGateway) -> (tenantgate_core::Tenant, String, String) {
    let (t, member) = gw.tenant("acme", &["*"], None).await;
    let admin = gw.admin_key(&t).await;
    push(gw, &admin, "support", "You are Acme support, version one.").await;
    push(gw, &admin, "support", "You are Acme support, version two.").await;
    push(gw, &admin, "sales", "Sell {{ thing }} politely.").await;
    let r = gw
        .post(
            "/tenant/v1/prompts/support/activate",
            &admin,
            &json!({"version": 1}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    create_kb(gw, &admin, "handbook").await;
    create_kb(gw, &admin, "policies").await;
    upload(
        gw,
        &admin,
        "handbook",
        "handbook.md",
        "text/markdown",
        HANDBOOK.into(),
    )
    .await;
    upload(
        gw,
        &admin,
        "policies",
        "policy.pdf",
        "application/pdf",
        PDF.to_vec(),
    )
    .await;
    let r = gw
        .http
        .put(format!("{}/tenant/v1/members/dave", gw.url))
        .bearer_auth(&admin)
        .json(&json!({"role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        let r = gw
            .post("/v1/chat/completions", &member, &chat("gpt-test", "hello"))
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    (t, admin, member)
}

fn doc_sources(tar: &[u8]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = files(tar)
        .into_iter()
        .filter(|(n, _)| n.ends_with("/source"))
        .map(|(_, d)| d)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn an_admin_exports_everything_it_owns_signed_and_byte_for_byte() {
    let gw = TestGateway::start().await;
    let (t, admin, _) = acme(&gw).await;
    let (status, tar) = export(&gw, &admin).await;
    assert_eq!(status, 200);
    let keys = gw.audit_keys(&admin).await;
    let manifest = verified_manifest(&tar, &keys);
    assert_eq!(manifest["tenant"], t.id.as_str());
    assert_eq!(manifest["format"], "tenantgate-bundle/1");
    assert_eq!(manifest["documents_without_source"], json!([]));
    let f = files(&tar);

    // prompts: every version's text, author and active flag; settings
    let p: Value = serde_json::from_slice(&f["prompts.json"]).unwrap();
    let support = p["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "support")
        .unwrap();
    assert_eq!(support["active_version"], 1);
    let v = support["versions"].as_array().unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["template"], "You are Acme support, version one.");
    assert_eq!(v[0]["active"], true);
    assert_eq!(v[1]["template"], "You are Acme support, version two.");
    assert_eq!(v[1]["active"], false);
    assert!(v[1]["author"].as_str().is_some() && v[1]["created_at_ms"].as_i64().is_some());
    assert!(p["settings"]["canary"]
        .as_str()
        .unwrap()
        .starts_with("tgc_"));

    // documents as uploaded, byte for byte; chunks with their embeddings
    let mut want = vec![HANDBOOK.as_bytes().to_vec(), PDF.to_vec()];
    want.sort();
    assert_eq!(doc_sources(&tar), want);
    let index: Value = serde_json::from_slice(&f["knowledge/index.json"]).unwrap();
    assert_eq!(index["knowledge_bases"].as_array().unwrap().len(), 2);
    let chunks: Vec<Value> = f
        .iter()
        .filter(|(n, _)| n.ends_with("/chunks.jsonl"))
        .flat_map(|(_, d)| {
            d.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(chunks
        .iter()
        .any(|c| c["text"].as_str().unwrap().contains("ZEPHYR-RIVER-42")));
    assert!(chunks
        .iter()
        .all(|c| !c["embedding"].as_array().unwrap().is_empty()));

    // the audit file verifies offline as is, up to the head the manifest names
    let report = verify_jsonl(
        std::str::from_utf8(&f["audit/audit.jsonl"]).unwrap(),
        Some(&keys),
    )
    .unwrap();
    assert_eq!(report.tenant, t.id.as_str());
    assert_eq!(
        manifest["chain_head"]["seq"].as_u64().unwrap(),
        report.last_seq
    );
    assert!(report.records > 2);

    // usage by day and model, keys' metadata without hashes, members
    let usage: Value = serde_json::from_slice(&f["usage.json"]).unwrap();
    let rows = usage["by_day_and_model"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["model"] == "gpt-test" && r["requests"] == 2),
        "{usage}"
    );
    let keys_json: Value = serde_json::from_slice(&f["keys.json"]).unwrap();
    assert_eq!(keys_json["keys"].as_array().unwrap().len(), 2);
    assert!(keys_json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k.get("hash").is_none() && k["prefix"].is_string()));
    let members: Value = serde_json::from_slice(&f["members.json"]).unwrap();
    assert_eq!(members["members"][0]["subject"], "dave");

    // recorded, with the manifest's SHA-256, in the tenant's chain and the platform's
    let sha = hex::encode(Sha256::digest(&f["manifest.json"]));
    let deadline = Instant::now() + Duration::from_secs(5);
    let scope_of = |id: TenantId| {
        #[expect(
            clippy::disallowed_methods,
            reason = "the test reads the chains it checks"
        )]
        TenantScope::from_verified_credential(id)
    };
    for chain in [t.id.clone(), TenantId::platform_chain()] {
        let scope = scope_of(chain.clone());
        loop {
            let recs = gw
                .state
                .store()
                .tenant(&scope)
                .audit()
                .records(1, u64::MAX >> 2)
                .await
                .unwrap();
            let found = recs.iter().any(|r| {
                let v: Value = serde_json::from_str(&r.record).unwrap();
                v["event"] == "data_access"
                    && v["detail"]["manifest_sha256"] == sha.as_str()
                    && (!chain.is_platform_chain() || v["detail"]["tenant"] == t.id.as_str())
            });
            if found {
                break;
            }
            assert!(Instant::now() < deadline, "export not recorded in {chain}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn another_tenants_admin_gets_only_its_own_bundle_and_a_member_is_refused() {
    let gw = TestGateway::start().await;
    let (_, _, acme_member) = acme(&gw).await;
    let (globex, _) = gw.tenant("globex", &["*"], None).await;
    let g_admin = gw.admin_key(&globex).await;
    push(&gw, &g_admin, "support", "Globex support.").await;
    create_kb(&gw, &g_admin, "notes").await;
    upload(
        &gw,
        &g_admin,
        "notes",
        "notes.txt",
        "text/plain",
        NOTES.into(),
    )
    .await;
    let (status, tar) = export(&gw, &g_admin).await;
    assert_eq!(status, 200);
    verified_manifest(&tar, &gw.audit_keys(&g_admin).await);
    assert_eq!(doc_sources(&tar), vec![NOTES.as_bytes().to_vec()]);
    let hay = |needle: &[u8]| tar.windows(needle.len()).any(|w| w == needle);
    for a in [
        &b"ZEPHYR-RIVER-42"[..],
        b"Acme support, version",
        b"Sell {{ thing }}",
        &PDF[200..264],
        b"dave",
    ] {
        assert!(
            !hay(a),
            "acme's data in globex's bundle: {:?}",
            String::from_utf8_lossy(a)
        );
    }
    let (status, _) = export(&gw, &acme_member).await;
    assert_eq!(status, 403);
    gw.stop().await;
}

fn target<'a>(
    gw: &'a TestGateway,
    admin: &'a tenantgate_core::PlatformAdmin,
    slug: &str,
) -> import::Target<'a> {
    import::Target {
        store: gw.state.store(),
        keyring: gw.state.keyring(),
        admin,
        sink: AuditSink::Cli(gw.state.store()),
        tenant: NewTenant {
            slug: slug.into(),
            display_name: slug.into(),
            plan: PlanTier::Pro,
            isolation: IsolationTier::Namespace,
            allowed_models: vec!["*".into()],
            max_tokens_per_request: None,
        },
        dedicated: None,
    }
}

async fn live_tenants(gw: &TestGateway) -> Vec<String> {
    let admin = TestGateway::admin();
    gw.state
        .store()
        .platform(&admin)
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.slug)
        .collect()
}

/// Exports acme from one deployment, imports it into another, and checks it there.
async fn import_into(second: TestGateway) {
    let first = TestGateway::start().await;
    let (t, admin, _) = acme(&first).await;
    let (_, tar) = export(&first, &admin).await;
    let keys = first.audit_keys(&admin).await;
    let path = second.dir.path().join("acme.tar");
    std::fs::write(&path, &tar).unwrap();
    let op = TestGateway::admin();
    let slug = format!("acme-{:08x}", rand::random::<u32>());
    let out = import::import(&path, &keys[0], target(&second, &op, &slug))
        .await
        .unwrap();
    assert_eq!(out.source_tenant, t.id.as_str());
    assert_eq!(
        (out.prompts, out.knowledge_bases, out.documents, out.members),
        (2, 2, 2, 1)
    );
    second.wait_for_revision().await;
    let new_admin = second.admin_key(&out.tenant).await;

    // prompts, every version and the active one
    let v: Value = second
        .get("/tenant/v1/prompts/support/versions/2", &new_admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["template"], "You are Acme support, version two.");
    let list: Value = second
        .get("/tenant/v1/prompts", &new_admin)
        .await
        .json()
        .await
        .unwrap();
    let support = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "support")
        .unwrap();
    assert_eq!(support["active_version"], 1, "{list}");

    // documents byte for byte (the new deployment's own export of them), and search works
    let (status, again) = export(&second, &new_admin).await;
    assert_eq!(status, 200);
    assert_eq!(doc_sources(&again), doc_sources(&tar));
    let r: Value = second
        .post(
            "/tenant/v1/knowledge-bases/handbook/search",
            &new_admin,
            &json!({"query": "refund code", "top_k": 3}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        r["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["text"].as_str().unwrap().contains("ZEPHYR-RIVER-42")),
        "{r}"
    );

    // the import is in the new tenant's chain, naming the source and the manifest
    let f = files(&tar);
    let sha = hex::encode(Sha256::digest(&f["manifest.json"]));
    #[expect(
        clippy::disallowed_methods,
        reason = "the test reads the chain it checks"
    )]
    let scope = TenantScope::from_verified_credential(out.tenant.id.clone());
    let recs = second
        .state
        .store()
        .tenant(&scope)
        .audit()
        .records(1, 1000)
        .await
        .unwrap();
    assert!(recs.iter().any(|r| {
        let v: Value = serde_json::from_str(&r.record).unwrap();
        v["detail"]["action"] == "tenant.import"
            && v["detail"]["manifest_sha256"] == sha.as_str()
            && v["detail"]["source_tenant"] == t.id.as_str()
    }));
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_bundle_imports_into_another_sqlite_deployment() {
    import_into(TestGateway::start().await).await;
}

#[tokio::test]
async fn a_bundle_imports_into_a_postgres_deployment() {
    let Some(url) = common::skip::backend_url("TENANTGATE_TEST_POSTGRES_URL") else {
        return;
    };
    let schema = format!("tg_gw_{:016x}", rand::random::<u64>());
    let second = TestGateway::start_with(|c| {
        c.database.url = url.clone();
        c.database.pg_schema = schema.clone();
        c.database.max_connections = 4;
    })
    .await;
    import_into(second).await;
}

#[tokio::test]
async fn a_tampered_bundle_is_refused_and_nothing_is_created() {
    let first = TestGateway::start().await;
    let (_, admin, _) = acme(&first).await;
    let (_, tar) = export(&first, &admin).await;
    let keys = first.audit_keys(&admin).await;
    let second = TestGateway::start().await;
    let op = TestGateway::admin();
    let before = live_tenants(&second).await;
    let all = entries(&tar);
    let at = |suffix: &str| {
        all.iter()
            .find(|(n, _)| n.ends_with(suffix))
            .map(|(_, e)| e.offset)
            .unwrap()
    };

    let try_import = |bytes: Vec<u8>, key: PublicKey, name: &'static str| {
        let path = second.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let second = &second;
        let op = &op;
        async move { import::import(&path, &key, target(second, op, "acme-copy")).await }
    };
    // one byte of a document changed
    let mut doc = tar.clone();
    doc[at("/source") + 3] ^= 0x20;
    let e = try_import(doc, keys[0].clone(), "doc.tar")
        .await
        .unwrap_err();
    assert!(e.contains("checksum"), "{e}");
    // the manifest changed (its signature no longer matches)
    let mut man = tar.clone();
    let m = at("manifest.json");
    let pos = m + tar[m..].windows(7).position(|w| w == b"\"files\"").unwrap();
    man[pos + 1] = b'F';
    let e = try_import(man, keys[0].clone(), "manifest.tar")
        .await
        .unwrap_err();
    assert!(e.contains("manifest.sig"), "{e}");
    // a bundle signed by another key than the trusted one
    let other = tenantgate_audit::Signer::from_seed(&[7u8; 32]).public_key();
    let e = try_import(tar.clone(), other, "key.tar").await.unwrap_err();
    assert!(e.contains("another key"), "{e}");
    assert_eq!(live_tenants(&second).await, before, "nothing was created");
    // and the untouched bundle imports
    try_import(tar, keys[0].clone(), "ok.tar").await.unwrap();
    assert_eq!(live_tenants(&second).await.len(), before.len() + 1);
    first.stop().await;
    second.stop().await;
}

/// The process's resident set, in bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_64_mb_of_documents_stays_in_bounded_memory() {
    const DOCS: usize = 16;
    const DOC_BYTES: usize = 4 << 20;
    let gw = TestGateway::start().await;
    let (t, _) = gw.tenant("bulk", &["*"], None).await;
    let admin = gw.admin_key(&t).await;
    create_kb(&gw, &admin, "bulk").await;
    #[expect(
        clippy::disallowed_methods,
        reason = "the test writes the documents it exports"
    )]
    let scope = TenantScope::from_verified_credential(t.id.clone());
    let h = gw.state.store().tenant(&scope);
    let kb = h.knowledge_base("bulk").await.unwrap();
    // Documents written straight through the store (extracting and embedding 64 MB would
    // measure the demo embedder, not the export), one at a time, each with one real chunk.
    for i in 0..DOCS {
        let bytes: Vec<u8> = (0..DOC_BYTES)
            .map(|j| (j as u32).wrapping_mul(2654435761).wrapping_add(i as u32) as u8)
            .collect();
        let doc = format!("doc_bulk{i:02}");
        let source = tenantgate_gateway::lifecycle::export::seal_source(
            gw.state.keyring(),
            &scope,
            &doc,
            &bytes,
        )
        .await
        .unwrap();
        let chunk = tenantgate_rag::Chunk {
            text: format!("chunk {i}"),
            offset: 0,
            tokens: 2,
        };
        let sealed = tenantgate_gateway::knowledge::seal_chunks(
            gw.state.keyring(),
            &scope,
            &doc,
            &[chunk],
            &[vec![0.5; kb.dims as usize]],
        )
        .await
        .unwrap();
        let sha = hex::encode(Sha256::digest(&bytes));
        h.add_document_with_source(
            &kb.id,
            &doc,
            "bulk.bin",
            "application/octet-stream",
            bytes.len() as i64,
            &sha,
            &sealed,
            &source,
        )
        .await
        .unwrap();
    }
    let base = rss();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(base));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // Read the body as it streams, hashing each document, holding none of it.
    let started = Instant::now();
    let mut r = gw.get("/tenant/v1/export", &admin).await;
    assert_eq!(r.status(), 200);
    let mut total = 0u64;
    let mut chunks = 0u32;
    while let Some(c) = r.chunk().await.unwrap() {
        total += c.len() as u64;
        chunks += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let growth = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(base);
    let data = (DOCS * DOC_BYTES) as u64;
    eprintln!(
        "export of {} MB of documents: {total} bytes in {chunks} chunks, {secs:.2} s ({:.1} MB/s), RSS growth {:.1} MB",
        data >> 20,
        total as f64 / 1e6 / secs,
        growth as f64 / 1e6
    );
    assert!(total > data, "the whole bundle arrived");
    assert!(
        chunks > 64,
        "the body streamed in pieces, not as one buffer"
    );
    assert!(
        growth < data / 4,
        "RSS grew {growth} bytes exporting {data} bytes of documents"
    );
    gw.stop().await;
}
