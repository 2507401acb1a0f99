"""A reload that arrives while a pipeline is in flight takes effect at the batch boundary:
no crash, no row stored under another metric's name, the new plan runs afterwards.
Repeated with SIGHUPs at random moments of busy pipelines."""
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

METRICS = '''
metrics:
  sleeper:
    sqls:
      11: select pg_sleep(%s) as slept, 'sleeper' as who
%s
'''
NAMES = ['m_a', 'm_b', 'm_c', 'm_d', 'm_e']
BODY = ''.join("  %s:\n    sqls:\n      11: select '%s' as who, g as n from generate_series(1, %d) g\n"
               % (n, n, 1 + i * 50) for i, n in enumerate(NAMES))


def sources(conn, metrics):
    return '- name: src\n  conn_str: %s\n  custom_metrics: {%s}\n' % (
        conn, ', '.join('%s: 1' % m for m in metrics))


def mislabelled(r):
    bad = []
    for b in r.lines():
        for row in b['data']:
            if 'who' in row and row['who'] != b['metric']:
                bad.append((b['metric'], row['who']))
    return bad


def main():
    t = Tap()
    pg = Postgres('inflight')
    conn = pg.conn_str()
    r = Reaper(sys.argv[1], sources(conn, ['sleeper', 'm_a', 'm_b', 'm_c']),
               METRICS % ('3', BODY)).start()
    t.ok(r.wait_log('connected to source', 20), 'connected', r.log())
    # The first tick's pipeline sleeps 3 s in its first query; reload in the middle of it.
    time.sleep(1.5)
    r.write_sources(sources(conn, ['m_d']))
    r.send(signal.SIGHUP)
    t.ok(r.wait_batches('m_d', count=3, timeout=20), 'new plan collects after the batch', r.log())
    t.ok(r.proc.poll() is None, 'still running')
    t.is_(mislabelled(r), [], 'no row stored under another metric\'s name')
    olds = [b for b in r.batches('m_a') + r.batches('sleeper')]
    t.ok(len(olds) >= 1, 'the in-flight batch was stored under its own names (%d)' % len(olds))

    # Many reloads at random moments while pipelines are busy (0.2-0.6 s each).
    r.write_sources(sources(conn, ['sleeper'] + NAMES))
    with open(r.metrics, 'w') as f:
        f.write(METRICS % ('0.3', BODY))
    r.send(signal.SIGHUP)
    rnd = random.Random(7)
    for i in range(25):
        time.sleep(rnd.uniform(0.05, 0.5))
        picked = ['sleeper'] + rnd.sample(NAMES, rnd.randint(1, len(NAMES)))
        r.write_sources(sources(conn, picked))
        if i % 3 == 0:  # change SQL texts too: statements are re-prepared, old ones dropped
            with open(r.metrics, 'w') as f:
                f.write(METRICS % (rnd.choice(['0.2', '0.3', '0.4']), BODY))
        r.send(signal.SIGHUP)
    time.sleep(2)
    t.ok(r.proc.poll() is None, 'still running after 25 reloads mid-batch')
    t.is_(mislabelled(r), [], 'still no mislabelled row')
    n = len(r.lines())
    time.sleep(2.5)
    t.ok(len(r.lines()) > n, 'still collecting')
    rc = r.stop()
    t.is_(rc, 0, 'exit 0')
    log = r.log()
    t.ok('AddressSanitizer' not in log and 'runtime error' not in log, 'no sanitizer report',
         log[-3000:])
    t.ok('prepared statement' not in log, 'no prepared-statement errors', log[-3000:])
    t.done()


if __name__ == '__main__':
    main()
