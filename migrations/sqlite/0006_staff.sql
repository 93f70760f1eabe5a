-- Issue 5's staff identities and the record of what compliance staff read. Mirrors
-- migrations/postgres/0006.
-- (audit_log itself is 0005's.)

-- People who operate the service or audit it: not traders, never an account in the ledger.
-- Their API keys are 256-bit random values, kept as SHA-256 only. A later issue adds password
-- sign-in (argon2id) as another column; NULL api_key_sha256 then means "password only".
CREATE TABLE staff
(
    staff_id       text PRIMARY KEY,
    display_name   text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    -- compliance: reads the audit trail; operator: runs the service, does not read the trail.
    role           text NOT NULL CHECK (role IN ('compliance', 'operator')),
    api_key_sha256 text UNIQUE,
    created_at     text NOT NULL,
    -- NULL = active. Disabling keeps the row, so the reads it made still name who made them.
    disabled_at    text
) STRICT;

-- One row per compliance read, written before the data is returned. Append-only like the ledger.
CREATE TABLE compliance_reads
(
    id       integer PRIMARY KEY AUTOINCREMENT,
    staff_id text NOT NULL REFERENCES staff (staff_id),
    endpoint text NOT NULL,
    -- JSON.
    filter   text NOT NULL,
    at       text NOT NULL
) STRICT;
CREATE INDEX compliance_reads_by_staff ON compliance_reads (staff_id, at);

CREATE TRIGGER compliance_reads_no_update
    BEFORE UPDATE ON compliance_reads
BEGIN
    SELECT RAISE(ABORT, 'compliance_reads is append-only: UPDATE refused');
END;
CREATE TRIGGER compliance_reads_no_delete
    BEFORE DELETE ON compliance_reads
BEGIN
    SELECT RAISE(ABORT, 'compliance_reads is append-only: DELETE refused');
END;
