#!/usr/bin/env python3
"""Per-minute figures from soak.sh's /metrics snapshots: requests acknowledged, ack p99 and
signal-to-fill p99 (upper bucket bound) over each minute, reader lags, and the server's RSS."""
import re, sys, glob, os
d = sys.argv[1] if len(sys.argv) > 1 else 'target/soak'
rss = {}
for l in open(os.path.join(d, 'rss')):
    f = [int(x) for x in l.split()]
    if f:
        # minute: (seconds, RSS KiB, server CPU ticks, PostgreSQL CPU ticks); older runs lack CPU
        rss[f[0]] = (f[1], f[2], f[3] if len(f) > 3 else 0, f[4] if len(f) > 4 else 0)
def parse(path):
    hist, gauges = {}, {}
    for line in open(path):
        if line.startswith('#') or not line.strip():
            continue
        m = re.match(r'(\w+)(\{[^}]*\})?\s+(\S+)', line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or '', float(m.group(3))
        if name.endswith('_bucket'):
            le = re.search(r'le="([^"]+)"', labels).group(1)
            le = float('inf') if le == '+Inf' else float(le)
            key = name[:-7]
            hist.setdefault(key, {})
            hist[key][le] = hist[key].get(le, 0) + value
        elif name == 'ledgerhook_signals_total' and 'halted' in labels:
            gauges['halted'] = value
        elif name.startswith('ledgerhook_reader_lag_events'):
            r = re.search(r'reader="([^"]+)"', labels)
            gauges[r.group(1) if r else labels] = value
    return hist, gauges
def p99(prev, cur):
    les = sorted(cur)
    total = cur[les[-1]] - prev.get(les[-1], 0)
    if total <= 0:
        return None, 0
    for le in les:
        if cur[le] - prev.get(le, 0) >= 0.99 * total:
            return le, total
    return les[-1], total
snaps = sorted(glob.glob(os.path.join(d, 'metrics.*')), key=lambda p: int(p.rsplit('.', 1)[1]))
prev = None
print('min  t_s   rss_MiB  acked  ack_p99<=s  fills  fill_p99<=s  cpu_ms/signal(svc+pg)  lags (events), refused halted')
for path in snaps:
    n = int(path.rsplit('.', 1)[1])
    hist, gauges = parse(path)
    if prev is not None:
        ack, acked = p99(prev.get('ledgerhook_webhook_ack_seconds', {}), hist.get('ledgerhook_webhook_ack_seconds', {1: 0}))
        fill, fills = p99(prev.get('ledgerhook_signal_to_fill_seconds', {}), hist.get('ledgerhook_signal_to_fill_seconds', {1: 0}))
        t, kb, svc, pg = rss.get(n, (0, 0, 0, 0))
        _, _, svc0, pg0 = rss.get(n - 1, (0, 0, 0, 0))
        cpu = f'{(svc - svc0) * 10 / acked:.2f}+{(pg - pg0) * 10 / acked:.2f}' if acked and svc else '-'
        lags = ' '.join(f'{k}={int(v)}' for k, v in sorted(gauges.items()))
        print(f'{n:3d} {t:5d} {kb/1024:8.1f} {int(acked):6d} {ack!s:>11} {int(fills):6d} {fill!s:>12}  {cpu:>21}  {lags}')
    prev = hist
