"""Signals mid-write and sinks that fail: SIGTERM while a batch is in flight waits for
it (or abandons it after --shutdown-timeout, saying so); a sink that cannot write
(ENOSPC) counts and reports every dropped row once while other sinks get everything."""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

METRICS = '''
metrics:
  quick:
    sqls:
      10: select g as n from generate_series(1, 5) g
  slow:
    sqls:
      10: select pg_sleep(2) is null as slept, 7 as marker
    statement_timeout_seconds: 60
'''

SOURCES = '''
- name: s
  conn_str: {conn}
  custom_metrics: {{quick: 1, slow: {slow}}}
'''


def wait_busy(pg, timeout=15):
    """Until pgreaper's backend is running pg_sleep."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pg.psql("select count(*) from pg_stat_activity where application_name = 'pgreaper' "
                   "and query like '%pg_sleep%' and state = 'active'") == '1':
            return True
        time.sleep(0.05)
    return False


def main():
    t = Tap()
    pg = Postgres('shutdown')

    # SIGTERM while the slow metric runs: the batch finishes and is stored.
    r = Reaper(sys.argv[1], SOURCES.format(conn=pg.conn_str(), slow=30), METRICS).start()
    t.ok(wait_busy(pg), 'slow batch in flight', r.log())
    t0 = time.time()
    t.is_(r.stop(signal.SIGTERM), 0, 'SIGTERM mid-batch: exit 0')
    t.ok(1.0 <= time.time() - t0 < 8, 'waited for the in-flight batch (pg_sleep(2))')
    t.is_(len(r.batches('slow')), 1, 'the in-flight result was stored before exit')
    s = r.summary()
    t.is_(sum(len(b['data']) for b in r.lines()), s.get('sink_rows_written'),
          'every fetched row is in the file')

    # Same with --shutdown-timeout 1: abandoned after 1 s, and the log says so.
    r = Reaper(sys.argv[1], SOURCES.format(conn=pg.conn_str(), slow=30), METRICS,
               args=['--shutdown-timeout', '1']).start()
    t.ok(wait_busy(pg), 'slow batch in flight again', r.log())
    t0 = time.time()
    t.is_(r.stop(signal.SIGINT), 0, 'SIGINT mid-batch with a short timeout: exit 0')
    t.ok(time.time() - t0 < 1.9, 'did not wait past --shutdown-timeout')
    t.ok('in-flight batch did not finish before shutdown: abandoned' in r.log(),
         'the abandoned batch is reported', r.log())

    # A sink that fails (ENOSPC) next to one that works.
    good = os.path.join(pg.root, 'good.jsonl')
    r = Reaper(sys.argv[1], SOURCES.format(conn=pg.conn_str(), slow=3600), METRICS,
               args=['--sink', 'jsonfile:///dev/full', '--sink', 'jsonfile://' + good]).start()
    t.ok(r.wait_log('could not write to "jsonfile:///dev/full": No space left on device', 15),
         'failing sink reported', r.log())
    time.sleep(3)
    t.is_(r.stop(), 0, 'exit 0 with a failing sink')
    log = r.log()
    t.is_(log.count('could not write to "jsonfile:///dev/full"'), 1,
          'reported once, not at every write')
    with open(good) as f:
        good_rows = sum(len(json.loads(line)['data']) for line in f)
    s = r.summary()
    t.ok(good_rows >= 10, 'the working sink got the rows (%d)' % good_rows)
    t.is_(s.get('sink_rows_dropped'), good_rows, 'every row the failing sink lost is counted')
    t.is_(s.get('sink_rows'), 3 * good_rows,
          'every sink (the harness adds a third) was given every row')
    t.ok('works again' not in log, 'no recovery claimed when nothing was written', log)
    t.done()


if __name__ == '__main__':
    main()
