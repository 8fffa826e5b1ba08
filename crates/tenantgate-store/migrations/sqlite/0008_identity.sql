-- Identity and control plane (issue 3).
-- The tenant admin's own narrowing of the platform's model allow-list (JSON array; NULL: all).
ALTER TABLE tenants ADD COLUMN enabled_models TEXT;

-- OIDC users a tenant admin has given a role (keyed by the token's user claim).
CREATE TABLE tenant_members (
    tenant_id    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    role         TEXT NOT NULL,
    added_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, subject)
) STRICT;

-- Break-glass grants: a platform admin's time-boxed access to one tenant's data. Visible to
-- that tenant's admins; every read under a grant is recorded in the tenant's audit chain.
CREATE TABLE break_glass_grants (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    admin          TEXT NOT NULL,
    reason         TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    revoked_at_ms  INTEGER
) STRICT;
CREATE INDEX break_glass_by_tenant ON break_glass_grants (tenant_id, expires_at_ms);
