-- Envelope encryption (local KMS); see the SQLite migration for the model.
CREATE TABLE tenant_keks (
    tenant_id      TEXT NOT NULL,
    version        BIGINT NOT NULL,
    wrapped        BYTEA NOT NULL,
    is_current     BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE tenant_data_keys (
    tenant_id      TEXT NOT NULL,
    id             BYTEA NOT NULL,
    purpose        TEXT NOT NULL,
    kek_version    BIGINT NOT NULL,
    wrapped        BYTEA NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE tenant_secrets (
    tenant_id      TEXT NOT NULL,
    name           TEXT NOT NULL,
    sealed         BYTEA NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

ALTER TABLE tenant_keks ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON tenant_keks USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_keks USING (current_setting('tenantgate.platform', true) = 'on');

ALTER TABLE tenant_data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON tenant_data_keys USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_data_keys USING (current_setting('tenantgate.platform', true) = 'on');

ALTER TABLE tenant_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON tenant_secrets USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_secrets USING (current_setting('tenantgate.platform', true) = 'on');
