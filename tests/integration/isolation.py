"""Metrics that misbehave: a metric that opens a transaction, changes the session, takes an
advisory lock, returns a huge result or two columns of one name. Each is logged once and
left out; the other metrics of the same source keep fresh, unaltered values; no backend is
left idle in transaction; nothing oversized reaches a sink."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap, skip_all  # noqa: E402

if os.environ.get('RP_VALGRIND'):
    # Rates over fixed windows (a fresh batch a second through a reconnect per offender):
    # under valgrind they failed 2 of 5 runs on 2026-12-07 with nothing else running.
    skip_all('timing bounds: not under valgrind (the ASan and normal runs have it)')

OFFENDERS = {
    'm_begin': 'begin',
    'm_commit': 'commit',
    'm_search_path': 'set search_path to pg_catalog, nowhere',
    'm_stmt_timeout': 'set statement_timeout = 1',
    'm_lock': 'lock table pg_class in access share mode',
    'm_temp': 'create temp table rp_tmp (a int)',
    'm_listen': 'listen rp_channel',
    'm_advisory': 'select pg_advisory_lock(1) as locked',
    'm_set_config': "select set_config('search_path', 'nowhere', false) as sp",
    'm_deallocate': 'deallocate all',
}

# Under valgrind (20-50 times slower) the oversized result is smaller, still over the cap.
HUGE_ROWS = 150000 if os.environ.get('RP_VALGRIND') else 1000000

# "fresh" shows what every other metric of the source would see.
METRICS = '''
metrics:
  fresh:
    sqls:
      11: >-
        select (extract(epoch from clock_timestamp()) * 1e9)::int8 as epoch_ns,
               (extract(epoch from now()) * 1e9)::int8 as now_ns,
               current_setting('search_path') as search_path,
               current_setting('statement_timeout') as statement_timeout,
               (select count(*) from pg_locks where locktype = 'advisory'
                  and pid = pg_backend_pid()) as advisory
%s
  huge_rows:
    sqls:
      11: select g as n from generate_series(1, %d) g
  huge_value:
    sqls:
      11: select repeat('x', 100 * 1024 * 1024) as v
  capped:
    sqls:
      11: select g as n from generate_series(1, 50) g
    result_max_rows: 10
  dup_cols:
    sqls:
      11: select 1 as a, 2 as a
''' % (''.join('  %s:\n    sqls:\n      11: %s\n' % (k, v) for k, v in OFFENDERS.items()),
       HUGE_ROWS)

SOURCES = '''
- name: bad
  conn_str: {conn}
  custom_metrics: {{fresh: 1, %s}}
- name: big
  conn_str: {conn}
  custom_metrics: {{huge_rows: 2, huge_value: 3, capped: 1, dup_cols: 1}}
- name: calm
  conn_str: {conn}
  custom_metrics: {{fresh: 1}}
''' % ', '.join('%s: 1' % k for k in OFFENDERS)


def main():
    t = Tap()
    pg = Postgres('isolation')
    r = Reaper(sys.argv[1], SOURCES.format(conn=pg.conn_str()), METRICS).start()
    t.ok(r.wait_batches('fresh', 'bad', count=3, timeout=30), 'source with offenders collects',
         r.log())
    t.ok(r.wait_log('metric=huge_value', timeout=60) and r.wait_log('metric=huge_rows', 60),
         'huge results seen', r.log())
    # Each pipeline stops at its first offender and resets the session, so the offenders
    # are found one pipeline after another: wait for the last (slow under valgrind).
    t.ok(all(r.wait_log('metric=%s:' % k, timeout=60) for k in OFFENDERS),
         'every offender found', r.log()[-3000:])
    time.sleep(1)
    start = time.time()
    before = len(r.batches('fresh', 'bad'))
    advisory = len(r.batches('m_advisory'))
    r.wait_batches('fresh', 'bad', count=before + 3, timeout=30)
    log = r.log()

    # Each offender: logged exactly once, by name, and never run again. LOCK TABLE outside
    # a transaction block fails on the server: an ordinary failing metric, logged once.
    for name in OFFENDERS:
        lines = [l for l in log.splitlines() if 'metric=%s:' % name in l]
        t.is_(len(lines), 1, '%s logged once' % name)
        if name != 'm_lock':
            t.ok(lines and 'metric disabled' in lines[0], '%s disabled' % name, lines)
    t.ok(advisory >= 1 and len(r.batches('m_advisory')) == advisory,
         'advisory lock metric not run after it was found')

    # The others keep fresh, unaltered values.
    fresh = r.batches('fresh', 'bad')
    later = fresh[before - 1:] if before else fresh
    t.ok(len(later) >= 3, 'fresh keeps coming after the offenders (%d in %.0f s)'
         % (len(later), time.time() - start), log[-3000:])
    rows = [b['data'][0] for b in fresh[-3:]]
    t.ok(all(x['search_path'] == '"$user", public' for x in rows), 'search_path untouched',
         rows)
    t.ok(all(x['statement_timeout'] == '10s' for x in rows), 'statement_timeout untouched', rows)
    t.ok(all(x['advisory'] == 0 for x in rows), 'no advisory lock held', rows)
    nows = [x['now_ns'] for x in rows]
    t.ok(len(set(nows)) == len(nows), 'now() advances: no transaction left open', nows)
    t.ok(all(abs(x['epoch_ns'] - x['now_ns']) < 5e8 for x in rows),
         'now() is the statement time, not a frozen transaction start', rows)
    idle = pg.psql("select count(*) from pg_stat_activity where application_name = 'pgreaper' "
                   "and state like 'idle in transaction%'")
    t.is_(idle, '0', 'no pgreaper backend idle in transaction')
    t.ok('resetting the connection' in log, 'session reset logged', log[-2000:])

    # Oversized results: refused with the numbers and the flag, nothing stored.
    t.ok(not r.batches('huge_rows'), 'huge_rows stored nothing')
    t.ok(not r.batches('huge_value'), 'huge_value stored nothing')
    t.ok('metric=huge_rows' in log, 'huge_rows logged', log[-3000:])
    t.ok('result too large: %d rows' % HUGE_ROWS in log,
         'rows seen and cap named', [l for l in log.splitlines() if 'too large' in l])
    t.ok('--result-max-bytes' in log, 'the flag to raise is named')
    t.ok(not r.batches('capped'), 'metric-level result_max_rows applies')
    t.ok('caps: 10 rows' in log, 'metric-level cap in the message')
    t.ok(log.count('metric=huge_rows') == 1,
         'huge_rows not retried every tick')

    # Duplicate column names.
    t.ok(not r.batches('dup_cols'), 'duplicate columns stored nothing')
    t.ok('two columns named "a"' in log, 'duplicate column named')
    t.is_(log.count('two columns named'), 1, 'logged once')

    # The calm source never noticed.
    calm = r.batches('fresh', 'calm')
    t.ok(len(calm) >= 8, 'other source kept collecting (%d batches)' % len(calm))
    t.ok(time.time() - start < 40, 'test did not stall')

    rc = r.stop()
    t.ok(rc == 0, 'exit 0', 'exit status %r\n%s' % (rc, r.log()[-3000:]))
    t.ok('ERROR: AddressSanitizer' not in r.log(), 'no sanitizer report')

    # Per-metric mode: the pooled connection a command ran on is closed, never reused.
    sources = ('- name: bad\n  conn_str: %s\n  custom_metrics: {fresh: 1, m_begin: 1, '
               'm_search_path: 1, m_commit: 1, capped: 1}\n' % pg.conn_str())
    r = Reaper(sys.argv[1], sources, METRICS,
               args=['--mode=per-metric', '--max-parallel-connections-per-db', '2']).start()
    t.ok(r.wait_batches('fresh', 'bad', count=6, timeout=30), 'per-metric: fresh collects',
         r.log())
    log = r.log()
    for name in ('m_begin', 'm_search_path', 'm_commit'):
        lines = [l for l in log.splitlines() if 'metric=%s:' % name in l]
        t.ok(len(lines) == 1 and 'metric disabled' in lines[0], 'per-metric: %s disabled once'
             % name, lines)
    rows = [b['data'][0] for b in r.batches('fresh', 'bad')[-3:]]
    t.ok(all(x['search_path'] == '"$user", public' for x in rows),
         'per-metric: search_path untouched', rows)
    idle = pg.psql("select count(*) from pg_stat_activity where state like 'idle in transaction%'")
    t.is_(idle, '0', 'per-metric: no backend idle in transaction')
    t.ok('lost connection' not in log, 'per-metric: a reset is not a lost connection')
    t.ok('metric=capped: metric result too large: 50 rows' in log and not r.batches('capped'),
         'per-metric: the result cap applies too', log[-2000:])
    t.is_(r.stop(), 0, 'per-metric: exit 0')
    t.done()


if __name__ == '__main__':
    main()
