-- Console sessions (`console.rs`): the browser console's server-side sessions. The row is
-- found by an HMAC of the cookie's token (a database reader cannot replay a cookie), and holds
-- the credential the session acts with sealed under a key derived from the server secret, so
-- every console action is authorized afresh by the API, exactly as that credential would be.
CREATE TABLE console_sessions (
    id_hash         TEXT PRIMARY KEY,
    -- One sign-in, across the ids it is rotated through: its CSRF token derives from it, and
    -- signing out removes every row of it.
    sign_in_id      TEXT NOT NULL,
    credential      BLOB NOT NULL,
    -- The tenant it signed into (NULL for a platform admin): offboarding removes its sessions.
    tenant_id       TEXT,
    created_at_ms   INTEGER NOT NULL,
    last_seen_ms    INTEGER NOT NULL,
    expires_at_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at_ms);
CREATE INDEX console_sessions_sign_in ON console_sessions (sign_in_id);
