-- Incident freezes (`incident.rs`): a platform hold that refuses the model calls of one tenant,
-- one model-call route or one model, on every replica (the snapshot carries the list; a change
-- moves the control-plane revision). Only a platform admin places or lifts one: a tenant admin
-- has no route to it (its kill switch is another row).
CREATE TABLE incident_freezes (
    id              TEXT PRIMARY KEY,
    -- `tenant`, `route` or `model` (`FreezeKind`).
    kind            TEXT NOT NULL,
    -- The tenant's id, the route's path or the model's name.
    target          TEXT NOT NULL,
    -- The frozen tenant (kind `tenant`): offboarding removes its hold with its other rows.
    tenant_id       TEXT,
    reason          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    UNIQUE (kind, target)
);
-- Only platform transactions see or change it (the snapshot is read as one).
ALTER TABLE incident_freezes ENABLE ROW LEVEL SECURITY;
ALTER TABLE incident_freezes FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_all ON incident_freezes USING (current_setting('tenantgate.platform', true) = 'on');
