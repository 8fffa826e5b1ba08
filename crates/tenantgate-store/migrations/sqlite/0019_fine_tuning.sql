-- Tenant-owned fine-tuning (issue 19). Training files are data (they follow the tenant's
-- place and its moves, fenced like 0014's): `ft_files` (what the tenant sees, and the
-- provider's id, never shown) and `ft_file_parts` (the JSONL as uploaded, in parts of at most
-- 1 MiB, each sealed with the tenant's keys: AAD tenant, kind ft_file, "{file id}:{part}").
-- Jobs and the private models they produce are control plane: a private model reaches every
-- replica's auth snapshot, so a warm call to it reads no row.
CREATE TABLE ft_files (
    tenant_id        TEXT NOT NULL,
    id               TEXT NOT NULL,      -- file-tg-<uuid>: what the tenant sees
    filename         TEXT NOT NULL,
    purpose          TEXT NOT NULL,
    bytes            INTEGER NOT NULL,
    lines            INTEGER NOT NULL,
    sha256           TEXT NOT NULL,
    provider         TEXT NOT NULL,
    provider_file_id TEXT NOT NULL,      -- never shown to the tenant
    created_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE TABLE ft_file_parts (
    id         INTEGER PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    file_id    TEXT NOT NULL,
    part       INTEGER NOT NULL,
    sealed     BLOB NOT NULL,
    UNIQUE (tenant_id, file_id, part)
) STRICT;
CREATE TRIGGER ft_files_fenced_insert BEFORE INSERT ON ft_files
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER ft_files_fenced_update BEFORE UPDATE ON ft_files
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER ft_file_parts_fenced_insert BEFORE INSERT ON ft_file_parts
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER ft_file_parts_fenced_update BEFORE UPDATE ON ft_file_parts
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;

CREATE TABLE ft_jobs (
    tenant_id        TEXT NOT NULL,
    id               TEXT NOT NULL,      -- ftjob-tg-<uuid>
    provider         TEXT NOT NULL,
    provider_job_id  TEXT NOT NULL,      -- never shown to the tenant
    model            TEXT NOT NULL,      -- the base model's tenant-facing name
    training_file    TEXT NOT NULL,      -- gateway file ids
    validation_file  TEXT,
    suffix           TEXT,
    status           TEXT NOT NULL,
    fine_tuned_model TEXT,               -- the private model's tenant-facing name
    trained_tokens   INTEGER,
    charged_micros   INTEGER,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;

CREATE TABLE private_models (
    tenant_id       TEXT NOT NULL,
    name            TEXT NOT NULL,       -- tenant-facing
    base_model      TEXT NOT NULL,       -- the catalog route it runs on
    upstream_model  TEXT NOT NULL,       -- the provider's fine-tuned model name
    job_id          TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
) STRICT;
