-- The ledger's two-row append as it stands since the idempotency keys left the account's state
-- (migration 0020): the key looked up first (its own statement, as the ledger does under the
-- account's lock), then the append that writes the key in the same statement. Run with
-- KEYS=1 benches/pgbench/ceiling.sh, which also fills the table with 250,000 keys.
\set n random(1, 1000000000)
SELECT idempotency_key, signal_id, expires_at_ns FROM signal_keys
 WHERE account_id = 'acct-' || (:n % 200) AND idempotency_key = ANY(ARRAY['key-' || :n]);
WITH account AS (SELECT gen_random_uuid()::text AS id),
remembered AS (
    INSERT INTO signal_keys (account_id, idempotency_key, signal_id, expires_at_ns)
    SELECT 'acct-' || (:n % 200), gen_random_uuid()::text, gen_random_uuid()::text,
           1800000000000000000
    ON CONFLICT (account_id, idempotency_key) DO UPDATE
        SET signal_id = EXCLUDED.signal_id, expires_at_ns = EXCLUDED.expires_at_ns
)
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'TradingAccount', account.id, n, 'SignalReceived', '2.0',
       '{"SignalReceived":{"market":"BTC-USD","size":"0.01"}}', '{"source":"pgbench"}'
FROM account, generate_series(1, 2) AS n;
