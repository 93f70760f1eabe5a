-- Issue 13: what readers derive from the ledger moves to a second file beside it (the store
-- attaches it as `derived` to every connection; see src/store/sqlite.rs). SQLite has one write
-- lock per file: with the audit trail, the read models and the readers' checkpoints in their own
-- file, their pages no longer hold up the ledger's appends, and the two are written at once.
-- Apart from this migration no transaction writes both files: SQLite keeps a transaction in WAL
-- mode atomic per file only.
-- Names stay unqualified in queries: SQLite looks a table up in main, then in `derived`.

CREATE TABLE derived.checkpoints
(
    name       text PRIMARY KEY,
    global_seq integer NOT NULL,
    updated_at text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
INSERT INTO derived.checkpoints SELECT * FROM main.checkpoints;
DROP TABLE main.checkpoints;

CREATE TABLE derived.audit_log
(
    position       integer PRIMARY KEY CHECK (position >= 1),
    account_id     text NOT NULL,
    aggregate_type text NOT NULL,
    sequence       integer NOT NULL,
    event_type     text NOT NULL,
    event_version  text NOT NULL,
    signal_id      text NULL,
    -- RFC 3339 UTC with microseconds, e.g. 2024-05-01T12:00:00.123456Z
    recorded_at    text NOT NULL,
    payload        text NOT NULL,
    metadata       text NOT NULL,
    prev_hash      text NOT NULL,
    hash           text NOT NULL,
    UNIQUE (aggregate_type, account_id, sequence)
) STRICT;
CREATE INDEX derived.audit_log_account ON audit_log (account_id, position);
CREATE INDEX derived.audit_log_event_type ON audit_log (event_type, position);
CREATE INDEX derived.audit_log_signal ON audit_log (signal_id);
CREATE INDEX derived.audit_log_recorded_at ON audit_log (recorded_at, position);
CREATE TRIGGER derived.audit_log_no_update
    BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;
CREATE TRIGGER derived.audit_log_no_delete
    BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
INSERT INTO derived.audit_log SELECT * FROM main.audit_log;
DROP TABLE main.audit_log;

CREATE TABLE derived.audit_checkpoints
(
    position  integer PRIMARY KEY CHECK (position >= 1),
    hash      text NOT NULL,
    at        text NOT NULL,
    signature text NULL
) STRICT;
CREATE TRIGGER derived.audit_checkpoints_no_update
    BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only: UPDATE refused');
END;
CREATE TRIGGER derived.audit_checkpoints_no_delete
    BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only: DELETE refused');
END;
INSERT INTO derived.audit_checkpoints SELECT * FROM main.audit_checkpoints;
DROP TABLE main.audit_checkpoints;

CREATE TABLE derived.signals
(
    account_id  text    NOT NULL,
    signal_id   text    NOT NULL,
    status      text    NOT NULL,
    outcome     text    NOT NULL,
    market      text,
    received_at text,
    updated_at  text,
    detail      text,
    duplicates  integer NOT NULL,
    -- JSON array of {"sequence","event_type","recorded_at"}: the signal's story in order.
    events      text    NOT NULL,
    PRIMARY KEY (account_id, signal_id)
) STRICT;
CREATE INDEX derived.signals_resting ON signals (account_id) WHERE status = 'resting';
CREATE INDEX derived.signals_newest_first ON signals (account_id, json_extract(events, '$[0].sequence'));
INSERT INTO derived.signals SELECT * FROM main.signals;
DROP TABLE main.signals;

CREATE TABLE derived.positions
(
    account_id          text    NOT NULL,
    market              text    NOT NULL,
    -- Signed: positive long, negative short, 0 flat.
    size                text    NOT NULL,
    side                text    NOT NULL CHECK (side IN ('long', 'short', 'flat')),
    average_entry_price text    NOT NULL,
    realized_pnl_usd    text    NOT NULL,
    last_sequence       integer NOT NULL,
    PRIMARY KEY (account_id, market)
) STRICT;
INSERT INTO derived.positions SELECT * FROM main.positions;
DROP TABLE main.positions;

CREATE TABLE derived.trades
(
    account_id        text    NOT NULL,
    -- The OrderFilled event's sequence in the account's stream: unique, and the trader's cursor.
    sequence          integer NOT NULL,
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
) STRICT;
INSERT INTO derived.trades SELECT * FROM main.trades;
DROP TABLE main.trades;

CREATE TABLE derived.daily_volume
(
    account_id text    NOT NULL,
    -- The UTC day, YYYY-MM-DD.
    day        text    NOT NULL,
    traded_usd text    NOT NULL,
    fills      integer NOT NULL,
    PRIMARY KEY (account_id, day)
) STRICT;
INSERT INTO derived.daily_volume SELECT * FROM main.daily_volume;
DROP TABLE main.daily_volume;

CREATE TABLE derived.rebuild_signals
(
    account_id  text    NOT NULL,
    signal_id   text    NOT NULL,
    status      text    NOT NULL,
    outcome     text    NOT NULL,
    market      text,
    received_at text,
    updated_at  text,
    detail      text,
    duplicates  integer NOT NULL,
    -- JSON array of {"sequence","event_type","recorded_at"}: the signal's story in order.
    events      text    NOT NULL,
    PRIMARY KEY (account_id, signal_id)
) STRICT;
INSERT INTO derived.rebuild_signals SELECT * FROM main.rebuild_signals;
DROP TABLE main.rebuild_signals;

CREATE TABLE derived.rebuild_positions
(
    account_id          text    NOT NULL,
    market              text    NOT NULL,
    -- Signed: positive long, negative short, 0 flat.
    size                text    NOT NULL,
    side                text    NOT NULL CHECK (side IN ('long', 'short', 'flat')),
    average_entry_price text    NOT NULL,
    realized_pnl_usd    text    NOT NULL,
    last_sequence       integer NOT NULL,
    PRIMARY KEY (account_id, market)
) STRICT;
INSERT INTO derived.rebuild_positions SELECT * FROM main.rebuild_positions;
DROP TABLE main.rebuild_positions;

CREATE TABLE derived.rebuild_trades
(
    account_id        text    NOT NULL,
    -- The OrderFilled event's sequence in the account's stream: unique, and the trader's cursor.
    sequence          integer NOT NULL,
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
) STRICT;
INSERT INTO derived.rebuild_trades SELECT * FROM main.rebuild_trades;
DROP TABLE main.rebuild_trades;

CREATE TABLE derived.rebuild_daily_volume
(
    account_id text    NOT NULL,
    -- The UTC day, YYYY-MM-DD.
    day        text    NOT NULL,
    traded_usd text    NOT NULL,
    fills      integer NOT NULL,
    PRIMARY KEY (account_id, day)
) STRICT;
INSERT INTO derived.rebuild_daily_volume SELECT * FROM main.rebuild_daily_volume;
DROP TABLE main.rebuild_daily_volume;
