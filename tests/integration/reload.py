"""Reload: a broken file keeps the running config; added sources start, removed ones
stop, unchanged ones keep their connection; SIGTERM flushes everything and exits 0."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap, backend_pids  # noqa: E402

METRICS = '''
metrics:
  tick:
    sqls:
      10: select (extract(epoch from now()) * 1e9)::int8 as epoch_ns, pg_backend_pid() as pid
  other:
    sqls:
      10: select 42 as answer
'''

ONE = '''
- name: a
  conn_str: {conn}
  custom_metrics: {{tick: 1}}
'''

TWO = '''
- name: a
  conn_str: {conn}
  custom_metrics: {{tick: 1, other: 1}}
- name: b
  conn_str: {conn}
  custom_metrics: {{tick: 1}}
  custom_tags: {{added: "yes"}}
'''


def count(r, metric, db):
    return len(r.batches(metric, db))


def wait_more(r, metric, db, n, timeout=10):
    return r.wait_batches(metric, db, count(r, metric, db) + n, timeout)


def main():
    t = Tap()
    pg = Postgres('reload')
    conn = pg.conn_str()
    trace_dir = os.path.join(pg.root, 'trace')
    os.mkdir(trace_dir)
    r = Reaper(sys.argv[1], ONE.format(conn=conn), METRICS,
               args=['--libpq-trace', trace_dir]).start()
    t.ok(r.wait_batches('tick', 'a', 2), 'source a collects', r.log())
    pid_a = backend_pids(pg)

    # A broken file: the old configuration keeps running, the error names the place.
    r.write_sources('- name: a\n  conn_str: [broken\n')
    r.send(signal.SIGHUP)
    t.ok(r.wait_log('could not reload configuration (SIGHUP): keeping the running '
                    'configuration', 10), 'broken reload refused', r.log())
    t.ok('sources.yaml:3:1: invalid YAML' in r.log(), 'error names file:line:col', r.log())
    t.ok(wait_more(r, 'tick', 'a', 2), 'source a still collects after the broken reload')
    t.is_(backend_pids(pg), pid_a, 'and kept its connection')

    # A semantically invalid file is refused too.
    r.write_sources(ONE.format(conn=conn) + '  preset_metrics: no_such_preset\n')
    r.send(signal.SIGHUP)
    t.ok(r.wait_log('preset "no_such_preset" is not defined', 10), 'invalid reload refused',
         r.log())

    # Add b, and give a another metric: a keeps its connection.
    r.write_sources(TWO.format(conn=conn))
    r.send(signal.SIGHUP)
    t.ok(r.wait_log('configuration applied: 2 sources running, 1 added, 0 removed', 10),
         'reload applied', r.log())
    t.ok(r.wait_batches('tick', 'b', 2), 'added source b collects')
    t.ok(r.wait_batches('other', 'a', 2), "a's new metric runs")
    b = r.batches('tick', 'b')[-1]
    t.is_(b['custom_tags'], {'added': 'yes'}, "b's custom tags")
    pids = backend_pids(pg)
    t.ok(pid_a[0] in pids and len(pids) == 2, 'a kept its connection, b has its own', pids)
    a_pid_in_rows = r.batches('tick', 'a')[-1]['data'][0]['pid']
    t.is_(a_pid_in_rows, pid_a[0], "a's rows come from the same backend as before")

    # Change a metric's SQL: the new text runs on the same connection, and the old
    # prepared statement is deallocated instead of staying on the server.
    with open(r.metrics, 'w') as f:
        f.write(METRICS.replace('select 42 as answer', 'select 43 as answer'))
    r.send(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and r.batches('other', 'a')[-1]['data'][0]['answer'] != 43:
        time.sleep(0.2)
    t.is_(r.batches('other', 'a')[-1]['data'][0]['answer'], 43, 'changed SQL runs after reload')
    t.ok('source=a: metrics updated' in r.log(), 'the change is logged', r.log())
    t.ok(pid_a[0] in backend_pids(pg), 'on the same connection')
    with open(os.path.join(trace_dir, 'a.trace')) as f:
        trace = f.read()
    t.ok('DEALLOCATE rp_' in trace, 'the replaced prepared statement is deallocated')

    # Remove b: it stops and its connection closes.
    r.write_sources(ONE.format(conn=conn))
    r.send(signal.SIGHUP)
    t.ok(r.wait_log('1 removed', 10), 'b removed', r.log())
    time.sleep(1.5)
    n_b = count(r, 'tick', 'b')
    t.ok(wait_more(r, 'tick', 'a', 2), 'a goes on')
    t.is_(count(r, 'tick', 'b'), n_b, 'b collects no more')
    t.is_(backend_pids(pg), pid_a, "b's connection is closed, a's is the same")

    # --refresh picks up a changed file without a signal.
    r2 = Reaper(sys.argv[1], ONE.format(conn=conn), METRICS, args=['--refresh', '1'])
    r2.args = ['--refresh', '1']
    r2.start()
    t.ok(r2.wait_batches('tick', 'a', 1), 'second reaper collects')
    r2.write_sources(TWO.format(conn=conn))
    t.ok(r2.wait_log('reloading configuration (configuration files changed)', 10),
         '--refresh notices the changed file', r2.log())
    t.ok(r2.wait_batches('tick', 'b', 1), '--refresh started b')
    t.is_(r2.stop(), 0, 'second reaper exits 0')

    # SIGTERM: exit 0, everything fetched is in the file.
    t.is_(r.stop(), 0, 'SIGTERM: exit code 0')
    s = r.summary()
    rows = sum(len(x['data']) for x in r.lines())
    t.is_(rows, s.get('sink_rows_written'), 'every row counted is in the file')
    t.is_(s.get('sink_rows'), s.get('sink_rows_written'), 'nothing left unwritten')
    t.ok(r.log().rstrip().endswith('pgreaper stopped'), 'clean stop logged last')
    t.done()


if __name__ == '__main__':
    main()
