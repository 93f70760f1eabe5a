-- The idempotency keys each account has used, with the signal each produced and until when it
-- counts. They were part of the account's cached state, where a day of keys was most of a busy
-- account's memory (the soak's RSS grew 7 MB a minute) and of every snapshot. The ledger writes
-- a key in the statement that appends the events using it, and reads it back under the
-- account's lock before deciding a signal (src/store/signal_keys.rs).
CREATE TABLE signal_keys
(
    account_id      text   NOT NULL,
    idempotency_key text   NOT NULL,
    signal_id       text   NOT NULL,
    -- Nanoseconds since the epoch: exact, and compared the same way on both stores.
    expires_at_ns   bigint NOT NULL,
    PRIMARY KEY (account_id, idempotency_key)
);

-- The upkeep forgets expired keys, oldest first.
CREATE INDEX signal_keys_by_expiry ON signal_keys (expires_at_ns);

-- backfill: the keys of the ledger so far that still count, each with its latest use. A signal
-- refused as a duplicate used no key of its own. Events of schema 1.0 carry no expiry: theirs is
-- the window 1.0 used (fingerprints "fp:..." 120 s, ids 24 h).
INSERT INTO signal_keys (account_id, idempotency_key, signal_id, expires_at_ns)
SELECT aggregate_id, idempotency_key, signal_id, expires_at_ns
  FROM (SELECT aggregate_id, idempotency_key, signal_id, expires_at_ns,
               row_number() OVER (PARTITION BY aggregate_id, idempotency_key
                                  ORDER BY sequence DESC) AS latest
          FROM (SELECT aggregate_id, sequence,
                       body ->> 'idempotency_key' AS idempotency_key,
                       body ->> 'signal_id' AS signal_id,
                       (extract(epoch FROM COALESCE(
                            (body ->> 'key_expires_at')::timestamptz,
                            (body ->> 'received_at')::timestamptz
                                + CASE WHEN body ->> 'idempotency_key' LIKE 'fp:%'
                                       THEN interval '120 seconds' ELSE interval '24 hours' END
                        )) * 1000000000)::bigint AS expires_at_ns
                  FROM (SELECT aggregate_id, sequence, event_type, payload -> event_type AS body
                          FROM events
                         WHERE aggregate_type = 'TradingAccount'
                           AND event_type IN ('SignalReceived', 'SignalRejected')) AS signals
                 WHERE event_type = 'SignalReceived'
                    OR (body -> 'reason' ->> 'kind') IS DISTINCT FROM 'duplicate') AS used
         WHERE idempotency_key IS NOT NULL AND signal_id IS NOT NULL) AS uses
 WHERE latest = 1
   AND expires_at_ns > (extract(epoch FROM now()) * 1000000000)::bigint;
