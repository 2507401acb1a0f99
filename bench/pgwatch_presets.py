#!/usr/bin/env python3
"""Which metrics of a pgwatch preset collect under pgreaper, and why the others do not.

Runs pgreaper with a pgwatch metrics file (for instance pgwatch's own
internal/metrics/metrics.yaml) against a throwaway PostgreSQL 15 that holds a table, an
index and a function, for --seconds with every interval scaled down, and prints per
metric of each preset: rows stored, and the first log line about it.

    python3 bench/pgwatch_presets.py --metrics metrics.yaml --preset exhaustive --preset full
"""
import argparse
import collections
import os
import re
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
from pgharness import Postgres, Reaper  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--metrics', required=True)
    ap.add_argument('--preset', action='append', required=True)
    ap.add_argument('--seconds', type=float, default=40)
    ap.add_argument('--binary', default=os.path.join(HERE, '..', 'build', 'pgreaper'))
    a = ap.parse_args()
    with open(a.metrics) as f:
        text = f.read()
    presets = yaml.safe_load(text)['presets']
    pg = Postgres('pgwatch_presets')
    pg.psql('create table t (id int primary key, v text); insert into t select g, g::text '
            'from generate_series(1, 1000) g; create function f() returns int language sql '
            'as $$select 1$$; analyze t')
    for preset in a.preset:
        src = '- name: db1\n  conn_str: %s\n  preset_metrics: %s\n' % (pg.conn_str(), preset)
        r = Reaper(a.binary, src, text, args=['--interval-scale', '0.02']).start()
        time.sleep(a.seconds)
        r.stop()
        log = r.log()
        rows = collections.Counter()
        for b in r.batches():
            rows[b['metric']] += len(b['data'])
        first = {}
        for line in log.splitlines():
            m = re.search(r'metric=(\w+): (.*)', line)
            if m and m.group(1) not in first:
                first[m.group(1)] = m.group(2)[:110]
        names = sorted(presets[preset]['metrics'])
        ok = [n for n in names if rows[n]]
        print('\n## preset %s: %d of %d metrics stored rows in %.0f s' % (preset, len(ok),
              len(names), a.seconds))
        print('| metric | rows | first log line |')
        print('|---|---|---|')
        for n in names:
            print('| %s | %d | %s |' % (n, rows[n], first.get(n, '')))
        print('log: %d ERROR lines, %d WARNING lines' % (log.count('ERROR:'),
                                                        log.count('WARNING:')))
        for line in log.splitlines():
            if 'ERROR:' in line:
                print('    ' + line[:200])


if __name__ == '__main__':
    main()
