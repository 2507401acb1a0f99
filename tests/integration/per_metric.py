"""--mode=per-metric against a real PostgreSQL: the same measurements as batch mode for
2 sources x 10 metrics at 1 s; one thread per (source, metric) plus a fixed few, seen in
the goroutine profile; at most --max-parallel-connections-per-db connections per source;
batch mode keeps its thread count from 2 to 20 sources while its tasks grow by one per
source; a killed connection in per-metric mode is recovered like in batch mode."""
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

NMETRICS = 10
METRICS = 'metrics:\n' + ''.join(
    '  m%d:\n    sqls:\n      10: select (extract(epoch from now()) * 1e9)::int8 as epoch_ns, '
    '%d as v\n' % (i, i) for i in range(NMETRICS))


def sources(pg, n):
    return ''.join('- name: db%d\n  conn_str: %s\n  custom_metrics: {%s}\n' % (
        i, pg.conn_str(), ', '.join('m%d: 1' % k for k in range(NMETRICS))) for i in range(1, n + 1))


def port_of(r):
    r.wait_log('pprof: serving')
    return int(re.search(r'\(port (\d+)\)', r.log()).group(1))


def get(port, path):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=30) as f:
        return f.read().decode()


def profile_counts(port):
    """(threads, metric threads, tasks) from the goroutine profile's debug=1 text."""
    text = get(port, '/debug/pprof/goroutine?debug=1')
    counts = collections.Counter()
    for m in re.finditer(r'^(\d+) @.*\n# labels: (\{.*\})$', text, re.M):
        labels = json.loads(m.group(2))
        counts[labels['kind']] += int(m.group(1))
        if labels.get('role') == 'metric':
            counts['metric'] += int(m.group(1))
    return counts['thread'], counts['metric'], counts['task']


def stored(r):
    c = collections.Counter()
    for b in r.lines():
        c[(b['metric'], b['dbname'])] += 1
    return c


def check_same_measurements(t, pg, binary):
    src = sources(pg, 2)
    args = ['--pprof-addr', '127.0.0.1:0']
    a = Reaper(binary, src, METRICS, args=args).start()
    b = Reaper(binary, src, METRICS, args=args + ['--mode', 'per-metric']).start()
    pa, pb = port_of(a), port_of(b)
    t.ok(a.wait_batches('m9', 'db2', 3) and b.wait_batches('m9', 'db2', 3), 'both modes collect')
    threads, metric_threads, tasks = profile_counts(pb)
    t.is_(metric_threads, NMETRICS * 2, 'per-metric: one thread per (source, metric)')
    t.ok(threads - metric_threads <= 3, 'per-metric: fixed overhead of at most 3 threads (loop, '
         'libuv pool)', 'threads %d, metric threads %d' % (threads, metric_threads))
    conns = pg.psql("select count(*) from pg_stat_activity where application_name = "
                    "'pgreaper-per-metric'")
    t.ok(int(conns) <= 8, 'per-metric: at most 4 connections per source (%s)' % conns)
    vb = json.loads(get(pb, '/debug/vars'))
    t.ok(vb['reaper']['mode'] == 'per-metric' and vb['reaper']['fetches_ok'] > 0,
         '/debug/vars reports the mode and its counters')
    time.sleep(4)
    a.stop()
    b.stop()
    sa, sb = stored(a), stored(b)
    keys = {k for k in sa if k[0] != 'instance_up'}
    t.ok(keys == {k for k in sb if k[0] != 'instance_up'} and len(keys) == 2 * NMETRICS,
         'same set of (metric, dbname) in both modes')
    worst = max(abs(sa[k] - sb[k]) for k in keys)
    t.ok(worst <= 2, 'row counts within one interval at each end (worst difference %d)' % worst,
         str(sorted((k, sa[k], sb[k]) for k in keys)))
    t.is_(b.rc, 0, 'per-metric mode shuts down cleanly (threads joined)')
    # As pgx runs them for pgwatch: prepared once per pooled connection, then executed by
    # name (the server logs each step of the extended protocol with its statement name).
    with open(pg.log) as f:
        log = f.read()
    parses, executes = log.count('parse rp_pm_'), log.count('execute rp_pm_')
    t.ok(executes >= sb[('m0', 'db1')] + sb[('m9', 'db2')],
         'per-metric: metrics run as named prepared statements (%d executions)' % executes)
    t.ok(0 < parses <= 8 * NMETRICS and parses * 2 < executes,
         'per-metric: each prepared once per connection, not per run (%d parses)' % parses)


