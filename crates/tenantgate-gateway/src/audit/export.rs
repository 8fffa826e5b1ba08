//! The audit export's assembly from a start checkpoint (or the genesis) to a signed end
//! checkpoint, shared by `GET /tenant/v1/audit/export` (which signs the head through the
//! writer first) and the export bundle of `lifecycle/export.rs`.

use crate::error::st;
use crate::error::GatewayError;
use tenantgate_audit::{Checkpoint, ExportLine, ExportRecord, Window, GENESIS};
use tenantgate_core::TenantScope;

fn record_json(
    r: &tenantgate_store::audit::StoredRecord,
) -> Result<serde_json::Value, GatewayError> {
    serde_json::from_str(&r.record).map_err(|_| GatewayError::Internal)
}

/// The export from `start` (or the genesis) to the signed checkpoint `end`: the records in
/// between with their kept bodies opened, the checkpoints, and the manifest signed by
/// `signer`. Shared with the operator's export bundle (`lifecycle/export.rs`), which runs
/// without a writer and so ends at the newest checkpoint.
#[expect(
    clippy::too_many_arguments,
    reason = "one chain's export: where it is read, how bodies open, who signs, which window"
)]
pub(crate) async fn assemble(
    audit: &tenantgate_store::audit::TenantAudit<'_>,
    keyring: &tenantgate_store::Keyring,
    signer: &tenantgate_audit::Signer,
    chain: &tenantgate_core::TenantId,
    bodies: Option<&TenantScope>,
    window: Window,
    start: Option<Checkpoint>,
    end: Checkpoint,
) -> Result<Vec<ExportLine>, GatewayError> {
    let tenant = chain.as_str();
    let genesis = tenantgate_audit::Anchor {
        seq: 0,
        hash: hex::encode(GENESIS),
    };
    let anchor = match &start {
        Some(cp) => tenantgate_audit::Anchor {
            seq: cp.seq,
            hash: cp.hash.clone(),
        },
        None => genesis,
    };
    let rows = audit.records(anchor.seq + 1, end.seq).await.map_err(st)?;
    let mut records = Vec::with_capacity(rows.len());
    for r in &rows {
        let record = record_json(r)?;
        let id = record["id"].as_str().unwrap_or_default().to_owned();
        let open = |part: &'static str, sealed: &Option<Vec<u8>>| {
            let id = crate::audit::body_aad_id(&id, part);
            let sealed = sealed.clone();
            async move {
                let sealed = sealed?;
                let scope = bodies?;
                // A crypto-shredded body is absent, not an error: its digest stays verifiable.
                let plain = keyring
                    .open(scope, crate::audit::BODY_KIND, &id, &sealed)
                    .await
                    .ok()?;
                String::from_utf8(plain.to_vec()).ok()
            }
        };
        let prompt = open("prompt", &r.prompt_sealed).await;
        let response = open("response", &r.response_sealed).await;
        records.push(ExportRecord {
            hash: hex::encode(r.hash),
            record,
            prompt,
            response,
        });
    }
    let checkpoints = audit.checkpoints(anchor.seq, end.seq).await.map_err(st)?;
    Ok(tenantgate_audit::assemble(
        tenant,
        window,
        anchor,
        records,
        checkpoints,
        signer,
        crate::clock::now_ms(),
    ))
}
