//! Tenant-owned fine-tuning (issue 19, migration 0019): training files (data, in the tenant's
//! place: `ft_files`, and the JSONL sealed in parts, `ft_file_parts`), jobs and the private
//! models they produce (control plane: `ft_jobs`, `private_models`; private models are in the
//! auth snapshot). Every method is on the tenant-bound handle: another tenant's id is
//! `NotFound`, exactly like a missing one. Payloads arrive sealed; nothing here looks inside.

use crate::tenant::{bump_revision, TenantStore};
use crate::{now_ms, with_tx, Access, Result, StoreError};
use serde::Serialize;

/// A training file as the gateway keeps it. `provider_file_id` is never shown to the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FtFile {
    pub id: String,
    pub filename: String,
    pub purpose: String,
    pub bytes: i64,
    pub lines: i64,
    pub sha256: String,
    pub provider: String,
    #[serde(skip)]
    pub provider_file_id: String,
    pub created_at_ms: i64,
}

/// One sealed part of a file's content (parts numbered 0.. in order).
pub struct FtPart {
    pub part: u32,
    pub sealed: Vec<u8>,
}

/// A fine-tuning job as the gateway keeps it. `provider_job_id` is never shown to the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FtJob {
    pub id: String,
    pub provider: String,
    #[serde(skip)]
    pub provider_job_id: String,
    pub model: String,
    pub training_file: String,
    pub validation_file: Option<String>,
    pub suffix: Option<String>,
    pub status: String,
    pub fine_tuned_model: Option<String>,
    pub trained_tokens: Option<i64>,
    pub charged_micros: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A model fine-tuned for one tenant: callable by that tenant only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrivateModel {
    pub name: String,
    pub base_model: String,
    pub upstream_model: String,
    pub job_id: String,
    pub created_at_ms: i64,
}

const FILE_COLS: &str =
    "id, filename, purpose, bytes, lines, sha256, provider, provider_file_id, created_at_ms";
type FileRow = (
    String,
    String,
    String,
    i64,
    i64,
    String,
    String,
    String,
    i64,
);
fn file(
    (id, filename, purpose, bytes, lines, sha256, provider, provider_file_id, created_at_ms): FileRow,
) -> FtFile {
    FtFile {
        id,
        filename,
        purpose,
        bytes,
        lines,
        sha256,
        provider,
        provider_file_id,
        created_at_ms,
    }
}

const JOB_COLS: &str =
    "id, provider, provider_job_id, model, training_file, validation_file, suffix, \
     status, fine_tuned_model, trained_tokens, charged_micros, created_at_ms, updated_at_ms";
type JobRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
);
fn job(r: JobRow) -> FtJob {
    FtJob {
        id: r.0,
        provider: r.1,
        provider_job_id: r.2,
        model: r.3,
        training_file: r.4,
        validation_file: r.5,
        suffix: r.6,
        status: r.7,
        fine_tuned_model: r.8,
        trained_tokens: r.9,
        charged_micros: r.10,
        created_at_ms: r.11,
        updated_at_ms: r.12,
    }
}

/// What a job's terminal transition records.
pub struct Finished<'a> {
    pub status: &'a str,
    pub trained_tokens: Option<i64>,
    pub charged_micros: Option<i64>,
    /// The private model to register with the transition (a succeeded job).
    pub model: Option<PrivateModel>,
}

