-- The binding identity and the facts an unbind rests on, in the ledger:
-- a Bound entry records the app (agent_id) and the trial end seen when the
-- tenant was bound (trial_ends_at, NULL for none); an Unbound entry records
-- the app and the person's confirmation that the app was removed, if one
-- proved it. Entries written before this migration have agent_id NULL.
ALTER TABLE ledger ADD COLUMN agent_id BIGINT;
ALTER TABLE ledger ADD COLUMN trial_ends_at TIMESTAMPTZ;
ALTER TABLE ledger ADD COLUMN confirmation TEXT;

-- The fencing token: the highest leadership term (the leader Lease's
-- transitions) that wrote here. A writer holding a lower one is a stale
-- leader: every write transaction checks it (FOR SHARE, so writers of one
-- term do not queue behind each other) and is refused.
CREATE TABLE fence (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    token BIGINT NOT NULL
);
INSERT INTO fence (id, token) VALUES (1, 0);
