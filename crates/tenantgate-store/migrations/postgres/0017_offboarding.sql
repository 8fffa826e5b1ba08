-- Offboarding (`offboard.rs`): a tenant whose deletion was requested is `pending_deletion`
-- until `delete_after_ms`; restoring it puts back `prior_status`. The finalizer claims a due
-- tenant with a conditional update of `claimed_until_ms` (a lease, so a replica that died
-- mid-way is taken over), and `phase` says how far it got, so a retry repeats no step that
-- would write into a chain that no longer exists. The row goes with the tenant's other
-- control-plane rows when the tenant becomes a tombstone.
CREATE TABLE tenant_deletions (
    tenant_id         TEXT PRIMARY KEY,
    prior_status      TEXT NOT NULL,
    requested_at_ms   BIGINT NOT NULL,
    delete_after_ms   BIGINT NOT NULL,
    claimed_until_ms  BIGINT,
    phase             TEXT NOT NULL,
    report            TEXT NOT NULL
);
CREATE INDEX tenant_deletions_due ON tenant_deletions (delete_after_ms);
ALTER TABLE tenant_deletions ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_deletions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_own_row ON tenant_deletions
    USING (tenant_id = current_setting('tenantgate.tenant_id', true));
CREATE POLICY platform_all ON tenant_deletions
    USING (current_setting('tenantgate.platform', true) = 'on');
