-- The idempotency keys each account has used: see migrations/postgres/0020_signal_keys.sql.
CREATE TABLE signal_keys
(
    account_id      TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    signal_id       TEXT    NOT NULL,
    -- Nanoseconds since the epoch: exact, and compared the same way on both stores.
    expires_at_ns   INTEGER NOT NULL,
    PRIMARY KEY (account_id, idempotency_key)
);

-- The upkeep forgets expired keys, oldest first.
CREATE INDEX signal_keys_by_expiry ON signal_keys (expires_at_ns);

-- backfill: the keys of the ledger so far that still count, each with its latest use. A signal
-- refused as a duplicate used no key of its own. Events of schema 1.0 carry no expiry: theirs is
-- the window 1.0 used (fingerprints "fp:..." 120 s, ids 24 h). SQLite reads times to the
-- millisecond.
INSERT INTO signal_keys (account_id, idempotency_key, signal_id, expires_at_ns)
SELECT aggregate_id, idempotency_key, signal_id, expires_at_ns
  FROM (SELECT aggregate_id, idempotency_key, signal_id, expires_at_ns,
               row_number() OVER (PARTITION BY aggregate_id, idempotency_key
                                  ORDER BY sequence DESC) AS latest
          FROM (SELECT aggregate_id, sequence,
                       json_extract(payload, '$.' || event_type || '.idempotency_key')
                           AS idempotency_key,
                       json_extract(payload, '$.' || event_type || '.signal_id') AS signal_id,
                       CAST(round(1000 * COALESCE(
                           unixepoch(json_extract(payload, '$.' || event_type || '.key_expires_at'),
                                     'subsec'),
                           unixepoch(json_extract(payload, '$.' || event_type || '.received_at'),
                                     'subsec')
                               + CASE WHEN json_extract(payload, '$.' || event_type
                                                                 || '.idempotency_key') LIKE 'fp:%'
                                      THEN 120 ELSE 86400 END
                       )) AS INTEGER) * 1000000 AS expires_at_ns
                  FROM events
                 WHERE aggregate_type = 'TradingAccount'
                   AND (event_type = 'SignalReceived'
                        OR (event_type = 'SignalRejected'
                            AND json_extract(payload, '$.SignalRejected.reason.kind')
                                IS NOT 'duplicate'))) AS used
         WHERE idempotency_key IS NOT NULL AND signal_id IS NOT NULL) AS uses
 WHERE latest = 1
   AND expires_at_ns > CAST(round(1000 * unixepoch('now', 'subsec')) AS INTEGER) * 1000000;
