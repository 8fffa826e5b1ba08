-- Per-tenant limit overrides (JSON; absent fields take the plan's defaults) and the kill
-- switch (1 = the tenant's model calls are refused).
CREATE TABLE tenant_limits (
    tenant_id      TEXT PRIMARY KEY,
    overrides      TEXT NOT NULL,
    kill_switch    INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
) STRICT;
