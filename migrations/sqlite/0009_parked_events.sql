-- Events a catch-up reader could not apply (it cannot decode them), kept until an operator
-- decides: `released` (the reader retries it; `applied` once it could), or `skipped`.
-- Positions are the log position's printed form: opaque here, compared only for equality.
CREATE TABLE parked_events (
    reader          TEXT   NOT NULL,
    position        TEXT   NOT NULL,
    account_id      TEXT   NOT NULL,
    sequence        BIGINT NOT NULL,
    event_type      TEXT   NOT NULL,
    event_version   TEXT   NOT NULL,
    reason          TEXT   NOT NULL,
    parked_at       TEXT   NOT NULL,
    decision        TEXT   NOT NULL DEFAULT 'open',
    decided_by      TEXT,
    decision_reason TEXT,
    decided_at      TEXT,
    PRIMARY KEY (reader, position)
);

-- What the instance running each catch-up reader last reported of it (for `projections status`,
-- which runs in another process than `serve`).
CREATE TABLE reader_runs (
    reader     TEXT   NOT NULL PRIMARY KEY,
    state      TEXT   NOT NULL,
    restarts   BIGINT NOT NULL,
    last_error TEXT,
    updated_at TEXT   NOT NULL
);
