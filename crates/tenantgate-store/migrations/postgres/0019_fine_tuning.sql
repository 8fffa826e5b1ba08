-- Tenant-owned fine-tuning (issue 19). See the SQLite migration for the model.
CREATE TABLE ft_files (
    tenant_id        TEXT NOT NULL,
    id               TEXT NOT NULL,
    filename         TEXT NOT NULL,
    purpose          TEXT NOT NULL,
    bytes            BIGINT NOT NULL,
    lines            BIGINT NOT NULL,
    sha256           TEXT NOT NULL,
    provider         TEXT NOT NULL,
    provider_file_id TEXT NOT NULL,
    created_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE ft_file_parts (
    id         BIGSERIAL PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    file_id    TEXT NOT NULL,
    part       INTEGER NOT NULL,
    sealed     BYTEA NOT NULL,
    UNIQUE (tenant_id, file_id, part)
);
CREATE TABLE ft_jobs (
    tenant_id        TEXT NOT NULL,
    id               TEXT NOT NULL,
    provider         TEXT NOT NULL,
    provider_job_id  TEXT NOT NULL,
    model            TEXT NOT NULL,
    training_file    TEXT NOT NULL,
    validation_file  TEXT,
    suffix           TEXT,
    status           TEXT NOT NULL,
    fine_tuned_model TEXT,
    trained_tokens   BIGINT,
    charged_micros   BIGINT,
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE private_models (
    tenant_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    base_model      TEXT NOT NULL,
    upstream_model  TEXT NOT NULL,
    job_id          TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
ALTER TABLE ft_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE ft_files FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON ft_files USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON ft_files USING (current_setting('tenantgate.platform', true) = 'on');
ALTER TABLE ft_file_parts ENABLE ROW LEVEL SECURITY;
ALTER TABLE ft_file_parts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON ft_file_parts USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON ft_file_parts USING (current_setting('tenantgate.platform', true) = 'on');
ALTER TABLE ft_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE ft_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON ft_jobs USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON ft_jobs USING (current_setting('tenantgate.platform', true) = 'on');
ALTER TABLE private_models ENABLE ROW LEVEL SECURITY;
ALTER TABLE private_models FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON private_models USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON private_models USING (current_setting('tenantgate.platform', true) = 'on');
CREATE TRIGGER ft_files_fenced BEFORE INSERT OR UPDATE ON ft_files
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
CREATE TRIGGER ft_file_parts_fenced BEFORE INSERT OR UPDATE ON ft_file_parts
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
