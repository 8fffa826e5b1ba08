//! What the checkpoint signer and retention need to trust a chain beyond the rows themselves:
//! the newest checkpoint per tenant, a walk of the hash links between a signed point and the
//! head (many tenants per query, bounded pages), and retention that checks the checkpoint's
//! signature before it deletes anything.
//!
//! An insider with row access can rewrite records and recompute every hash; what they cannot
//! do is produce a signature, nor change what the signer remembers (in memory and in its
//! witness outside the database). So the signer only ever signs a head it has walked to from
//! a point it signed itself.

use crate::{with_tx, Access, Result, StoreError};
use std::collections::HashMap;
use tenantgate_audit::{link, Checkpoint, PublicKey};
use tenantgate_core::TenantId;

/// A stretch of one tenant's chain to check: the records after `from` must link one by one
/// from `from_hash` and end exactly at `to` with `to_hash`.
#[derive(Debug, Clone)]
pub struct Span {
    pub tenant: TenantId,
    pub from_seq: u64,
    pub from_hash: [u8; 32],
    pub to_seq: u64,
    pub to_hash: [u8; 32],
}

/// Records per query of a walk, and per segment of one long span.
const WALK_ROWS: u64 = 4096;
/// Tenants (segments) per query of a walk.
const WALK_SEGMENTS: usize = 200;

type CpRow = (String, i64, Vec<u8>, i64, String, String);

fn to_checkpoint(r: CpRow) -> (String, Checkpoint) {
    let cp = Checkpoint {
        tenant: r.0.clone(),
        seq: r.1 as u64,
        hash: hex::encode(&r.2),
        ts_ms: r.3,
        key_id: r.4,
        sig: r.5,
    };
    (r.0, cp)
}

struct WalkState {
    next: u64,
    prev: [u8; 32],
    error: Option<String>,
}

impl crate::Platform<'_> {
    /// Each listed tenant's newest checkpoint (tenants without one are absent).
    pub async fn audit_last_checkpoints(
        &self,
        tenants: &[TenantId],
    ) -> Result<HashMap<TenantId, Checkpoint>> {
        let mut out = HashMap::with_capacity(tenants.len());
        for (data, part) in self.store.by_place(tenants.to_vec(), |t| t).await? {
            let part: Vec<TenantId> = part.into_iter().map(|(_, t)| t).collect();
            for chunk in part.chunks(WALK_SEGMENTS) {
                let rows: Vec<CpRow> = with_tx!(&data, Access::Platform, |tx| {
                    let mut qb = sqlx::QueryBuilder::new(
                    "SELECT c.tenant_id, c.seq, c.hash, c.ts_ms, c.key_id, c.sig FROM audit_checkpoints c \
                     WHERE c.seq = (SELECT MAX(m.seq) FROM audit_checkpoints m WHERE m.tenant_id = c.tenant_id) \
                     AND c.tenant_id IN (",
                );
                    let mut sep = qb.separated(", ");
                    for t in chunk {
                        sep.push_bind(t.as_str().to_owned());
                    }
                    qb.push(")");
                    qb.build_query_as().fetch_all(&mut *tx).await?
                })?;
                for r in rows {
                    let (t, cp) = to_checkpoint(r);
                    out.insert(TenantId::parse(&t)?, cp);
                }
            }
        }
        Ok(out)
    }

    /// For each `(tenant, seq)`, the tenant's stored checkpoint at exactly that seq (absent
    /// ones are left out). One query per [`WALK_SEGMENTS`] pairs.
    pub async fn audit_checkpoints_at(
        &self,
        at: &[(TenantId, u64)],
    ) -> Result<HashMap<TenantId, Checkpoint>> {
        let mut out = HashMap::with_capacity(at.len());
        for (data, part) in self.store.by_place(at.to_vec(), |a| &a.0).await? {
            let part: Vec<(TenantId, u64)> = part.into_iter().map(|(_, a)| a).collect();
            for chunk in part.chunks(WALK_SEGMENTS) {
                let rows: Vec<CpRow> = with_tx!(&data, Access::Platform, |tx| {
                    let mut qb = sqlx::QueryBuilder::new("WITH f (t, s) AS (");
                    qb.push_values(chunk, |mut b, (t, seq)| {
                        b.push_bind(t.as_str().to_owned())
                            .push_bind((*seq).min(i64::MAX as u64) as i64);
                    });
                    qb.push(
                        ") SELECT c.tenant_id, c.seq, c.hash, c.ts_ms, c.key_id, c.sig FROM \
                     audit_checkpoints c JOIN f ON c.tenant_id = f.t AND c.seq = f.s",
                    );
                    qb.build_query_as().fetch_all(&mut *tx).await?
                })?;
                for r in rows {
                    let (t, cp) = to_checkpoint(r);
                    out.insert(TenantId::parse(&t)?, cp);
                }
            }
        }
        Ok(out)
    }

    /// `tenant`'s checkpoint at exactly `seq`, if stored.
    pub async fn audit_checkpoint_at(
        &self,
        tenant: &TenantId,
        seq: u64,
    ) -> Result<Option<Checkpoint>> {
        let row: Option<CpRow> =
            with_tx!(self.store.data(tenant).await?, Access::Platform, |tx| {
                sqlx::query_as(
                    "SELECT tenant_id, seq, hash, ts_ms, key_id, sig FROM audit_checkpoints \
                 WHERE tenant_id = $1 AND seq = $2",
                )
                .bind(tenant.as_str())
                .bind(seq.min(i64::MAX as u64) as i64)
                .fetch_optional(&mut *tx)
                .await?
            })?;
        Ok(row.map(|r| to_checkpoint(r).1))
    }

    /// Walks each span's records (many tenants per query, at most [`WALK_ROWS`] rows each) and
    /// says, per span, whether its links hold: `Err(reason)` names the first seq that breaks.
    pub async fn audit_walk(&self, spans: &[Span]) -> Result<Vec<Result<(), String>>> {
        let mut out: Vec<Result<(), String>> = (0..spans.len()).map(|_| Ok(())).collect();
        for (data, part) in self.store.by_place(spans.to_vec(), |s| &s.tenant).await? {
            let (at, part): (Vec<usize>, Vec<Span>) = part.into_iter().unzip();
            for (i, r) in at.into_iter().zip(walk(&data, &part).await?) {
                out[i] = r;
            }
        }
        Ok(out)
    }
}

