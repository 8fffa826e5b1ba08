-- Where a tenant's data lives (its isolation tier, issue 17). No row: the shared tables
-- (namespace tier). `location` is a PostgreSQL schema or SQLite file (schema tier) or a
-- database URL without credentials (dedicated tier). Control plane: it stays here for every tier.
CREATE TABLE tenant_placement (
    tenant_id      TEXT PRIMARY KEY,
    tier           TEXT NOT NULL,
    location       TEXT NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);
