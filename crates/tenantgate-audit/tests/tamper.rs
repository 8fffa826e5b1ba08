//! The tamper corpus: mutated exports checked in under `tests/data/`, each with the failure it
//! must produce. `valid.*` must verify; every other file must not, and must name the right
//! place. Regenerate with `TENANTGATE_REGEN_CORPUS=1 cargo test -p tenantgate-audit --test tamper`.
#![allow(clippy::unwrap_used, reason = "test code")]

use serde_json::{json, Value};
use std::path::PathBuf;
use tenantgate_audit::*;

const TENANT: &str = "t_01corpus";

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn signer() -> Signer {
    Signer::from_seed(&[42; 32])
}

fn record(seq: u64) -> (Record, String, String) {
    let prompt = format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"question {seq}, with \\\"quotes\\\", a comma\\nand a newline\"}}]}}");
    let response = format!("answer {seq}");
    let r = Record {
        v: 1,
        tenant: TENANT.into(),
        seq,
        ts_ms: 1_795_392_000_000 + seq as i64 * 1000,
        id: format!("req_{seq:04}"),
        event: if seq == 5 {
            EventType::AccessDenied
        } else {
            EventType::ApiCall
        },
        actor: Actor {
            kind: "api_key".into(),
            key_id: Some("k_01corpus".into()),
            user: Some("alice@example.com".into()),
            role: Some("member".into()),
        },
        model: Some(ModelInfo {
            requested: "gpt-4o-mini".into(),
            resolved: Some("gpt-4o-mini-2024-07-18".into()),
            provider: Some("openai".into()),
            version: None,
        }),
        prompt: Some(BodyDigest {
            mode: BodyMode::Sealed,
            sha256: sha256_hex(prompt.as_bytes()),
            bytes: prompt.len() as u64,
        }),
        response: Some(BodyDigest {
            mode: BodyMode::Sealed,
            sha256: sha256_hex(response.as_bytes()),
            bytes: response.len() as u64,
        }),
        tool_calls: vec![],
        tokens: Some(Tokens {
            input: 10 + seq,
            output: 20,
        }),
        cost_micros: None,
        latency_ms: Some(12),
        status: if seq == 5 { 403 } else { 200 },
        error: (seq == 5).then(|| ErrorInfo {
            code: "model_not_allowed".into(),
            message: "the model, with a comma, is not allowed".into(),
        }),
        client: Some(Client {
            ip: Some("10.0.0.7".into()),
            user_agent: Some("OpenAI/Python 3.54.0".into()),
        }),
        detail: json!({}),
    };
    (r, prompt, response)
}

/// A six-record chain with checkpoints at 3 and 6, exported whole.
fn valid() -> Vec<ExportLine> {
    let s = signer();
    let mut prev = GENESIS;
    let mut recs = Vec::new();
    let mut cps = Vec::new();
    for seq in 1..=6 {
        let (r, p, a) = record(seq);
        prev = link(&prev, &r.canonical().unwrap());
        recs.push(ExportRecord {
            hash: hex::encode(prev),
            record: serde_json::to_value(&r).unwrap(),
            prompt: Some(p),
            response: Some(a),
        });
        if seq % 3 == 0 {
            cps.push(s.checkpoint(TENANT, seq, &prev, r.ts_ms + 500));
        }
    }
    let window = Window {
        from_ms: 1_795_392_000_000,
        to_ms: 1_795_392_010_000,
    };
    assemble(
        TENANT,
        window,
        Anchor {
            seq: 0,
            hash: hex::encode(GENESIS),
        },
        recs,
        cps,
        &s,
        1_795_392_060_000,
    )
}

fn rec_mut(lines: &mut [ExportLine], seq: u64) -> &mut ExportRecord {
    lines
        .iter_mut()
        .find_map(|l| match l {
            ExportLine::Record(r) if r.record["seq"] == seq => Some(r),
            _ => None,
        })
        .unwrap()
}

fn pos(lines: &[ExportLine], seq: u64) -> usize {
    lines
        .iter()
        .position(|l| matches!(l, ExportLine::Record(r) if r.record["seq"] == seq))
        .unwrap()
}

/// Recomputes every record hash from `from_seq` on, as an attacker without the key would.
fn rehash(lines: &mut [ExportLine]) {
    let mut prev = GENESIS;
    for l in lines.iter_mut() {
        if let ExportLine::Record(r) = l {
            prev = link(&prev, &canonical(&r.record).unwrap());
            r.hash = hex::encode(prev);
        }
    }
}

