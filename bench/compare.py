#!/usr/bin/env python3
"""Before and after: batch mode vs per-metric mode on a throwaway local PostgreSQL 15.

1. `pgreaper compare` for N sources (one database each, 30 user tables) running the
   largest built-in preset with intervals scaled to 1-5 s, both modes side by side.
2. A scale run of batch mode alone at 6, 60 and 600 sources (sources spread over the same
   databases; the server's max_connections raised), reloading the sources file between
   steps: threads, tasks, RSS and live heap per step.

Prints figures; never passes or fails on them. Usage:
  python3 bench/compare.py [--sources 6] [--duration 3m] [--scale 6,60,600]
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
sys.path.insert(0, HERE)
from core import setup_databases  # noqa: E402
from pgharness import Postgres, Reaper, proc_status_kb  # noqa: E402


def sources_yaml(pg, n, ndb, preset):
    return ''.join('- name: src%d\n  conn_str: %s\n  preset_metrics: %s\n'
                   % (i + 1, pg.conn_str('bench%d' % (i % ndb + 1)), preset) for i in range(n))


def get_json(port, path):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=60) as f:
        return json.loads(f.read())


def run_compare(a, pg, binary, d):
    path = os.path.join(d, 'sources.yaml')
    with open(path, 'w') as f:
        f.write(sources_yaml(pg, a.sources, a.sources, a.preset))
    cmd = [binary, 'compare', '--sources', path, '--duration', a.duration,
           '--interval-scale', a.interval_scale, '--output', os.path.join(d, 'profiles')]
    print('$ pgreaper compare --sources sources.yaml --duration %s --interval-scale %s'
          % (a.duration, a.interval_scale))
    sys.stdout.flush()
    subprocess.run(cmd, check=False)


def scale_step(r, port, n, pg, ndb, preset):
    r.write_sources(sources_yaml(pg, n, ndb, preset))
    r.send(signal.SIGHUP)
    deadline = time.time() + 120
    while time.time() < deadline:
        v = get_json(port, '/debug/vars')
        if v['reaper']['sources_live'] == n and v['reaper']['connects'] >= n:
            break
        time.sleep(1)
    time.sleep(5)
    v = get_json(port, '/debug/vars')
    pid = r.proc.pid
    return (n, proc_status_kb(pid, 'Threads'), v['process']['tasks'],
            proc_status_kb(pid, 'VmRSS') / 1024.0, v['memstats']['HeapAlloc'] / 2**20,
            v['reaper']['connects'])


def run_scale(a, pg, binary):
    steps = [int(x) for x in a.scale.split(',')]
    r = Reaper(binary, sources_yaml(pg, 1, a.sources, a.preset),
               args=['--pprof-addr', '127.0.0.1:0', '--interval-scale', '1'])
    r.out = '/dev/null'
    r.start()
    r.wait_log('pprof: serving')
    port = int(re.search(r'\(port (\d+)\)', r.log()).group(1))
    print('\nbatch mode at scale (preset %s, normal intervals, one process, reloads between '
          'steps):\n' % a.preset)
    print('| sources | threads | event-loop tasks | RSS | live heap | RSS per source |')
    print('|---|---|---|---|---|---|')
    for n in steps:
        n, threads, tasks, rss, heap, _ = scale_step(r, port, n, pg, a.sources, a.preset)
        print('| %d | %d | %d | %.1f MiB | %.2f MiB | %.0f KiB |'
              % (n, threads, tasks, rss, heap, rss * 1024 / n))
        sys.stdout.flush()
    r.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--sources', type=int, default=6)
    ap.add_argument('--duration', default='3m')
    ap.add_argument('--interval-scale', default='0.0167')
    ap.add_argument('--preset', default='standard')
    ap.add_argument('--scale', default='6,60,600')
    ap.add_argument('--binary', default=os.path.join(HERE, '..', 'build', 'pgreaper'))
    a = ap.parse_args()
    top = max(int(x) for x in a.scale.split(',')) if a.scale else a.sources
    pg = Postgres('cmpbench', {'max_connections': str(max(100, top + 4 * a.sources + 20)),
                               'track_io_timing': 'on'})
    setup_databases(pg, a.sources, 30)
    d = tempfile.mkdtemp(prefix='rp-cmpbench-')
    run_compare(a, pg, a.binary, d)
    if a.scale:
        run_scale(a, pg, a.binary)
    pg.cleanup()


if __name__ == '__main__':
    main()
