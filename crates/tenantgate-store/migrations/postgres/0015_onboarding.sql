-- One-call onboarding (issue 18); see the SQLite migration for the model. A control-plane
-- table: only the platform reads or writes it.
CREATE TABLE onboarding_requests (
    idempotency_key  TEXT PRIMARY KEY,
    request_sha256   TEXT NOT NULL,
    tenant_id        TEXT NOT NULL,
    state            TEXT NOT NULL,
    result_sealed    BYTEA,
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL
);
CREATE INDEX onboarding_requests_by_tenant ON onboarding_requests (tenant_id);

ALTER TABLE onboarding_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE onboarding_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_all ON onboarding_requests USING (current_setting('tenantgate.platform', true) = 'on');
