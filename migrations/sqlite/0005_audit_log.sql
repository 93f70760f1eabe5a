-- Issue 5's audit trail: one row per event of the global order, hash-chained (see ARCHITECTURE.md,
-- "Audit trail"), and checkpoints of the chain head. Mirrors migrations/postgres/0005; SQLite has no
-- roles (whoever can open the file can do anything), so append-only is enforced by triggers alone.
CREATE TABLE audit_log
(
    position       integer PRIMARY KEY CHECK (position >= 1),
    account_id     text NOT NULL,
    aggregate_type text NOT NULL,
    sequence       integer NOT NULL,
    event_type     text NOT NULL,
    event_version  text NOT NULL,
    signal_id      text NULL,
    -- RFC 3339 UTC with microseconds, e.g. 2024-05-01T12:00:00.123456Z
    recorded_at    text NOT NULL,
    payload        text NOT NULL,
    metadata       text NOT NULL,
    prev_hash      text NOT NULL,
    hash           text NOT NULL,
    UNIQUE (aggregate_type, account_id, sequence)
) STRICT;
CREATE INDEX audit_log_account ON audit_log (account_id, position);
CREATE INDEX audit_log_event_type ON audit_log (event_type, position);
CREATE INDEX audit_log_signal ON audit_log (signal_id);
CREATE INDEX audit_log_recorded_at ON audit_log (recorded_at, position);

-- The chain head at moments in time, HMAC-signed when a key is configured (NULL otherwise).
CREATE TABLE audit_checkpoints
(
    position  integer PRIMARY KEY CHECK (position >= 1),
    hash      text NOT NULL,
    at        text NOT NULL,
    signature text NULL
) STRICT;

-- SQLite has no TRUNCATE: a DELETE without WHERE runs these triggers too.
CREATE TRIGGER audit_log_no_update
    BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_log_no_delete
    BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
CREATE TRIGGER audit_checkpoints_no_update
    BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_checkpoints_no_delete
    BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only: DELETE refused');
END;
