-- One-call onboarding (issue 18): an onboarding request by its idempotency key. A retry with
-- the same key and the same request returns the first result (sealed with the new tenant's
-- keys: it holds the first admin key, shown once), a different request under the key is
-- refused, and a claim left `running` by a process that died is taken over: its tenant is
-- discarded and the onboarding runs again. Rolled-back requests leave no row. Rows older
-- than the replay window (24 h) are removed.
CREATE TABLE onboarding_requests (
    idempotency_key  TEXT PRIMARY KEY,
    request_sha256   TEXT NOT NULL,
    tenant_id        TEXT NOT NULL,
    state            TEXT NOT NULL,      -- running | done
    result_sealed    BLOB,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL
) STRICT;
CREATE INDEX onboarding_requests_by_tenant ON onboarding_requests (tenant_id);
