#!/usr/bin/env bash
# Where the service's heap goes under load (issue 13, target 7). The release binary built with
# the system allocator (heaptrack sees no other) runs under heaptrack's preload, driven by
# http_load's open loop at LOAD_RATE [120]/s to 200 accounts on PostgreSQL for HEAP_SECONDS [480]
# (heaptrack slows the service: at 300/s its readers fell behind). Every 30 s the server's RSS,
# CPU ticks and reader lags go to HEAP_DIR [target/heap]/rss; at the end, heaptrack's report of
# the peak and of what was still held, by call stack, goes to HEAP_DIR/report.txt.
# Needs heaptrack (apt-get install heaptrack) and http_load built (cargo bench --bench http_load --no-run).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${HEAP_DIR:-target/heap}
seconds=${HEAP_SECONDS:-480}
mkdir -p "$out"
rm -f "$out"/heaptrack.*.gz "$out"/rss
# HEAP_BIN: a release binary built with the feature already (each build below recompiles the crate).
if [ -n "${HEAP_BIN:-}" ]; then
  cp "$HEAP_BIN" "$out/ledgerhook-system-allocator"
else
  cargo build --release --bin ledgerhook --features system-allocator
  cp target/release/ledgerhook "$out/ledgerhook-system-allocator"
  # http_load and everything else measure the service with its own allocator.
  cargo build --release --bin ledgerhook
  cargo bench --bench http_load --no-run
fi
load=$(ls -t target/release/deps/http_load-* | grep -v '\.d$' | head -1)
first_file() { for f in "$@"; do [ -f "$f" ] && { echo "$f"; return; }; done; echo "heaptrack's $1 not found: apt-get install heaptrack" >&2; exit 1; }
preload=$(first_file /usr/lib/heaptrack/libheaptrack_preload.so /usr/lib/*/heaptrack/libheaptrack_preload.so)
interpret=$(first_file /usr/lib/heaptrack/libexec/heaptrack_interpret /usr/lib/*/heaptrack/libexec/heaptrack_interpret)
dir=$(cd "$out" && pwd)
# `serve` under the preload, as the very process http_load signals; the CLI's other commands plainly.
cat > "$out/wrap.sh" <<WRAP
#!/bin/sh
for a in "\$@"; do
  if [ "\$a" = serve ]; then
    fifo=$dir/heaptrack.fifo; rm -f "\$fifo"; mkfifo "\$fifo"
    $interpret < "\$fifo" | gzip > $dir/heaptrack.\$\$.gz &
    LD_PRELOAD=$preload DUMP_HEAPTRACK_OUTPUT="\$fifo" exec $dir/ledgerhook-system-allocator "\$@"
  fi
done
exec $dir/ledgerhook-system-allocator "\$@"
WRAP
chmod +x "$out/wrap.sh"
LEDGERHOOK_BIN="$dir/wrap.sh" LOAD_STORE=postgres LOAD_USERS=200 LOAD_CONCURRENCY=32 \
  LOAD_RATE=${LOAD_RATE:-120} LOAD_SECONDS=$((seconds + 60)) "$load" --bench > "$out/http_load.txt" 2>&1 &
gen=$!
P=
for _ in $(seq 1 240); do P=$(pgrep -f "ledgerhook-system-allocator serve" | head -1 || true); [ -n "$P" ] && break; sleep 0.5; done
[ -n "$P" ] || { echo "the server did not start: see $out/http_load.txt"; exit 1; }
addr=$(tr '\0' '\n' < "/proc/$P/environ" | grep ^LEDGERHOOK_LISTEN= | cut -d= -f2)
start=$(date +%s)
while kill -0 "$P" 2>/dev/null && [ $(($(date +%s) - start)) -le "$seconds" ]; do
  # Sampling never stops the run: a server not answering yet, or gone, leaves its fields empty.
  lags=$(curl -s "http://$addr/metrics" | awk '/^ledgerhook_reader_lag_events/ {printf "%s ", $2}' || true)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$P/status" 2>/dev/null || true)
  ticks=$(awk '{print $14 + $15}' "/proc/$P/stat" 2>/dev/null || true)
  echo "$(($(date +%s) - start)) $rss $ticks $lags" >> "$out/rss"
  sleep 30
done
# Stopping the generator kills the server: what it still held then is heaptrack's "leaked".
kill -TERM $gen 2>/dev/null || true
wait $gen 2>/dev/null || true
sleep 5
heaptrack_print -f "$(ls -t "$out"/heaptrack.*.gz | head -1)" --print-peaks 1 --print-leaks 1 \
  --print-allocators 0 --print-temporary 0 --peak-limit 25 > "$out/report.txt"
tail -4 "$out/report.txt"
echo "report: $out/report.txt (MEMORY LEAKS: held at the end), RSS: $out/rss (s, KiB, ticks, lags)"
