#!/usr/bin/env bash
# Where PostgreSQL's statement time goes under `http_load`: a private cluster made with `initdb` on
# its own port (the shared server has no pg_stat_statements), the bench pointed at it, then the
# statements that took the most time, with their rows and buffer hits per row. The bench's own
# variables pass through (LOAD_MODE, LOAD_RATE, LOAD_USERS, ...); the release binary and the bench
# must be built first (benches/README.md, "Reproduce").
# STATEMENTS_EXPLAIN_MS=N also logs the plan (with buffers) of every statement slower than N ms, and
# STATEMENTS_LOG=FILE keeps the server's log there; STATEMENTS_ORDER=calls sorts by calls, not time.
# STATEMENTS_INITDB_ARGS and STATEMENTS_SERVER_ARGS ("-c name=value ...") change the cluster.
#   STATEMENTS_PORT=5499 LOAD_MODE=open-transaction LOAD_RATE=500 benches/pgbench/statements.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
port="${STATEMENTS_PORT:-5499}"
bin="$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)"
bin="${bin%/initdb}"
bench="$(ls -t "$root"/target/release/deps/http_load-* | grep -v '\.d$' | head -1)"

# initdb refuses to run as root: the cluster belongs to `nobody` then.
as_owner() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; else "$@"; fi; }
cluster="$(mktemp -d /tmp/ledgerhook-statements.XXXXXX)"
chmod 755 "$cluster"
[ "$(id -u)" = 0 ] && chown nobody:nogroup "$cluster"
stop() {
    as_owner "$bin/pg_ctl" -D "$cluster/data" -m immediate stop >/dev/null 2>&1 || true
    [ -n "${STATEMENTS_LOG:-}" ] && cp "$cluster/log" "$STATEMENTS_LOG"
    rm -rf "$cluster"
}
trap stop EXIT
libraries=pg_stat_statements
explain=""
if [ -n "${STATEMENTS_EXPLAIN_MS:-}" ]; then
    libraries="$libraries,auto_explain"
    explain="-c auto_explain.log_min_duration=${STATEMENTS_EXPLAIN_MS}ms -c auto_explain.log_analyze=on \
        -c auto_explain.log_buffers=on -c auto_explain.log_timing=off"
fi
as_owner "$bin/initdb" -D "$cluster/data" -U postgres --auth=trust ${STATEMENTS_INITDB_ARGS:-} >/dev/null
as_owner "$bin/pg_ctl" -D "$cluster/data" -l "$cluster/log" -w start -o "-p $port -k $cluster \
    -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB \
    -c shared_preload_libraries=$libraries -c pg_stat_statements.track=all $explain ${STATEMENTS_SERVER_ARGS:-}" >/dev/null
admin="postgres://postgres@127.0.0.1:$port/postgres"
psql -q "$admin" -c "CREATE EXTENSION pg_stat_statements" >/dev/null

DATABASE_URL="$admin?sslmode=disable" LEDGERHOOK_BIN="${LEDGERHOOK_BIN:-$root/target/release/ledgerhook}" \
    LOAD_STORE=postgres "$bench" --bench

psql "$admin" -P pager=off -c "
    SELECT calls, rows, round(total_exec_time) AS ms, round(mean_exec_time::numeric, 2) AS mean_ms,
           round(max_exec_time::numeric, 1) AS max_ms,
           round((1000 * total_exec_time / greatest(rows, calls))::numeric, 1) AS us_per_row,
           round(shared_blks_hit::numeric / greatest(rows, calls), 1) AS hits_per_row,
           left(regexp_replace(query, '\s+', ' ', 'g'), 70) AS statement
      FROM pg_stat_statements
     WHERE query !~* '^(BEGIN|COMMIT|SET|RESET|SELECT \\\$1|CREATE|DROP|ALTER)'
     ORDER BY ${STATEMENTS_ORDER:-total_exec_time} DESC LIMIT ${STATEMENTS_TOP:-15}"
psql "$admin" -At -c "SELECT 'all statements: ' || round(sum(total_exec_time)) || ' ms, ' || sum(calls) || ' calls' FROM pg_stat_statements"
# Transactions: explicit ones end in COMMIT; every other statement outside one commits by itself.
psql "$admin" -At -c "SELECT 'commits: ' || coalesce(sum(calls) FILTER (WHERE query ~* '^COMMIT'), 0) || ' explicit' FROM pg_stat_statements"
