CREATE TABLE prompt_templates (
    tenant_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    active_version  BIGINT,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE prompt_versions (
    tenant_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    version         BIGINT NOT NULL,
    uid             TEXT NOT NULL,
    body_sealed     BYTEA NOT NULL,
    body_sha256     TEXT NOT NULL,
    author          TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);

CREATE TABLE tenant_prompt_settings (
    tenant_id                   TEXT PRIMARY KEY,
    client_system               TEXT NOT NULL,
    default_prompt              TEXT,
    custom_instructions_sealed  BYTEA,
    canary_enabled              BIGINT NOT NULL,
    canary                      TEXT NOT NULL,
    revision                    BIGINT NOT NULL DEFAULT 0,   -- bumped by every prompt change
    updated_at_ms               BIGINT NOT NULL
);

ALTER TABLE prompt_templates ENABLE ROW LEVEL SECURITY;
ALTER TABLE prompt_templates FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON prompt_templates USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON prompt_templates USING (current_setting('tenantgate.platform', true) = 'on');

ALTER TABLE prompt_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE prompt_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON prompt_versions USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON prompt_versions USING (current_setting('tenantgate.platform', true) = 'on');

ALTER TABLE tenant_prompt_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_prompt_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON tenant_prompt_settings USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_prompt_settings USING (current_setting('tenantgate.platform', true) = 'on');
