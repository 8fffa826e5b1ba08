//! The export format: JSON lines (or CSV rows carrying the same objects).
//!
//! An export is `header`, then `record` lines in chain order, `checkpoint` lines, and a signed
//! `manifest` last. It starts at an anchor (the genesis, or a signed checkpoint that the export
//! includes) and runs to a signed checkpoint at or after the window's last record, so records
//! just outside the window may be included to link the two. The manifest signs the export's
//! extent, so a truncated export is detected even before the checkpoints are.

use crate::chain::{Checkpoint, PublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The `format` value of an export header.
pub const FORMAT: &str = "tenantgate-audit-export/1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Where an export's chain starts: `seq` 0 with the genesis hash, or a signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
}

/// A record line: the record object, its chain hash, and its bodies when the tenant's policy
/// keeps them (checked against the record's digests).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub hash: String,
    pub record: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub tenant: String,
    pub window: Window,
    pub anchor: Anchor,
    /// First and last record seq in the export (`anchor.seq` and `anchor.seq` when empty).
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    pub head_hash: String,
    pub exported_at_ms: i64,
    pub key_id: String,
    pub sig: String,
}

impl Manifest {
    pub fn message(&self) -> Vec<u8> {
        let v = json!({
            "type": "tenantgate.export-manifest.v1",
            "tenant": self.tenant,
            "window": {"from_ms": self.window.from_ms, "to_ms": self.window.to_ms},
            "anchor": {"seq": self.anchor.seq, "hash": self.anchor.hash},
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "records": self.records,
            "head_hash": self.head_hash,
            "exported_at_ms": self.exported_at_ms,
            "key_id": self.key_id,
        });
        crate::canonical(&v).unwrap_or_default()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    Header {
        format: String,
        tenant: String,
        window: Window,
        exported_at_ms: i64,
        anchor: Anchor,
        public_keys: Vec<PublicKey>,
    },
    Record(ExportRecord),
    Checkpoint(Checkpoint),
    Manifest(Manifest),
}

/// The CSV columns. `json` holds the full line object; every other column is derived from it,
/// and the verifier checks that they agree, so an edit to a readable column is detected.
pub(crate) const CSV_COLUMNS: [&str; 18] = [
    "type",
    "seq",
    "time",
    "id",
    "event",
    "key_id",
    "user",
    "model",
    "provider",
    "status",
    "input_tokens",
    "output_tokens",
    "latency_ms",
    "error_code",
    "hash",
    "prompt_sha256",
    "response_sha256",
    "json",
];

fn s(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(x)) => x.clone(),
        Some(x) => x.to_string(),
    }
}

/// The CSV row of one export line.
pub(crate) fn csv_row(line: &ExportLine) -> Vec<String> {
    let json = serde_json::to_string(line).unwrap_or_default();
    let mut row = vec![String::new(); CSV_COLUMNS.len()];
    match line {
        ExportLine::Header { exported_at_ms, .. } => {
            row[0] = "header".into();
            row[2] = rfc3339(*exported_at_ms);
        }
        ExportLine::Record(r) => {
            let g = |p: &str| s(r.record.pointer(p));
            row[0] = "record".into();
            row[1] = g("/seq");
            row[2] = r.record["ts_ms"].as_i64().map(rfc3339).unwrap_or_default();
            row[3] = g("/id");
            row[4] = g("/event");
            row[5] = g("/actor/key_id");
            row[6] = g("/actor/user");
            row[7] = g("/model/requested");
            row[8] = g("/model/provider");
            row[9] = g("/status");
            row[10] = g("/tokens/input");
            row[11] = g("/tokens/output");
            row[12] = g("/latency_ms");
            row[13] = g("/error/code");
            row[14] = r.hash.clone();
            row[15] = g("/prompt/sha256");
            row[16] = g("/response/sha256");
        }
        ExportLine::Checkpoint(c) => {
            row[0] = "checkpoint".into();
            row[1] = c.seq.to_string();
            row[2] = rfc3339(c.ts_ms);
            row[14] = c.hash.clone();
        }
        ExportLine::Manifest(m) => {
            row[0] = "manifest".into();
            row[1] = m.last_seq.to_string();
            row[2] = rfc3339(m.exported_at_ms);
            row[14] = m.head_hash.clone();
        }
    }
    row[17] = json;
    row
}

/// The lines as CSV (RFC 4180 quoting by the `csv` crate).
pub fn csv_export(lines: &[ExportLine]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = w.write_record(CSV_COLUMNS);
    for l in lines {
        let _ = w.write_record(csv_row(l));
    }
    w.into_inner().unwrap_or_default()
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a Unix time in milliseconds (proleptic Gregorian, UTC).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Assembles an export: header, the records (in chain order, starting right after `anchor`),
/// the checkpoints, and a manifest signed by `signer`.
pub fn assemble(
    tenant: &str,
    window: Window,
    anchor: Anchor,
    records: Vec<ExportRecord>,
    checkpoints: Vec<Checkpoint>,
    signer: &crate::Signer,
    exported_at_ms: i64,
) -> Vec<ExportLine> {
    let first_seq = records
        .first()
        .and_then(|r| r.record["seq"].as_u64())
        .unwrap_or(anchor.seq);
    let last_seq = records
        .last()
        .and_then(|r| r.record["seq"].as_u64())
        .unwrap_or(anchor.seq);
    let head_hash = records
        .last()
        .map(|r| r.hash.clone())
        .unwrap_or_else(|| anchor.hash.clone());
    let mut m = Manifest {
        tenant: tenant.to_owned(),
        window,
        anchor: anchor.clone(),
        first_seq,
        last_seq,
        records: records.len() as u64,
        head_hash,
        exported_at_ms,
        key_id: signer.key_id().to_owned(),
        sig: String::new(),
    };
    m.sig = signer.sign(&m.message());
    let mut out = Vec::with_capacity(records.len() + checkpoints.len() + 2);
    out.push(ExportLine::Header {
        format: FORMAT.to_owned(),
        tenant: tenant.to_owned(),
        window,
        exported_at_ms,
        anchor,
        public_keys: vec![signer.public_key()],
    });
    out.extend(records.into_iter().map(ExportLine::Record));
    out.extend(checkpoints.into_iter().map(ExportLine::Checkpoint));
    out.push(ExportLine::Manifest(m));
    out
}

/// The lines as JSON lines.
pub fn jsonl(lines: &[ExportLine]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(&serde_json::to_string(l).unwrap_or_default());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_392_000_000), "2026-11-23T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }
}