impl TenantStore<'_> {
    /// Stores a training file and its sealed parts in one transaction of the tenant's place.
    pub async fn add_ft_file(&self, f: &FtFile, parts: &[FtPart]) -> Result<()> {
        let tenant = self.id().as_str();
        with_tx!(
            self.store.data(self.id()).await?,
            Access::Tenant(self.id()),
            |tx| {
                sqlx::query(&format!(
                "INSERT INTO ft_files (tenant_id, {FILE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .bind(tenant)
            .bind(&f.id)
            .bind(&f.filename)
            .bind(&f.purpose)
            .bind(f.bytes)
            .bind(f.lines)
            .bind(&f.sha256)
            .bind(&f.provider)
            .bind(&f.provider_file_id)
            .bind(f.created_at_ms)
            .execute(&mut *tx)
            .await?;
                // One statement per part: each is up to a MiB.
                for p in parts {
                    sqlx::query(
                    "INSERT INTO ft_file_parts (tenant_id, file_id, part, sealed) VALUES ($1, $2, $3, $4)",
                )
                .bind(tenant)
                .bind(&f.id)
                .bind(p.part as i32)
                .bind(p.sealed.as_slice())
                .execute(&mut *tx)
                .await?;
                }
            }
        )
    }

    /// The tenant's files, newest first.
    pub async fn ft_files(&self) -> Result<Vec<FtFile>> {
        let rows: Vec<FileRow> = with_tx!(
            self.store.data(self.id()).await?,
            Access::Tenant(self.id()),
            |tx| {
                sqlx::query_as(&format!(
                "SELECT {FILE_COLS} FROM ft_files WHERE tenant_id = $1 ORDER BY created_at_ms DESC, id DESC"
            ))
            .bind(self.id().as_str())
            .fetch_all(&mut *tx)
            .await?
            }
        )?;
        Ok(rows.into_iter().map(file).collect())
    }

    /// One of the tenant's files; another tenant's is `NotFound`.
    pub async fn ft_file(&self, id: &str) -> Result<FtFile> {
        let row: Option<FileRow> = with_tx!(
            self.store.data(self.id()).await?,
            Access::Tenant(self.id()),
            |tx| {
                sqlx::query_as(&format!(
                    "SELECT {FILE_COLS} FROM ft_files WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(self.id().as_str())
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            }
        )?;
        row.map(file).ok_or(StoreError::NotFound)
    }

    /// The sealed parts of one of the tenant's files, in order.
    pub async fn ft_file_parts(&self, id: &str) -> Result<Vec<FtPart>> {
        let rows: Vec<(i32, Vec<u8>)> = with_tx!(
            self.store.data(self.id()).await?,
            Access::Tenant(self.id()),
            |tx| {
                sqlx::query_as(
                "SELECT part, sealed FROM ft_file_parts WHERE tenant_id = $1 AND file_id = $2 ORDER BY part",
            )
            .bind(self.id().as_str())
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            }
        )?;
        Ok(rows
            .into_iter()
            .map(|(part, sealed)| FtPart {
                part: part as u32,
                sealed,
            })
            .collect())
    }

    /// Deletes one of the tenant's files and its content.
    pub async fn delete_ft_file(&self, id: &str) -> Result<()> {
        let tenant = self.id().as_str();
        with_tx!(
            self.store.data(self.id()).await?,
            Access::Tenant(self.id()),
            |tx| {
                let n = sqlx::query("DELETE FROM ft_files WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                sqlx::query("DELETE FROM ft_file_parts WHERE tenant_id = $1 AND file_id = $2")
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        )
    }

    pub async fn add_ft_job(&self, j: &FtJob) -> Result<()> {
        with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            sqlx::query(&format!(
                "INSERT INTO ft_jobs (tenant_id, {JOB_COLS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ))
            .bind(self.id().as_str())
            .bind(&j.id)
            .bind(&j.provider)
            .bind(&j.provider_job_id)
            .bind(&j.model)
            .bind(&j.training_file)
            .bind(&j.validation_file)
            .bind(&j.suffix)
            .bind(&j.status)
            .bind(&j.fine_tuned_model)
            .bind(j.trained_tokens)
            .bind(j.charged_micros)
            .bind(j.created_at_ms)
            .bind(j.updated_at_ms)
            .execute(&mut *tx)
            .await?;
        })
    }

    /// The tenant's jobs, newest first, after the job `after` (its id), at most `limit`.
    pub async fn ft_jobs(&self, after: Option<&str>, limit: u32) -> Result<Vec<FtJob>> {
        let rows: Vec<JobRow> = with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            // Ids are UUIDv7: newest first is id order, and `after` is a plain bound.
            sqlx::query_as(&format!(
                "SELECT {JOB_COLS} FROM ft_jobs WHERE tenant_id = $1 \
                 AND (CAST($2 AS TEXT) IS NULL OR id < CAST($2 AS TEXT)) ORDER BY id DESC LIMIT $3"
            ))
            .bind(self.id().as_str())
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?
        })?;
        Ok(rows.into_iter().map(job).collect())
    }

    pub async fn ft_job(&self, id: &str) -> Result<FtJob> {
        let row: Option<JobRow> = with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            sqlx::query_as(&format!(
                "SELECT {JOB_COLS} FROM ft_jobs WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(self.id().as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        })?;
        row.map(job).ok_or(StoreError::NotFound)
    }

    /// Moves a job that is not finished yet to a non-terminal `status`.
    pub async fn set_ft_job_status(&self, id: &str, status: &str) -> Result<()> {
        with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            sqlx::query(
                "UPDATE ft_jobs SET status = $3, updated_at_ms = $4 WHERE tenant_id = $1 AND id = $2 \
                 AND status NOT IN ('succeeded', 'failed', 'cancelled')",
            )
            .bind(self.id().as_str())
            .bind(id)
            .bind(status)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        })
    }

    /// Finishes a job once: `Ok(true)` for the call that moved it to its terminal state (it
    /// charges, audits and registers the model), `Ok(false)` if another call (or replica) did
    /// already. A private model is registered in the same transaction and moves the control
    /// revision, so every replica's snapshot gets it.
    pub async fn finish_ft_job(&self, id: &str, f: &Finished<'_>) -> Result<bool> {
        let tenant = self.id().as_str();
        let now = now_ms();
        with_tx!(self.store, Access::Tenant(self.id()), |tx| {
            let n = sqlx::query(
                "UPDATE ft_jobs SET status = $3, trained_tokens = $4, charged_micros = $5, \
                 fine_tuned_model = $6, updated_at_ms = $7 WHERE tenant_id = $1 AND id = $2 \
                 AND status NOT IN ('succeeded', 'failed', 'cancelled')",
            )
            .bind(tenant)
            .bind(id)
            .bind(f.status)
            .bind(f.trained_tokens)
            .bind(f.charged_micros)
            .bind(f.model.as_ref().map(|m| m.name.as_str()))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                if let Some(m) = &f.model {
                    sqlx::query(
                        "INSERT INTO private_models (tenant_id, name, base_model, upstream_model, job_id, created_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(tenant)
                    .bind(&m.name)
                    .bind(&m.base_model)
                    .bind(&m.upstream_model)
                    .bind(&m.job_id)
                    .bind(m.created_at_ms)
                    .execute(&mut *tx)
                    .await?;
                    bump_revision(&mut tx).await?;
                }
            }
            n == 1
        })
    }

    /// The tenant's private models (the snapshot carries every tenant's; this is for export).
    pub async fn private_models(&self) -> Result<Vec<PrivateModel>> {
        let rows: Vec<(String, String, String, String, i64)> = with_tx!(
            self.store,
            Access::Tenant(self.id()),
            |tx| {
                sqlx::query_as(
                    "SELECT name, base_model, upstream_model, job_id, created_at_ms FROM private_models \
                     WHERE tenant_id = $1 ORDER BY name",
                )
                .bind(self.id().as_str())
                .fetch_all(&mut *tx)
                .await?
            }
        )?;
        Ok(rows
            .into_iter()
            .map(
                |(name, base_model, upstream_model, job_id, created_at_ms)| PrivateModel {
                    name,
                    base_model,
                    upstream_model,
                    job_id,
                    created_at_ms,
                },
            )
            .collect())
    }
}
