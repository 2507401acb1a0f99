"""--sink-spool: rows accepted by the PostgreSQL sink survive SIGKILL. (1) The sink is
down, pgreaper collects, then is killed with SIGKILL; the next pgreaper on the same spool
writes every one of those rows. (2) pgreaper is killed with SIGKILL again and again while
COPYs flow (some cut off between commit and acknowledgement): after the last clean stop
the sink holds every row once. The jsonfile sinks of the runs are the ground truth (they
buffer up to a second, so a SIGKILL may take rows from them that the spool kept)."""
import os
import random
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

METRICS = '''
metrics:
  rows:
    sqls:
      10: |
        select (extract(epoch from clock_timestamp()) * 1e9)::int8 as epoch_ns, g as n
          from generate_series(1, 500) g
'''
SOURCES = '''
- name: src
  conn_str: {conn}
  custom_metrics: {{rows: 1}}
'''


def sink_uri(pg):
    return 'host=%s port=%d user=postgres dbname=metrics' % (pg.sock, pg.port)


def json_keys(runs):
    keys = set()
    for r in runs:
        for b in r.batches('rows'):
            for row in b['data']:
                keys.add((row['epoch_ns'] // 1000, row['n']))
    return keys


def sink_keys(pg):
    out = pg.psql("select (extract(epoch from time) * 1e6)::int8, data->>'n' from public.rows",
                  db='metrics')
    rows = [tuple(int(x) for x in line.split('|')) for line in out.splitlines()]
    return rows


def run(binary, src, sink, spool, extra=()):
    return Reaper(binary, SOURCES.format(conn=src.conn_str()), METRICS,
                  args=['--sink', sink_uri(sink), '--sink-spool', spool,
                        '--batching-delay', '200ms'] + list(extra)).start()


def main():
    t = Tap()
    src = Postgres('spsrc')
    sink = Postgres('spsink')
    sink.psql('create database metrics')
    spool = tempfile.mkdtemp(prefix='rp-spool-')

    # 1. Sink down, SIGKILL, restart with the sink up.
    sink.stop('fast')
    r1 = run(sys.argv[1], src, sink, spool)
    t.ok(r1.wait_batches('rows', count=5, timeout=30), 'collects while the sink is down',
         r1.log())
    time.sleep(1.5)  # the spool syncs every batching delay
    r1.kill()
    sink.start()
    r2 = run(sys.argv[1], src, sink, spool)
    t.ok(r2.wait_log('from the spool in', 20), 'the spool is replayed at start', r2.log())
    t.ok(r2.wait_log('schema ready', 20), 'sink ready')
    time.sleep(3)
    t.is_(r2.stop(), 0, 'exit 0')
    got = sink_keys(sink)
    want1 = json_keys([r1])
    replayed = r2.summary().get('sink_rows_replayed', -1)
    t.ok(len(want1) >= 2000, 'the first run collected %d rows the sink never saw' % len(want1))
    t.ok(want1 <= set(got), 'every row of the killed run is in the sink',
         'missing %d' % len(want1 - set(got)))
    t.ok(replayed >= len(want1), 'replayed %d rows (jsonfile had %d)' % (replayed, len(want1)))
    t.is_(len(got), len(set(got)), 'no row twice')
    up = int(sink.psql('select count(*) from public.instance_up', db='metrics'))
    t.is_(len(got) + up, replayed + len(json_keys([r2])) + len(r2.batches('instance_up')),
          'the sink holds the replayed rows and the new ones, nothing else')

    # 2. SIGKILL again and again while COPYs flow.
    runs = []
    rnd = random.Random(3)
    for i in range(6):
        r = run(sys.argv[1], src, sink, spool)
        runs.append(r)
        r.wait_batches('rows', count=2, timeout=20)
        time.sleep(rnd.uniform(0.5, 2.0))
        r.proc.send_signal(signal.SIGKILL)
        r.proc.wait()
    last = run(sys.argv[1], src, sink, spool)
    runs.append(last)
    t.ok(last.wait_log('schema ready', 20), 'the last run connects')
    time.sleep(3)
    t.is_(last.stop(), 0, 'last run exits 0')
    got = sink_keys(sink)
    t.is_(len(got) - len(set(got)), 0, 'after 6 SIGKILLs mid-flow: no row twice (%d rows)'
          % len(got))
    want = json_keys(runs)
    t.ok(want <= set(got), 'every row any run reported is in the sink',
         'missing %d' % len(want - set(got)))
    t.is_(last.summary().get('sink_rows_spooled', -1), 0, 'nothing left in the spool')
    t.ok(sum(os.path.getsize(os.path.join(spool, f)) for f in os.listdir(spool)) < 1 << 20,
         'the spool shrank back after the rows were written')
    t.done()


if __name__ == '__main__':
    main()
