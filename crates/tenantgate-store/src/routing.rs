//! Provider drains: a platform operator takes a configured provider out of every model's
//! targets (the provider-outage playbook's first step), on every replica. The list is in the
//! auth snapshot ([`crate::AuthSnapshot::drains`]); a change moves the control-plane revision,
//! so every replica reloads it.

use crate::platform::Platform;
use crate::tenant::bump_revision;
use crate::{now_ms, with_tx, Access, Result, StoreError};
use serde::Serialize;

/// A drained provider, as it is listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drain {
    pub provider: String,
    pub reason: String,
    /// The platform admin who drained it.
    pub actor: String,
    pub drained_at_ms: i64,
}

impl Platform<'_> {
    /// Drains `provider` (or replaces its reason if it is drained already).
    pub async fn drain_provider(&self, provider: &str, reason: &str) -> Result<Drain> {
        let d = Drain {
            provider: provider.to_owned(),
            reason: reason.to_owned(),
            actor: self.actor().to_owned(),
            drained_at_ms: now_ms(),
        };
        tracing::info!(actor = %d.actor, provider, "draining provider");
        with_tx!(self.store, Access::Platform, |tx| {
            sqlx::query(
                "INSERT INTO provider_drains (provider, reason, actor, drained_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (provider) DO UPDATE SET reason = excluded.reason, actor = excluded.actor, \
                 drained_at_ms = excluded.drained_at_ms",
            )
            .bind(&d.provider)
            .bind(&d.reason)
            .bind(&d.actor)
            .bind(d.drained_at_ms)
            .execute(&mut *tx)
            .await?;
            bump_revision(&mut tx).await?;
        })?;
        Ok(d)
    }

    /// Puts `provider` back into its models' targets; `NotFound` if it was not drained.
    pub async fn undrain_provider(&self, provider: &str) -> Result<()> {
        tracing::info!(actor = self.actor(), provider, "undraining provider");
        let removed = with_tx!(self.store, Access::Platform, |tx| {
            let n = sqlx::query("DELETE FROM provider_drains WHERE provider = $1")
                .bind(provider)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n > 0 {
                bump_revision(&mut tx).await?;
            }
            n
        })?;
        if removed == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Every drained provider, by name.
    pub async fn drains(&self) -> Result<Vec<Drain>> {
        let rows: Vec<(String, String, String, i64)> = with_tx!(
            self.store,
            Access::Platform,
            |tx| {
                sqlx::query_as(
                    "SELECT provider, reason, actor, drained_at_ms FROM provider_drains ORDER BY provider",
                )
                .fetch_all(&mut *tx)
                .await?
            }
        )?;
        Ok(rows
            .into_iter()
            .map(|(provider, reason, actor, drained_at_ms)| Drain {
                provider,
                reason,
                actor,
                drained_at_ms,
            })
            .collect())
    }
}
