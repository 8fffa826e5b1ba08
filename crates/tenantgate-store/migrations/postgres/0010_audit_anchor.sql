-- Checkpoints are the anchors the signer continues from and retention cuts at, so nobody may
-- forge or remove one with plain row edits: a new checkpoint must name a record that exists
-- with that very hash, and must not go back before the tenant's last checkpoint (re-storing
-- the same one is ignored, so signing stays idempotent); checkpoints are never deleted. The
-- request role also lost DELETE on the audit tables (backend.rs): retention runs on the
-- owner's connection after checking the checkpoint's signature.
CREATE FUNCTION audit_checkpoint_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  last_seq BIGINT;
  last_hash BYTEA;
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'audit checkpoints cannot be deleted';
  END IF;
  -- Concurrent signers of one tenant serialise here (the lock is released at commit).
  PERFORM pg_advisory_xact_lock(hashtext('tenantgate.checkpoint'), hashtext(NEW.tenant_id));
  SELECT seq, hash INTO last_seq, last_hash FROM audit_checkpoints
   WHERE tenant_id = NEW.tenant_id ORDER BY seq DESC LIMIT 1;
  IF last_seq IS NOT NULL AND NEW.seq = last_seq AND NEW.hash = last_hash THEN
    RETURN NULL;
  END IF;
  IF last_seq IS NOT NULL AND NEW.seq <= last_seq THEN
    RAISE EXCEPTION 'audit checkpoints are appended in chain order';
  END IF;
  IF NEW.seq > 0 AND NEW.hash IS DISTINCT FROM
     (SELECT hash FROM audit_records WHERE tenant_id = NEW.tenant_id AND seq = NEW.seq) THEN
    RAISE EXCEPTION 'an audit checkpoint must match the record at its seq';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_checkpoints_guard BEFORE INSERT OR DELETE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_guard();

-- Records are appended past the tenant's newest checkpoint, never into the signed range (where
-- retention pruned, a forged record could otherwise be inserted and counted by usage sums).
CREATE FUNCTION audit_record_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.seq <= (SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints
                 WHERE tenant_id = NEW.tenant_id) THEN
    RAISE EXCEPTION 'audit records are appended past the last checkpoint';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_records_past_checkpoint BEFORE INSERT ON audit_records
FOR EACH ROW EXECUTE FUNCTION audit_record_guard();
