#!/usr/bin/env python3
"""Fleet benchmark: many sources on one machine. Prints figures, never passes or fails.

  python3 bench/fleet.py --real 1000 [--duration 120] [--binary build/pgreaper]
  python3 bench/fleet.py --fake 10000 [--duration 120]

--real N: N sources spread over 6 databases of one local PostgreSQL 15 (max_connections
N + 50) on its unix socket. --fake N: N sources on bench/fakepg (a stand-in server that
answers every query with canned rows, one process, one loop), so that pgreaper's own
cost at a fleet size no machine's PostgreSQL would serve can be measured. Both use the
given preset (default: standard) at its normal intervals and a jsonfile sink on
/dev/null.

Figures: time until every source is connected, failed connection attempts, pgreaper's
threads, RSS (total and per source), CPU in the steady window, fetches and errors,
cancels, tick lateness p50/p99 from the moment all are connected (/debug/vars), and the
server's backends (--real).
"""
import argparse
import json
import re
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
sys.path.insert(0, HERE)
from core import fetch, percentile, pprof_port, proc_cpu, smaps  # noqa: E402
from pgharness import Postgres, Reaper, backend_pids, proc_status_kb  # noqa: E402

DBS = 6


def real_server(n):
    pg = Postgres('fleet', extra_conf={'max_connections': str(n + 50),
                                       'shared_buffers': '128MB'})
    for i in range(DBS):
        pg.psql('create database fleet%d' % i)
    conns = [pg.conn_str(db='fleet%d' % (i % DBS)) for i in range(n)]
    return pg, conns, None


def fake_server(n, build):
    d = tempfile.mkdtemp(prefix='rp-fakepg-')
    proc = subprocess.Popen([os.path.join(build, 'bench', 'fakepg'), d, '5999'],
                            stderr=subprocess.DEVNULL)
    for _ in range(50):
        if os.path.exists(os.path.join(d, '.s.PGSQL.5999')):
            break
        time.sleep(0.1)
    conns = ['host=%s port=5999 user=fleet dbname=fleet%d' % (d, i % DBS) for i in range(n)]
    return None, conns, proc


def reaper_vars(port):
    return json.loads(fetch(port, '/debug/vars'))['reaper']


