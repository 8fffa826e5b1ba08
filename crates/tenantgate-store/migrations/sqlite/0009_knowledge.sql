-- Knowledge bases (issue 9). Chunk text and its embedding are one blob sealed with the
-- tenant's keys (AAD: tenant, kind kb_chunk, "{document id}:{ordinal}"). `revision` moves
-- with every document added or removed; an index built at another revision is stale.
CREATE TABLE knowledge_bases (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    name              TEXT NOT NULL,
    embedding_model   TEXT NOT NULL,
    dims              INTEGER NOT NULL,
    chunk_tokens      INTEGER NOT NULL,
    -- Searched for a chat request that names no knowledge base.
    is_default        INTEGER NOT NULL DEFAULT 0,
    revision          INTEGER NOT NULL,
    created_at_ms     INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
) STRICT;

CREATE TABLE kb_documents (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    kb_id           TEXT NOT NULL,
    name            TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    bytes           INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    chunks          INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX kb_documents_by_kb ON kb_documents (tenant_id, kb_id);

CREATE TABLE kb_chunks (
    id         INTEGER PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    kb_id      TEXT NOT NULL,
    doc_id     TEXT NOT NULL,
    ord        INTEGER NOT NULL,
    tokens     INTEGER NOT NULL,
    sealed     BLOB NOT NULL
) STRICT;
CREATE INDEX kb_chunks_by_kb ON kb_chunks (tenant_id, kb_id, id);
CREATE INDEX kb_chunks_by_doc ON kb_chunks (tenant_id, doc_id);
