"""Exact sink accounting. The sink's connection is cut many times through a proxy: in the
middle of COPY data (the server rolls back), and right after the server committed a
COPY but before its acknowledgement reaches pgreaper (only a look-up can tell); its
backend is also terminated at random moments. Afterwards the jsonfile sink (ground
truth) and the PostgreSQL sink are reconciled row by row: nothing lost, nothing twice,
and every count pgreaper reports is exact."""
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402
from pgproxy import CutProxy  # noqa: E402

# Under valgrind pgreaper is 20-50 times slower: a load it can write without drops.
ROWS = 300 if os.environ.get('RP_VALGRIND') else 3000
METRICS = '''
metrics:
  rows:
    sqls:
      10: |
        select (extract(epoch from clock_timestamp()) * 1e9)::int8 as epoch_ns, g as n,
               repeat('z', 100) as pad
          from generate_series(1, %d) g
''' % ROWS

SOURCES = ''.join('''
- name: src%d
  conn_str: {conn}
  custom_metrics: {{rows: 1}}
''' % i for i in range(3))


def sink_uri(port):
    return 'host=127.0.0.1 port=%d user=postgres dbname=metrics sslmode=disable' % port


def sink_pid(sink, wait):
    deadline = time.time() + wait
    while True:
        pid = sink.psql("select pid from pg_stat_activity where application_name = "
                        "'pgreaper-sink' and datname = 'metrics' limit 1")
        if pid or time.time() > deadline:
            return pid
        time.sleep(0.05)


def kill_sink(sink, pid):
    if pid:
        sink.psql('select pg_terminate_backend(%s)' % pid)
    return bool(pid)


def collected_rows(r):
    return sum(len(b['data']) for b in r.lines() if b['metric'] == 'rows')


def written_by(sink, want, deadline):
    """Wait until the sink holds want rows of the metric (or the deadline passes)."""
    while time.time() < deadline:
        got = sink.psql('select count(*) from public.rows', db='metrics')
        if got and int(got) >= want:
            return
        time.sleep(0.5)


def main():
    t = Tap()
    src = Postgres('xsrc')
    sink = Postgres('xsink')
    sink.psql('create database metrics')
    proxy = CutProxy(os.path.join(sink.sock, '.s.PGSQL.%d' % sink.port), seed=5)
    r = Reaper(sys.argv[1], SOURCES.format(conn=src.conn_str()), METRICS,
               args=['--sink', sink_uri(proxy.port), '--batching-delay', '100ms']).start()
    t.ok(r.wait_log('schema ready', 20), 'sink ready', r.log())
    rnd = random.Random(11)
    kills = 0
    for i in range(8):  # cuts after commit and mid-COPY, interleaved with backend kills
        with proxy.lock:
            proxy.cut_after_commit += 1
            proxy.cut_mid_copy += 1
        time.sleep(rnd.uniform(1.0, 2.5))
        if i % 2 == 0:
            kills += kill_sink(sink, sink_pid(sink, 3))
    # Cuts and kills in a row can leave the sink in a backoff of up to 30 s before its
    # next COPY (under valgrind, on a loaded machine, they did): wait past it for the
    # cuts still asked, then for the sink to have written what was collected so far.
    slow = 3 if os.environ.get('RP_VALGRIND') else 1
    deadline = time.time() + 30 * slow
    while time.time() < deadline and (proxy.cut_after_commit or proxy.cut_mid_copy):
        time.sleep(0.2)
    written_by(sink, collected_rows(r), time.time() + 20 * slow)
    time.sleep(3)
    t.is_(r.stop(), 0, 'exit 0')
    t.ok(proxy.done_after_commit >= 6 and proxy.done_mid_copy >= 6,
         'cut %d times after a commit, %d times mid-COPY; %d backends terminated'
         % (proxy.done_after_commit, proxy.done_mid_copy, kills))
    log = r.log()
    resolved_yes = log.count('had been committed: not sent again')
    resolved_no = log.count('was not committed: sent again')
    t.is_(resolved_yes, proxy.done_after_commit,
          'every COPY committed without acknowledgement was found, not sent twice')
    # A cut before COPY's end needs no look-up (the server cannot have committed); one
    # after pgreaper sent the end is looked up and found not committed.
    t.ok(resolved_no <= proxy.done_mid_copy + kills,
         'COPYs found not committed and sent again: %d' % resolved_no)

    # Row by row: (dbname, time in us, n) for every metric.
    want = {}
    for b in r.lines():
        for row in b['data']:
            key = (b['metric'], b['dbname'], row['epoch_ns'] // 1000, row.get('n'))
            want[key] = want.get(key, 0) + 1
    got = {}
    for metric in ('rows', 'instance_up'):
        out = sink.psql("select dbname, (extract(epoch from time) * 1e6)::int8, data->>'n' "
                        "from public.%s" % metric, db='metrics')
        for line in out.splitlines():
            db, us, n = line.split('|')
            key = (metric, db, int(us), int(n) if n else None)
            got[key] = got.get(key, 0) + 1
    dups = sum(c - 1 for c in got.values() if c > 1)
    lost = sum(1 for k in want if k not in got)
    extra = sum(1 for k in got if k not in want)
    total_json = sum(want.values())
    total_sink = sum(got.values())
    t.is_(dups, 0, 'no row twice in the sink')
    t.is_(lost, 0, 'no row lost (%d rows collected)' % total_json)
    t.is_(extra, 0, 'no row the collector did not produce')
    s = r.summary()
    t.is_(s.get('sink_rows_written'), total_sink + total_json,
          'rows_written is exactly what both sinks hold')
    t.is_(s.get('sink_rows_dropped'), 0, 'nothing dropped')
    t.is_(s.get('sink_rows_unknown'), 0, 'no outcome left unknown')
    t.ok(s.get('sink_copies_resolved', 0) >= resolved_yes + resolved_no,
         'every look-up counted (%s)' % s.get('sink_copies_resolved'))
    t.done()


if __name__ == '__main__':
    main()