/// (file, mutated export, expected failure: Some(seq) = a record error naming seq, None = an
/// error that is not a record's).
fn corpus() -> Vec<(&'static str, Vec<ExportLine>, Option<u64>)> {
    let mut out = Vec::new();
    let mut m = valid();
    rec_mut(&mut m, 3).record["status"] = json!(500);
    out.push(("edited_record.jsonl", m, Some(3)));

    let mut m = valid();
    rec_mut(&mut m, 3).record["tokens"]["output"] = json!(2);
    rehash(&mut m);
    out.push(("edited_record_rehashed.jsonl", m, None));

    let mut m = valid();
    let p = pos(&m, 4);
    m.remove(p);
    out.push(("deleted_record.jsonl", m, Some(4)));

    let mut m = valid();
    let p = pos(&m, 6);
    m.remove(p);
    out.push(("deleted_last_record.jsonl", m, None));

    let mut m = valid();
    let p = pos(&m, 2);
    let mut fake = match &m[p] {
        ExportLine::Record(r) => r.clone(),
        _ => unreachable!(),
    };
    fake.record["id"] = json!("req_fake");
    fake.record["seq"] = json!(3);
    m.insert(p + 1, ExportLine::Record(fake));
    out.push(("inserted_record.jsonl", m, Some(3)));

    let mut m = valid();
    let p = pos(&m, 2);
    let dup = m[p].clone();
    m.insert(p + 1, dup);
    out.push(("duplicated_record.jsonl", m, Some(2)));

    let mut m = valid();
    let (a, b) = (pos(&m, 4), pos(&m, 5));
    m.swap(a, b);
    out.push(("reordered_lines.jsonl", m, Some(4)));

    let mut m = valid();
    {
        let (a, b) = (pos(&m, 4), pos(&m, 5));
        let ra = match &m[a] {
            ExportLine::Record(r) => r.clone(),
            _ => unreachable!(),
        };
        let rb = match &m[b] {
            ExportLine::Record(r) => r.clone(),
            _ => unreachable!(),
        };
        let mut na = rb.clone();
        na.record["seq"] = json!(4);
        let mut nb = ra.clone();
        nb.record["seq"] = json!(5);
        m[a] = ExportLine::Record(na);
        m[b] = ExportLine::Record(nb);
    }
    out.push(("reordered_renumbered.jsonl", m, Some(4)));

    let mut m = valid();
    rec_mut(&mut m, 2).prompt = Some("an edited prompt".into());
    out.push(("edited_body.jsonl", m, Some(2)));

    let mut m = valid();
    rec_mut(&mut m, 1).record["tenant"] = json!("t_01other");
    out.push(("other_tenant_record.jsonl", m, Some(1)));

    let mut m = valid();
    for l in m.iter_mut() {
        if let ExportLine::Checkpoint(c) = l {
            c.hash = hex::encode([1u8; 32]);
        }
    }
    out.push(("edited_checkpoint.jsonl", m, None));

    let mut m = valid();
    m.retain(|l| !matches!(l, ExportLine::Checkpoint(c) if c.seq == 6));
    out.push(("missing_end_checkpoint.jsonl", m, None));

    let mut m = valid();
    let p = pos(&m, 6);
    m.remove(p);
    m.retain(|l| !matches!(l, ExportLine::Checkpoint(c) if c.seq == 6));
    out.push(("truncated_tail.jsonl", m, None));

    // A forger with their own key re-signs everything after editing; the header lists their
    // key, so only a pinned key catches it (tested separately).
    let mut m = valid();
    rec_mut(&mut m, 2).record["status"] = json!(201);
    rehash(&mut m);
    let forger = Signer::from_seed(&[9; 32]);
    let recs: Vec<ExportRecord> = m
        .iter()
        .filter_map(|l| match l {
            ExportLine::Record(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    let cps: Vec<Checkpoint> = recs
        .iter()
        .filter(|r| r.record["seq"].as_u64().unwrap() % 3 == 0)
        .map(|r| {
            forger.checkpoint(
                TENANT,
                r.record["seq"].as_u64().unwrap(),
                &hex::decode(&r.hash).unwrap().try_into().unwrap(),
                0,
            )
        })
        .collect();
    let m = assemble(
        TENANT,
        Window {
            from_ms: 1_795_392_000_000,
            to_ms: 1_795_392_010_000,
        },
        Anchor {
            seq: 0,
            hash: hex::encode(GENESIS),
        },
        recs,
        cps,
        &forger,
        1_795_392_060_000,
    );
    out.push(("forged_key.jsonl", m, None));
    out
}

fn regen() -> bool {
    std::env::var_os("TENANTGATE_REGEN_CORPUS").is_some()
}

fn check_file(name: &str, want: &str) -> String {
    let path = data_dir().join(name);
    if regen() {
        std::fs::write(&path, want).unwrap();
    }
    let have = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{name}: {e}; regenerate with TENANTGATE_REGEN_CORPUS=1"));
    assert_eq!(
        have, want,
        "{name} is stale; regenerate with TENANTGATE_REGEN_CORPUS=1"
    );
    have
}

fn pinned() -> Vec<PublicKey> {
    vec![signer().public_key()]
}

#[test]
fn valid_exports_verify_in_both_formats() {
    let v = valid();
    let text = check_file("valid.jsonl", &jsonl(&v));
    let r = verify_jsonl(&text, Some(&pinned())).unwrap();
    assert_eq!(
        (r.records, r.first_seq, r.last_seq, r.checkpoints),
        (6, 1, 6, 2)
    );
    assert!(r.keys_pinned);
    let csv = String::from_utf8(csv_export(&v)).unwrap();
    let csv = check_file("valid.csv", &csv);
    // Commas, quotes and newlines in values survive the round trip.
    assert!(csv.contains("\"\"quotes"));
    assert_eq!(verify_csv(csv.as_bytes(), Some(&pinned())).unwrap(), r);
}

#[test]
fn every_mutation_in_the_corpus_is_detected_at_the_right_place() {
    for (name, lines, want) in corpus() {
        let text = check_file(name, &jsonl(&lines));
        let err = verify_jsonl(&text, Some(&pinned())).expect_err(name);
        assert_eq!(err.first_bad_seq(), want, "{name}: {err}");
        // The same mutation in CSV form is detected too.
        let csv = csv_export(&lines);
        let cerr = verify_csv(&csv, Some(&pinned())).expect_err(name);
        assert_eq!(cerr.first_bad_seq(), want, "{name} (csv): {cerr}");
    }
}

#[test]
fn a_forged_export_passes_only_against_its_own_unpinned_key() {
    let (_, lines, _) = corpus()
        .into_iter()
        .find(|c| c.0 == "forged_key.jsonl")
        .unwrap();
    let text = jsonl(&lines);
    let r = verify_jsonl(&text, None).unwrap();
    assert!(
        !r.keys_pinned,
        "the report must say the keys came from the file"
    );
    assert!(verify_jsonl(&text, Some(&pinned())).is_err());
}

#[test]
fn csv_readable_columns_cannot_be_edited_alone() {
    let csv = String::from_utf8(csv_export(&valid())).unwrap();
    let edited = csv.replacen(",alice@example.com,", ",mallory@example.com,", 1);
    assert_ne!(csv, edited);
    let name = "csv_edited_column.csv";
    let edited = check_file(name, &edited);
    let err = verify_csv(edited.as_bytes(), Some(&pinned())).unwrap_err();
    assert_eq!(err.first_bad_seq(), Some(1), "{err}");
    assert!(err.to_string().contains("user"), "{err}");
}

#[test]
fn an_export_anchored_at_a_checkpoint_verifies_and_needs_that_checkpoint() {
    let s = signer();
    let full = valid();
    let recs: Vec<ExportRecord> = full
        .iter()
        .filter_map(|l| match l {
            ExportLine::Record(r) if r.record["seq"].as_u64().unwrap() > 3 => Some(r.clone()),
            _ => None,
        })
        .collect();
    let cps: Vec<Checkpoint> = full
        .iter()
        .filter_map(|l| match l {
            ExportLine::Checkpoint(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let anchor = Anchor {
        seq: 3,
        hash: cps[0].hash.clone(),
    };
    let w = Window {
        from_ms: 0,
        to_ms: i64::MAX,
    };
    let ok = assemble(TENANT, w, anchor.clone(), recs.clone(), cps.clone(), &s, 1);
    let r = verify_lines(ok.into_iter().enumerate(), Some(&pinned())).unwrap();
    assert_eq!((r.anchor_seq, r.first_seq, r.last_seq), (3, 4, 6));
    let without = assemble(TENANT, w, anchor, recs, cps[1..].to_vec(), &s, 1);
    let e = verify_lines(without.into_iter().enumerate(), Some(&pinned())).unwrap_err();
    assert!(e.to_string().contains("anchor"), "{e}");
}

#[test]
fn bodies_may_be_absent_but_never_different() {
    let mut v = valid();
    rec_mut(&mut v, 2).prompt = None;
    let r = verify_lines(v.into_iter().enumerate(), Some(&pinned())).unwrap();
    assert_eq!(r.bodies_absent, 1);
    let _ = Value::Null;
}
