-- Knowledge bases (issue 9). See the SQLite migration for the column meanings.
CREATE TABLE knowledge_bases (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    name              TEXT NOT NULL,
    embedding_model   TEXT NOT NULL,
    dims              INTEGER NOT NULL,
    chunk_tokens      INTEGER NOT NULL,
    -- Searched for a chat request that names no knowledge base.
    is_default        BOOLEAN NOT NULL DEFAULT FALSE,
    revision          BIGINT NOT NULL,
    created_at_ms     BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE kb_documents (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    kb_id           TEXT NOT NULL,
    name            TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    bytes           BIGINT NOT NULL,
    sha256          TEXT NOT NULL,
    chunks          INTEGER NOT NULL,
    created_at_ms   BIGINT NOT NULL
);
CREATE INDEX kb_documents_by_kb ON kb_documents (tenant_id, kb_id);

CREATE TABLE kb_chunks (
    id         BIGSERIAL PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    kb_id      TEXT NOT NULL,
    doc_id     TEXT NOT NULL,
    ord        INTEGER NOT NULL,
    tokens     INTEGER NOT NULL,
    sealed     BYTEA NOT NULL
);
CREATE INDEX kb_chunks_by_kb ON kb_chunks (tenant_id, kb_id, id);
CREATE INDEX kb_chunks_by_doc ON kb_chunks (tenant_id, doc_id);

ALTER TABLE knowledge_bases ENABLE ROW LEVEL SECURITY;
ALTER TABLE knowledge_bases FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON knowledge_bases USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON knowledge_bases USING (current_setting('tenantgate.platform', true) = 'on');
ALTER TABLE kb_documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE kb_documents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON kb_documents USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON kb_documents USING (current_setting('tenantgate.platform', true) = 'on');
ALTER TABLE kb_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE kb_chunks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON kb_chunks USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON kb_chunks USING (current_setting('tenantgate.platform', true) = 'on');
