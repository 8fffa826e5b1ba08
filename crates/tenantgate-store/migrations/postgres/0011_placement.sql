-- Where a tenant's data lives (its isolation tier, issue 17). No row: the shared tables
-- (namespace tier). `location` is a PostgreSQL schema or SQLite file (schema tier) or a
-- database URL without credentials (dedicated tier). Control plane: it stays here for every tier.
CREATE TABLE tenant_placement (
    tenant_id      TEXT PRIMARY KEY,
    tier           TEXT NOT NULL,
    location       TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);
ALTER TABLE tenant_placement ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_placement FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_row ON tenant_placement
    USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_placement
    USING (current_setting('tenantgate.platform', true) = 'on');
