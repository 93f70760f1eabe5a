-- Issue 5's audit trail: one row per event of the global order, hash-chained (see ARCHITECTURE.md,
-- "Audit trail"), and signed checkpoints of the chain head. Both tables are append-only at the
-- database level, and the role the service writes them with can neither edit them nor switch the
-- enforcement off.
--
-- Roles are cluster-wide while tables live in one database, so the two roles are shared by every
-- ledgerhook database of the cluster (tests run many in parallel): created only when missing, and a
-- concurrent creation by another database's migration is taken as success.
--   ledgerhook_audit_owner  NOLOGIN; owns the tables. An owner may disable triggers, so nobody the
--                           service connects as should be a member of it.
--   ledgerhook_audit_writer NOLOGIN; INSERT and SELECT only. The writer switches to it
--                           (SET LOCAL ROLE) for every append.
-- Creating them needs CREATEROLE (or a DBA creating them beforehand; see ARCHITECTURE.md).
DO $$
DECLARE
    wanted text;
BEGIN
    FOREACH wanted IN ARRAY ARRAY['ledgerhook_audit_owner', 'ledgerhook_audit_writer'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = wanted) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', wanted);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- another database's migration created it at the same moment
            END;
        END IF;
    END LOOP;
    -- The migrating role must be able to hand the tables over and to switch to the writer.
    FOREACH wanted IN ARRAY ARRAY['ledgerhook_audit_owner', 'ledgerhook_audit_writer'] LOOP
        IF NOT pg_has_role(current_user, wanted, 'MEMBER') THEN
            BEGIN
                EXECUTE format('GRANT %I TO %I', wanted, current_user);
            EXCEPTION WHEN unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END;
$$;

CREATE TABLE audit_log
(
    position       bigint PRIMARY KEY CHECK (position >= 1),
    account_id     text        NOT NULL,
    aggregate_type text        NOT NULL,
    sequence       bigint      NOT NULL,
    event_type     text        NOT NULL,
    event_version  text        NOT NULL,
    signal_id      text        NULL,
    recorded_at    timestamptz NOT NULL,
    payload        text        NOT NULL,
    metadata       text        NOT NULL,
    prev_hash      text        NOT NULL,
    hash           text        NOT NULL,
    UNIQUE (aggregate_type, account_id, sequence)
);
CREATE INDEX audit_log_account ON audit_log (account_id, position);
CREATE INDEX audit_log_event_type ON audit_log (event_type, position);
CREATE INDEX audit_log_signal ON audit_log (signal_id);
CREATE INDEX audit_log_recorded_at ON audit_log (recorded_at, position);

-- The chain head at moments in time, HMAC-signed when a key is configured (NULL otherwise).
CREATE TABLE audit_checkpoints
(
    position  bigint PRIMARY KEY CHECK (position >= 1),
    hash      text        NOT NULL,
    at        timestamptz NOT NULL,
    signature text        NULL
);

CREATE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END;
$$;
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only();
CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only();
-- Fire also under session_replication_role = replica (logical replication appliers).
ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_append_only;
ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_no_truncate;
ALTER TABLE audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_append_only;
ALTER TABLE audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_no_truncate;

ALTER FUNCTION audit_is_append_only() OWNER TO ledgerhook_audit_owner;
ALTER TABLE audit_log OWNER TO ledgerhook_audit_owner;
ALTER TABLE audit_checkpoints OWNER TO ledgerhook_audit_owner;
REVOKE ALL ON audit_log, audit_checkpoints FROM PUBLIC;
GRANT SELECT, INSERT ON audit_log, audit_checkpoints TO ledgerhook_audit_writer;
-- The service's own role (the one migrating here) reads the trail for verification and the
-- compliance API, but gets no write privilege on it: its appends go through the writer role.
GRANT SELECT ON audit_log, audit_checkpoints TO current_user;
-- Having handed the tables over, the migrating role (often also the service's) gives up the
-- ownership it needed for that: it could otherwise switch to the owner and disable the triggers.
-- (A superuser is a member of every role regardless; see ARCHITECTURE.md for the production roles.)
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('REVOKE ledgerhook_audit_owner FROM %I', current_user);
    END IF;
END;
$$;
