-- tenantgate control-plane schema (PostgreSQL). Times are Unix milliseconds.
-- Runs with search_path set to the configured schema, as the schema owner. The gateway's
-- runtime role is granted DML only (see pg.rs), so it neither owns these tables nor bypasses RLS.
CREATE TABLE tenants (
    id                      TEXT PRIMARY KEY,
    slug                    TEXT NOT NULL UNIQUE,
    display_name            TEXT NOT NULL,
    plan                    TEXT NOT NULL,
    isolation               TEXT NOT NULL,
    status                  TEXT NOT NULL,
    allowed_models          TEXT NOT NULL,
    max_tokens_per_request  BIGINT,
    created_at_ms           BIGINT NOT NULL,
    updated_at_ms           BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    prefix         TEXT NOT NULL,
    hash           TEXT NOT NULL UNIQUE,
    name           TEXT,
    role           TEXT NOT NULL,
    end_user       TEXT,
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT,
    revoked_at_ms  BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);

CREATE TABLE control_revision (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    revision  BIGINT NOT NULL
);
INSERT INTO control_revision (id, revision) VALUES (1, 0);

-- Row-level security: the second lock behind the tenant-bound handle. A transaction sees a
-- tenant's rows only after `set_config('tenantgate.tenant_id', id, true)`, and every row only
-- after `set_config('tenantgate.platform', 'on', true)` (platform module). Without either
-- setting a query sees nothing.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_row ON tenants
    USING (id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenants
    USING (current_setting('tenantgate.platform', true) = 'on');

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON api_keys
    USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON api_keys
    USING (current_setting('tenantgate.platform', true) = 'on');
