-- Envelope encryption (local KMS). KEKs are wrapped by the master key, data keys by a KEK
-- version, records by a data key. Deleting a tenant's KEK rows is crypto-shredding; the
-- connection runs with secure_delete so the deleted bytes are overwritten.
CREATE TABLE tenant_keks (
    tenant_id      TEXT NOT NULL,
    version        INTEGER NOT NULL,
    wrapped        BLOB NOT NULL,
    is_current     INTEGER NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, version)
) STRICT;

CREATE TABLE tenant_data_keys (
    tenant_id      TEXT NOT NULL,
    id             BLOB NOT NULL,      -- 16 bytes, named in each sealed record's header
    purpose        TEXT NOT NULL,      -- the record kind it seals
    kek_version    INTEGER NOT NULL,
    wrapped        BLOB NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;

-- Tenant-owned secrets (e.g. a dedicated tenant's own provider credentials), sealed.
CREATE TABLE tenant_secrets (
    tenant_id      TEXT NOT NULL,
    name           TEXT NOT NULL,
    sealed         BLOB NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
) STRICT;
