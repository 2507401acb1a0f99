"""A fleet on one machine: connection attempts pass the admission gate (--max-connecting),
the open-files limit is raised and checked against the sources, and a batch that goes
silent is cancelled while the connection is kept (overload is not a fault)."""
import os
import resource
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap, backend_pids  # noqa: E402

METRICS = '''
metrics:
  tick:
    sqls:
      10: select (extract(epoch from now()) * 1e9)::int8 as epoch_ns, 1 as x
    statement_timeout_seconds: 3
'''


def fleet_sources(conn, n, prefix='s'):
    return ''.join('- name: %s%03d\n  conn_str: %s\n  custom_metrics: {tick: 1}\n'
                   % (prefix, i, conn) for i in range(n))


def admission(t, binary, pg):
    """30 sources started together, 2 attempts at a time: all connect, none fails."""
    n = 30
    r = Reaper(binary, fleet_sources(pg.conn_str(), n), METRICS,
               args=['--max-connecting', '2', '--connect-spread', '0']).start()
    ok = r.wait_log('connected to source', 60, count=n)
    t.ok(ok, 'all %d sources connected through a gate of 2' % n, r.log()[-2000:])
    t.ok(r.wait_batches('tick', count=2 * n, timeout=20), 'every source collects')
    t.is_(r.stop(), 0, 'clean exit')
    s = r.summary()
    t.is_(s.get('connect_failures'), 0, 'no failed attempt')
    t.ok(s.get('connect_attempts_queued', 0) >= n // 2, 'attempts waited their turn',
         s.get('connect_attempts_queued'))
    t.ok(s.get('connect_queue_max', 0) >= n // 2, 'the queue held most of the fleet',
         s.get('connect_queue_max'))


def limit_nofile(soft, hard):
    def f():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return f


def nofile_soft(pid):
    with open('/proc/%d/limits' % pid) as f:
        for line in f:
            if line.startswith('Max open files'):
                return int(line.split()[3])
    return 0


def file_descriptors(t, binary, pg):
    """The soft limit is raised to the hard one; when even that is too low, one warning."""
    dead = 'host=%s/nowhere port=5432 dbname=postgres' % pg.root
    r = Reaper(binary, fleet_sources(dead, 150, 'd'), METRICS,
               args=['--connect-spread', '10s'])
    r.log_fh = open(r.logfile, 'w')
    import subprocess
    r.proc = subprocess.Popen(r.argv(), stdout=subprocess.DEVNULL, stderr=r.log_fh,
                              env=r.env, preexec_fn=limit_nofile(64, 200))
    t.ok(r.wait_log('file descriptors needed', 20), 'fd shortage said at start', r.log())
    t.is_(nofile_soft(r.proc.pid), 200, 'soft open-files limit raised to the hard limit')
    line = [x for x in r.log().splitlines() if 'file descriptors needed' in x]
    t.ok(line and '150 sources x 1 connections' in line[0] and 'limit is 200' in line[0],
         'the warning gives the numbers', line)
    r.send(signal.SIGHUP)
    t.ok(r.wait_log('configuration applied', 20), 'reload applied', r.log())
    t.is_(r.log().count('file descriptors needed'), 1, 'said once, not again on reload')
    t.is_(r.stop(), 0, 'clean exit')


SILENT_METRICS = '''
metrics:
  tick:
    sqls:
      10: select (extract(epoch from now()) * 1e9)::int8 as epoch_ns, pg_backend_pid() as pid
    statement_timeout_seconds: 2
'''


def silence(t, binary, pg):
    """The backend stops answering (SIGSTOP): after statement timeout + connect timeout of
    silence the query is cancelled and the connection kept; silent past the cancel's grace
    too, the connection is given up and a new one made."""
    src = '- name: quiet\n  conn_str: %s\n  custom_metrics: {tick: 1}\n' % pg.conn_str()
    r = Reaper(binary, src, SILENT_METRICS, args=['--connect-timeout', '3']).start()
    t.ok(r.wait_batches('tick', count=2), 'collecting', r.log())
    pid = backend_pids(pg)[0]
    os.kill(pid, signal.SIGSTOP)
    ok = r.wait_log('cancelling the running query', 20)
    os.kill(pid, signal.SIGCONT)
    t.ok(ok, 'a silent batch is cancelled', r.log())
    n = len(r.batches('tick'))
    t.ok(r.wait_batches('tick', count=n + 3, timeout=15), 'collection goes on', r.log())
    t.is_(backend_pids(pg), [pid], 'on the same connection')

    os.kill(pid, signal.SIGSTOP)  # now for longer than the cancel's grace
    ok = r.wait_log('not even to a cancel request', 25)
    t.ok(ok, 'a connection silent after the cancel is given up', r.log())
    t.ok(r.wait_log('reconnected to source', 20), 'and made again', r.log())
    os.kill(pid, signal.SIGCONT)
    n = len(r.batches('tick'))
    t.ok(r.wait_batches('tick', count=n + 2, timeout=15), 'collection goes on', r.log())
    t.is_(r.stop(), 0, 'clean exit')
    s = r.summary()
    t.is_(s.get('cancels'), 2, 'two cancels counted')
    t.is_(s.get('disconnects'), 1, 'one disconnect: the second silence only')


def main():
    t = Tap()
    pg = Postgres('fleet')
    admission(t, sys.argv[1], pg)
    if os.environ.get('RP_VALGRIND'):  # valgrind keeps fds for itself and shows lower limits
        t.ok(True, '# skip open-files limits under valgrind')
    else:
        file_descriptors(t, sys.argv[1], pg)
    silence(t, sys.argv[1], pg)
    pg.cleanup()
    t.done()


main()
