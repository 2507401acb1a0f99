"""Faults: a source that is down, a killed connection, a server restart, a metric that
exceeds its statement_timeout. Every other source and metric goes on."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap, backend_pids  # noqa: E402

METRICS = '''
metrics:
  tick:
    sqls:
      10: select (extract(epoch from now()) * 1e9)::int8 as epoch_ns, pg_backend_pid() as pid
  slow:
    sqls:
      10: select pg_sleep(3) as slept
    statement_timeout_seconds: 1
  instance_up:
    sqls:
      10: select 1 as is_up
  huge:
    sqls:
      10: select g as n, repeat('x', 100) as pad from generate_series(1, 100000) g
'''

SOURCES = '''
- name: up
  conn_str: {conn}
  custom_metrics: {{tick: 1, slow: 5, instance_up: 1, huge: 3600}}
- name: down
  conn_str: host={root}/nowhere port=5432 user=postgres password=hunter2 dbname=postgres
  custom_metrics: {{tick: 1}}
'''


def instance_up(r, db):
    return [(b['data'][0]['epoch_ns'], b['data'][0]['is_up'])
            for b in r.batches('instance_up', db)]


def ticks_after(r, db, t_ns):
    return [b for b in r.batches('tick', db) if b['data'][0]['epoch_ns'] > t_ns]


def main():
    t = Tap()
    pg = Postgres('faults')
    r = Reaper(sys.argv[1], SOURCES.format(conn=pg.conn_str(), root=pg.root), METRICS).start()
    t.ok(r.wait_batches('tick', 'up', count=3), 'healthy source collects', r.log())

    # A source that is down: logged once, instance_up 0 for each attempt, others go on.
    t.ok(r.wait_log('source=down: could not connect to source', 10), 'down source logged',
         r.log())
    time.sleep(3.5)
    log = r.log()
    t.is_(log.count('source=down: could not connect'), 1, 'failure logged once, not per attempt')
    downs = instance_up(r, 'down')
    t.ok(len(downs) >= 2 and all(v == 0 for _, v in downs), 'instance_up 0 per failed attempt',
         downs)
    t.is_(len(r.batches('tick', 'down')), 0, 'nothing collected from the down source')
    t.ok('password=****' in log and 'hunter2' not in log, 'the password is masked in the log',
         log)

    # A huge result (100,000 rows, ~12 MB of JSON) is stored whole; the rest goes on.
    huge = r.batches('huge', 'up')
    t.ok(len(huge) == 1 and len(huge[0]['data']) == 100000, 'huge result stored whole')
    t.ok(huge and huge[0]['data'][-1] == {'n': 100000, 'pad': 'x' * 100}, 'last row intact')

    # A metric slower than its statement_timeout: fails alone.
    t.ok('canceling statement due to statement timeout' in log, 'slow metric cancelled by '
         'the server after its statement_timeout_seconds', log)
    t.is_(len(r.batches('slow', 'up')), 0, 'slow metric stores nothing')

    # pg_terminate_backend on pgreaper's connection.
    pids = backend_pids(pg)
    t.is_(len(pids), 1, 'one connection to the healthy source')
    mark = time.time_ns()
    pg.psql('select pg_terminate_backend(%d)' % pids[0])
    t.ok(r.wait_log('source=up: lost connection to source', 10), 'lost connection logged',
         r.log())
    t.ok(r.wait_log('source=up: reconnected to source', 10), 'reconnected', r.log())
    deadline = time.time() + 10
    while time.time() < deadline and len(ticks_after(r, 'up', mark)) < 2:
        time.sleep(0.2)
    after = ticks_after(r, 'up', mark)
    t.ok(len(after) >= 2, 'collection continues after the connection was killed')
    t.ok(after and after[-1]['data'][0]['pid'] != pids[0], 'on a new backend')

    # Server stopped and started again.
    pg.stop('fast')
    stopped = time.time_ns()
    time.sleep(3)
    pg.start()
    started = time.time_ns()
    t.ok(r.wait_log('source=up: reconnected to source', 20, count=2), 'reconnected after restart',
         r.log())
    deadline = time.time() + 10
    while time.time() < deadline and len(ticks_after(r, 'up', started)) < 2:
        time.sleep(0.2)
    ups = [(ts, v) for ts, v in instance_up(r, 'up') if ts > stopped]
    values = [v for _, v in ups]
    t.ok(0 in values and 1 in values[values.index(0):], 'instance_up 0 during the outage, then 1',
         ups)
    t.ok(len(ticks_after(r, 'up', started)) >= 2, 'collection resumes by itself')

    t.is_(r.stop(), 0, 'SIGTERM: exit code 0')
    s = r.summary()
    t.ok(s.get('disconnects', 0) >= 2, 'both losses counted', s)
    t.is_(s.get('sink_rows_dropped'), 0, 'nothing dropped by the sink')
    t.done()


if __name__ == '__main__':
    main()
