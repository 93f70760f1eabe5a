-- PostgreSQL's own ceiling for what the ledger asks of it: one transaction appending the two
-- events an accepted alert records (SignalReceived, RiskApproved) to a new account's stream.
-- Run with pgbench (see ceiling.sh); each transaction is one statement, committed with fsync.
WITH account AS (SELECT gen_random_uuid()::text AS id)
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'TradingAccount', account.id, n, 'SignalReceived', '2.0',
       '{"SignalReceived":{"market":"BTC-USD","size":"0.01"}}', '{"source":"pgbench"}'
FROM account, generate_series(1, 2) AS n;
