-- Customer-managed keys; see the SQLite migration for the model.
ALTER TABLE tenant_keks ADD COLUMN wrapped_by TEXT NOT NULL DEFAULT 'local';
ALTER TABLE tenant_keks ADD COLUMN wrapper_region TEXT;
ALTER TABLE tenant_keks ADD COLUMN wrapper_endpoint TEXT;

CREATE TABLE tenant_kms_keys (
    tenant_id      TEXT NOT NULL PRIMARY KEY,
    provider       TEXT NOT NULL CHECK (provider IN ('aws')),
    key_id         TEXT NOT NULL,
    region         TEXT NOT NULL,
    endpoint_url   TEXT,
    updated_at_ms  BIGINT NOT NULL
);

ALTER TABLE tenant_kms_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_kms_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON tenant_kms_keys USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_kms_keys USING (current_setting('tenantgate.platform', true) = 'on');
