#!/usr/bin/env python3
"""Prometheus sink benchmark: what a scrape costs. Prints figures, never passes or fails.

  python3 bench/prom_sink.py [--sources 100] [--preset exhaustive] [--scrapes 20]
                             [--interval-scale 0.05] [--warmup 90] [--binary build/pgreaper]

N sources spread over 6 databases of one local PostgreSQL 15 run the preset (intervals
scaled, so that every metric has been fetched within the warm-up), writing to
prometheus://127.0.0.1:PORT/pgwatch. After the warm-up (or once the page stops growing)
the benchmark scrapes /metrics --scrapes times, one after the other, and prints: the
page's size, series and families, the time to the last byte per scrape (median, max),
pgreaper's CPU per scrape (CPU over the scrapes minus the same idle window's), the bytes
the sink keeps, and RSS.
"""
import argparse
import os
import re
import socket
import statistics
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
sys.path.insert(0, HERE)
from core import proc_cpu  # noqa: E402
from pgharness import Postgres, Reaper, proc_status_kb  # noqa: E402

DBS = 6


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def get(port, path='/metrics'):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=60) as r:
        return r.read().decode()


def sample(text, name):
    """The prometheus sink's sample of family name (the harness adds a jsonfile sink)."""
    m = re.search(r'^%s\{sink="prometheus:[^}]*\} (\S+)' % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--sources', type=int, default=100)
    ap.add_argument('--preset', default='exhaustive')
    ap.add_argument('--scrapes', type=int, default=20)
    ap.add_argument('--interval-scale', default='0.05')
    ap.add_argument('--warmup', type=int, default=90, help='seconds, at most')
    ap.add_argument('--binary', default=os.path.join(HERE, '..', 'build', 'pgreaper'))
    a = ap.parse_args()
    pg = Postgres('promsink', extra_conf={'max_connections': str(a.sources + 50)})
    for i in range(DBS):
        pg.psql('create database db%d' % i)
    sources = ''.join('- name: s%03d\n  conn_str: %s\n  preset_metrics: %s\n'
                      % (i, pg.conn_str(db='db%d' % (i % DBS)), a.preset)
                      for i in range(a.sources))
    port, mport = free_port(), free_port()
    r = Reaper(a.binary, sources,
               args=['--sink', 'prometheus://127.0.0.1:%d/pgwatch' % port,
                     '--metrics-addr', '127.0.0.1:%d' % mport,
                     '--interval-scale', a.interval_scale])
    r.out = '/dev/null'
    r.start()
    pid = r.proc.pid
    while not r.wait_log('serving /metrics on 127.0.0.1:%d' % port, 1):
        pass
    t0, last, steady = time.time(), -1, 0
    while time.time() - t0 < a.warmup and steady < 3:
        n = get(port).count('\n')
        steady = steady + 1 if n == last else 0
        last = n
        time.sleep(5)
    idle0 = proc_cpu(pid)
    time.sleep(2.0)
    idle = (proc_cpu(pid) - idle0) / 2.0  # CPU seconds a second without scrapes
    times, sizes = [], []
    cpu0, w0 = proc_cpu(pid), time.time()
    for _ in range(a.scrapes):
        t = time.time()
        page = get(port)
        times.append(time.time() - t)
        sizes.append(len(page))
    cpu = proc_cpu(pid) - cpu0 - idle * (time.time() - w0)
    own = get(mport)
    series = len([x for x in page.splitlines() if x and not x.startswith('#')])
    families = page.count('# TYPE ')
    rss = proc_status_kb(pid, 'VmRSS')
    rc = r.stop(timeout=60)
    print('pgreaper Prometheus sink benchmark: %d sources, preset %s, intervals x%s, %s '
          '(exit %s)' % (a.sources, a.preset, a.interval_scale, os.path.relpath(a.binary), rc))
    rows = [
        ('page size', '%.1f KiB' % (statistics.median(sizes) / 1024)),
        ('series / families', '%d / %d' % (series, families)),
        ('scrape time median / max', '%.1f ms / %.1f ms' % (1e3 * statistics.median(times),
                                                            1e3 * max(times))),
        ('pgreaper CPU per scrape', '%.1f ms' % (1e3 * max(cpu, 0) / a.scrapes)),
        ('kept by the sink', '%.1f MiB' % ((sample(own, 'pgreaper_sink_buffered_bytes') or 0)
                                           / 2**20)),
        ('rows dropped', '%d' % (sample(own, 'pgreaper_sink_rows_dropped_total') or 0)),
        ('RSS', '%.1f MiB' % (rss / 1024)),
    ]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print('  %-*s  %s' % (w, k, v))
    pg.cleanup()


if __name__ == '__main__':
    main()
