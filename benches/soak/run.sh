#!/usr/bin/env bash
# Soak (issue 13, target 7): http_load's open loop, LOAD_RATE/s [500] to 200 accounts on
# PostgreSQL for SOAK_SECONDS [1800], the whole pipeline in the release binary; every 60 s the
# server's RSS and a /metrics snapshot (ack and signal-to-fill histograms, reader lags) go to
# SOAK_DIR [target/soak]. Then: benches/soak/report.py target/soak
# Needs: cargo build --release --bin ledgerhook && cargo bench --bench http_load --no-run
set -u
cd "$(dirname "$0")/../.."
load=$(ls -t target/release/deps/http_load-* | grep -v '\.d$' | head -1)
out=${SOAK_DIR:-target/soak}
mkdir -p "$out"; rm -f "$out"/metrics.* "$out"/rss
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
  [ $((now - start)) -gt $((seconds + 30)) ] && break
  rss=$(awk '/VmRSS/ {print $2}' /proc/$P/status)
  curl -s "http://$addr/metrics" > "$out/metrics.$n"
  echo "$n $((now - start)) $rss" >> "$out/rss"
  n=$((n + 1))
  sleep 60
done
kill -TERM $gen 2>/dev/null
wait $gen 2>/dev/null
echo done
