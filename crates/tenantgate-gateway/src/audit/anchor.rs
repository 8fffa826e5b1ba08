//! Signer continuity and the witness: the gateway signs a chain head only if it extends the
//! last head this signer signed, so a history rewritten in the database (records deleted and
//! re-inserted with recomputed hashes, checkpoints removed, the head row moved) never gets a
//! signature.
//!
//! What the signer trusts, per tenant:
//! - what it signed itself: kept in memory, and appended (fsynced) to the witness, a directory
//!   of JSON-lines files outside the database (the anchor an insider with database access
//!   cannot edit; ship it elsewhere like CloudTrail's digest files);
//! - the newest checkpoint in the database, only if its Ed25519 signature verifies under the
//!   gateway's key, and only if the database still holds the checkpoint the signer last
//!   signed (checkpoints are never deleted; a trigger refuses it).
//!
//! From that checkpoint it walks the hash links to the head (many tenants per query, bounded
//! pages); any break is counted (`tenantgate_audit_chain_breaks_total`), logged at ERROR with
//! the tenant id, remembered (the tenant's export answers `audit_chain_broken`), and never
//! signed.

use crate::audit::AuditStats;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tenantgate_audit::{Checkpoint, PublicKey, Signer, GENESIS};
use tenantgate_core::{PlatformAdmin, TenantId};
use tenantgate_store::audit_anchor::Span;
use tenantgate_store::Store;

/// Lines in one witness file before the next file starts (with a snapshot of every tenant's
/// newest checkpoint, so start-up reads only the newest file).
const WITNESS_ROLL_LINES: u64 = 100_000;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum WitnessLine {
    Checkpoint(Checkpoint),
    Snapshot(Vec<Checkpoint>),
}

/// The append-only record of every checkpoint this gateway signed, outside the database.
pub struct Witness {
    dir: PathBuf,
    number: u64,
    file: std::fs::File,
    lines: u64,
    newest: HashMap<String, Checkpoint>,
}

fn witness_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("witness-{n:010}.jsonl"))
}

