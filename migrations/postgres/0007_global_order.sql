-- Issue 10: the global order no longer waits for the server-wide transaction horizon.
--
-- Before, a reader read below pg_snapshot_xmin(pg_current_snapshot()): any open transaction on
-- the server, in any database (a pg_dump, an analyst's session, a client idle in transaction),
-- held every reader back until it ended. Now every transaction that appends events takes one
-- ledger-wide lock before it takes its positions and keeps it until it commits, so positions
-- become visible in the order they were taken: a reader that sees position N sees every committed
-- position below N, and reads plainly in `global_seq` order. A rolled-back append leaves a hole
-- that no later commit can fill, which a reader simply passes. The cost: appends of this database
-- commit one transaction at a time (the group committer puts many accounts in each).

-- Renumber the existing history in the order readers used until now.
ALTER TABLE events DISABLE TRIGGER events_append_only;
ALTER TABLE events RENAME COLUMN global_seq TO insert_seq;
ALTER TABLE events ADD COLUMN global_seq bigint;
UPDATE events
   SET global_seq = ordered.position
  FROM (SELECT aggregate_type, aggregate_id, sequence,
               row_number() OVER (ORDER BY tx_id, insert_seq) AS position
          FROM events) AS ordered
 WHERE (events.aggregate_type, events.aggregate_id, events.sequence)
     = (ordered.aggregate_type, ordered.aggregate_id, ordered.sequence);
ALTER TABLE events ENABLE TRIGGER events_append_only;

-- A checkpoint at (tx_id, seq) covered exactly the events at or below it in the old order.
ALTER TABLE checkpoints ADD COLUMN position bigint;
UPDATE checkpoints
   SET position = COALESCE((SELECT max(e.global_seq)
                              FROM events e
                             WHERE (e.tx_id::text::bigint, e.insert_seq)
                                <= (checkpoints.tx_id, checkpoints.global_seq)), 0);
ALTER TABLE checkpoints DROP COLUMN tx_id;
ALTER TABLE checkpoints DROP COLUMN global_seq;
ALTER TABLE checkpoints RENAME COLUMN position TO global_seq;
ALTER TABLE checkpoints ALTER COLUMN global_seq SET NOT NULL;

ALTER TABLE events DROP COLUMN tx_id;
ALTER TABLE events DROP COLUMN insert_seq;
ALTER TABLE events ALTER COLUMN global_seq SET NOT NULL;
CREATE UNIQUE INDEX events_global_order ON events (global_seq);

CREATE SEQUENCE events_global_seq OWNED BY events.global_seq;
SELECT setval('events_global_seq', COALESCE((SELECT max(global_seq) FROM events), 0) + 1, false);

CREATE FUNCTION events_take_global_position() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    -- Held until this transaction ends; taken again for each row at no cost.
    PERFORM pg_advisory_xact_lock(hashtextextended('ledgerhook global order ' || TG_RELID::text, 0));
    NEW.global_seq := nextval(quote_ident(TG_TABLE_SCHEMA) || '.events_global_seq');
    RETURN NEW;
END;
$$;
CREATE TRIGGER events_global_position
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_take_global_position();
