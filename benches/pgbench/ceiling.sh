#!/usr/bin/env bash
# PostgreSQL's own ceiling for the ledger's two-row append, to report beside every figure the
# benches measure in the same session. Creates a scratch database with the real `events` table
# (migration 0001), runs pgbench closed-loop for 10 s, drops it. With GLOBAL_ORDER=1 the table also
# gets the global order of migrations 0007, 0010 and 0021 (each append takes the ledger-wide lock,
# shared, until it commits), which shows what it costs; ROW_TRIGGER=1 leaves out 0021, for the row
# trigger it replaced. With KEYS=1 each transaction also looks up
# and writes an idempotency key (migration 0020; `ledger_two_rows_with_key.sql`), over a table that
# already holds 250,000 keys, which shows what the key table costs the database.
#   [GLOBAL_ORDER=1 [ROW_TRIGGER=1]] [KEYS=1] benches/pgbench/ceiling.sh [CLIENTS=16] [SECONDS=10]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
clients="${1:-16}"
seconds="${2:-10}"
source "$here/scratch.sh"
scratch_database ledgerhook_pgbench
migrate 0001_ledger
if [ "${GLOBAL_ORDER:-0}" = 1 ]; then
    migrate 0007_global_order 0010_global_order_shared
    if [ "${ROW_TRIGGER:-0}" != 1 ]; then
        migrate 0021_global_order_per_statement
    fi
fi
script="$here/ledger_two_rows.sql"
if [ "${KEYS:-0}" = 1 ]; then
    migrate 0020_signal_keys
    psql -q "$url" -c "INSERT INTO signal_keys
        SELECT 'acct-' || (n % 200), gen_random_uuid()::text, gen_random_uuid()::text,
               1800000000000000000 FROM generate_series(1, 250000) AS n; ANALYZE signal_keys" >/dev/null
    script="$here/ledger_two_rows_with_key.sql"
fi
pgbench -n -c "$clients" -j 2 -T "$seconds" -f "$script" "$url" 2>&1 |
    grep -E "^(number of transactions actually processed|latency average|tps)"
