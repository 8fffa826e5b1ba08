-- Per-tenant audit chains (see tenantgate-audit for the record and hash format).
-- audit_heads holds each chain's last seq and hash; appenders lock it, so the chain stays
-- linear when several processes write one tenant's chain.
CREATE TABLE audit_heads (
    tenant_id  TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    hash       BLOB NOT NULL
) STRICT;

-- `record` is the canonical JSON the chain hashes; the other columns are copies for queries.
CREATE TABLE audit_records (
    tenant_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    ts_ms       INTEGER NOT NULL,
    request_id  TEXT NOT NULL,
    event       TEXT NOT NULL,
    key_id      TEXT,
    user_id     TEXT,
    model       TEXT,
    status      INTEGER NOT NULL,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    cost_micros   INTEGER,
    record      TEXT NOT NULL,
    hash        BLOB NOT NULL,
    PRIMARY KEY (tenant_id, seq)
) STRICT;
CREATE INDEX audit_records_ts ON audit_records (tenant_id, ts_ms);

-- Kept bodies, sealed with the tenant's key; outside the chain (the chain holds digests).
CREATE TABLE audit_bodies (
    tenant_id  TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    part       TEXT NOT NULL,
    sealed     BLOB NOT NULL,
    PRIMARY KEY (tenant_id, seq, part)
) STRICT;

CREATE TABLE audit_checkpoints (
    tenant_id  TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    hash       BLOB NOT NULL,
    ts_ms      INTEGER NOT NULL,
    key_id     TEXT NOT NULL,
    sig        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
) STRICT;

CREATE TABLE tenant_audit_policy (
    tenant_id      TEXT PRIMARY KEY,
    policy         TEXT NOT NULL,
    updated_at_ms  INTEGER NOT NULL
) STRICT;

-- Append-only: records and checkpoints are never updated; records are deleted only by
-- retention, and only up to a signed checkpoint (so what remains verifies from it).
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_records_delete_checkpointed BEFORE DELETE ON audit_records
WHEN OLD.seq > (SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints WHERE tenant_id = OLD.tenant_id)
BEGIN SELECT RAISE(ABORT, 'audit records after the last checkpoint cannot be deleted'); END;
