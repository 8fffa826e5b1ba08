-- Incident freezes (`incident.rs`): a platform hold that refuses the model calls of one tenant,
-- one model-call route or one model, on every replica (the snapshot carries the list; a change
-- moves the control-plane revision). Only a platform admin places or lifts one.
CREATE TABLE incident_freezes (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    target          TEXT NOT NULL,
    tenant_id       TEXT,
    reason          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    UNIQUE (kind, target)
) STRICT;
