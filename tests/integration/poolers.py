"""Poolers: PgBouncer 1.18 and Pgpool-II 4.3 from Debian, started by the test in front of a
real PostgreSQL 15. Sources of kind pgbouncer and pgpool read the admin consoles (SHOW
commands, the simple protocol, one command at a time) into pgwatch's metric names; a
postgres source reached through PgBouncer in transaction pooling mode notices that its
prepared statements do not survive, says so once and goes on with what works there; a
pooler going away and coming back touches only its own sources."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402
from poolers import PgBouncer, Pgpool  # noqa: E402


def sources(pg, bouncer, pool):
    return '''
- name: bouncer
  kind: pgbouncer
  conn_str: "%s"
  preset_metrics: pgbouncer
- name: pool
  kind: pgpool
  conn_str: "%s"
  preset_metrics: pgpool
- name: through_bouncer
  conn_str: "%s"
  custom_metrics: {db_stats: 20, db_size: 20, instance_up: 20}
- name: direct
  conn_str: "%s"
  custom_metrics: {db_stats: 20}
''' % (bouncer.conn_str('pgbouncer'), pool.conn_str('postgres'), bouncer.conn_str('app'),
       pg.conn_str())


def first_row(r, metric, src):
    b = r.batches(metric, src)
    return b[-1]['data'][0] if b else {}


def consoles(t, r):
    for m in ('pgbouncer_stats', 'pgbouncer_pools', 'pgbouncer_clients', 'pgbouncer_servers'):
        t.ok(r.wait_batches(m, 'bouncer', timeout=20), '%s from the PgBouncer console' % m,
             r.log())
    row = first_row(r, 'pgbouncer_stats', 'bouncer')
    t.ok('database' in row and isinstance(row.get('total_xact_count'), int),
         'SHOW STATS: its own columns, numbers as numbers', row)
    apps = [c.get('application_name') for b in r.batches('pgbouncer_clients', 'bouncer')
            for c in b['data']]
    t.ok('pgreaper' in apps, 'SHOW CLIENTS lists the clients (pgreaper among them)', apps[:5])
    for m in ('pgpool_stats', 'pgpool_processes'):
        t.ok(r.wait_batches(m, 'pool', timeout=20), '%s from Pgpool-II' % m, r.log())
    row = first_row(r, 'pgpool_stats', 'pool')
    t.ok(row.get('status') == 'up' and 'node_id' in row, 'SHOW POOL_NODES: the node is up', row)
    up = [b['data'][0]['is_up'] for b in r.batches('instance_up', 'bouncer')]
    t.ok(up and up[-1] == 1, 'instance_up for a console source', up)
    log = r.log()
    t.ok('connected to source (pgbouncer 1.18.0, admin console, 5 metrics)' in log
         and 'connected to source (pgpool 4.3.5, admin console, 3 metrics)' in log,
         'connected: the pooler and its version', log)


def main():
    t = Tap()
    pg = Postgres('poolers')
    pg.psql('create database app')
    bouncer = PgBouncer(pg, pool_mode='transaction')
    pool = Pgpool(pg)
    r = Reaper(sys.argv[1], sources(pg, bouncer, pool), args=['--interval-scale', '0.05'])
    r.start()
    consoles(t, r)

    # Through PgBouncer in transaction mode: prepared statements vanish between ticks.
    t.ok(r.wait_log('a pooler is between pgreaper and the server', 20), 'the pooler is noticed', r.log())
    time.sleep(1)
    n = len(r.batches('db_stats', 'through_bouncer'))
    t.ok(r.wait_batches('db_stats', 'through_bouncer', count=n + 4, timeout=15)
         and r.wait_batches('db_size', 'through_bouncer', count=n + 2, timeout=15),
         'and the source goes on collecting', r.log())
    log = r.log()
    t.is_(log.count('a pooler is between pgreaper and the server'), 1, 'said once')
    errs = [x for x in log.splitlines() if 'through_bouncer' in x and 'ERROR' in x]
    t.ok(not errs, 'no error storm: the failed fetches are explained by that line', errs[:3])

    # PgBouncer goes away: only its sources notice; it comes back: they reconnect.
    bouncer.stop()
    t.ok(r.wait_log('source=bouncer', 10) and r.wait_log('lost connection to source', 15),
         'a pooler stopped: its sources lose their connection', r.log())
    n = len(r.batches('pgpool_stats', 'pool'))
    m = len(r.batches('db_stats', 'direct'))
    t.ok(r.wait_batches('pgpool_stats', 'pool', count=n + 2, timeout=15)
         and r.wait_batches('db_stats', 'direct', count=m + 3, timeout=15),
         'the other sources go on meanwhile')
    bouncer.start()
    t.ok(r.wait_log('reconnected to source (pgbouncer', 30), 'and reconnect when it is back',
         r.log())
    n = len(r.batches('pgbouncer_stats', 'bouncer'))
    t.ok(r.wait_batches('pgbouncer_stats', 'bouncer', count=n + 2, timeout=15),
         'collection resumes')
    t.is_(r.stop(), 0, 'clean exit')

    # The per-metric design reads the consoles too.
    r = Reaper(sys.argv[1], sources(pg, bouncer, pool),
               args=['--interval-scale', '0.05', '--mode', 'per-metric'])
    r.start()
    t.ok(r.wait_batches('pgbouncer_stats', 'bouncer', timeout=20)
         and r.wait_batches('pgpool_stats', 'pool', timeout=20),
         '--mode=per-metric: console metrics collected', r.log())
    t.is_(r.stop(), 0, 'clean exit (per-metric)')
    pool.cleanup()
    bouncer.cleanup()
    pg.cleanup()
    t.done()


main()
