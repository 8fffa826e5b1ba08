-- Moving a tenant between places (its isolation tier changing online, `moves.rs`). Once a
-- place has a tenant's fence row, that place refuses every new write of the tenant's data:
-- a replica still pointing there fails, forgets the place and retries at the new one, so no
-- write lands in a copy that is being left behind. `tenant_moves` (control plane) is the state
-- of a move in progress, so an interrupted one resumes or is rolled back.
CREATE TABLE tenant_fence (
    tenant_id  TEXT PRIMARY KEY,
    at_ms      INTEGER NOT NULL
);
CREATE TABLE tenant_moves (
    tenant_id      TEXT PRIMARY KEY,
    from_tier      TEXT NOT NULL,
    from_location  TEXT NOT NULL,
    to_tier        TEXT NOT NULL,
    to_location    TEXT NOT NULL,
    phase          TEXT NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);
CREATE TRIGGER tenant_keks_fenced_insert BEFORE INSERT ON tenant_keks
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER tenant_keks_fenced_update BEFORE UPDATE ON tenant_keks
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER tenant_data_keys_fenced_insert BEFORE INSERT ON tenant_data_keys
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER tenant_data_keys_fenced_update BEFORE UPDATE ON tenant_data_keys
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER tenant_secrets_fenced_insert BEFORE INSERT ON tenant_secrets
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER tenant_secrets_fenced_update BEFORE UPDATE ON tenant_secrets
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER prompt_templates_fenced_insert BEFORE INSERT ON prompt_templates
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER prompt_templates_fenced_update BEFORE UPDATE ON prompt_templates
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER prompt_versions_fenced_insert BEFORE INSERT ON prompt_versions
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER prompt_versions_fenced_update BEFORE UPDATE ON prompt_versions
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER kb_documents_fenced_insert BEFORE INSERT ON kb_documents
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER kb_documents_fenced_update BEFORE UPDATE ON kb_documents
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER kb_chunks_fenced_insert BEFORE INSERT ON kb_chunks
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER kb_chunks_fenced_update BEFORE UPDATE ON kb_chunks
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER audit_heads_fenced_insert BEFORE INSERT ON audit_heads
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER audit_heads_fenced_update BEFORE UPDATE ON audit_heads
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER audit_records_fenced_insert BEFORE INSERT ON audit_records
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER audit_records_fenced_update BEFORE UPDATE ON audit_records
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER audit_bodies_fenced_insert BEFORE INSERT ON audit_bodies
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER audit_bodies_fenced_update BEFORE UPDATE ON audit_bodies
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER audit_checkpoints_fenced_insert BEFORE INSERT ON audit_checkpoints
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER audit_checkpoints_fenced_update BEFORE UPDATE ON audit_checkpoints
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
