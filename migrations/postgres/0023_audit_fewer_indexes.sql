-- Issue 13, measured (benches/README.md, ninth session): the audit trail's insert cost as much
-- server time as the ledger's own append, 16 buffer hits a row for the heap and six indexes.
-- Two of them do no work a reader needs:
--   UNIQUE (aggregate_type, account_id, sequence)  no query looks rows up by it, and it guards
--       nothing the chain does not: `position` is the primary key, the ledger refuses an event
--       recorded twice, and `audit verify` checks every row against the ledger's event at its
--       position, so a row copied to a second position fails verification.
--   (recorded_at, position) as a B-tree  rows arrive in time order, so a BRIN index (one small
--       summary per range of pages) finds a time range as well for a fraction of the upkeep.
--
-- The tables belong to ledgerhook_audit_owner, which the migrating login gave up in 0005: it
-- takes the role back for this migration (which needs CREATEROLE, as 0005 did, or a superuser),
-- makes the change with the owner's rights, and gives the role up again. Without the right
-- nothing changes.
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'ledgerhook_audit_owner', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT ledgerhook_audit_owner TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'migration 0023 changes the audit trail''s indexes, which only ledgerhook_audit_owner may: '
                'login % cannot take that role; migrate as a login with CREATEROLE (as migration 0005 needed) '
                'or as a superuser', current_user;
        END;
    END IF;
END;
$$;
ALTER TABLE audit_log DROP CONSTRAINT audit_log_aggregate_type_account_id_sequence_key;
DROP INDEX audit_log_recorded_at;
CREATE INDEX audit_log_recorded_at ON audit_log USING brin (recorded_at);
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('REVOKE ledgerhook_audit_owner FROM %I', current_user);
    END IF;
END;
$$;
