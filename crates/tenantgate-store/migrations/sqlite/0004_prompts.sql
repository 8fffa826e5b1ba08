-- Tenant prompt templates: immutable versions, sealed with the tenant's keys; an active pointer.
CREATE TABLE prompt_templates (
    tenant_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    active_version  INTEGER,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
) STRICT;

CREATE TABLE prompt_versions (
    tenant_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    uid             TEXT NOT NULL,     -- bound into the body's associated data
    body_sealed     BLOB NOT NULL,
    body_sha256     TEXT NOT NULL,
    author          TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
) STRICT;

CREATE TABLE tenant_prompt_settings (
    tenant_id                   TEXT PRIMARY KEY,
    client_system               TEXT NOT NULL,    -- refuse | append | allow
    default_prompt              TEXT,
    custom_instructions_sealed  BLOB,
    canary_enabled              INTEGER NOT NULL,
    canary                      TEXT NOT NULL,
    revision                    INTEGER NOT NULL DEFAULT 0,   -- bumped by every prompt change
    updated_at_ms               INTEGER NOT NULL
) STRICT;
