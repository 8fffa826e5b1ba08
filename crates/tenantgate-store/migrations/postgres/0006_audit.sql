-- Per-tenant audit chains (see tenantgate-audit for the record and hash format).
CREATE TABLE audit_heads (
    tenant_id  TEXT PRIMARY KEY,
    seq        BIGINT NOT NULL,
    hash       BYTEA NOT NULL
);
CREATE TABLE audit_records (
    tenant_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    ts_ms       BIGINT NOT NULL,
    request_id  TEXT NOT NULL,
    event       TEXT NOT NULL,
    key_id      TEXT,
    user_id     TEXT,
    model       TEXT,
    status      INTEGER NOT NULL,
    input_tokens  BIGINT,
    output_tokens BIGINT,
    cost_micros   BIGINT,
    record      TEXT NOT NULL,
    hash        BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_records_ts ON audit_records (tenant_id, ts_ms);
CREATE TABLE audit_bodies (
    tenant_id  TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    part       TEXT NOT NULL,
    sealed     BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, seq, part)
);
CREATE TABLE audit_checkpoints (
    tenant_id  TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    hash       BYTEA NOT NULL,
    ts_ms      BIGINT NOT NULL,
    key_id     TEXT NOT NULL,
    sig        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE TABLE tenant_audit_policy (
    tenant_id      TEXT PRIMARY KEY,
    policy         TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON audit_heads USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON audit_heads USING (current_setting('tenantgate.platform', true) = 'on');
ALTER TABLE audit_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON audit_records USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON audit_records USING (current_setting('tenantgate.platform', true) = 'on');
ALTER TABLE audit_bodies ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_bodies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON audit_bodies USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON audit_bodies USING (current_setting('tenantgate.platform', true) = 'on');
ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON audit_checkpoints USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON audit_checkpoints USING (current_setting('tenantgate.platform', true) = 'on');
ALTER TABLE tenant_audit_policy ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_audit_policy FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_rows ON tenant_audit_policy USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_audit_policy USING (current_setting('tenantgate.platform', true) = 'on');

-- Append-only (the runtime role also has no UPDATE grant on these tables; see backend.rs).
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    RAISE EXCEPTION 'audit records are append-only';
  END IF;
  IF OLD.seq > (SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints WHERE tenant_id = OLD.tenant_id) THEN
    RAISE EXCEPTION 'audit records after the last checkpoint cannot be deleted';
  END IF;
  RETURN OLD;
END $$;
CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
