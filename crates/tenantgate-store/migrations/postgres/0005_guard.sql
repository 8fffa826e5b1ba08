CREATE TABLE tenant_guard_policy (
    tenant_id      TEXT PRIMARY KEY,
    policy         TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);
ALTER TABLE tenant_guard_policy ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_guard_policy FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON tenant_guard_policy USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_guard_policy USING (current_setting('tenantgate.platform', true) = 'on');
