-- Issue 13, measured: the global order's row trigger (0007, 0010) ran a PL/pgSQL function for every
-- event: the ledger-wide lock looked up again and `nextval` by name. Inserting 200,000 events in
-- statements of 300 took 10.0-10.9 us a row with it, 7.2-8.1 us with this
-- (benches/pgbench/global_order_rows.sh, benches/README.md); an accepted signal records six.
--
-- The lock is now taken once per statement, by a statement trigger, which fires before the
-- statement forms its first row; each row's position is the column's default, so it is still
-- taken after the lock, and 0010's promise holds: every append that took a position below the
-- first visible one still holds the lock until it commits. The default names the sequence by its
-- OID, so a schema of its own (as the tests use) keeps its own sequence. Only the ledger's append
-- writes this table, and never names a position; the unique index refuses one taken twice.
DROP TRIGGER events_global_position ON events;
DROP FUNCTION events_take_global_position();
ALTER TABLE events ALTER COLUMN global_seq SET DEFAULT nextval('events_global_seq');

CREATE FUNCTION events_hold_global_order() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    -- Held until this transaction ends; shared, so appends still run and flush together.
    PERFORM pg_advisory_xact_lock_shared(
        hashtextextended('ledgerhook global order ' || TG_RELID::text, 0));
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_global_order_lock
    BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_hold_global_order();
