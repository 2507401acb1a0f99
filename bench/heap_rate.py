#!/usr/bin/env python3
"""Can the heap profile compare the two modes? For each heap sample rate, `pgreaper
compare` runs --mode=batch and --mode=per-metric side by side (same sources, same
preset); the difference of their heap profiles' inuse_space (what `go tool pprof
-diff_base batch.heap per-metric.heap` totals) is set against the exact difference of
HeapAlloc read as each profile was taken (the profiles' own "exact:" comments): right
sign, and error as a share of the exact difference; and each snapshot's own error (its
inuse_space against the HeapAlloc read with it). Also prints each mode's CPU per
1,000 fetches, to see what sampling costs. Figures only; never passes or fails.

  python3 bench/heap_rate.py [--rates 0,524288,65536,16384,4096] [--rounds 2]
                             [--sources 6] [--duration 1m]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
sys.path.insert(0, HERE)
from core import setup_databases  # noqa: E402
from pgharness import Postgres  # noqa: E402


def profile_figures(path):
    """(inuse_space total, exact HeapAlloc) of one saved heap profile."""
    out = subprocess.run(['go', 'tool', 'pprof', '-top', '-sample_index=inuse_space',
                          '-unit=B', path], capture_output=True, text=True).stdout
    total = re.search(r'of (\d+)B? total', out)
    exact = re.search(r'exact: HeapAlloc=(\d+)', out)
    return (int(total.group(1)) if total else 0, int(exact.group(1)) if exact else 0)


def one_run(a, rate, sources, d):
    out = os.path.join(d, 'r%d' % rate)
    env = dict(os.environ, PGREAPER_HEAP_SAMPLE_RATE=str(rate))
    r = subprocess.run([a.binary, 'compare', '--sources', sources, '--duration', a.duration,
                        '--interval-scale', a.interval_scale, '--format', 'json',
                        '--output', out], capture_output=True, text=True, env=env)
    try:
        j = json.loads(r.stdout[r.stdout.index('{'):])
    except ValueError:
        print('compare failed: %s' % (r.stderr or r.stdout)[-500:])
        return None
    b = profile_figures(os.path.join(out, 'batch.heap.pb.gz'))
    p = profile_figures(os.path.join(out, 'per-metric.heap.pb.gz'))
    cpu = [j['modes'][m]['cpu_ms_per_1000_fetches'] for m in ('batch', 'per-metric')]
    return b, p, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rates', default='0,524288,65536,16384,4096')
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--sources', type=int, default=6)
    ap.add_argument('--duration', default='1m')
    ap.add_argument('--interval-scale', default='0.0167')
    ap.add_argument('--preset', default='standard')
    ap.add_argument('--binary', default=os.path.join(HERE, '..', 'build', 'pgreaper'))
    a = ap.parse_args()
    pg = Postgres('heaprate', extra_conf={'max_connections': '400'})
    setup_databases(pg, a.sources, 30)
    d = tempfile.mkdtemp(prefix='heaprate.')
    sources = os.path.join(d, 'sources.yaml')
    with open(sources, 'w') as f:
        f.write(''.join('- name: src%d\n  conn_str: %s\n  preset_metrics: %s\n'
                        % (i + 1, pg.conn_str('bench%d' % (i + 1)), a.preset)
                        for i in range(a.sources)))
    print('heap sample rate vs the exact heap difference per-metric - batch '
          '(%d sources, preset %s, %s a mode)' % (a.sources, a.preset, a.duration))
    print('%8s %5s %12s %12s %7s %7s %8s %8s %9s %9s' % (
        'rate', 'round', 'exact diff', 'profile diff', 'sign', 'error', 'batch', 'p-m',
        'batch ms', 'p-m ms'))
    for rate in [int(x) for x in a.rates.split(',')]:
        for k in range(a.rounds):
            res = one_run(a, rate, sources, d)
            if not res:
                continue
            (bt, be), (pt, pe), cpu = res
            exact, prof = pe - be, pt - bt
            ok = 'right' if (exact > 0) == (prof > 0) else 'WRONG'
            err = 100.0 * (prof - exact) / abs(exact) if exact else float('nan')
            own = ['%+7.0f%%' % (100.0 * (t - e) / e) if rate and e else '       -'
                   for t, e in ((bt, be), (pt, pe))]
            print('%8d %5d %12d %12d %7s %6.0f%% %s %s %9.1f %9.1f' % (
                rate, k + 1, exact, prof, ok if rate else '-', err if rate else 0, own[0], own[1],
                cpu[0], cpu[1]))
            sys.stdout.flush()
    pg.cleanup()


if __name__ == '__main__':
    main()
