-- Provider drains (`routing.rs`): a platform operator takes a configured provider out of
-- every model's targets, on every replica (the snapshot carries the list; a change moves the
-- control-plane revision). Platform-wide: no tenant's row.
CREATE TABLE provider_drains (
    provider        TEXT PRIMARY KEY,
    reason          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    drained_at_ms   INTEGER NOT NULL
) STRICT;
