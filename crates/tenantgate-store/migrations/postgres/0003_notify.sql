-- Every control-plane change bumps control_revision in its own transaction; this trigger turns
-- that into a notification delivered at commit, so gateways reload at once instead of at their
-- next poll. The payload is the schema, so deployments sharing a database can tell theirs.
CREATE FUNCTION tenantgate_notify_control() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantgate_control', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;

CREATE TRIGGER control_revision_notify
    AFTER UPDATE ON control_revision
    FOR EACH STATEMENT EXECUTE FUNCTION tenantgate_notify_control();