/// [`crate::Platform::audit_walk`] in one place.
async fn walk(data: &crate::places::Data, spans: &[Span]) -> Result<Vec<Result<(), String>>> {
    {
        let mut state: Vec<WalkState> = spans
            .iter()
            .map(|s| WalkState {
                next: s.from_seq + 1,
                prev: s.from_hash,
                error: (s.to_seq < s.from_seq).then(|| {
                    format!(
                        "the head (seq {}) is behind the signed seq {}",
                        s.to_seq, s.from_seq
                    )
                }),
            })
            .collect();
        // Segments (span index, lo exclusive, hi inclusive), in span and seq order.
        let mut segments: Vec<(usize, u64, u64)> = Vec::new();
        for (i, s) in spans.iter().enumerate() {
            let mut lo = s.from_seq;
            while lo < s.to_seq {
                let hi = s.to_seq.min(lo + WALK_ROWS);
                segments.push((i, lo, hi));
                lo = hi;
            }
        }
        let mut start = 0;
        while start < segments.len() {
            let mut end = start;
            let mut rows = 0;
            let mut seen = std::collections::HashSet::new();
            while end < segments.len()
                && end - start < WALK_SEGMENTS
                && (end == start || rows + (segments[end].2 - segments[end].1) <= WALK_ROWS)
                && seen.insert(spans[segments[end].0].tenant.as_str())
            {
                rows += segments[end].2 - segments[end].1;
                end += 1;
            }
            let batch = &segments[start..end];
            start = end;
            let found: Vec<(String, i64, String, Vec<u8>)> =
                with_tx!(data, Access::Platform, |tx| {
                    let mut qb = sqlx::QueryBuilder::new("WITH f(t, lo, hi) AS (VALUES ");
                    let mut first = true;
                    for (i, lo, hi) in batch {
                        if !first {
                            qb.push(", ");
                        }
                        first = false;
                        qb.push("(")
                            .push_bind(spans[*i].tenant.as_str().to_owned())
                            .push(", ")
                            .push_bind(*lo as i64)
                            .push(", ")
                            .push_bind(*hi as i64)
                            .push(")");
                    }
                    qb.push(
                        ") SELECT r.tenant_id, r.seq, r.record, r.hash FROM audit_records r \
                         JOIN f ON r.tenant_id = f.t AND r.seq > f.lo AND r.seq <= f.hi \
                         ORDER BY r.tenant_id, r.seq",
                    );
                    qb.build_query_as().fetch_all(&mut *tx).await?
                })?;
            let index: HashMap<&str, usize> = batch
                .iter()
                .map(|(i, _, _)| (spans[*i].tenant.as_str(), *i))
                .collect();
            for (t, seq, record, hash) in found {
                let Some(&i) = index.get(t.as_str()) else {
                    continue;
                };
                let st = &mut state[i];
                if st.error.is_some() {
                    continue;
                }
                let seq = seq as u64;
                if seq != st.next {
                    st.error = Some(format!("record {} is missing", st.next));
                    continue;
                }
                let computed = link(&st.prev, record.as_bytes());
                if computed.as_slice() != hash.as_slice() {
                    st.error = Some(format!("record {seq} does not link to the one before it"));
                    continue;
                }
                st.prev = computed;
                st.next += 1;
            }
        }
        Ok(spans
            .iter()
            .zip(state)
            .map(|(s, st)| match st.error {
                Some(e) => Err(e),
                None if st.next != s.to_seq + 1 => Err(format!("record {} is missing", st.next)),
                None if st.prev != s.to_hash => Err(format!(
                    "the records do not reach the head's hash at seq {}",
                    s.to_seq
                )),
                None => Ok(()),
            })
            .collect())
    }
}

