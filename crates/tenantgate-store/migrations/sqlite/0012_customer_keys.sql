-- Customer-managed keys. Each KEK version records what wrapped it: 'local' (the platform's
-- master key) or 'aws:<key id>' (a key in the tenant's own AWS KMS, with the region and the
-- endpoint to reach it), so versions under different wrappers live side by side while a
-- tenant moves between them by rotation.
ALTER TABLE tenant_keks ADD COLUMN wrapped_by TEXT NOT NULL DEFAULT 'local';
ALTER TABLE tenant_keks ADD COLUMN wrapper_region TEXT;
ALTER TABLE tenant_keks ADD COLUMN wrapper_endpoint TEXT;

-- The key new KEK versions of a tenant are wrapped by, when it is the tenant's own (no row: the
-- platform's master key). Configuration, not a secret; a change moves the control revision, so
-- every gateway re-checks the tenant's key at once.
CREATE TABLE tenant_kms_keys (
    tenant_id      TEXT NOT NULL PRIMARY KEY,
    provider       TEXT NOT NULL CHECK (provider IN ('aws')),
    key_id         TEXT NOT NULL,
    region         TEXT NOT NULL,
    endpoint_url   TEXT,
    updated_at_ms  INTEGER NOT NULL
) STRICT;
