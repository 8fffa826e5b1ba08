-- Identity and control plane (issue 3). See the SQLite migration for the column meanings.
ALTER TABLE tenants ADD COLUMN enabled_models TEXT;

CREATE TABLE tenant_members (
    tenant_id    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    role         TEXT NOT NULL,
    added_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, subject)
);
ALTER TABLE tenant_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_members FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON tenant_members USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_members USING (current_setting('tenantgate.platform', true) = 'on');

CREATE TABLE break_glass_grants (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    admin          TEXT NOT NULL,
    reason         TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    revoked_at_ms  BIGINT
);
CREATE INDEX break_glass_by_tenant ON break_glass_grants (tenant_id, expires_at_ms);
ALTER TABLE break_glass_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE break_glass_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON break_glass_grants USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON break_glass_grants USING (current_setting('tenantgate.platform', true) = 'on');
