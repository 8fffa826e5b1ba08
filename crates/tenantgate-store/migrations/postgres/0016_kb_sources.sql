-- Documents as uploaded (issue 18, the export bundle). See the SQLite migration.
CREATE TABLE kb_sources (
    id         BIGSERIAL PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    kb_id      TEXT NOT NULL,
    doc_id     TEXT NOT NULL,
    part       INTEGER NOT NULL,
    sealed     BYTEA NOT NULL,
    UNIQUE (tenant_id, doc_id, part)
);
ALTER TABLE kb_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE kb_sources FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON kb_sources USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON kb_sources USING (current_setting('tenantgate.platform', true) = 'on');
CREATE TRIGGER kb_sources_fenced BEFORE INSERT OR UPDATE ON kb_sources
FOR EACH ROW EXECUTE FUNCTION tenantgate_fenced();
