//! What a tenant's export bundle and its import need from storage (issue 18): documents as
//! uploaded (`kb_sources`, sealed parts written with the document's chunks), usage by day and
//! model, and removing a tenant an import created when the import fails. Payloads arrive and
//! leave sealed; this module never looks inside.

use crate::tenant::TenantStore;
use crate::{with_tx, Access, Result, StoreError};

/// The largest part a document's source is stored in: export and import hold one at a time.
pub const SOURCE_PART_BYTES: usize = 1 << 20;

/// One part of a document as uploaded, sealed with the tenant's keys (AAD bound to the tenant,
/// the document and the part's number). Parts are numbered 0.. in order.
pub struct SourcePart {
    pub part: u32,
    pub sealed: Vec<u8>,
}

/// Inserts a document's source parts inside a `with_tx!` body (one statement per part: each
/// is up to a MiB, so batching them would only make one large statement).
macro_rules! insert_sources {
    ($tx:ident, $tenant:expr, $kb:expr, $doc:expr, $sources:expr) => {
        for s in $sources {
            sqlx::query(
                "INSERT INTO kb_sources (tenant_id, kb_id, doc_id, part, sealed) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind($tenant)
            .bind($kb)
            .bind($doc)
            .bind(s.part as i32)
            .bind(s.sealed.as_slice())
            .execute(&mut *$tx)
            .await?;
        }
    };
}
pub(crate) use insert_sources;

/// Settled model-call usage of one day (Unix day number) and model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DayModelUsage {
    pub day: i64,
    pub model: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
}

impl TenantStore<'_> {
    /// The part numbers of a document's stored source, in order (empty: uploaded before
    /// sources were kept, or another tenant's document).
    pub async fn source_parts(&self, doc_id: &str) -> Result<Vec<u32>> {
        let parts: Vec<i32> = with_tx!(
            self.store.data(self.id()).await?,
            Access::Tenant(self.id()),
            |tx| {
                sqlx::query_scalar(
                    "SELECT part FROM kb_sources WHERE tenant_id = $1 AND doc_id = $2 ORDER BY part",
                )
                .bind(self.id().as_str())
                .bind(doc_id)
                .fetch_all(&mut *tx)
                .await?
            }
        )?;
        Ok(parts.into_iter().map(|p| p as u32).collect())
    }

    /// One sealed part of a document's source.
    pub async fn source_part(&self, doc_id: &str, part: u32) -> Result<Vec<u8>> {
        let row: Option<Vec<u8>> = with_tx!(
            self.store.data(self.id()).await?,
            Access::Tenant(self.id()),
            |tx| {
                sqlx::query_scalar(
                    "SELECT sealed FROM kb_sources WHERE tenant_id = $1 AND doc_id = $2 AND part = $3",
                )
                .bind(self.id().as_str())
                .bind(doc_id)
                .bind(part as i32)
                .fetch_optional(&mut *tx)
                .await?
            }
        )?;
        row.ok_or(StoreError::NotFound)
    }

    /// Settled model-call usage for all time, by day and model (what `/tenant/v1/usage`
    /// counts: `api_call` records of the tenant's chain).
    pub async fn usage_by_day_and_model(&self) -> Result<Vec<DayModelUsage>> {
        let rows: Vec<(i64, String, i64, i64, i64, i64)> = with_tx!(
            self.store.data(self.id()).await?,
            Access::Tenant(self.id()),
            |tx| {
                sqlx::query_as(
                    "SELECT CAST(ts_ms / 86400000 AS BIGINT) AS d, COALESCE(model, '') AS m, COUNT(*), \
                     CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) \
                     FROM audit_records WHERE tenant_id = $1 AND event = 'api_call' \
                     GROUP BY d, m ORDER BY d, m",
                )
                .bind(self.id().as_str())
                .fetch_all(&mut *tx)
                .await?
            }
        )?;
        Ok(rows
            .into_iter()
            .map(
                |(day, model, requests, input_tokens, output_tokens, cost_micros)| DayModelUsage {
                    day,
                    model,
                    requests,
                    input_tokens,
                    output_tokens,
                    cost_micros,
                },
            )
            .collect())
    }
}
