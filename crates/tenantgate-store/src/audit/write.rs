//! How a planned batch is written, per backend: the part of the group commit that runs while
//! the chain heads are locked.

use super::{fixed_chunks, Planned, RecordRow};
use crate::Result;

/// Backend differences the generic transaction bodies need.
pub(crate) trait AuditTx {
    fn for_update(&self) -> &'static str;
    /// Inserts a planned batch's records and bodies and moves its heads.
    async fn write_planned(&mut self, planned: &Planned<'_>) -> Result<()>;
}

impl AuditTx for sqlx::Transaction<'_, sqlx::Sqlite> {
    // SQLite's `BEGIN IMMEDIATE` already holds the database's write lock.
    fn for_update(&self) -> &'static str {
        ""
    }

    /// Multi-row INSERTs in fixed chunk sizes, so statements stay prepared.
    async fn write_planned(&mut self, planned: &Planned<'_>) -> Result<()> {
        for chunk in fixed_chunks(&planned.rows) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO audit_records (tenant_id, seq, ts_ms, request_id, event, key_id, \
                 user_id, model, status, input_tokens, output_tokens, cost_micros, record, hash) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.0.clone())
                    .push_bind(r.1)
                    .push_bind(r.2)
                    .push_bind(r.3.clone())
                    .push_bind(r.4)
                    .push_bind(r.5.clone())
                    .push_bind(r.6.clone())
                    .push_bind(r.7.clone())
                    .push_bind(r.8)
                    .push_bind(r.9)
                    .push_bind(r.10)
                    .push_bind(r.11)
                    .push_bind(r.12.clone())
                    .push_bind(r.13.clone());
            });
            qb.build().execute(&mut **self).await?;
        }
        for chunk in fixed_chunks(&planned.bodies) {
            let mut qb =
                sqlx::QueryBuilder::new("INSERT INTO audit_bodies (tenant_id, seq, part, sealed) ");
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.0.clone())
                    .push_bind(r.1)
                    .push_bind(r.2)
                    .push_bind(r.3.to_vec());
            });
            qb.build().execute(&mut **self).await?;
        }
        let mut qb = sqlx::QueryBuilder::new("INSERT INTO audit_heads (tenant_id, seq, hash) ");
        qb.push_values(planned.heads.iter(), |mut b, h| {
            b.push_bind(h.0.clone())
                .push_bind(h.1)
                .push_bind(h.2.clone());
        });
        qb.push(" ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash");
        qb.build().execute(&mut **self).await?;
        Ok(())
    }
}

impl AuditTx for sqlx::Transaction<'_, sqlx::Postgres> {
    fn for_update(&self) -> &'static str {
        " FOR UPDATE"
    }

    /// One statement, whatever the batch: records, bodies and heads as arrays, unnested by
    /// three data-modifying CTEs. The heads are locked from the `FOR UPDATE` read until the
    /// commit, so every round trip in between is time another replica waits to append to the
    /// same chain: this is one instead of three or more (one large tenant across replicas).
    async fn write_planned(&mut self, planned: &Planned<'_>) -> Result<()> {
        let rows = &planned.rows;
        let col = |f: &dyn Fn(&RecordRow) -> Option<i64>| rows.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "WITH r AS (INSERT INTO audit_records (tenant_id, seq, ts_ms, request_id, event, \
             key_id, user_id, model, status, input_tokens, output_tokens, cost_micros, record, \
             hash) SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], \
             $5::text[], $6::text[], $7::text[], $8::text[], $9::int[], $10::bigint[], \
             $11::bigint[], $12::bigint[], $13::text[], $14::bytea[])), \
             b AS (INSERT INTO audit_bodies (tenant_id, seq, part, sealed) \
             SELECT * FROM UNNEST($15::text[], $16::bigint[], $17::text[], $18::bytea[])) \
             INSERT INTO audit_heads (tenant_id, seq, hash) \
             SELECT * FROM UNNEST($19::text[], $20::bigint[], $21::bytea[]) \
             ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.4).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.5.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.6.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.7.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.8).collect::<Vec<_>>())
        .bind(col(&|r| r.9))
        .bind(col(&|r| r.10))
        .bind(col(&|r| r.11))
        .bind(rows.iter().map(|r| r.12.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.13.as_slice()).collect::<Vec<_>>())
        .bind(
            planned
                .bodies
                .iter()
                .map(|b| b.0.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(planned.bodies.iter().map(|b| b.1).collect::<Vec<_>>())
        .bind(planned.bodies.iter().map(|b| b.2).collect::<Vec<_>>())
        .bind(planned.bodies.iter().map(|b| b.3).collect::<Vec<_>>())
        .bind(
            planned
                .heads
                .iter()
                .map(|h| h.0.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(planned.heads.iter().map(|h| h.1).collect::<Vec<_>>())
        .bind(
            planned
                .heads
                .iter()
                .map(|h| h.2.as_slice())
                .collect::<Vec<_>>(),
        )
        .execute(&mut **self)
        .await?;
        Ok(())
    }
}
