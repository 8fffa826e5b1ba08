//! Audit chains: the append (one transaction for a batch of many tenants' records: the
//! group commit), reads for query and export, checkpoints, retention.
//!
//! Each tenant's chain head lives in `audit_heads`. An append locks the head row
//! (`SELECT .. FOR UPDATE` in PostgreSQL; SQLite's `BEGIN IMMEDIATE` serialises writers), so
//! any number of replicas append to one tenant's chain without a fork or a gap, and the
//! `(tenant_id, seq)` primary key would refuse one anyway.

use crate::{now_ms, with_tx, Access, Result, Store, StoreError};
use tenantgate_audit::{link, Checkpoint, Record, GENESIS};
use tenantgate_core::{TenantId, TenantScope};

/// A record to append. `record.tenant` and `record.seq` are set by the append.
#[derive(Debug, Clone)]
pub struct NewAuditRecord {
    pub record: Record,
    /// Bodies kept per policy, already sealed with the tenant's key.
    pub prompt_sealed: Option<Vec<u8>>,
    pub response_sealed: Option<Vec<u8>>,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub hash: [u8; 32],
}

/// A stored record: its canonical JSON and chain hash, with sealed bodies if kept.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub seq: u64,
    pub record: String,
    pub hash: [u8; 32],
    pub prompt_sealed: Option<Vec<u8>>,
    pub response_sealed: Option<Vec<u8>>,
}

/// Query filters (all optional); results are newest first.
/// Whose usage to sum: one end user's, or one credential's.
#[derive(Debug, Clone, Copy)]
pub enum UsageOwner<'a> {
    User(&'a str),
    Key(&'a str),
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub user: Option<String>,
    pub key_id: Option<String>,
    pub model: Option<String>,
    pub event: Option<String>,
    pub status: Option<u16>,
    /// Only records with a seq below this (paging).
    pub before_seq: Option<u64>,
    pub limit: u32,
}

mod write;
pub(crate) use write::AuditTx;

fn hash32(b: Vec<u8>) -> Result<[u8; 32]> {
    b.try_into()
        .map_err(|_| StoreError::Corrupt("audit hash is not 32 bytes".into()))
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Rows per multi-row INSERT: a batch is split into these sizes (largest first), so only a few
/// distinct statements exist and each stays in the connection's prepared-statement cache.
/// (256 rows x 14 binds is well under both backends' parameter limits.)
const INSERT_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// `items` cut into runs of the sizes in [`INSERT_SIZES`].
fn fixed_chunks<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    for size in INSERT_SIZES {
        while items.len() >= size {
            let (a, b) = items.split_at(size);
            out.push(a);
            items = b;
        }
    }
    out
}

pub(crate) type RecordRow = (
    String,
    i64,
    i64,
    String,
    &'static str,
    Option<String>,
    Option<String>,
    Option<String>,
    i32,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    String,
    Vec<u8>,
);

/// The rows a batch writes, computed from the chain heads it locked.
pub(crate) struct Planned<'a> {
    pub(crate) rows: Vec<RecordRow>,
    pub(crate) bodies: Vec<(String, i64, &'static str, &'a [u8])>,
    pub(crate) heads: Vec<(String, i64, Vec<u8>)>,
    pub(crate) out: Vec<Vec<Appended>>,
}

