#!/usr/bin/env python3
"""Instance-level metrics once per instance: queries per minute before and after.
Prints figures, never passes or fails.

  python3 bench/instance_level.py [--dbs 20] [--preset exhaustive] [--duration 120]
                                  [--interval-scale 0.1] [--binary build/pgreaper]

One local PostgreSQL 15 with --dbs databases, watched by one postgres-continuous-discovery
entry with the preset; run twice, with instance sharing (the default) and with
--no-instance-sharing (every source fetches every metric, as pgwatch does above its 30 s
cache limit). Over the same steady window after every discovered source is connected:
metric queries pgreaper sent per minute, transactions the server counted per minute
(every database), results stored per minute (the same in both runs: nothing is lost),
results shared instead of fetched, and the CPU of pgreaper's backends. Intervals are
multiplied by --interval-scale (0.1: a 60 s metric runs every 6 s); per-minute figures
are also given at the preset's real intervals (divided back by the scale).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
sys.path.insert(0, HERE)
from core import fetch, pprof_port, proc_cpu  # noqa: E402
from pgharness import Postgres, Reaper, backend_pids  # noqa: E402


def server_xacts(pg, dbs):
    out = pg.psql("select sum(xact_commit + xact_rollback) from pg_stat_database "
                  "where datname like 'inst%'")
    return int(out.strip() or 0)


def backends_cpu(pg):
    total = 0.0
    for pid in backend_pids(pg):
        try:
            total += proc_cpu(pid)
        except OSError:
            pass
    return total


def counters(port):
    v = json.loads(fetch(port, '/debug/vars'))['reaper']
    return v


def run(args, pg, dbs, extra):
    src = ('- name: srv\n  kind: postgres-continuous-discovery\n  conn_str: "%s"\n'
           '  include_pattern: "^inst"\n  preset_metrics: %s\n' % (pg.conn_str(), args.preset))
    r = Reaper(args.binary, src, args=['--sink', 'jsonfile:///dev/null', '--pprof-addr',
                                       '127.0.0.1:0', '--interval-scale',
                                       str(args.interval_scale)] + extra)
    r.out = '/dev/null'
    r.start()
    deadline = time.time() + 60
    r.wait_log('(port ', 30)
    port = pprof_port(r)
    while time.time() < deadline:
        v = counters(port)
        if v['sources_live'] >= len(dbs) and v['connects'] >= len(dbs):
            break
        time.sleep(0.5)
    time.sleep(2 * args.interval_scale * 60)  # past the first fetch of every metric
    v0, x0, c0, t0 = counters(port), server_xacts(pg, dbs), backends_cpu(pg), time.time()
    time.sleep(args.duration)
    v1, x1, c1, t1 = counters(port), server_xacts(pg, dbs), backends_cpu(pg), time.time()
    r.stop()
    m = (t1 - t0) / 60
    return {
        'queries': (v1['queries'] - v0['queries']) / m,
        'xacts': (x1 - x0) / m,
        'stored': (v1['fetches_ok'] + v1['instance_results_shared']
                   - v0['fetches_ok'] - v0['instance_results_shared']) / m,
        'shared': (v1['instance_results_shared'] - v0['instance_results_shared']) / m,
        'errors': (v1['fetch_errors'] - v0['fetch_errors']) / m,
        'cpu_ms': (c1 - c0) * 1000 / m,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--dbs', type=int, default=20)
    ap.add_argument('--preset', default='exhaustive')
    ap.add_argument('--duration', type=float, default=120)
    ap.add_argument('--interval-scale', type=float, default=0.1)
    ap.add_argument('--binary', default=os.path.join(HERE, '..', 'build', 'pgreaper'))
    args = ap.parse_args()
    pg = Postgres('instlevel', extra_conf={'max_connections': str(args.dbs + 50)})
    dbs = ['inst%02d' % i for i in range(args.dbs)]
    for db in dbs:
        pg.psql('create database %s' % db)
    after = run(args, pg, dbs, [])
    before = run(args, pg, dbs, ['--no-instance-sharing'])
    pg.cleanup()
    print('%d databases, one discovery entry, preset %s, interval scale %g, %g s window'
          % (args.dbs, args.preset, args.interval_scale, args.duration))
    print('%-34s %12s %12s %8s' % ('per minute', 'every source', 'shared', 'ratio'))
    for k, label in (('queries', 'metric queries sent'), ('xacts', 'server transactions'),
                     ('stored', 'results stored'), ('shared', 'results shared, not fetched'),
                     ('errors', 'fetch errors'), ('cpu_ms', 'backend CPU ms')):
        ratio = after[k] / before[k] if before[k] else float('nan')
        print('%-34s %12.1f %12.1f %8.2f' % (label, before[k], after[k], ratio))
    s = args.interval_scale
    print('at the preset\'s real intervals: %.1f -> %.1f metric queries per minute'
          % (before['queries'] * s, after['queries'] * s))


main()
