-- Checkpoints are the anchors the signer continues from and retention cuts at, so nobody may
-- forge or remove one with plain row edits: a new checkpoint must name a record that exists
-- with that very hash, and must not go back before the tenant's last checkpoint (re-storing
-- the same one is ignored, so signing stays idempotent); checkpoints are never deleted.
-- (Anyone holding the SQLite file can still drop these triggers: the signer's continuity check
-- and the witness outside the database are what catch that.)
CREATE TRIGGER audit_checkpoints_same_again BEFORE INSERT ON audit_checkpoints
WHEN NEW.seq = (SELECT MAX(seq) FROM audit_checkpoints WHERE tenant_id = NEW.tenant_id)
 AND NEW.hash = (SELECT hash FROM audit_checkpoints WHERE tenant_id = NEW.tenant_id AND seq = NEW.seq)
BEGIN SELECT RAISE(IGNORE); END;
CREATE TRIGGER audit_checkpoints_in_order BEFORE INSERT ON audit_checkpoints
WHEN NEW.seq < (SELECT COALESCE(MAX(seq), -1) FROM audit_checkpoints WHERE tenant_id = NEW.tenant_id)
  OR (NEW.seq = (SELECT MAX(seq) FROM audit_checkpoints WHERE tenant_id = NEW.tenant_id)
      AND NEW.hash IS NOT (SELECT hash FROM audit_checkpoints WHERE tenant_id = NEW.tenant_id AND seq = NEW.seq))
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are appended in chain order'); END;
CREATE TRIGGER audit_checkpoints_on_chain BEFORE INSERT ON audit_checkpoints
WHEN NEW.seq > 0 AND NEW.hash IS NOT (SELECT hash FROM audit_records WHERE tenant_id = NEW.tenant_id AND seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'an audit checkpoint must match the record at its seq'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints cannot be deleted'); END;
-- Records are appended past the tenant's newest checkpoint, never into the signed range (where
-- retention pruned, a forged record could otherwise be inserted and counted by usage sums).
CREATE TRIGGER audit_records_past_checkpoint BEFORE INSERT ON audit_records
WHEN NEW.seq <= (SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints WHERE tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'audit records are appended past the last checkpoint'); END;