/// Links each group's records onto its chain head. `heads` maps tenant -> (seq, hash).
pub(crate) fn plan<'a>(
    groups: &[(&TenantId, &'a [NewAuditRecord])],
    heads: &std::collections::HashMap<String, (i64, Vec<u8>)>,
) -> Result<Planned<'a>> {
    let mut p = Planned {
        rows: Vec::new(),
        bodies: Vec::new(),
        heads: Vec::with_capacity(groups.len()),
        out: Vec::with_capacity(groups.len()),
    };
    for (tenant, entries) in groups {
        let (mut seq, prev) = heads
            .get(tenant.as_str())
            .cloned()
            .ok_or_else(|| StoreError::Corrupt("audit head missing".into()))?;
        let mut prev = hash32(prev)?;
        let mut done = Vec::with_capacity(entries.len());
        for e in entries.iter() {
            seq += 1;
            let r = &e.record;
            let canon = r
                .canonical_as(tenant.as_str(), seq as u64)
                .map_err(corrupt)?;
            prev = link(&prev, &canon);
            let canon = String::from_utf8(canon).map_err(corrupt)?;
            p.rows.push((
                tenant.as_str().to_owned(),
                seq,
                r.ts_ms,
                r.id.clone(),
                r.event.as_str(),
                r.actor.key_id.clone(),
                r.actor.user.clone(),
                r.model.as_ref().map(|m| m.requested.clone()),
                i32::from(r.status),
                r.tokens.map(|t| t.input as i64),
                r.tokens.map(|t| t.output as i64),
                r.cost_micros,
                canon,
                prev.to_vec(),
            ));
            if let Some(b) = &e.prompt_sealed {
                p.bodies
                    .push((tenant.as_str().to_owned(), seq, "prompt", b));
            }
            if let Some(b) = &e.response_sealed {
                p.bodies
                    .push((tenant.as_str().to_owned(), seq, "response", b));
            }
            done.push(Appended {
                seq: seq as u64,
                hash: prev,
            });
        }
        p.heads
            .push((tenant.as_str().to_owned(), seq, prev.to_vec()));
        p.out.push(done);
    }
    Ok(p)
}

/// Appends `groups` (each a distinct tenant's records, in order) in the transaction `$tx`, with
/// a fixed number of statements whatever the number of tenants: create missing heads, lock and
/// read the heads (in tenant order, so concurrent writers cannot deadlock), insert the records
/// and bodies, move the heads. Evaluates to each record's seq and hash, in `groups`' shape.
macro_rules! append_body {
    ($tx:ident, $groups:expr) => {{
        let groups: &[(&TenantId, &[NewAuditRecord])] = $groups;
        let mut ids: Vec<&str> = groups.iter().map(|g| g.0.as_str()).collect();
        ids.sort_unstable();
        let mut qb = sqlx::QueryBuilder::new("INSERT INTO audit_heads (tenant_id, seq, hash) ");
        qb.push_values(ids.iter(), |mut b, id| {
            b.push_bind(id.to_string())
                .push_bind(0i64)
                .push_bind(GENESIS.to_vec());
        });
        qb.push(" ON CONFLICT (tenant_id) DO NOTHING");
        qb.build().execute(&mut *$tx).await?;
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT tenant_id, seq, hash FROM audit_heads WHERE tenant_id IN (",
        );
        let mut sep = qb.separated(", ");
        for id in &ids {
            sep.push_bind(id.to_string());
        }
        qb.push(") ORDER BY tenant_id");
        qb.push($tx.for_update());
        let heads: Vec<(String, i64, Vec<u8>)> = qb.build_query_as().fetch_all(&mut *$tx).await?;
        let heads = heads
            .into_iter()
            .map(|(t, s, h)| (t, (s, h)))
            .collect::<std::collections::HashMap<_, _>>();
        let planned = plan(groups, &heads)?;
        $tx.write_planned(&planned).await?;
        planned.out
    }};
}

impl Store {
    /// Group commit: appends each scope's records to its tenant's chain, all in one
    /// transaction. Each tenant is reached through its own verified scope.
    pub async fn audit_append(
        &self,
        groups: &[(&TenantScope, &[NewAuditRecord])],
    ) -> Result<Vec<Vec<Appended>>> {
        let ids: Vec<(&TenantId, &[NewAuditRecord])> =
            groups.iter().map(|(s, e)| (s.tenant_id(), *e)).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction per place for many tenants (one for all on the namespace tier): in
        // PostgreSQL it runs with the platform setting (row-level security would hide all but
        // one tenant's head); every statement still names each row's tenant, taken from the
        // verified scopes above.
        let n = ids.len();
        let mut out: Vec<Vec<Appended>> = (0..n).map(|_| Vec::new()).collect();
        for (data, part) in self.by_place(ids, |g| g.0).await? {
            let (at, part): (Vec<usize>, Vec<(&TenantId, &[NewAuditRecord])>) =
                part.into_iter().unzip();
            let written = with_tx!(&data, Access::Platform, |tx| { append_body!(tx, &part) })?;
            for (i, w) in at.into_iter().zip(written) {
                out[i] = w;
            }
        }
        Ok(out)
    }
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    hex::decode(s).map_err(|_| StoreError::Corrupt("checkpoint hash is not hex".into()))
}

