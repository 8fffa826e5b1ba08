-- Documents as uploaded (issue 18, the export bundle): the original bytes, in parts of at most
-- 1 MiB so export and import read and write one part at a time, each sealed with the tenant's
-- keys (AAD: tenant, kind kb_source, "{document id}:{part}"). Written in the transaction that
-- writes the document's chunks; documents uploaded before this table have no rows here (their
-- export carries the chunk texts instead, and says so). A data table: it follows the tenant's
-- place (`places::DATA_TABLES`) and its moves (`moves/tables.rs`), fenced like 0014's.
CREATE TABLE kb_sources (
    id         INTEGER PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    kb_id      TEXT NOT NULL,
    doc_id     TEXT NOT NULL,
    part       INTEGER NOT NULL,
    sealed     BLOB NOT NULL,
    UNIQUE (tenant_id, doc_id, part)
) STRICT;
CREATE TRIGGER kb_sources_fenced_insert BEFORE INSERT ON kb_sources
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
CREATE TRIGGER kb_sources_fenced_update BEFORE UPDATE ON kb_sources
WHEN EXISTS (SELECT 1 FROM tenant_fence f WHERE f.tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'tenantgate: tenant moved'); END;
