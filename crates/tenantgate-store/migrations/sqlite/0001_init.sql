-- tenantgate control-plane schema (SQLite). Times are Unix milliseconds.
CREATE TABLE tenants (
    id                      TEXT PRIMARY KEY,
    slug                    TEXT NOT NULL UNIQUE,
    display_name            TEXT NOT NULL,
    plan                    TEXT NOT NULL,
    isolation               TEXT NOT NULL,
    status                  TEXT NOT NULL,
    allowed_models          TEXT NOT NULL,  -- JSON array of tenant-facing model names
    max_tokens_per_request  INTEGER,
    created_at_ms           INTEGER NOT NULL,
    updated_at_ms           INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    prefix         TEXT NOT NULL,
    hash           TEXT NOT NULL UNIQUE,   -- HMAC-SHA-256(server secret, key), hex
    name           TEXT,
    role           TEXT NOT NULL,
    end_user       TEXT,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER,
    revoked_at_ms  INTEGER
) STRICT;
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);

-- Bumped in the same transaction as every control-plane change; gateways poll it to reload.
CREATE TABLE control_revision (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    revision  INTEGER NOT NULL
) STRICT;
INSERT INTO control_revision (id, revision) VALUES (1, 0);
