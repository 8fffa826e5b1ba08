//! Audit evidence: what a record is, its canonical bytes, the per-tenant hash chain, signed
//! checkpoints, and the export format with its offline verifier.
//!
//! The chain: `hash_0 = 32 zero bytes`, `hash_n = SHA-256(hash_{n-1} || canonical(record_n))`,
//! where `record_n` carries its tenant and `seq = n`, so a record cannot be moved to another
//! chain or position without changing every later hash. A [`Checkpoint`] is an Ed25519
//! signature over a chain head; it is what makes the chain evidence rather than a checksum:
//! whoever can rewrite the database can recompute hashes, but cannot sign.
//!
//! Canonical form ([`canonical`]): JSON, UTF-8, no insignificant whitespace, object keys sorted
//! by their UTF-8 bytes, strings escaped as `serde_json` writes them (only `"`, `\` and control
//! characters), integers only (a float is an error, so two writers can never disagree on a
//! number's spelling). It is the subset of RFC 8785 (JCS) without floats.
//!
//! Architecture Invariant: this crate does no I/O; the store writes, the CLI reads files.

mod canonical;
mod chain;
mod export;
mod record;
mod verify;

pub use canonical::{canonical, CanonError};
pub use chain::{key_id, link, Checkpoint, PublicKey, Signer, GENESIS};
pub use export::{
    assemble, csv_export, jsonl, rfc3339, Anchor, ExportLine, ExportRecord, Manifest, Window,
    FORMAT,
};
pub use record::{
    Actor, AuditPolicy, BodyDigest, BodyMode, Client, ErrorInfo, EventType, FailMode, ModelInfo,
    Record, Tokens,
};
pub use verify::{verify_csv, verify_extends, verify_jsonl, verify_lines, Report, VerifyError};

/// SHA-256 of `data`, lowercase hex: the digest form used for bodies in records.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}
