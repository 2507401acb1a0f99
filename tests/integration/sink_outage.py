"""The PostgreSQL sink when its server goes away: stopped for 20 s (nothing lost, nothing
twice), a buffer too small for the outage (the drop count equals the rows missing), and
its connection killed mid-COPY (no loss, no duplicates). A jsonfile sink written by the
same process is the ground truth."""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

METRICS = '''
metrics:
  seq:
    sqls:
      10: select (extract(epoch from clock_timestamp()) * 1e9)::int8 as epoch_ns, 1 as one
  bulk:
    sqls:
      10: |
        select (extract(epoch from clock_timestamp()) * 1e9)::int8 as epoch_ns, g as n,
               md5(g::text) as pad
          from generate_series(1, 200) g
  wide:
    sqls:
      10: select repeat('w', 200000) as v
  big:
    sqls:
      10: |
        select (extract(epoch from clock_timestamp()) * 1e9)::int8 as epoch_ns, g as n,
               repeat('y', 64) as pad
          from generate_series(1, 5000) g
'''

SOURCES = '''
- name: src
  conn_str: {conn}
  custom_metrics: {metrics}
'''


def sink_uri(pg):
    return 'postgresql:///metrics?host=%s&port=%d&user=postgres' % (pg.sock, pg.port)


def file_rows(r, metric):
    return [(row['epoch_ns'], row.get('n')) for b in r.batches(metric) for row in b['data']]


def sink_rows(pg, metric):
    out = pg.psql("select (extract(epoch from time) * 1e6)::int8, coalesce(data->>'n', '') "
                  "from public.%s" % metric, db='metrics')
    return [tuple(line.split('|')) for line in out.splitlines()] if out else []


