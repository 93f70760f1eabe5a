-- The latest known state of an account, so a load reads a bounded tail of events instead of the
-- whole history. Only an optimisation: a missing, stale or unreadable snapshot means a full replay.
CREATE TABLE account_snapshots
(
    account_id    text PRIMARY KEY,
    version       bigint      NOT NULL CHECK (version > 0),
    -- Which code wrote it: a snapshot is only trusted by the same state schema and release.
    state_version text        NOT NULL,
    state         json        NOT NULL,
    taken_at      timestamptz NOT NULL DEFAULT now()
);