def main():
    ap = argparse.ArgumentParser()
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument('--real', type=int, metavar='N')
    g.add_argument('--fake', type=int, metavar='N')
    ap.add_argument('--duration', type=int, default=120, help='steady window, seconds')
    ap.add_argument('--connect-wait', type=int, default=300,
                    help='give up waiting for all connections after SECONDS')
    ap.add_argument('--preset', default='standard')
    ap.add_argument('--binary', default=os.path.join(HERE, '..', 'build', 'pgreaper'))
    ap.add_argument('--extra', default='', help='more pgreaper flags')
    ap.add_argument('--heap-profile', metavar='FILE',
                    help='save /debug/pprof/heap at the end of the window (go tool pprof '
                         '-sample_index=inuse_space -top FILE: where the per-source bytes are)')
    a = ap.parse_args()
    n = a.real or a.fake
    build = os.path.dirname(os.path.abspath(a.binary))
    if a.real:
        pg, conns, fake = real_server(n)
    else:
        pg, conns, fake = fake_server(n, os.path.join(HERE, '..', 'build'))
    sources = ''.join('- name: s%05d\n  conn_str: %s\n  preset_metrics: %s\n'
                      % (i, c, a.preset) for i, c in enumerate(conns))
    r = Reaper(a.binary, sources, args=['--sink', 'jsonfile:///dev/null',
                                        '--pprof-addr', '127.0.0.1:0'] + a.extra.split())
    r.out = '/dev/null'
    t0 = time.time()
    r.start()
    pid = r.proc.pid
    while not r.wait_log('(port ', 1):
        pass
    port = pprof_port(r)
    connected_at = None
    peak_wait = 0
    while time.time() - t0 < a.connect_wait:
        v = reaper_vars(port)
        peak_wait = max(peak_wait, v.get('connect_queue', 0))
        if v['connects'] >= n:
            connected_at = time.time() - t0
            break
        time.sleep(0.5)
    v0 = reaper_vars(port)
    v0_alloc = json.loads(fetch(port, '/debug/vars'))['memstats']['TotalAlloc']
    cpu0, w0 = proc_cpu(pid), time.time()
    time.sleep(a.duration)
    v1 = reaper_vars(port)
    cpu1, w1 = proc_cpu(pid), time.time()
    threads, sm, hwm = proc_status_kb(pid, 'Threads'), smaps(pid), proc_status_kb(pid, 'VmHWM')
    mem = json.loads(fetch(port, '/debug/vars'))['memstats']
    if a.heap_profile:
        with urllib.request.urlopen('http://127.0.0.1:%d/debug/pprof/heap' % port) as h, \
                open(a.heap_profile, 'wb') as f:
            f.write(h.read())
    backends = len(backend_pids(pg)) if pg else n
    rc = r.stop(timeout=120)
    errors = {}
    for line in r.log().splitlines():
        if 'ERROR:' in line or 'WARNING:' in line:
            key = re.sub(r'source=\S+ ', '', line.split(' ', 2)[2])[:150]
            errors[key] = errors.get(key, 0) + 1
    if fake:
        fake.kill()
    hist = [b - a_ for a_, b in zip(v0['lateness_ms_hist'], v1['lateness_ms_hist'])]
    cpu, wall = cpu1 - cpu0, w1 - w0
    fetches = (v1['fetches_ok'] + v1['fetch_errors']) - (v0['fetches_ok'] + v0['fetch_errors'])
    rss = sm.get('Rss', 0)
    print('pgreaper fleet benchmark: %d sources (%s), preset %s, %s (exit %s)' % (
        n, 'real PostgreSQL 15' if pg else 'fakepg', a.preset,
        os.path.relpath(a.binary), rc))
    rows = [
        ('all connected after', '%.1f s' % connected_at if connected_at else
         'not within %d s (%d of %d)' % (a.connect_wait, v0['connects'], n)),
        ('failed connection attempts (whole run)', '%d' % v1['connect_failures']),
        ('disconnects / cancels (whole run)', '%d / %s' % (v1['disconnects'],
                                                           v1.get('cancels', 'n/a'))),
        ('deepest admission queue seen', '%d' % peak_wait),
        ('server connections at the end', '%d' % backends),
        ('threads', '%d' % threads),
        ('RSS / per source', '%.1f MiB / %.1f KiB' % (rss / 1024, rss / n)),
        ('peak RSS (VmHWM)', '%.1f MiB' % (hwm / 1024)),
        ('live heap (HeapAlloc) / per source', '%.1f MiB / %.1f KiB' % (
            mem['HeapAlloc'] / 2**20, mem['HeapAlloc'] / 1024 / n)),
        ('allocation rate in window', '%.1f KiB/s' % (
            (mem['TotalAlloc'] - v0_alloc) / 1024 / (w1 - w0))),
        ('steady window', '%.0f s' % wall),
        ('pgreaper CPU in window', '%.2f s (%.1f %% of one core)' % (cpu, 100 * cpu / wall)),
        ('fetches in window (errors)', '%d (%d)' % (fetches, v1['fetch_errors'] -
                                                    v0['fetch_errors'])),
        ('pgreaper CPU per 1,000 fetches', '%.1f ms' % (1e6 * cpu / max(fetches, 1))),
        ('ticks / skipped in window', '%d / %d' % (v1['ticks'] - v0['ticks'],
                                                  v1['skipped_ticks'] - v0['skipped_ticks'])),
        ('tick lateness p50 / p99 after connect', '<= %d ms / <= %d ms' % (
            percentile(hist, 0.5), percentile(hist, 0.99))),
    ]
    w = max(len(k) for k, _ in rows)
    for k, val in rows:
        print('  %-*s  %s' % (w, k, val))
    if errors:
        print('  most frequent log errors and warnings (whole run):')
        for k, c in sorted(errors.items(), key=lambda kv: -kv[1])[:8]:
            print('    %6d  %s' % (c, k))


if __name__ == '__main__':
    main()
