#!/usr/bin/env python3
"""Server cost of COPY text vs binary for the sink's row shape (time, dbname, 20-field
jsonb data, tag_data jsonb, index on (dbname, time)): the server writes the same rows to
a file in each format, then loads each file several times; prints the best times.

  python3 bench/copy_format.py [--rows 300000] [--runs 3]
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
from pgharness import Postgres  # noqa: E402

ROWS = ("select now() - g * interval '1 ms', 'db' || mod(g, 6), "
        "(select jsonb_object_agg('field_' || i, case when i <= 8 then to_jsonb(g * i) "
        "when i <= 14 then to_jsonb(g * 0.25) when i <= 18 then to_jsonb('text value ' || i) "
        "else to_jsonb(mod(g, 2) = 0) end) from generate_series(1, 20) i), "
        "jsonb_build_object('env', 'bench', 'dim0', 'public', 'dim1', 'orders') "
        "from generate_series(1, %d) g")


def timed(pg, sql):
    r = subprocess.run(['psql', '-X', '-q', '-h', pg.sock, '-p', str(pg.port), '-U', 'postgres',
                        '-d', 'postgres', '-c', '\\timing on', '-c', sql],
                       capture_output=True, text=True, check=True)
    return float(re.search(r'Time: ([0-9.]+) ms', r.stdout).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rows', type=int, default=300000)
    ap.add_argument('--runs', type=int, default=3)
    a = ap.parse_args()
    pg = Postgres('copyfmt')
    pg.psql('create table tb (time timestamptz not null, dbname text not null, '
            'data jsonb not null, tag_data jsonb); create index on tb (dbname, time)')
    best = {}
    for fmt in ('text', 'binary'):
        path = os.path.join(pg.root, 'rows.' + fmt)
        pg.psql("copy (%s) to '%s' (format %s)" % (ROWS % a.rows, path, fmt))
        times = []
        for _ in range(a.runs):
            pg.psql('truncate tb')
            times.append(timed(pg, "copy tb from '%s' (format %s)" % (path, fmt)))
        best[fmt] = min(times)
        print('  COPY %-6s %d rows: %s ms (best %.0f ms, %.0f rows/s)' % (
            fmt, a.rows, ' / '.join('%.0f' % x for x in times), best[fmt],
            a.rows / best[fmt] * 1000))
    print('  binary costs the server %.0f %% less than text' %
          (100 * (1 - best['binary'] / best['text'])))


if __name__ == '__main__':
    main()
