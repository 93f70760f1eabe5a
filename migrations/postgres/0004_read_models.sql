-- Issue 5's read models, written only by the catch-up projections (src/readside). Each table is a
-- fold of the global event order; the projection's checkpoint (table `checkpoints`, name
-- `projection:<table>`) is saved in the same transaction as its rows, so every event is applied
-- exactly once.
--
-- Money and sizes are decimal TEXT as everywhere in this schema; times are RFC 3339 UTC TEXT as
-- recorded in the ledger (nanoseconds kept), so a rebuild compares equal to the byte.
--
-- `rebuild_*` mirror them: `ledgerhook projections rebuild` replays the log into them from
-- scratch (checkpoints `rebuild:<table>`) and compares them with the live tables.

CREATE TABLE positions
(
    account_id          text    NOT NULL,
    market              text    NOT NULL,
    -- Signed: positive long, negative short, 0 flat.
    size                text    NOT NULL,
    side                text    NOT NULL CHECK (side IN ('long', 'short', 'flat')),
    average_entry_price text    NOT NULL,
    realized_pnl_usd    text    NOT NULL,
    last_sequence       bigint  NOT NULL,
    PRIMARY KEY (account_id, market)
);

CREATE TABLE trades
(
    account_id        text    NOT NULL,
    -- The OrderFilled event's sequence in the account's stream: unique, and the trader's cursor.
    sequence          bigint  NOT NULL,
    signal_id         text    NOT NULL,
    client_order_id   text    NOT NULL,
    exchange_order_id text    NOT NULL,
    market            text    NOT NULL,
    side              text    NOT NULL,
    size              text    NOT NULL,
    price             text    NOT NULL,
    fee_usd           text    NOT NULL,
    filled_at         text    NOT NULL,
    PRIMARY KEY (account_id, sequence)
);

CREATE TABLE daily_volume
(
    account_id text    NOT NULL,
    -- The UTC day, YYYY-MM-DD.
    day        text    NOT NULL,
    traded_usd text    NOT NULL,
    fills      bigint  NOT NULL,
    PRIMARY KEY (account_id, day)
);

CREATE TABLE signals
(
    account_id  text    NOT NULL,
    signal_id   text    NOT NULL,
    status      text    NOT NULL,
    outcome     text    NOT NULL,
    market      text,
    received_at text,
    updated_at  text,
    detail      text,
    duplicates  bigint  NOT NULL,
    -- JSON array of {"sequence","event_type","recorded_at"}: the signal's story in order.
    events      text    NOT NULL,
    PRIMARY KEY (account_id, signal_id)
);

-- The rebuild's fresh copy (see above).
CREATE TABLE rebuild_positions
(
    account_id          text    NOT NULL,
    market              text    NOT NULL,
    -- Signed: positive long, negative short, 0 flat.
    size                text    NOT NULL,
    side                text    NOT NULL CHECK (side IN ('long', 'short', 'flat')),
    average_entry_price text    NOT NULL,
    realized_pnl_usd    text    NOT NULL,
    last_sequence       bigint  NOT NULL,
    PRIMARY KEY (account_id, market)
);

CREATE TABLE rebuild_trades
(
    account_id        text    NOT NULL,
    -- The OrderFilled event's sequence in the account's stream: unique, and the trader's cursor.
    sequence          bigint  NOT NULL,
    signal_id         text    NOT NULL,
    client_order_id   text    NOT NULL,
    exchange_order_id text    NOT NULL,
    market            text    NOT NULL,
    side              text    NOT NULL,
    size              text    NOT NULL,
    price             text    NOT NULL,
    fee_usd           text    NOT NULL,
    filled_at         text    NOT NULL,
    PRIMARY KEY (account_id, sequence)
);

CREATE TABLE rebuild_daily_volume
(
    account_id text    NOT NULL,
    -- The UTC day, YYYY-MM-DD.
    day        text    NOT NULL,
    traded_usd text    NOT NULL,
    fills      bigint  NOT NULL,
    PRIMARY KEY (account_id, day)
);

CREATE TABLE rebuild_signals
(
    account_id  text    NOT NULL,
    signal_id   text    NOT NULL,
    status      text    NOT NULL,
    outcome     text    NOT NULL,
    market      text,
    received_at text,
    updated_at  text,
    detail      text,
    duplicates  bigint  NOT NULL,
    -- JSON array of {"sequence","event_type","recorded_at"}: the signal's story in order.
    events      text    NOT NULL,
    PRIMARY KEY (account_id, signal_id)
);
