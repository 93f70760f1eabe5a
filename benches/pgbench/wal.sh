#!/usr/bin/env bash
# What PostgreSQL writes to its WAL per signal, by table and index: `http_load` runs against the
# server at DATABASE_URL's host (default 127.0.0.1:5432, user postgres), and WAL_SAMPLE_AT [15]
# seconds after its scratch database appears, WAL_SAMPLE_SECONDS [2] of the WAL are read with
# pg_walinspect (PostgreSQL 15+; the extension is created in the `postgres` database) and summed
# per relation. The bench's own variables pass through (LOAD_MODE, LOAD_RATE, LOAD_USERS, ...);
# build first as in benches/README.md, "Reproduce".
#   LOAD_MODE=open-transaction LOAD_RATE=400 LOAD_USERS=200 benches/pgbench/wal.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bench="$(ls -t "$root"/target/release/deps/http_load-* | grep -v '\.d$' | head -1)"
admin="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
server="${admin%/*}"
psql -q "$admin" -c "CREATE EXTENSION IF NOT EXISTS pg_walinspect" >/dev/null
work="$(mktemp -d /tmp/ledgerhook-wal.XXXXXX)"
trap 'rm -rf "$work"' EXIT

LOAD_STORE=postgres LEDGERHOOK_BIN="${LEDGERHOOK_BIN:-$root/target/release/ledgerhook}" \
    "$bench" --bench > "$work/load.txt" 2>&1 &
load=$!
database=""
for _ in $(seq 1 120); do
    database="$(psql -At "$admin" -c "SELECT datname FROM pg_database
        WHERE datname LIKE 'ledgerhook_load%' ORDER BY oid DESC LIMIT 1")"
    [ -n "$database" ] && break
    sleep 0.5
done
[ -n "$database" ] || { echo "the bench made no database"; kill "$load"; exit 1; }
sleep "${WAL_SAMPLE_AT:-15}"
from="$(psql -At "$admin" -c "SELECT pg_current_wal_lsn()")"
sleep "${WAL_SAMPLE_SECONDS:-2}"
to="$(psql -At "$admin" -c "SELECT pg_current_wal_lsn()")"
# Relation file numbers name the tables only inside their database, while it still exists.
psql -At -F '|' "$server/$database" -c "SELECT pg_relation_filenode(oid), relname FROM pg_class
    WHERE pg_relation_filenode(oid) IS NOT NULL" > "$work/relations"
psql -At -F '|' "$admin" -c "
    SELECT coalesce((regexp_match(block_ref, 'rel \d+/\d+/(\d+)'))[1], '-'), resource_manager,
           count(*), sum(record_length)
      FROM pg_get_wal_records_info('$from', '$to') GROUP BY 1, 2" > "$work/records"
wait "$load" || true
# Each accepted signal appends six events: the events table's rows give the signals sampled.
python3 - "$work/relations" "$work/records" <<'EOF'
import sys
names = dict(line.strip().split('|', 1) for line in open(sys.argv[1]) if '|' in line)
rows = [line.strip().split('|') for line in open(sys.argv[2]) if line.strip()]
total = sum(int(r[3]) for r in rows)
events = sum(int(r[2]) for r in rows if names.get(r[0]) == 'events' and r[1] == 'Heap')
signals = events / 6 or 1
print(f"{total / 1e6:.1f} MB of WAL for ~{signals:.0f} signals: {total / signals / 1024:.1f} KiB "
      f"and {sum(int(r[2]) for r in rows) / signals:.0f} records a signal")
print(f"{'relation':36} {'kind':12} {'records':>8} {'bytes':>10} {'share':>6} {'B/signal':>9}")
for r in sorted(rows, key=lambda r: -int(r[3]))[:30]:
    b = int(r[3])
    print(f"{names.get(r[0], r[0]):36} {r[1]:12} {r[2]:>8} {b:>10} {100 * b / total:5.1f}% "
          f"{b / signals:9.0f}")
EOF
