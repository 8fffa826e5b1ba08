-- Moving a tenant between places (its isolation tier changing online, `moves.rs`). Once a
-- place has a tenant's fence row, that place refuses every new write of the tenant's data:
-- a replica still pointing there fails, forgets the place and retries at the new one, so no
-- write lands in a copy that is being left behind. `tenant_moves` (control plane) is the state
-- of a move in progress, so an interrupted one resumes or is rolled back.
CREATE TABLE tenant_fence (
    tenant_id  TEXT PRIMARY KEY,
    at_ms      BIGINT NOT NULL
);
CREATE TABLE tenant_moves (
    tenant_id      TEXT PRIMARY KEY,
    from_tier      TEXT NOT NULL,
    from_location  TEXT NOT NULL,
    to_tier        TEXT NOT NULL,
    to_location    TEXT NOT NULL,
    phase          TEXT NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);
ALTER TABLE tenant_fence ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_fence FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_row ON tenant_fence
    USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_fence
    USING (current_setting('tenantgate.platform', true) = 'on');
ALTER TABLE tenant_moves ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_moves FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_row ON tenant_moves
    USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_moves
    USING (current_setting('tenantgate.platform', true) = 'on');
-- Every writer's transaction sees the fence row of the tenant it writes for (row-level
-- security shows a tenant its own, and the platform setting all).
CREATE FUNCTION tenantgate_fenced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id) THEN
        RAISE EXCEPTION 'tenantgate: tenant moved';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER tenant_keks_fenced BEFORE INSERT OR UPDATE ON tenant_keks
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
CREATE TRIGGER tenant_data_keys_fenced BEFORE INSERT OR UPDATE ON tenant_data_keys
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
CREATE TRIGGER tenant_secrets_fenced BEFORE INSERT OR UPDATE ON tenant_secrets
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
CREATE TRIGGER prompt_templates_fenced BEFORE INSERT OR UPDATE ON prompt_templates
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
CREATE TRIGGER prompt_versions_fenced BEFORE INSERT OR UPDATE ON prompt_versions
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
CREATE TRIGGER kb_documents_fenced BEFORE INSERT OR UPDATE ON kb_documents
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
CREATE TRIGGER kb_chunks_fenced BEFORE INSERT OR UPDATE ON kb_chunks
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
CREATE TRIGGER audit_heads_fenced BEFORE INSERT OR UPDATE ON audit_heads
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
CREATE TRIGGER audit_records_fenced BEFORE INSERT OR UPDATE ON audit_records
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
CREATE TRIGGER audit_bodies_fenced BEFORE INSERT OR UPDATE ON audit_bodies
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
CREATE TRIGGER audit_checkpoints_fenced BEFORE INSERT OR UPDATE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