fn bad(path: &Path, what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

impl Witness {
    /// Opens the directory (created if missing) and reads its newest file.
    pub fn open(dir: &Path) -> std::io::Result<Witness> {
        std::fs::create_dir_all(dir)?;
        let mut number = 0;
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_prefix("witness-")
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                number = number.max(n);
            }
        }
        let number = number.max(1);
        let path = witness_path(dir, number);
        let mut newest: HashMap<String, Checkpoint> = HashMap::new();
        let mut lines = 0;
        if path.exists() {
            let text = std::fs::read(&path)?;
            let complete = text.ends_with(b"\n");
            let all: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
            for (i, line) in all.iter().enumerate() {
                if line.is_empty() {
                    continue;
                }
                // A torn last line (a crash mid-append) was never acknowledged: skip it.
                if i + 1 == all.len() && !complete {
                    break;
                }
                let parsed: WitnessLine = serde_json::from_slice(line)
                    .map_err(|e| bad(&path, format!("line {}: {e}", i + 1)))?;
                let cps = match parsed {
                    WitnessLine::Checkpoint(c) => vec![c],
                    WitnessLine::Snapshot(v) => v,
                };
                for c in cps {
                    let newer = newest.get(&c.tenant).is_none_or(|o| o.seq <= c.seq);
                    if newer {
                        newest.insert(c.tenant.clone(), c);
                    }
                }
                lines += 1;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        // Cut a torn last line off, so the next append starts a line of its own (glued to the
        // fragment it would be unparseable, and the next start would refuse the file).
        if let Ok(text) = std::fs::read(&path) {
            if !text.is_empty() && !text.ends_with(b"\n") {
                let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                file.set_len(keep as u64)?;
                file.sync_all()?;
            }
        }
        Ok(Witness {
            dir: dir.to_path_buf(),
            number,
            file,
            lines,
            newest,
        })
    }

    /// The newest checkpoint this gateway signed for `tenant`.
    pub fn newest(&self, tenant: &str) -> Option<&Checkpoint> {
        self.newest.get(tenant)
    }

    /// Appends checkpoints (one fsync for the lot).
    pub fn append(&mut self, cps: &[Checkpoint]) -> std::io::Result<()> {
        if cps.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for c in cps {
            serde_json::to_writer(&mut buf, &WitnessLine::Checkpoint(c.clone()))?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        for c in cps {
            self.newest.insert(c.tenant.clone(), c.clone());
        }
        self.lines += cps.len() as u64;
        if self.lines >= WITNESS_ROLL_LINES {
            self.roll()?;
        }
        Ok(())
    }

    /// Starts the next file with a snapshot of every tenant's newest checkpoint; earlier files
    /// stay as they are (history to ship off the machine).
    fn roll(&mut self) -> std::io::Result<()> {
        let path = witness_path(&self.dir, self.number + 1);
        let mut all: Vec<Checkpoint> = self.newest.values().cloned().collect();
        all.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        let mut buf = serde_json::to_vec(&WitnessLine::Snapshot(all))?;
        buf.push(b'\n');
        // The snapshot is written aside and renamed into place: a crash mid-roll leaves the
        // previous file newest, never a newest file without its snapshot.
        let tmp = path.with_extension("jsonl.tmp");
        let mut staged = std::fs::File::create(&tmp)?;
        staged.write_all(&buf)?;
        staged.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        let file = std::fs::OpenOptions::new().append(true).open(&path)?;
        self.number += 1;
        self.file = file;
        self.lines = 1;
        Ok(())
    }
}

/// Reads every checkpoint line of a witness directory's files, oldest first (for tests and
/// operators comparing a witness with an export).
pub fn read_witness(dir: &Path) -> std::io::Result<Vec<Checkpoint>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for p in files {
        for line in std::io::BufReader::new(std::fs::File::open(&p)?).lines() {
            if let Ok(WitnessLine::Checkpoint(c)) = serde_json::from_str(&line?) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// A head to sign.
pub struct Head {
    pub tenant: TenantId,
    pub seq: u64,
    pub hash: [u8; 32],
}

/// Tenants whose chain broke, with the reason (no record content). Shared with the HTTP side.
pub type Breaks = Arc<Mutex<HashMap<TenantId, String>>>;

/// The signer's memory: what it signed, and the checks before it signs again.
pub struct Continuity {
    /// The newest (seq, hash) this signer signed per tenant (the witness's, at start).
    signed: HashMap<TenantId, (u64, [u8; 32])>,
    witness: Witness,
    key: PublicKey,
    pub breaks: Breaks,
    /// Every batch of stored checkpoints, for the tenants' webhooks (`server.rs`).
    pub published: tokio::sync::broadcast::Sender<Arc<Vec<Checkpoint>>>,
}

fn hash32(hex_str: &str) -> Option<[u8; 32]> {
    hex::decode(hex_str).ok()?.try_into().ok()
}

impl Continuity {
    pub fn new(witness: Witness, key: PublicKey) -> Continuity {
        Continuity {
            signed: HashMap::new(),
            witness,
            key,
            breaks: Arc::default(),
            published: tokio::sync::broadcast::channel(256).0,
        }
    }

    fn last_signed(&self, t: &TenantId) -> Option<(u64, [u8; 32])> {
        if let Some(v) = self.signed.get(t) {
            return Some(*v);
        }
        let w = self.witness.newest(t.as_str())?;
        Some((w.seq, hash32(&w.hash)?))
    }

    /// Signs each head that extends what this signer last signed; returns, per tenant, the
    /// checkpoint now covering its head, or why it was refused.
    pub async fn sign(
        &mut self,
        store: &Store,
        signer: &Signer,
        stats: &AuditStats,
        now_ms: i64,
        heads: Vec<Head>,
    ) -> Vec<(TenantId, Result<Checkpoint, String>)> {
        #[expect(
            clippy::disallowed_methods,
            reason = "the checkpoint signer checks every advanced tenant's chain at once"
        )]
        let admin = PlatformAdmin::local_operator("audit-checkpointer");
        let p = store.platform(&admin);
        let mut out = Vec::with_capacity(heads.len());
        let mut todo: Vec<Head> = Vec::with_capacity(heads.len());
        {
            let breaks = self.breaks.lock().unwrap_or_else(|e| e.into_inner());
            for h in heads {
                match breaks.get(&h.tenant) {
                    Some(why) => out.push((h.tenant.clone(), Err(why.clone()))),
                    None => todo.push(h),
                }
            }
        }
        if todo.is_empty() {
            return out;
        }
        let tenants: Vec<TenantId> = todo.iter().map(|h| h.tenant.clone()).collect();
        let stored = match p.audit_last_checkpoints(&tenants).await {
            Ok(s) => s,
            Err(e) => {
                let e = format!("cannot read checkpoints: {e}");
                out.extend(tenants.into_iter().map(|t| (t, Err(e.clone()))));
                return out;
            }
        };
        // Where the database's newest checkpoint is past what this signer signed, the one it
        // signed must still be there, unchanged.
        let behind: Vec<(TenantId, u64)> = todo
            .iter()
            .filter_map(|h| {
                let t = &h.tenant;
                let (seq, _) = self.last_signed(t)?;
                (stored.get(t).is_some_and(|c| c.seq > seq)).then(|| (t.clone(), seq))
            })
            .collect();
        let at = if behind.is_empty() {
            HashMap::new()
        } else {
            match p.audit_checkpoints_at(&behind).await {
                Ok(a) => a,
                Err(e) => {
                    let e = format!("cannot read checkpoints: {e}");
                    out.extend(tenants.into_iter().map(|t| (t, Err(e.clone()))));
                    return out;
                }
            }
        };
        // (head, the stored checkpoint, whether that checkpoint is already past the head)
        let mut spans: Vec<(Head, Option<Checkpoint>, bool)> = Vec::new();
        let mut walk: Vec<Span> = Vec::new();
        for h in todo {
            let t = h.tenant.clone();
            let db = stored.get(&t);
            let anchor = match self.anchor(&t, db, at.get(&t)) {
                Ok(a) => a,
                Err(why) => {
                    self.broke(stats, &t, &why);
                    out.push((t, Err(why)));
                    continue;
                }
            };
            // Replicas share a chain: another signer may already have stored a checkpoint past
            // the head this one appended. That head is covered once its record is shown to be
            // an ancestor of that checkpoint (walked from the head up to it); it is no break.
            let covered = anchor.0 > h.seq;
            walk.push(if covered {
                Span {
                    tenant: t,
                    from_seq: h.seq,
                    from_hash: h.hash,
                    to_seq: anchor.0,
                    to_hash: anchor.1,
                }
            } else {
                Span {
                    tenant: t,
                    from_seq: anchor.0,
                    from_hash: anchor.1,
                    to_seq: h.seq,
                    to_hash: h.hash,
                }
            });
            spans.push((h, db.cloned(), covered));
        }
        let walked = match p.audit_walk(&walk).await {
            Ok(w) => w,
            Err(e) => {
                let e = format!("cannot read records: {e}");
                out.extend(
                    spans
                        .into_iter()
                        .map(|(h, _, _)| (h.tenant.clone(), Err(e.clone()))),
                );
                return out;
            }
        };
        let mut fresh: Vec<Checkpoint> = Vec::new();
        for ((h, db, covered), ok) in spans.into_iter().zip(walked) {
            let t = h.tenant.clone();
            match ok {
                Err(why) => {
                    let why =
                        format!("the chain does not extend the last signed checkpoint: {why}");
                    self.broke(stats, &t, &why);
                    out.push((t, Err(why)));
                }
                // Already covered by a checkpoint that verified: nothing new to sign.
                Ok(()) if covered || db.as_ref().is_some_and(|c| c.seq == h.seq) => {
                    if let Some(c) = db {
                        out.push((t, Ok(c)));
                    }
                }
                Ok(()) => {
                    let cp = signer.checkpoint(t.as_str(), h.seq, &h.hash, now_ms);
                    fresh.push(cp);
                }
            }
        }
        if fresh.is_empty() {
            return out;
        }
        // Only what was stored moves the signer's memory and the witness: one skipped because
        // another signer (a replica) stored a newer checkpoint first is still a valid statement
        // for an export, but the database does not hold it.
        let mut failed = std::collections::HashSet::new();
        let stored: std::collections::HashSet<(String, u64)> =
            match p.audit_add_checkpoints(&fresh).await {
                Ok(s) => s.into_iter().collect(),
                Err(e) => {
                    tracing::warn!(target: "tenantgate::audit", error = %e,
                        "storing checkpoints failed; storing them one by one");
                    let mut all = std::collections::HashSet::new();
                    for c in &fresh {
                        match p.audit_add_checkpoints(std::slice::from_ref(c)).await {
                            Ok(s) => all.extend(s),
                            Err(e) => {
                                tracing::warn!(target: "tenantgate::audit", error = %e,
                                    tenant = %c.tenant, "checkpoint not stored");
                                failed.insert((c.tenant.clone(), c.seq));
                            }
                        }
                    }
                    all
                }
            };
        let mut done = Vec::new();
        for cp in fresh {
            let Ok(t) = TenantId::parse(&cp.tenant) else {
                continue;
            };
            let key = (cp.tenant.clone(), cp.seq);
            if failed.contains(&key) {
                out.push((t, Err("the checkpoint was not stored".into())));
            } else {
                if stored.contains(&key) {
                    done.push(cp.clone());
                }
                out.push((t, Ok(cp)));
            }
        }
        // The database first, then the witness: a crash in between leaves the witness behind
        // the database (fine), never ahead of it (which would read as a lost checkpoint).
        if let Err(e) = self.witness.append(&done) {
            tracing::error!(target: "tenantgate::audit", error = %e,
                "audit witness not written; checkpoints are in the database only");
        }
        if !done.is_empty() {
            // No subscriber (no webhook task yet, at start) is fine: the witness has them.
            let _ = self.published.send(Arc::new(done.clone()));
        }
        for cp in &done {
            if let (Ok(t), Some(h)) = (TenantId::parse(&cp.tenant), hash32(&cp.hash)) {
                self.signed.insert(t, (cp.seq, h));
            }
        }
        stats
            .checkpoints
            .fetch_add(done.len() as u64, Ordering::Relaxed);
        out
    }

    /// The (seq, hash) to walk from: the database's newest checkpoint once it verifies and
    /// agrees with what this signer last signed; the genesis for a chain nobody signed.
    fn anchor(
        &self,
        t: &TenantId,
        db: Option<&Checkpoint>,
        db_at_signed: Option<&Checkpoint>,
    ) -> Result<(u64, [u8; 32]), String> {
        let db = match db {
            Some(c) => {
                if c.tenant != t.as_str() || self.key.verify(&c.message(), &c.sig).is_err() {
                    return Err(format!(
                        "the newest stored checkpoint (seq {}) does not verify under the gateway's key",
                        c.seq
                    ));
                }
                let h = hash32(&c.hash)
                    .ok_or_else(|| format!("checkpoint {} has a malformed hash", c.seq))?;
                Some((c.seq, h))
            }
            None => None,
        };
        match (self.last_signed(t), db) {
            (None, None) => Ok((0, GENESIS)),
            (None, Some(d)) => Ok(d),
            (Some((s, _)), None) => Err(format!(
                "the checkpoint at seq {s} this gateway signed is missing from the database"
            )),
            (Some((s, h)), Some((ds, dh))) => {
                if ds < s {
                    Err(format!(
                        "the checkpoint at seq {s} this gateway signed is missing from the database"
                    ))
                } else if ds == s && dh != h {
                    Err(format!("the checkpoint at seq {s} was replaced"))
                } else if ds > s && db_at_signed.and_then(|c| hash32(&c.hash)) != Some(h) {
                    Err(format!(
                        "the checkpoint at seq {s} this gateway signed is missing or replaced"
                    ))
                } else {
                    Ok((ds, dh))
                }
            }
        }
    }

    fn broke(&self, stats: &AuditStats, t: &TenantId, why: &str) {
        let mut breaks = self.breaks.lock().unwrap_or_else(|e| e.into_inner());
        if breaks.insert(t.clone(), why.to_owned()).is_none() {
            stats.chain_breaks.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: "tenantgate::audit", tenant = %t, reason = %why,
                "audit chain break: the head is not signed");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a panic is the failure report"
    )]
    use super::*;

    /// A crash mid-append leaves a torn last line. It is cut off at open, so the next append
    /// starts a line of its own and the file still opens after the next restart.
    #[test]
    fn a_torn_witness_line_is_cut_and_the_file_keeps_opening() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::from_seed(&[7; 32]);
        let mut w = Witness::open(dir.path()).unwrap();
        w.append(&[signer.checkpoint("t1", 1, &[1; 32], 1)])
            .unwrap();
        drop(w);
        let path = witness_path(dir.path(), 1);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(br#"{"checkpoint":{"tenant":"t1","se"#).unwrap();
        drop(f);
        let mut w = Witness::open(dir.path()).unwrap();
        assert_eq!(w.newest("t1").map(|c| c.seq), Some(1));
        w.append(&[signer.checkpoint("t1", 2, &[2; 32], 2)])
            .unwrap();
        drop(w);
        let w = Witness::open(dir.path()).unwrap();
        assert_eq!(w.newest("t1").map(|c| c.seq), Some(2));
    }
}
