-- Issue 5's staff identities and the record of what compliance staff read.
--
-- audit_log is created by 0005 (the audit workstream). The block below is the contract's exact
-- DDL, guarded with IF NOT EXISTS, only so that this branch builds and tests before 0005 is merged;
-- it is to be removed from this file when 0005 lands (it then does nothing anyway).
-- BEGIN audit_log (contract copy; drop when 0005 is merged)
CREATE TABLE IF NOT EXISTS audit_log
(
    position       bigint PRIMARY KEY,
    account_id     text        NOT NULL,
    aggregate_type text        NOT NULL,
    sequence       bigint      NOT NULL,
    event_type     text        NOT NULL,
    event_version  text        NOT NULL,
    signal_id      text,
    recorded_at    timestamptz NOT NULL,
    payload        text        NOT NULL,
    metadata       text        NOT NULL,
    prev_hash      text        NOT NULL,
    hash           text        NOT NULL,
    UNIQUE (aggregate_type, account_id, sequence)
);
CREATE INDEX IF NOT EXISTS audit_log_account ON audit_log (account_id, position);
CREATE INDEX IF NOT EXISTS audit_log_event_type ON audit_log (event_type, position);
CREATE INDEX IF NOT EXISTS audit_log_signal ON audit_log (signal_id);
CREATE INDEX IF NOT EXISTS audit_log_recorded_at ON audit_log (recorded_at, position);
-- END audit_log

-- People who operate the service or audit it: not traders, never an account in the ledger.
-- Their API keys are 256-bit random values, kept as SHA-256 only (like the traders'; see
-- ARCHITECTURE.md, "Credentials"). A later issue adds password sign-in (argon2id) as another
-- column beside the key; NULL api_key_sha256 then means "signs in by password only".
CREATE TABLE staff
(
    staff_id       text PRIMARY KEY,
    display_name   text        NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    -- compliance: reads the audit trail; operator: runs the service, does not read the trail.
    role           text        NOT NULL CHECK (role IN ('compliance', 'operator')),
    api_key_sha256 text UNIQUE,
    created_at     timestamptz NOT NULL,
    -- NULL = active. Disabling keeps the row, so the reads it made still name who made them.
    disabled_at    timestamptz
);

-- One row per compliance read, written before the data is returned: who, which endpoint, with
-- which filter, when. Append-only like the ledger: a record of reads that could be edited would
-- prove nothing.
CREATE TABLE compliance_reads
(
    id       bigserial PRIMARY KEY,
    staff_id text        NOT NULL REFERENCES staff (staff_id),
    endpoint text        NOT NULL,
    filter   jsonb       NOT NULL,
    at       timestamptz NOT NULL
);
CREATE INDEX compliance_reads_by_staff ON compliance_reads (staff_id, at);

CREATE FUNCTION compliance_reads_are_immutable() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'compliance_reads is append-only: % refused', TG_OP;
END;
$$;
CREATE TRIGGER compliance_reads_append_only
    BEFORE UPDATE OR DELETE ON compliance_reads
    FOR EACH ROW EXECUTE FUNCTION compliance_reads_are_immutable();
CREATE TRIGGER compliance_reads_no_truncate
    BEFORE TRUNCATE ON compliance_reads
    FOR EACH STATEMENT EXECUTE FUNCTION compliance_reads_are_immutable();
