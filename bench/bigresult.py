#!/usr/bin/env python3
"""Oversized results: one source runs a metric returning 1,000,000 rows (every 5 s) and
one returning a 100 MB text value (every 7 s); another source runs a 1 s metric. Prints
peak RSS (VmHWM), the largest gap between the other source's rows (how long the loop was
held), the log lines about the results, and the exit summary. Never passes or fails.

  python3 bench/bigresult.py [--duration 40] [--binary build/pgreaper] [--extra "ARGS"]
                             [--rows-only] [--value-mb 100]
"""
import argparse
import os
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
from pgharness import Postgres, Reaper, proc_status_kb  # noqa: E402

METRICS = '''
metrics:
  tick:
    sqls:
      11: select (extract(epoch from clock_timestamp()) * 1e9)::int8 as epoch_ns, 1 as n
  million:
    sqls:
      11: select g as n, 'row ' || g as label from generate_series(1, 1000000) g
  hundred_mb:
    sqls:
      11: select repeat('x', %d * 1024 * 1024) as v
'''
SOURCES = '''
- name: big
  conn_str: {conn}
  custom_metrics: {{million: 5, hundred_mb: 7}}
- name: other
  conn_str: {conn}
  custom_metrics: {{tick: 1}}
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--duration', type=float, default=40)
    ap.add_argument('--binary', default=os.path.join(HERE, '..', 'build', 'pgreaper'))
    ap.add_argument('--extra', default='')
    ap.add_argument('--rows-only', action='store_true', help='leave out the 100 MB value')
    ap.add_argument('--value-mb', type=int, default=100, help='size of the big value')
    a = ap.parse_args()
    pg = Postgres('bigres')
    sources = SOURCES.format(conn=pg.conn_str())
    if a.rows_only:
        sources = sources.replace(', hundred_mb: 7', '')
    r = Reaper(a.binary, sources, METRICS % a.value_mb,
               args=shlex.split(a.extra)).start()
    time.sleep(a.duration)
    hwm = proc_status_kb(r.proc.pid, 'VmHWM')
    rss = proc_status_kb(r.proc.pid, 'VmRSS')
    r.stop()
    ticks = sorted(b['data'][0]['epoch_ns'] for b in r.batches('tick', 'other'))
    gaps = [(y - x) / 1e9 for x, y in zip(ticks, ticks[1:])]
    print('peak RSS (VmHWM): %.1f MiB, RSS at the end: %.1f MiB' % (hwm / 1024, rss / 1024))
    print('other source: %d rows of a 1 s metric, largest gap %.3f s, gaps > 1.1 s: %d'
          % (len(ticks), max(gaps or [0]), sum(1 for g in gaps if g > 1.1)))
    print('rows stored for million: %d, for hundred_mb: %d'
          % (sum(len(b['data']) for b in r.batches('million')), len(r.batches('hundred_mb'))))
    for line in r.log().splitlines():
        if 'too large' in line or 'resetting' in line or 'summary' in line:
            print(line[line.find('Z ') + 2:])


if __name__ == '__main__':
    main()
