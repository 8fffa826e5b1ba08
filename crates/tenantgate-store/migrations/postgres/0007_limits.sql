CREATE TABLE tenant_limits (
    tenant_id      TEXT PRIMARY KEY,
    overrides      TEXT NOT NULL,
    kill_switch    BOOLEAN NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);
ALTER TABLE tenant_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_limits FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON tenant_limits USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_limits USING (current_setting('tenantgate.platform', true) = 'on');
