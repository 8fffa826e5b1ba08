-- SQLite has no notifications: gateways poll control_revision (auth.reload_interval_ms).
-- This migration keeps the numbering of both backends aligned.
SELECT 1;
