//! Control-plane operations shared by the CLI and the gateway's own bootstrap. They run as
//! platform operations; the gateways pick the changes up through the control-plane revision.

use crate::keys::{generate, ServerSecret};
use tenantgate_core::{ApiKeyRecord, NewApiKey, PlatformAdmin, Role, TenantId};
use tenantgate_store::{Store, StoreError};

pub struct KeySpec {
    pub role: Role,
    pub name: Option<String>,
    pub end_user: Option<String>,
    pub expires_at_ms: Option<i64>,
}

/// Creates an API key for `tenant`; returns the record and the plaintext, which exists only in
/// this return value (it is shown once and never stored).
pub async fn create_key(
    store: &Store,
    admin: &PlatformAdmin,
    secret: &ServerSecret,
    tenant: &TenantId,
    spec: KeySpec,
) -> Result<(ApiKeyRecord, String), StoreError> {
    if spec.role == Role::PlatformAdmin {
        return Err(tenantgate_core::InvalidValue(
            "API keys carry tenant_admin or member; platform admins sign in with OIDC".into(),
        )
        .into());
    }
    let g = generate(secret);
    let rec = store
        .platform(admin)
        .create_key(
            tenant,
            &NewApiKey {
                prefix: g.prefix,
                hash: g.hash_hex,
                name: spec.name,
                role: spec.role,
                end_user: spec.end_user,
                expires_at_ms: spec.expires_at_ms,
            },
        )
        .await?;
    Ok((rec, g.plaintext))
}