/// A tenant's audit chain, through the tenant-bound handle.
pub struct TenantAudit<'a> {
    pub(crate) store: &'a Store,
    pub(crate) id: &'a TenantId,
}

const RECORD_COLS: &str = "r.seq, r.record, r.hash, \
    (SELECT sealed FROM audit_bodies b WHERE b.tenant_id = r.tenant_id AND b.seq = r.seq AND b.part = 'prompt'), \
    (SELECT sealed FROM audit_bodies b WHERE b.tenant_id = r.tenant_id AND b.seq = r.seq AND b.part = 'response')";

type RecordTuple = (i64, String, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

fn stored(rows: Vec<RecordTuple>) -> Result<Vec<StoredRecord>> {
    rows.into_iter()
        .map(|(seq, record, hash, p, r)| {
            Ok(StoredRecord {
                seq: seq as u64,
                record,
                hash: hash32(hash)?,
                prompt_sealed: p,
                response_sealed: r,
            })
        })
        .collect()
}

type CheckpointRow = (i64, Vec<u8>, i64, String, String);

fn checkpoint(tenant: &TenantId, r: CheckpointRow) -> Checkpoint {
    Checkpoint {
        tenant: tenant.as_str().to_owned(),
        seq: r.0 as u64,
        hash: hex::encode(&r.1),
        ts_ms: r.2,
        key_id: r.3,
        sig: r.4,
    }
}

impl<'a> TenantAudit<'a> {
    fn access(&self) -> Access<'a> {
        Access::Tenant(self.id)
    }

    /// Appends records to this tenant's chain (one transaction). For many tenants at once,
    /// see [`Store::audit_append`].
    pub async fn append(&self, entries: Vec<NewAuditRecord>) -> Result<Vec<Appended>> {
        let groups = [(self.id, entries.as_slice())];
        let mut out = with_tx!(self.store.data(self.id).await?, self.access(), |tx| {
            append_body!(tx, &groups)
        })?;
        Ok(out.pop().unwrap_or_default())
    }

    /// The chain head: last seq and hash (`(0, GENESIS)` before the first record).
    pub async fn head(&self) -> Result<(u64, [u8; 32])> {
        let row: Option<(i64, Vec<u8>)> =
            with_tx!(self.store.data(self.id).await?, self.access(), |tx| {
                sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1")
                    .bind(self.id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
            })?;
        match row {
            Some((s, h)) => Ok((s as u64, hash32(h)?)),
            None => Ok((0, GENESIS)),
        }
    }

    /// Records with `from <= seq <= to`, in chain order.
    pub async fn records(&self, from: u64, to: u64) -> Result<Vec<StoredRecord>> {
        let sql = format!(
            "SELECT {RECORD_COLS} FROM audit_records r WHERE r.tenant_id = $1 AND r.seq >= $2 \
             AND r.seq <= $3 ORDER BY r.seq"
        );
        let rows: Vec<RecordTuple> =
            with_tx!(self.store.data(self.id).await?, self.access(), |tx| {
                sqlx::query_as(&sql)
                    .bind(self.id.as_str())
                    .bind(from as i64)
                    .bind(to as i64)
                    .fetch_all(&mut *tx)
                    .await?
            })?;
        stored(rows)
    }

    /// Records matching `f`, newest first, at most `f.limit`.
    pub async fn query(&self, f: &AuditFilter) -> Result<Vec<StoredRecord>> {
        let rows: Vec<RecordTuple> =
            with_tx!(self.store.data(self.id).await?, self.access(), |tx| {
                let mut qb = sqlx::QueryBuilder::new(format!(
                    "SELECT {RECORD_COLS} FROM audit_records r WHERE r.tenant_id = "
                ));
                qb.push_bind(self.id.as_str());
                if let Some(v) = f.from_ms {
                    qb.push(" AND r.ts_ms >= ").push_bind(v);
                }
                if let Some(v) = f.to_ms {
                    qb.push(" AND r.ts_ms < ").push_bind(v);
                }
                if let Some(v) = &f.user {
                    qb.push(" AND r.user_id = ").push_bind(v.clone());
                }
                if let Some(v) = &f.key_id {
                    qb.push(" AND r.key_id = ").push_bind(v.clone());
                }
                if let Some(v) = &f.model {
                    qb.push(" AND r.model = ").push_bind(v.clone());
                }
                if let Some(v) = &f.event {
                    qb.push(" AND r.event = ").push_bind(v.clone());
                }
                if let Some(v) = f.status {
                    qb.push(" AND r.status = ").push_bind(i32::from(v));
                }
                if let Some(v) = f.before_seq {
                    qb.push(" AND r.seq < ").push_bind(v as i64);
                }
                qb.push(" ORDER BY r.seq DESC LIMIT ")
                    .push_bind(i64::from(f.limit.clamp(1, 10_000)));
                qb.build_query_as().fetch_all(&mut *tx).await?
            })?;
        stored(rows)
    }

    /// The first and last seq of records with `from_ms <= ts_ms < to_ms`.
    pub async fn seq_range(&self, from_ms: i64, to_ms: i64) -> Result<Option<(u64, u64)>> {
        let row: (Option<i64>, Option<i64>) =
            with_tx!(self.store.data(self.id).await?, self.access(), |tx| {
                sqlx::query_as(
                    "SELECT MIN(seq), MAX(seq) FROM audit_records WHERE tenant_id = $1 \
                 AND ts_ms >= $2 AND ts_ms < $3",
                )
                .bind(self.id.as_str())
                .bind(from_ms)
                .bind(to_ms)
                .fetch_one(&mut *tx)
                .await?
            })?;
        Ok(match row {
            (Some(a), Some(b)) => Some((a as u64, b as u64)),
            _ => None,
        })
    }

    /// The first retained seq (records before it were pruned), or `None` if the chain is empty.
    pub async fn first_seq(&self) -> Result<Option<u64>> {
        let v: Option<i64> = with_tx!(self.store.data(self.id).await?, self.access(), |tx| {
            sqlx::query_scalar("SELECT MIN(seq) FROM audit_records WHERE tenant_id = $1")
                .bind(self.id.as_str())
                .fetch_one(&mut *tx)
                .await?
        })?;
        Ok(v.map(|v| v as u64))
    }

    /// Checkpoints with `from <= seq <= to`, in order.
    pub async fn checkpoints(&self, from: u64, to: u64) -> Result<Vec<Checkpoint>> {
        let rows: Vec<CheckpointRow> =
            with_tx!(self.store.data(self.id).await?, self.access(), |tx| {
                sqlx::query_as(
                "SELECT seq, hash, ts_ms, key_id, sig FROM audit_checkpoints WHERE tenant_id = $1 \
                 AND seq >= $2 AND seq <= $3 ORDER BY seq",
            )
            .bind(self.id.as_str())
            .bind(from.min(i64::MAX as u64) as i64)
            .bind(to.min(i64::MAX as u64) as i64)
            .fetch_all(&mut *tx)
            .await?
            })?;
        Ok(rows.into_iter().map(|r| checkpoint(self.id, r)).collect())
    }

    /// The last checkpoint at or before `seq`, and the first at or after it.
    pub async fn checkpoint_around(
        &self,
        seq: u64,
    ) -> Result<(Option<Checkpoint>, Option<Checkpoint>)> {
        let s = seq as i64;
        let (before, after): (Option<CheckpointRow>, Option<CheckpointRow>) =
            with_tx!(self.store.data(self.id).await?, self.access(), |tx| {
                let b = sqlx::query_as(
                    "SELECT seq, hash, ts_ms, key_id, sig FROM audit_checkpoints \
                     WHERE tenant_id = $1 AND seq <= $2 ORDER BY seq DESC LIMIT 1",
                )
                .bind(self.id.as_str())
                .bind(s)
                .fetch_optional(&mut *tx)
                .await?;
                let a = sqlx::query_as(
                    "SELECT seq, hash, ts_ms, key_id, sig FROM audit_checkpoints \
                     WHERE tenant_id = $1 AND seq >= $2 ORDER BY seq LIMIT 1",
                )
                .bind(self.id.as_str())
                .bind(s)
                .fetch_optional(&mut *tx)
                .await?;
                (b, a)
            })?;
        Ok((
            before.map(|r| checkpoint(self.id, r)),
            after.map(|r| checkpoint(self.id, r)),
        ))
    }

    /// Stores a signed checkpoint (idempotent: a second one for the same seq is ignored).
    pub async fn add_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        add_checkpoint(self.store, self.access(), self.id, cp).await
    }

    /// Model-call usage with `from_ms <= ts_ms < to_ms`, grouped (`day`: Unix day number,
    /// `model`, `key`, `user`), from the audit records: what was actually settled.
    pub async fn usage(
        &self,
        from_ms: i64,
        to_ms: i64,
        group_by: UsageGroup,
        only: Option<UsageOwner<'_>>,
    ) -> Result<Vec<UsageRow>> {
        let expr = match group_by {
            UsageGroup::Minute => "CAST(ts_ms / 60000 AS TEXT)",
            UsageGroup::Day => "CAST(ts_ms / 86400000 AS TEXT)",
            UsageGroup::Model => "COALESCE(model, '')",
            UsageGroup::Key => "COALESCE(key_id, '')",
            UsageGroup::User => "COALESCE(user_id, '')",
        };
        let sql = format!(
            "SELECT {expr} AS g, COUNT(*), CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) \
             FROM audit_records WHERE tenant_id = $1 AND event = 'api_call' AND ts_ms >= $2 AND ts_ms < $3 \
             AND (CAST($4 AS TEXT) IS NULL OR user_id = CAST($4 AS TEXT)) \
             AND (CAST($5 AS TEXT) IS NULL OR key_id = CAST($5 AS TEXT)) \
             GROUP BY g ORDER BY g"
        );
        let (user, key) = match only {
            None => (None, None),
            Some(UsageOwner::User(u)) => (Some(u), None),
            Some(UsageOwner::Key(k)) => (None, Some(k)),
        };
        let rows: Vec<(String, i64, i64, i64, i64)> =
            with_tx!(self.store.data(self.id).await?, self.access(), |tx| {
                sqlx::query_as(&sql)
                    .bind(self.id.as_str())
                    .bind(from_ms)
                    .bind(to_ms)
                    .bind(user)
                    .bind(key)
                    .fetch_all(&mut *tx)
                    .await?
            })?;
        Ok(rows
            .into_iter()
            .map(
                |(group, requests, input_tokens, output_tokens, cost_micros)| UsageRow {
                    group,
                    requests,
                    input_tokens,
                    output_tokens,
                    cost_micros,
                },
            )
            .collect())
    }

    /// The tenant's audit policy as stored (JSON), if it set one.
    pub async fn policy(&self) -> Result<Option<String>> {
        with_tx!(self.store, self.access(), |tx| {
            sqlx::query_scalar("SELECT policy FROM tenant_audit_policy WHERE tenant_id = $1")
                .bind(self.id.as_str())
                .fetch_optional(&mut *tx)
                .await?
        })
    }

    /// Replaces the tenant's audit policy (JSON, validated by the caller).
    pub async fn set_policy(&self, policy_json: &str) -> Result<()> {
        with_tx!(self.store, self.access(), |tx| {
            sqlx::query(
                "INSERT INTO tenant_audit_policy (tenant_id, policy, updated_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(self.id.as_str())
            .bind(policy_json)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            crate::tenant::bump_revision(&mut tx).await?;
        })
    }
}

pub(crate) async fn add_checkpoint(
    store: &Store,
    access: Access<'_>,
    id: &TenantId,
    cp: &Checkpoint,
) -> Result<()> {
    let hash = unhex(&cp.hash)?;
    with_tx!(store.data(id).await?, access, |tx| {
        sqlx::query(
            "INSERT INTO audit_checkpoints (tenant_id, seq, hash, ts_ms, key_id, sig) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, seq) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(cp.seq as i64)
        .bind(hash)
        .bind(cp.ts_ms)
        .bind(&cp.key_id)
        .bind(&cp.sig)
        .execute(&mut *tx)
        .await?;
    })
}

/// How [`TenantAudit::usage`] groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    /// Unix minutes (the console's live chart).
    Minute,
    Day,
    Model,
    Key,
    User,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageRow {
    pub group: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
}

/// A tenant's settled usage since the start of the day and of the month (for rebuilding
/// in-process budget counters at start).
#[derive(Debug, Clone)]
pub struct UsageSince {
    pub tenant: TenantId,
    pub day_tokens: i64,
    pub month_tokens: i64,
    pub month_cost_micros: i64,
}

/// A chain whose head is past its last checkpoint.
#[derive(Debug, Clone)]
pub struct UnsignedHead {
    pub tenant: TenantId,
    pub seq: u64,
    pub hash: [u8; 32],
    pub last_checkpoint: u64,
}

impl crate::Platform<'_> {
    /// Chains with records after their last checkpoint (for the checkpointer's sweep).
    pub async fn audit_unsigned_heads(&self) -> Result<Vec<UnsignedHead>> {
        let mut rows: Vec<(String, i64, Vec<u8>, Option<i64>)> = Vec::new();
        for (_, data) in self.store.data_places().await? {
            rows.extend(with_tx!(&data, Access::Platform, |tx| {
                sqlx::query_as::<_, (String, i64, Vec<u8>, Option<i64>)>(
                    "SELECT h.tenant_id, h.seq, h.hash, \
                     (SELECT MAX(c.seq) FROM audit_checkpoints c WHERE c.tenant_id = h.tenant_id) \
                     FROM audit_heads h",
                )
                .fetch_all(&mut *tx)
                .await?
            })?);
        }
        let mut out = Vec::new();
        for (t, seq, hash, cp) in rows {
            let cp = cp.unwrap_or(0);
            if seq > cp {
                out.push(UnsignedHead {
                    tenant: TenantId::parse(&t)?,
                    seq: seq as u64,
                    hash: hash32(hash)?,
                    last_checkpoint: cp as u64,
                });
            }
        }
        Ok(out)
    }

    /// `tenant`'s chain head, `(0, GENESIS)` before its first record (the checkpoint signer).
    pub async fn audit_head(&self, tenant: &TenantId) -> Result<(u64, [u8; 32])> {
        let row: Option<(i64, Vec<u8>)> =
            with_tx!(self.store.data(tenant).await?, Access::Platform, |tx| {
                sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1")
                    .bind(tenant.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
            })?;
        match row {
            Some((s, h)) => Ok((s as u64, hash32(h)?)),
            None => Ok((0, GENESIS)),
        }
    }

    /// Every tenant's settled model-call usage since `day_start_ms` and `month_start_ms`.
    pub async fn usage_since(
        &self,
        day_start_ms: i64,
        month_start_ms: i64,
    ) -> Result<Vec<UsageSince>> {
        let mut rows: Vec<(String, i64, i64, i64)> = Vec::new();
        for (_, data) in self.store.data_places().await? {
            rows.extend(with_tx!(&data, Access::Platform, |tx| {
            sqlx::query_as::<_, (String, i64, i64, i64)>(
                "SELECT tenant_id, \
                 CAST(COALESCE(SUM(CASE WHEN ts_ms >= $1 THEN COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0) ELSE 0 END), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(COALESCE(cost_micros, 0)), 0) AS BIGINT) \
                 FROM audit_records WHERE event = 'api_call' AND ts_ms >= $2 GROUP BY tenant_id",
            )
            .bind(day_start_ms)
            .bind(month_start_ms)
            .fetch_all(&mut *tx)
            .await?
        })?);
        }
        rows.into_iter()
            .map(|(t, d, m, c)| {
                Ok(UsageSince {
                    tenant: TenantId::parse(&t)?,
                    day_tokens: d,
                    month_tokens: m,
                    month_cost_micros: c,
                })
            })
            .collect()
    }

    /// Stores a signed checkpoint for `tenant` (the checkpointer's sweep).
    pub async fn audit_add_checkpoint(&self, tenant: &TenantId, cp: &Checkpoint) -> Result<()> {
        add_checkpoint(self.store, Access::Platform, tenant, cp).await
    }

    /// Appends records to `tenant`'s chain as the platform (operator actions from the CLI).
    pub async fn audit_append(
        &self,
        tenant: &TenantId,
        entries: Vec<NewAuditRecord>,
    ) -> Result<Vec<Appended>> {
        let groups = [(tenant, entries.as_slice())];
        let mut out = with_tx!(self.store.data(tenant).await?, Access::Platform, |tx| {
            append_body!(tx, &groups)
        })?;
        Ok(out.pop().unwrap_or_default())
    }
}

impl crate::Platform<'_> {
    /// Stores signed checkpoints of several tenants' chains (each names its tenant), 256 per
    /// transaction; idempotent per tenant and seq, and one at or behind a stored one is
    /// skipped. Returns the `(tenant, seq)` of those actually stored.
    pub async fn audit_add_checkpoints(&self, cps: &[Checkpoint]) -> Result<Vec<(String, u64)>> {
        let mut stored = Vec::with_capacity(cps.len());
        let mut rows = Vec::with_capacity(cps.len());
        for cp in cps {
            rows.push((TenantId::parse(&cp.tenant)?, cp, unhex(&cp.hash)?));
        }
        for (data, rows) in self.store.by_place(rows, |r| &r.0).await? {
            let rows: Vec<_> = rows.into_iter().map(|(_, r)| r).collect();
            for chunk in rows.chunks(256) {
                with_tx!(&data, Access::Platform, |tx| {
                    // Another signer (a replica, an export) may have stored a newer one meanwhile:
                    // checkpoints only go forward (a trigger refuses one behind), so skip those.
                    let mut qb = sqlx::QueryBuilder::new("WITH v (t, s, h, ts, k, sig) AS (");
                    qb.push_values(chunk, |mut b, (t, cp, h)| {
                        b.push_bind(t.to_string())
                            .push_bind(cp.seq as i64)
                            .push_bind(h.clone())
                            .push_bind(cp.ts_ms)
                            .push_bind(cp.key_id.clone())
                            .push_bind(cp.sig.clone());
                    });
                    qb.push(
                    ") INSERT INTO audit_checkpoints (tenant_id, seq, hash, ts_ms, key_id, sig) \
                     SELECT t, s, h, ts, k, sig FROM v WHERE NOT EXISTS (SELECT 1 FROM \
                     audit_checkpoints c WHERE c.tenant_id = v.t AND c.seq >= v.s) \
                     ON CONFLICT (tenant_id, seq) DO NOTHING RETURNING tenant_id, seq",
                );
                    let rows: Vec<(String, i64)> = qb.build_query_as().fetch_all(&mut *tx).await?;
                    stored.extend(rows.into_iter().map(|(t, s)| (t, s as u64)));
                })?;
            }
        }
        Ok(stored)
    }
}
