"""Options that change what runs or how: --group, --no-prepared (flag and per-source key,
checked in the libpq trace), --log-format logfmt."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

METRICS = '''
metrics:
  m:
    sqls:
      10: select 1 as one
'''

SOURCES = '''
- name: in_a
  group: a
  conn_str: {conn}
  custom_metrics: {{m: 1}}
- name: in_b
  group: b
  conn_str: {conn}
  custom_metrics: {{m: 1}}
- name: in_default
  conn_str: {conn}
  custom_metrics: {{m: 1}}
  no_prepared: true
'''


def main():
    t = Tap()
    pg = Postgres('options')
    trace = os.path.join(pg.root, 'trace')
    os.mkdir(trace)
    src = SOURCES.format(conn=pg.conn_str())

    r = Reaper(sys.argv[1], src, METRICS, args=['--group', 'a', '--group', 'default',
                                                 '--libpq-trace', trace,
                                                 '--log-format', 'logfmt']).start()
    t.ok(r.wait_batches('m', 'in_a', 2) and r.wait_batches('m', 'in_default', 2),
         'selected groups run', r.log())
    time.sleep(1)
    t.is_(r.stop(), 0, 'exit 0')
    t.is_(len(r.batches('m', 'in_b')), 0, '--group leaves other groups out')
    with open(os.path.join(trace, 'in_a.trace')) as f:
        a = f.read()
    with open(os.path.join(trace, 'in_default.trace')) as f:
        d = f.read()
    t.ok('Parse\t' in a.replace(' ', '\t') and '"rp_' in a, 'prepared statements by default')
    t.ok('"rp_' not in d, 'no_prepared: true sends unnamed statements')
    lines = [ln for ln in r.log().splitlines() if ln]
    t.ok(lines and all(ln.startswith('time=') and ' level=' in ln and ' msg=' in ln
                       for ln in lines), '--log-format logfmt: every line is logfmt', lines[:3])
    t.ok(any('source=in_a msg="connected to source' in ln for ln in lines),
         'logfmt carries the source as a field', lines[:5])

    r = Reaper(sys.argv[1], src, METRICS, args=['--no-prepared', '--libpq-trace', trace,
                                                 '--group', 'b']).start()
    t.ok(r.wait_batches('m', 'in_b', 2), 'group b runs', r.log())
    t.is_(r.stop(), 0, 'exit 0')
    with open(os.path.join(trace, 'in_b.trace')) as f:
        t.ok('"rp_' not in f.read(), '--no-prepared sends unnamed statements')
    t.done()


if __name__ == '__main__':
    main()
