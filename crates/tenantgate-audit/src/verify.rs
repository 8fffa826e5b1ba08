//! Offline verification of an export: the chain links, the checkpoint and manifest
//! signatures, the bodies against their digests, and (for CSV) the readable columns against
//! the records. The first failure is reported with its line and, for records, its seq.

use crate::chain::{link, Checkpoint, PublicKey, GENESIS};
use crate::export::{csv_row, Anchor, ExportLine, Manifest, Window, CSV_COLUMNS, FORMAT};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("line {line}: {message}")]
    Format { line: usize, message: String },
    #[error("record seq {seq} (line {line}): {message}")]
    Record {
        seq: u64,
        line: usize,
        message: String,
    },
    #[error("checkpoint at seq {seq} (line {line}): {message}")]
    Checkpoint {
        seq: u64,
        line: usize,
        message: String,
    },
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("{0}")]
    Export(String),
}

impl VerifyError {
    /// The seq of the first bad record, when the failure is a record's.
    pub fn first_bad_seq(&self) -> Option<u64> {
        match self {
            VerifyError::Record { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}

/// What a verified export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub tenant: String,
    pub window: Window,
    pub anchor_seq: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    pub checkpoints: u64,
    /// Records whose kept body is absent (crypto-shredded or pruned); their digests verified.
    pub bodies_absent: u64,
    /// Whether signatures were checked against keys given by the verifier (`true`) or only
    /// against the keys the export itself lists.
    pub keys_pinned: bool,
    pub key_ids: Vec<String>,
    /// The verified chain hash (hex) at every seq the export covers, anchor included: what
    /// [`verify_extends`] compares.
    pub hashes: std::collections::BTreeMap<u64, String>,
}

/// Proves `new` extends `old` (both verified exports of one tenant): `new` covers `old`'s last
/// record and has the same hash at every seq both hold, so no record up to `old`'s head was
/// rewritten, removed or inserted in between (each hash commits to the whole chain before it).
pub fn verify_extends(new: &Report, old: &Report) -> Result<(), VerifyError> {
    if new.tenant != old.tenant {
        return Err(VerifyError::Export(format!(
            "the exports belong to different tenants ({:?} and {:?})",
            new.tenant, old.tenant
        )));
    }
    let old_end = old.last_seq;
    if new.anchor_seq > old_end {
        return Err(VerifyError::Export(format!(
            "the new export starts at seq {} after the old one's head (seq {old_end}): export a \
             window that includes it",
            new.anchor_seq
        )));
    }
    if new.last_seq < old_end {
        return Err(VerifyError::Export(format!(
            "the new export ends at seq {} before the old one's head (seq {old_end}): the \
             chain was cut back",
            new.last_seq
        )));
    }
    for (seq, h) in &old.hashes {
        if let Some(n) = new.hashes.get(seq) {
            if n != h {
                return Err(VerifyError::Record {
                    seq: *seq,
                    line: 0,
                    message: "differs from the earlier export: the history up to its head \
                              was rewritten"
                        .into(),
                });
            }
        }
    }
    Ok(())
}

struct Chain {
    tenant: String,
    prev: [u8; 32],
    next_seq: u64,
    hashes: HashMap<u64, String>,
    records: u64,
    first_seq: Option<u64>,
    bodies_absent: u64,
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// Verifies parsed export lines (`(line number, line)` in file order). With `pinned`, only
/// those keys are trusted; without, the export's own keys are (the report says which).
pub fn verify_lines(
    lines: impl IntoIterator<Item = (usize, ExportLine)>,
    pinned: Option<&[PublicKey]>,
) -> Result<Report, VerifyError> {
    let mut it = lines.into_iter();
    let Some((hl, header)) = it.next() else {
        return Err(VerifyError::Export("the export is empty".into()));
    };
    let ExportLine::Header {
        format,
        tenant,
        window,
        exported_at_ms,
        anchor,
        public_keys,
    } = header
    else {
        return Err(VerifyError::Format {
            line: hl,
            message: "the first line must be the header".into(),
        });
    };
    if format != FORMAT {
        return Err(VerifyError::Format {
            line: hl,
            message: format!("unknown format {format:?} (expected {FORMAT:?})"),
        });
    }
    let keys: HashMap<String, PublicKey> = pinned
        .map(<[PublicKey]>::to_vec)
        .unwrap_or(public_keys)
        .into_iter()
        .map(|k| (k.key_id.clone(), k))
        .collect();
    let Some(anchor_hash) = hex32(&anchor.hash) else {
        return Err(VerifyError::Format {
            line: hl,
            message: "the anchor hash is not 32 bytes of hex".into(),
        });
    };
    if anchor.seq == 0 && anchor_hash != GENESIS {
        return Err(VerifyError::Format {
            line: hl,
            message: "an anchor at seq 0 must be the genesis hash".into(),
        });
    }
    let mut chain = Chain {
        tenant: tenant.clone(),
        prev: anchor_hash,
        next_seq: anchor.seq + 1,
        hashes: HashMap::from([(anchor.seq, anchor.hash.clone())]),
        records: 0,
        first_seq: None,
        bodies_absent: 0,
    };
    let mut checkpoints: Vec<(usize, Checkpoint)> = Vec::new();
    let mut manifest: Option<(usize, Manifest)> = None;
    for (line, l) in it {
        if manifest.is_some() {
            return Err(VerifyError::Format {
                line,
                message: "nothing may follow the manifest".into(),
            });
        }
        match l {
            ExportLine::Header { .. } => {
                return Err(VerifyError::Format {
                    line,
                    message: "a second header".into(),
                })
            }
            ExportLine::Record(r) => {
                if !checkpoints.is_empty() {
                    return Err(VerifyError::Format {
                        line,
                        message: "records must come before the checkpoints".into(),
                    });
                }
                chain.record(line, r)?;
            }
            ExportLine::Checkpoint(c) => checkpoints.push((line, c)),
            ExportLine::Manifest(m) => manifest = Some((line, m)),
        }
    }
    let last_seq = chain.next_seq - 1;
    // Every checkpoint: signed by a trusted key, for this tenant, matching the computed chain.
    let mut signed: Vec<u64> = Vec::new();
    for (line, c) in &checkpoints {
        let bad = |message: String| VerifyError::Checkpoint {
            seq: c.seq,
            line: *line,
            message,
        };
        if c.tenant != tenant {
            return Err(bad(format!("belongs to tenant {:?}", c.tenant)));
        }
        let key = keys
            .get(&c.key_id)
            .ok_or_else(|| bad(format!("signed by unknown key {:?}", c.key_id)))?;
        key.verify(&c.message(), &c.sig).map_err(bad)?;
        match chain.hashes.get(&c.seq) {
            Some(h) if *h == c.hash => signed.push(c.seq),
            Some(_) => {
                return Err(bad(
                    "the chain computed from the records does not reach the signed hash \
                     (a record before it was altered, removed, inserted or reordered)"
                        .into(),
                ))
            }
            None => return Err(bad("outside the exported chain".into())),
        }
    }
    if anchor.seq > 0 && !signed.contains(&anchor.seq) {
        return Err(VerifyError::Export(format!(
            "the anchor at seq {} has no signed checkpoint in the export",
            anchor.seq
        )));
    }
    if last_seq > anchor.seq && !signed.contains(&last_seq) {
        let covered = signed.iter().copied().max().unwrap_or(anchor.seq);
        return Err(VerifyError::Export(format!(
            "records after seq {covered} are not covered by a signed checkpoint \
             (the export must end at one)"
        )));
    }
    let (ml, m) = manifest.ok_or_else(|| VerifyError::Manifest("missing".into()))?;
    let key = keys
        .get(&m.key_id)
        .ok_or_else(|| VerifyError::Manifest(format!("signed by unknown key {:?}", m.key_id)))?;
    key.verify(&m.message(), &m.sig)
        .map_err(|e| VerifyError::Manifest(format!("line {ml}: {e}")))?;
    let expect = Manifest {
        tenant: tenant.clone(),
        window,
        anchor: Anchor {
            seq: anchor.seq,
            hash: anchor.hash.clone(),
        },
        first_seq: chain.first_seq.unwrap_or(anchor.seq),
        last_seq,
        records: chain.records,
        head_hash: chain.hashes.get(&last_seq).cloned().unwrap_or_default(),
        exported_at_ms,
        key_id: m.key_id.clone(),
        sig: m.sig.clone(),
    };
    if m != expect {
        return Err(VerifyError::Manifest(format!(
            "line {ml}: does not describe this export (signed extent: seq {}..={} with {} \
             records; found seq {}..={} with {})",
            m.first_seq, m.last_seq, m.records, expect.first_seq, expect.last_seq, expect.records
        )));
    }
    let mut key_ids: Vec<String> = keys.into_keys().collect();
    key_ids.sort();
    Ok(Report {
        tenant,
        window,
        anchor_seq: anchor.seq,
        first_seq: expect.first_seq,
        last_seq,
        records: chain.records,
        checkpoints: checkpoints.len() as u64,
        bodies_absent: chain.bodies_absent,
        keys_pinned: pinned.is_some(),
        key_ids,
        hashes: chain.hashes.into_iter().collect(),
    })
}

impl Chain {
    fn record(&mut self, line: usize, r: crate::ExportRecord) -> Result<(), VerifyError> {
        let expected = self.next_seq;
        let bad = |seq: u64, message: String| VerifyError::Record { seq, line, message };
        let seq = r
            .record
            .get("seq")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad(expected, "the record has no seq".into()))?;
        if seq > expected {
            return Err(bad(
                expected,
                format!("missing or out of place: the next record in the export is seq {seq}"),
            ));
        }
        if seq < expected {
            return Err(bad(
                seq,
                format!("out of order or duplicated (expected seq {expected})"),
            ));
        }
        if r.record.get("tenant").and_then(|v| v.as_str()) != Some(self.tenant.as_str()) {
            return Err(bad(seq, "belongs to another tenant".into()));
        }
        let canon = crate::canonical(&r.record).map_err(|e| bad(seq, e.to_string()))?;
        let h = link(&self.prev, &canon);
        let hx = hex::encode(h);
        if hx != r.hash {
            return Err(bad(
                seq,
                "its content and position do not produce its hash (edited, inserted or \
                 reordered)"
                    .into(),
            ));
        }
        for (part, body) in [("prompt", &r.prompt), ("response", &r.response)] {
            let digest = r
                .record
                .get(part)
                .and_then(|d| d.get("sha256"))
                .and_then(|d| d.as_str());
            match (body, digest) {
                (Some(b), Some(d)) if crate::sha256_hex(b.as_bytes()) == d => {}
                (Some(_), _) => {
                    return Err(bad(
                        seq,
                        format!("the {part} body does not match its digest"),
                    ))
                }
                (None, Some(_)) => {
                    let mode = r.record[part]["mode"].as_str().unwrap_or("");
                    if mode == "sealed" || mode == "redacted" {
                        self.bodies_absent += 1;
                    }
                }
                (None, None) => {}
            }
        }
        self.prev = h;
        self.hashes.insert(seq, hx);
        self.first_seq.get_or_insert(seq);
        self.records += 1;
        self.next_seq += 1;
        Ok(())
    }
}

/// Verifies a JSON-lines export.
pub fn verify_jsonl(text: &str, pinned: Option<&[PublicKey]>) -> Result<Report, VerifyError> {
    let mut lines = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<ExportLine>(l).map_err(|e| VerifyError::Format {
            line: i + 1,
            message: format!("not an export line: {e}"),
        })?;
        lines.push((i + 1, parsed));
    }
    verify_lines(lines, pinned)
}

/// Verifies a CSV export: every readable column must agree with the row's `json` object,
/// which is then verified as a JSON-lines export would be.
pub fn verify_csv(data: &[u8], pinned: Option<&[PublicKey]>) -> Result<Report, VerifyError> {
    let mut r = csv::Reader::from_reader(data);
    let headers = r.headers().map_err(|e| VerifyError::Format {
        line: 1,
        message: e.to_string(),
    })?;
    if headers.iter().collect::<Vec<_>>() != CSV_COLUMNS {
        return Err(VerifyError::Format {
            line: 1,
            message: "unexpected columns".into(),
        });
    }
    let mut lines = Vec::new();
    for (i, row) in r.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| VerifyError::Format {
            line,
            message: e.to_string(),
        })?;
        let json = row.get(CSV_COLUMNS.len() - 1).unwrap_or("");
        let parsed: ExportLine = serde_json::from_str(json).map_err(|e| VerifyError::Format {
            line,
            message: format!("json column: {e}"),
        })?;
        let derived = csv_row(&parsed);
        for (col, (have, want)) in row.iter().zip(&derived).enumerate() {
            if col + 1 < CSV_COLUMNS.len() && have != want {
                let message = format!(
                    "column {:?} says {have:?} but the record says {want:?}",
                    CSV_COLUMNS[col]
                );
                return Err(match (&parsed, parsed_seq(&parsed)) {
                    (ExportLine::Record(_), Some(seq)) => {
                        VerifyError::Record { seq, line, message }
                    }
                    _ => VerifyError::Format { line, message },
                });
            }
        }
        lines.push((line, parsed));
    }
    verify_lines(lines, pinned)
}

fn parsed_seq(l: &ExportLine) -> Option<u64> {
    match l {
        ExportLine::Record(r) => r.record.get("seq").and_then(|v| v.as_u64()),
        _ => None,
    }
}
