-- The binding identity and the facts an unbind rests on, in the ledger:
-- a Bound entry records the app (agent_id) and the trial end seen when the
-- tenant was bound (trial_ends_at, NULL for none); an Unbound entry records
-- the app and the person's confirmation that the app was removed, if one
-- proved it. Entries written before this migration have agent_id NULL.
ALTER TABLE ledger ADD COLUMN agent_id BIGINT;
ALTER TABLE ledger ADD COLUMN trial_ends_at TIMESTAMPTZ;
ALTER TABLE ledger ADD COLUMN confirmation TEXT;
