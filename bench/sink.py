#!/usr/bin/env python3
"""PostgreSQL sink throughput: N synthetic rows (20 fields, 3 tags, 2 custom tags) through
the real sink into a local PostgreSQL 15. Prints rows/s, MB/s, pgreaper CPU per 100k rows
and the server's CPU for the same rows. Figures, never pass/fail.

  python3 bench/sink.py [--rows 1000000] [--binary-dir build]
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
from pgharness import Postgres  # noqa: E402


def server_cpu(pg):
    """CPU seconds of the whole server: postmaster, its children, and reaped children."""
    with open(os.path.join(pg.data, 'postmaster.pid')) as f:
        pm = int(f.readline())
    tick = os.sysconf('SC_CLK_TCK')
    total = 0.0
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        ppid = int(fields[1])
        if int(pid) == pm:
            total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
        elif ppid == pm:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rows', type=int, default=1000000)
    ap.add_argument('--per-batch', type=int, default=500)
    ap.add_argument('--binary-dir', default=os.path.join(HERE, '..', 'build'))
    a = ap.parse_args()
    pg = Postgres('sinkbench', {'max_wal_size': "'2GB'", 'checkpoint_timeout': "'30min'"})
    pg.psql('create database metrics')
    uri = 'postgresql:///metrics?host=%s&port=%d&user=postgres' % (pg.sock, pg.port)
    binary = os.path.join(a.binary_dir, 'bench', 'sink_bench')
    before = server_cpu(pg)
    out = subprocess.run([binary, uri, str(a.rows), str(a.per_batch)], capture_output=True,
                         text=True)
    after = server_cpu(pg)
    if out.returncode != 0:
        print(out.stdout, out.stderr)
        sys.exit(1)
    f = dict(kv.split('=') for kv in out.stdout.split())
    rows, secs, cpu = int(f['written']), float(f['seconds']), float(f['cpu'])
    mb = int(f['bytes']) / 2**20
    server = after - before
    stored = pg.psql('select count(*) from public.sink_bench', db='metrics')
    size = pg.psql("select pg_size_pretty(sum(pg_total_relation_size(inhrelid))) from pg_inherits "
                   "where inhparent = 'public.sink_bench'::regclass", db='metrics')
    print('PostgreSQL sink throughput: %d rows of 20 fields + 3 tags (+2 custom tags), '
          'batches of %d, binary COPY' % (a.rows, a.per_batch))
    rows_out = [
        ('rows written / stored / dropped', '%d / %s / %s' % (rows, stored, f['dropped'])),
        ('COPY statements', f['copies']),
        ('elapsed', '%.2f s' % secs),
        ('rows per second', '%.0f' % (rows / secs)),
        ('COPY data', '%.1f MiB (%.1f MiB/s, %.0f bytes/row)' % (mb, mb / secs,
                                                                 int(f['bytes']) / rows)),
        ('pgreaper sink CPU', '%.3f s (%.1f ms per 100k rows)' % (cpu, cpu / rows * 1e8)),
        ('PostgreSQL server CPU', '%.3f s (%.1f ms per 100k rows)' % (server,
                                                                      server / rows * 1e8)),
        ('pgreaper CPU / server CPU', '%.1f %%' % (100 * cpu / server if server else 0)),
        ('table size on disk', size.strip()),
    ]
    w = max(len(k) for k, _ in rows_out)
    for k, v in rows_out:
        print('  %-*s  %s' % (w, k, v))


if __name__ == '__main__':
    main()
