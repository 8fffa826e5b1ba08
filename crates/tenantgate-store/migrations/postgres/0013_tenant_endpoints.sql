-- A tenant's own provider endpoints (issue 17); see the SQLite migration for the model.
CREATE TABLE tenant_endpoints (
    tenant_id      TEXT NOT NULL,
    provider       TEXT NOT NULL,
    base_url       TEXT NOT NULL,
    api_version    TEXT,
    revision       BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, provider)
);

ALTER TABLE tenant_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_endpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON tenant_endpoints USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_endpoints USING (current_setting('tenantgate.platform', true) = 'on');