impl crate::Platform<'_> {
    /// Retention for `tenant`: deletes records (and bodies) older than `before_ms` up to the
    /// last checkpoint among them, after checking that checkpoint's signature against `key`
    /// and its hash against the record at its seq. On PostgreSQL only the owner can delete
    /// audit rows: call this on
    /// [`crate::Store::open_maintenance`]'s store.
    pub async fn audit_prune(
        &self,
        tenant: &TenantId,
        before_ms: i64,
        key: &PublicKey,
    ) -> Result<u64> {
        let id = tenant.as_str();
        with_tx!(self.store.data(tenant).await?, Access::Platform, |tx| {
            let old: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(seq) FROM audit_records WHERE tenant_id = $1 AND ts_ms < $2",
            )
            .bind(id)
            .bind(before_ms)
            .fetch_one(&mut *tx)
            .await?;
            let cut: Option<CpRow> =
                match old {
                    None => None,
                    Some(old) => sqlx::query_as(
                        "SELECT tenant_id, seq, hash, ts_ms, key_id, sig FROM audit_checkpoints \
                         WHERE tenant_id = $1 AND seq <= $2 ORDER BY seq DESC LIMIT 1",
                    )
                    .bind(id)
                    .bind(old)
                    .fetch_optional(&mut *tx)
                    .await?,
                };
            match cut {
                None => 0,
                Some(row) => {
                    let (_, cp) = to_checkpoint(row);
                    if cp.tenant != id || key.verify(&cp.message(), &cp.sig).is_err() {
                        return Err(StoreError::Corrupt(format!(
                            "audit checkpoint at seq {} does not verify: nothing pruned",
                            cp.seq
                        )));
                    }
                    let at: Option<Vec<u8>> = sqlx::query_scalar(
                        "SELECT hash FROM audit_records WHERE tenant_id = $1 AND seq = $2",
                    )
                    .bind(id)
                    .bind(cp.seq as i64)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if at.is_some_and(|h| hex::encode(h) != cp.hash) {
                        return Err(StoreError::Corrupt(format!(
                            "audit record {} does not match its checkpoint: nothing pruned",
                            cp.seq
                        )));
                    }
                    let cut = cp.seq as i64;
                    sqlx::query("DELETE FROM audit_bodies WHERE tenant_id = $1 AND seq <= $2")
                        .bind(id)
                        .bind(cut)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM audit_records WHERE tenant_id = $1 AND seq <= $2")
                        .bind(id)
                        .bind(cut)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                }
            }
        })
    }
}
