-- The event store: cqrs-es 0.5.0's `events` table, plus what it lacks.
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    -- json, not jsonb: the log is written far more than it is queried inside, and json is
    -- stored as sent (a validation pass) where jsonb is parsed into a tree on every insert.
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    -- Global order for catch-up readers: the writing transaction's id, then insertion order
    -- inside it. A reader only reads below pg_snapshot_xmin, so it never skips a row committed
    -- late by a slower transaction.
    tx_id          xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    global_seq     bigserial                    NOT NULL,
    recorded_at    timestamptz                  NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE INDEX events_global_order ON events (tx_id, global_seq);

-- History is never edited: mistakes are answered with compensating events.
CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP;
END;
$$;
CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

-- Where each catch-up reader has got to in the global order.
CREATE TABLE checkpoints
(
    name       text PRIMARY KEY,
    tx_id      bigint      NOT NULL,
    global_seq bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users
(
    user_id              text PRIMARY KEY,
    display_name         text        NOT NULL,
    -- SHA-256 of a 256-bit random token: the token itself is never stored.
    webhook_token_sha256 text        NOT NULL UNIQUE,
    created_at           timestamptz NOT NULL
);

-- The paper exchange's own book: one row per client order id, so a retried placement finds the
-- order it already made instead of making a second one.
CREATE TABLE paper_orders
(
    client_order_id   text PRIMARY KEY,
    account_id        text        NOT NULL,
    market            text        NOT NULL,
    side              text        NOT NULL,
    size              text        NOT NULL,
    price             text        NOT NULL,
    fee               text        NOT NULL,
    exchange_order_id text        NOT NULL,
    placed_at         timestamptz NOT NULL
);
