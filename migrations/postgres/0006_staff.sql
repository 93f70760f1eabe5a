-- Issue 5's staff identities and the record of what compliance staff read.
-- (audit_log itself is 0005's.)

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
