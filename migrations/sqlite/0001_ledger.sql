-- The event store: sqlite-es 0.5.0's `events` table, plus what it lacks.
CREATE TABLE events
(
    aggregate_type text                          NOT NULL,
    aggregate_id   text                          NOT NULL,
    sequence       integer CHECK (sequence >= 0) NOT NULL,
    event_type     text                          NOT NULL,
    event_version  text                          NOT NULL,
    payload        text                          NOT NULL,
    metadata       text                          NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

-- Global order for catch-up readers. SQLite has one writer at a time, so insertion order is
-- commit order; an explicit AUTOINCREMENT key survives VACUUM, which an implicit rowid does not.
CREATE TABLE event_log
(
    position       integer PRIMARY KEY AUTOINCREMENT,
    aggregate_type text    NOT NULL,
    aggregate_id   text    NOT NULL,
    sequence       integer NOT NULL,
    recorded_at    text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TRIGGER events_global_order
    AFTER INSERT ON events
BEGIN
    INSERT INTO event_log (aggregate_type, aggregate_id, sequence)
    VALUES (NEW.aggregate_type, NEW.aggregate_id, NEW.sequence);
END;

-- History is never edited: mistakes are answered with compensating events.
CREATE TRIGGER events_no_update
    BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: UPDATE refused');
END;
CREATE TRIGGER events_no_delete
    BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: DELETE refused');
END;
CREATE TRIGGER event_log_no_update
    BEFORE UPDATE ON event_log
BEGIN
    SELECT RAISE(ABORT, 'event_log is append-only: UPDATE refused');
END;
CREATE TRIGGER event_log_no_delete
    BEFORE DELETE ON event_log
BEGIN
    SELECT RAISE(ABORT, 'event_log is append-only: DELETE refused');
END;

-- Where each catch-up reader has got to in the global order.
CREATE TABLE checkpoints
(
    name       text PRIMARY KEY,
    tx_id      integer NOT NULL,
    global_seq integer NOT NULL,
    updated_at text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TABLE users
(
    user_id              text PRIMARY KEY,
    display_name         text NOT NULL,
    -- SHA-256 of a 256-bit random token: the token itself is never stored.
    webhook_token_sha256 text NOT NULL UNIQUE,
    created_at           text NOT NULL
) STRICT;

-- The paper exchange's own book: one row per client order id, so a retried placement finds the
-- order it already made instead of making a second one.
CREATE TABLE paper_orders
(
    client_order_id   text PRIMARY KEY,
    account_id        text NOT NULL,
    market            text NOT NULL,
    side              text NOT NULL,
    size              text NOT NULL,
    price             text NOT NULL,
    fee               text NOT NULL,
    exchange_order_id text NOT NULL,
    placed_at         text NOT NULL
) STRICT;
