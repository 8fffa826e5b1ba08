-- Per-tenant leak-prevention policy (JSON: detector -> block | redact | flag | off).
CREATE TABLE tenant_guard_policy (
    tenant_id      TEXT PRIMARY KEY,
    policy         TEXT NOT NULL,
    updated_at_ms  INTEGER NOT NULL
) STRICT;
