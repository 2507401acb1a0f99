#!/usr/bin/env python3
"""The chaos run of tests/lib/chaos.py for a long time (default 30 minutes) on a normal
(optimized) build: three real servers, one standby promoted half-way, a PostgreSQL sink
behind a connection-cutting proxy, misbehaving metrics, restarts, kills, reloads and
profile requests. Prints figures, never passes or fails.

  python3 bench/chaos.py [--duration 1800] [--binary build/pgreaper] [--seed 1]

Figures: faults injected by kind, cuts of the sink connection (after commit, mid-COPY),
file descriptors and RSS (max in the first third, max after, at the end), rows in each
sink and the reconciliation (lost, duplicated, extra), and pgreaper's exit summary.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
from chaos import Chaos  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--duration', type=float, default=1800)
    ap.add_argument('--binary', default=os.path.join(HERE, '..', 'build', 'pgreaper'))
    ap.add_argument('--seed', type=int, default=1)
    a = ap.parse_args()
    rep = Chaos(a.binary, a.duration, seed=a.seed).run()
    tail = rep.pop('log_tail')
    s = rep.pop('summary')
    print(json.dumps(rep, indent=2, sort_keys=True))
    print('summary:', ' '.join('%s=%s' % kv for kv in sorted(s.items())))
    if rep['rc'] != 0 or rep['sanitizer']:
        print(tail)


if __name__ == '__main__':
    main()
