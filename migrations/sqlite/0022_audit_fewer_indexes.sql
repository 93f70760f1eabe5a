-- Issue 13, as migrations/postgres/0023: the audit trail loses its UNIQUE (aggregate_type,
-- account_id, sequence), which no query uses and which guards nothing the chain does not
-- (`position` is the primary key, the ledger refuses an event recorded twice, and `audit verify`
-- checks every row against the ledger's event at its position). SQLite cannot drop a table's
-- UNIQUE constraint: the table is made again without it. SQLite has no BRIN: the time index stays.
-- Only the derived file is written.

CREATE TABLE derived.audit_log_rebuilt
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
    hash           text NOT NULL
) STRICT;
INSERT INTO derived.audit_log_rebuilt SELECT * FROM derived.audit_log ORDER BY position;
-- Dropping a table drops its indexes and triggers without running them.
DROP TABLE derived.audit_log;
ALTER TABLE derived.audit_log_rebuilt RENAME TO audit_log;
CREATE INDEX derived.audit_log_account ON audit_log (account_id, position);
CREATE INDEX derived.audit_log_event_type ON audit_log (event_type, position);
CREATE INDEX derived.audit_log_signal ON audit_log (signal_id);
CREATE INDEX derived.audit_log_recorded_at ON audit_log (recorded_at, position);
CREATE TRIGGER derived.audit_log_no_update
    BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;
CREATE TRIGGER derived.audit_log_no_delete
    BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
