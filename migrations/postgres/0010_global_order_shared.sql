-- Issue 10, measured: an exclusive lock held from an append's first row to its commit made every
-- append of the database commit alone (pgbench: 5,094 -> 1,632 two-row tx/s). Appends now take the
-- ledger-wide lock *shared* before they take their positions, so they run and flush together as
-- before. A reader that finds a position missing just after where it stands calls
-- `events_wait_for_appends_in_flight()`: taking the lock exclusively waits only for the appends
-- holding it at that moment (every one that took a position below the first visible one), so
-- what is still missing afterwards is a rolled-back append's hole, for good. Transactions that do
-- not append events never take the lock: nothing else on the server can hold a reader back.
CREATE OR REPLACE FUNCTION events_take_global_position() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    -- Held until this transaction ends; taken again for each row at no cost.
    PERFORM pg_advisory_xact_lock_shared(
        hashtextextended('ledgerhook global order ' || TG_RELID::text, 0));
    NEW.global_seq := nextval(quote_ident(TG_TABLE_SCHEMA) || '.events_global_seq');
    RETURN NEW;
END;
$$;

CREATE FUNCTION events_wait_for_appends_in_flight() RETURNS void LANGUAGE plpgsql AS
$$
BEGIN
    -- Released when the caller's (single-statement) transaction ends.
    PERFORM pg_advisory_xact_lock(
        hashtextextended('ledgerhook global order ' || 'events'::regclass::oid::text, 0));
END;
$$;