def compare(t, r, sink, metric, what):
    want = file_rows(r, metric)
    got = sink_rows(sink, metric)
    keys = {(str(e // 1000), '' if n is None else str(n)) for e, n in want}
    t.is_(len(got), len(set(got)), '%s: no row twice in the sink' % what)
    t.ok(len(want) > 0 and set(got) == keys,
         '%s: the sink holds exactly what was collected (%d rows)' % (what, len(want)),
         'missing %d, extra %d' % (len(keys - set(got)), len(set(got) - keys)))


def main():
    t = Tap()
    src = Postgres('osrc')
    sink = Postgres('osink')
    sink.psql('create database metrics')

    # 1. The sink is stopped for 20 s while collection runs.
    r = Reaper(sys.argv[1], SOURCES.format(conn=src.conn_str(), metrics='{seq: 1}'), METRICS,
               args=['--sink', sink_uri(sink)]).start()
    t.ok(r.wait_log('schema ready', 15), 'sink ready', r.log())
    time.sleep(2)
    sink.stop('fast')
    time.sleep(20)
    sink.start()
    t.ok(r.wait_log('connected again', 40), 'sink back', r.log())
    time.sleep(3)
    t.is_(r.stop(), 0, 'exit 0')
    log = r.log()
    t.is_(log.count('lost connection to the sink'), 1, 'the outage is logged once')
    compare(t, r, sink, 'seq', 'outage of 20 s')

    # 2. A buffer too small for the outage: the oldest are dropped and counted exactly.
    sink.psql('drop table if exists public.bulk', db='metrics')
    r = Reaper(sys.argv[1], SOURCES.format(conn=src.conn_str(), metrics='{bulk: 1}'), METRICS,
               args=['--sink', sink_uri(sink), '--sink-buffer-bytes', '64kB']).start()
    t.ok(r.wait_log('schema ready', 15), 'sink ready again', r.log())
    time.sleep(2)
    sink.stop('fast')
    time.sleep(10)
    sink.start()
    t.ok(r.wait_log('connected again', 40), 'sink back again', r.log())
    time.sleep(3)
    t.is_(r.stop(), 0, 'exit 0 with drops')
    collected = len(file_rows(r, 'bulk'))
    stored = len(sink_rows(sink, 'bulk'))
    dropped = r.summary().get('sink_rows_dropped', -1)
    t.ok(stored < collected, 'the small buffer could not hold the outage (%d of %d stored)'
         % (stored, collected))
    t.is_(dropped, collected - stored, 'the drop count equals the rows missing')
    t.ok('rows were dropped while the sink was unavailable because the buffer was full: '
         'bulk=%d' % dropped in r.log(), 'the drops are reported once with the totals', r.log())
    got = sink_rows(sink, 'bulk')
    t.is_(len(got), len(set(got)), 'no row twice after drops')

    # 3. The sink connection is killed mid-COPY, five times.
    r = Reaper(sys.argv[1], SOURCES.format(conn=src.conn_str(), metrics='{big: 1}'), METRICS,
               args=['--sink', sink_uri(sink), '--batching-delay', '100ms']).start()
    t.ok(r.wait_log('schema ready', 15), 'sink ready for the kills', r.log())
    kills = 0
    random.seed(7)
    for _ in range(5):
        time.sleep(random.uniform(0.3, 1.2))
        pid = sink.psql("select pid from pg_stat_activity where application_name = "
                        "'pgreaper-sink' limit 1")
        if pid:
            sink.psql('select pg_terminate_backend(%s)' % pid)
            kills += 1
    time.sleep(4)
    t.is_(r.stop(), 0, 'exit 0 after the kills')
    t.ok(kills >= 3, 'the sink connection was killed %d times' % kills)
    t.ok(r.summary().get('sink_rows_dropped') == 0, 'nothing dropped', r.summary())
    compare(t, r, sink, 'big', 'kills mid-COPY')

    # 4. SIGTERM while the sink is down: wait --shutdown-timeout, then say what was lost.
    r = Reaper(sys.argv[1], SOURCES.format(conn=src.conn_str(), metrics='{seq: 1}'), METRICS,
               args=['--sink', sink_uri(sink), '--shutdown-timeout', '2']).start()
    t.ok(r.wait_log('schema ready', 15), 'sink ready before the last outage', r.log())
    sink.stop('fast')
    time.sleep(3)
    t0 = time.time()
    t.is_(r.stop(), 0, 'SIGTERM with the sink down: exit 0')
    t.ok(time.time() - t0 < 6, 'gave up after --shutdown-timeout')
    lost = r.summary().get('sink_rows_dropped', 0)
    t.ok(lost >= 2 and '%d rows could not be written before shutdown' % lost in r.log(),
         'the rows that could not be written are reported (%d)' % lost, r.log())
    sink.start()
    since = min(e for e, _ in file_rows(r, 'instance_up')) // 1000
    missing = 0
    for metric in ('seq', 'instance_up'):
        stored = [x for x in sink_rows(sink, metric) if int(x[0]) >= since]
        missing += len(file_rows(r, metric)) - len(stored)
    # A COPY in flight when the sink stopped has an unknown outcome: its rows may or may
    # not be stored, and are counted as such, not as dropped.
    unknown = r.summary().get('sink_rows_unknown', 0)
    t.ok(lost <= missing <= lost + unknown, 'and the sink misses exactly those: %d dropped, '
         '%d of unknown outcome, %d missing' % (lost, unknown, missing))

    # 5. A batch larger than the whole buffer: refused and counted, nothing else evicted.
    sink.psql('drop table if exists public.seq', db='metrics')
    r = Reaper(sys.argv[1], SOURCES.format(conn=src.conn_str(), metrics='{seq: 1, wide: 1}'),
               METRICS, args=['--sink', sink_uri(sink), '--sink-buffer-bytes', '64kB']).start()
    t.ok(r.wait_log('schema ready', 15), 'sink ready with a 64 kB buffer', r.log())
    time.sleep(4)
    t.is_(r.stop(), 0, 'exit 0')
    log = r.log()
    t.is_(log.count('more than --sink-buffer-bytes'), 1, 'the oversized batch is logged once')
    wide = len(r.batches('wide'))
    t.ok(wide >= 3 and r.summary().get('sink_rows_dropped') == wide,
         'each oversized row counted as dropped (%d)' % wide, r.summary())
    compare(t, r, sink, 'seq', 'beside oversized batches')
    t.done()


if __name__ == '__main__':
    main()
