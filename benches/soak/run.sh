#!/usr/bin/env bash
# Soak (issue 13, target 7): http_load's open loop, LOAD_RATE/s [500] to 200 accounts on
# PostgreSQL for SOAK_SECONDS [1800], the whole pipeline in the release binary; every 60 s the
# server's RSS, CPU time and PostgreSQL's, a /metrics snapshot (ack and signal-to-fill histograms,
# reader lags) and ten samples of PostgreSQL's active statements go to SOAK_DIR [target/soak]. Then: benches/soak/report.py target/soak
# Needs: cargo build --release --bin ledgerhook && cargo bench --bench http_load --no-run
set -u
cd "$(dirname "$0")/../.."
load=$(ls -t target/release/deps/http_load-* | grep -v '\.d$' | head -1)
out=${SOAK_DIR:-target/soak}
mkdir -p "$out"; rm -f "$out"/metrics.* "$out"/pg.* "$out"/rss
seconds=${SOAK_SECONDS:-1800}
LOAD_RATE=${LOAD_RATE:-500} LOAD_SECONDS=$seconds LOAD_CONCURRENCY=32 "$load" --bench > "$out/http_load.txt" 2>&1 &
gen=$!
for i in $(seq 1 240); do P=$(pgrep -f "target/release/ledgerhook serve" | head -1); [ -n "$P" ] && break; sleep 0.5; done
addr=$(tr '\0' '\n' < /proc/$P/environ | grep ^LEDGERHOOK_LISTEN= | cut -d= -f2)
echo "server $P at $addr"
start=$(date +%s)
n=0
while kill -0 "$P" 2>/dev/null; do
  now=$(date +%s)
  # http_load follows its open loop with a closed one: stop before it.
  [ $((now - start)) -gt "$seconds" ] && break
  rss=$(awk '/VmRSS/ {print $2}' /proc/$P/status)
  # CPU ticks (1/100 s) so far: the server's, and every PostgreSQL process's.
  svc=$(awk '{print $14 + $15}' /proc/$P/stat)
  pg=$(for q in $(pgrep -u postgres); do cat /proc/$q/stat 2>/dev/null; done | awk '{s += $14 + $15} END {print s + 0}')
  curl -s "http://$addr/metrics" > "$out/metrics.$n"
  echo "$n $((now - start)) $rss $svc $pg" >> "$out/rss"
  # What the database is doing: ten samples of the active statements and their waits.
  for s in $(seq 1 10); do
    psql -h 127.0.0.1 -U postgres -Atc "SELECT coalesce(wait_event, 'CPU') || ' ' ||
      left(regexp_replace(query, '\s+', ' ', 'g'), 60) FROM pg_stat_activity
      WHERE state = 'active' AND datname LIKE 'ledgerhook_load%'" 2>/dev/null
    sleep 0.2
  done | sort | uniq -c | sort -rn > "$out/pg.$n"
  n=$((n + 1))
  sleep 60
done
kill -TERM $gen 2>/dev/null
wait $gen 2>/dev/null
echo done