def check_batch_scaling(t, pg, binary):
    r = Reaper(binary, sources(pg, 2), METRICS, args=['--pprof-addr', '127.0.0.1:0']).start()
    port = port_of(r)
    r.wait_batches('m0', 'db2')
    threads2, _, tasks2 = profile_counts(port)
    r.write_sources(sources(pg, 20))
    r.send(signal.SIGHUP)
    t.ok(r.wait_log('configuration applied') and r.wait_batches('m0', 'db20'),
         'batch mode runs 20 sources')
    threads20, _, tasks20 = profile_counts(port)
    t.is_(threads20, threads2, 'batch mode: same number of threads for 2 and 20 sources')
    t.is_(tasks20 - tasks2, 18, 'batch mode: one more task per added source')
    r.stop()


def check_recovery(t, pg, binary):
    r = Reaper(binary, sources(pg, 1), METRICS, args=['--mode', 'per-metric']).start()
    t.ok(r.wait_batches('m0', 'db1', 2), 'per-metric collects')
    pg.psql("select pg_terminate_backend(pid) from pg_stat_activity "
            "where application_name = 'pgreaper-per-metric'")
    t.ok(r.wait_log('lost connection to source'), 'the lost connection is logged once')
    n = len(r.batches('m5', 'db1'))
    t.ok(r.wait_batches('m5', 'db1', n + 3), 'collection goes on after the connections were killed')
    t.ok('reconnected to source' in r.log(), 'reconnection is logged')
    t.is_(r.log().count('lost connection to source'), 1, 'logged on the transition only')
    t.is_(r.stop(), 0, 'clean exit')


def pprof_top(path, *flags):
    return subprocess.run(['go', 'tool', 'pprof', '-symbolize=none'] + list(flags) + [path],
                          capture_output=True, text=True).stdout


def check_contention(t, pg, binary):
    """Ten metric threads sharing one connection: the block profile shows them waiting in
    the pool's checkout, the mutex profile who waited for the source's lock; Go's format."""
    if not shutil.which('go'):
        t.ok(True, '# SKIP go tool pprof not installed')
        return
    r = Reaper(binary, sources(pg, 1), METRICS,
               args=['--mode', 'per-metric', '--max-parallel-connections-per-db', '1',
                     '--pprof-addr', '127.0.0.1:0', '--block-profile-rate', '1',
                     '--mutex-profile-fraction', '1']).start()
    port = port_of(r)
    t.ok(r.wait_batches('m9', 'db1', 3), 'per-metric collects through one shared connection')
    paths = {}
    for name in ('block', 'mutex'):
        paths[name] = os.path.join(r.dir, name + '.pb.gz')
        with urllib.request.urlopen('http://127.0.0.1:%d/debug/pprof/%s' % (port, name),
                                    timeout=30) as f, open(paths[name], 'wb') as out:
            out.write(f.read())
    raw = pprof_top(paths['block'], '-raw')
    t.ok('contentions/count delay/nanoseconds' in raw.replace('\n', ' ').replace('  ', ' ')
         or re.search(r'contentions/count\s+delay/nanoseconds', raw),
         "block: Go's sample types (contentions/count, delay/nanoseconds)", raw[:400])
    top = pprof_top(paths['block'], '-top', '-sample_index=delay', '-nodefraction=0',
                    '-nodecount=500')
    m = re.search(r'^\s*([\d.]+)(m?s|us|ns)?\s.*\bcheckout\b', top, re.M)
    t.ok(m is not None, "block: the threads' waits in the pool's checkout, with their delay",
         top[:1500])
    mtop = pprof_top(paths['mutex'], '-top')
    t.ok('Type: delay' in mtop and 'pgreaper mutex' in mtop, 'mutex: a profile in Go\'s format',
         mtop[:600])
    try:
        urllib.request.urlopen('http://127.0.0.1:%d/debug/pprof/trace' % port, timeout=10)
        code, body = 200, ''
    except urllib.error.HTTPError as e:
        code, body = e.code, e.read().decode()
    t.ok(code == 501 and 'no execution tracer' in body, '/debug/pprof/trace: 501 with a reason',
         (code, body))
    t.is_(r.stop(), 0, 'clean exit with contention profiling on')


def main():
    t = Tap()
    pg = Postgres('permetric', {'max_connections': '100', 'log_min_duration_statement': '0'})
    binary = sys.argv[1]
    check_same_measurements(t, pg, binary)
    check_batch_scaling(t, pg, binary)
    check_recovery(t, pg, binary)
    check_contention(t, pg, binary)
    pg.cleanup()
    t.done()


if __name__ == '__main__':
    main()
