#!/usr/bin/env python3
"""pgreaper beside its peers, on one workload: the same queries every second against one
PostgreSQL 15 over TCP on loopback, from

  - pgreaper, batch mode, to a jsonfile sink (/dev/null)
  - pgreaper, batch mode, to the PostgreSQL sink (a database of the same server)
  - pgreaper, per-metric mode, to a jsonfile sink
  - prometheus-postgres-exporter (Debian's), the queries as its custom queries, scraped
    every second by this script
  - collectd (Debian's collectd-core), its postgresql plugin, Interval 1
  - bench/bare_pipeline: the floor, the same queries as one pipeline of prepared
    statements with a sync point after each, every value read, nothing else

The queries are the `standard` preset's SQL metrics that run on a primary (the SQL
pgreaper itself picks for PostgreSQL 15: `pgreaper metric print-sql`). Each round runs
every peer in turn, alone, for --seconds after a warm-up, so that they share the server's
conditions without sharing its CPU; the last round also counts each one's system calls
with strace -c -f over 10 s. Figures per cycle (one second): the client's CPU (every
thread, /proc schedstat), the CPU of the server backends that answer it, and for the
PostgreSQL sink, the CPU of the sink's backend too. Prints figures, never passes or fails.

  python3 bench/peers.py [--rounds 3] [--seconds 40] [--binary build/pgreaper]

Needs prometheus-postgres-exporter, collectd-core and strace (scripts/deps.sh --bench).
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
sys.path.insert(0, HERE)
from core import proc_cpu, setup_databases, strace_counts  # noqa: E402
from pgharness import Postgres  # noqa: E402

WARMUP = 6
NUMERIC = ('smallint', 'integer', 'bigint', 'numeric', 'real', 'double precision')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def workload(pg, binary):
    """[(name, sql, [(column, is_numeric, is_bool)])] of the standard preset's SQL metrics."""
    out = []
    listing = subprocess.run([binary, 'metric', 'list', '--preset', 'standard'],
                             capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines()[1:]:
        name, role = line.split()[0], line.split()[3]
        if role == 'standby':
            continue
        p = subprocess.run([binary, 'metric', 'print-sql', name, '--pg-version', '150000'],
                           capture_output=True, text=True)
        sql = p.stdout.strip().rstrip(';')
        if name == 'instance_up' or p.returncode != 0 or \
                not sql.lower().lstrip('( ').startswith(('select', 'with')):
            continue  # pgreaper's own, or read from /proc: no query
        view = 'peers_probe_%s' % name
        try:
            pg.psql('create temporary view %s as %s' % (view, sql), db='bench1')
        except RuntimeError:
            continue  # not runnable here (an extension missing): no peer runs it
        cols = pg.psql("begin; create temporary view %s as %s; select attname || '|' || "
                       "format_type(atttypid, atttypmod) from pg_attribute where attrelid = "
                       "'%s'::regclass and attnum > 0 order by attnum; rollback" %
                       (view, sql, view), db='bench1')
        typed = []
        for c in cols.splitlines():
            col, typ = c.split('|', 1)
            typed.append((col, typ.split('(')[0] in NUMERIC, typ == 'boolean'))
        out.append((name, sql, typed))
    return out


def exporter_yaml(queries):
    lines = []
    for name, sql, cols in queries:
        lines.append('%s:' % name)
        lines.append('  query: %s' % json_str(' '.join(sql.split())))
        lines.append('  metrics:')
        for col, numeric, boolean in cols:
            lines.append('    - %s:' % col)
            lines.append('        usage: "%s"' % ('GAUGE' if numeric or boolean else 'LABEL'))
            lines.append('        description: "%s"' % col)
    return '\n'.join(lines) + '\n'


def json_str(s):
    import json
    return json.dumps(s)


def collectd_conf(queries, port, d):
    q = []
    for name, sql, cols in queries:
        labels = [c for c, numeric, _ in cols if not numeric]
        q.append('  <Query %s>\n    Statement %s' % (name, json_str(' '.join(sql.split()))))
        for col, numeric, _ in cols:
            if not numeric:
                continue
            q.append('    <Result>\n      Type gauge\n      InstancePrefix "%s"' % col)
            if labels:
                q.append('      InstancesFrom %s' % ' '.join('"%s"' % x for x in labels))
            q.append('      ValuesFrom "%s"\n    </Result>' % col)
        q.append('  </Query>')
    db = ('  <Database bench1>\n    Host "127.0.0.1"\n    Port "%d"\n    User "postgres"\n%s'
          '  </Database>' % (port, ''.join('    Query %s\n' % n for n, _, _ in queries)))
    return ('Hostname "bench"\nFQDNLookup false\nInterval 1\nBaseDir "%s"\nPIDFile "%s/pid"\n'
            'TypesDB "/usr/share/collectd/types.db"\nLoadPlugin logfile\n'
            '<Plugin logfile>\n  LogLevel "crit"\n  File "%s/collectd.log"\n</Plugin>\n'
            'LoadPlugin postgresql\n<Plugin postgresql>\n%s\n%s\n</Plugin>\n'
            % (d, d, d, '\n'.join(q), db))


def sources_yaml(queries, conn):
    return ('- name: bench1\n  conn_str: %s\n  custom_metrics:\n%s' %
            (conn, ''.join('    %s: 1\n' % n for n, _, _ in queries)))


def backends(pg, db):
    out = pg.psql("select pid from pg_stat_activity where backend_type = 'client backend' "
                  "and pid <> pg_backend_pid() and datname = '%s'" % db)
    return [int(x) for x in out.split()] if out else []


def cpu_of(pids):
    total = 0.0
    for p in pids:
        try:
            total += proc_cpu(p)
        except OSError:
            pass  # gone (a per-metric pool connection closed): its CPU is lost to both ends
    return total


class Peer:
    def __init__(self, label, argv, env=None, scrape=None, sink_db=None):
        self.label, self.argv, self.env, self.scrape, self.sink_db = (label, argv, env, scrape,
                                                                     sink_db)
        self.client, self.backend, self.sink = [], [], []
        self.log_path = os.devnull
        self.syscalls = None

    def run(self, pg, seconds, count_syscalls):
        env = dict(os.environ, **(self.env or {}))
        log = open(self.log_path, 'a')
        proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=log, env=env)
        try:
            self._window(pg, proc, seconds, count_syscalls)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()

    def _tick(self, until):
        while time.time() < until:
            if self.scrape:
                try:
                    urllib.request.urlopen(self.scrape, timeout=5).read()
                except OSError:
                    pass
            time.sleep(max(0.0, 1.0 - (time.time() % 1.0)))

    def _window(self, pg, proc, seconds, count_syscalls):
        self._tick(time.time() + WARMUP)
        be, sk = backends(pg, 'bench1'), backends(pg, self.sink_db) if self.sink_db else []
        c0, b0, s0, t0 = proc_cpu(proc.pid), cpu_of(be), cpu_of(sk), time.time()
        self._tick(t0 + seconds)
        el = time.time() - t0
        self.client.append((proc_cpu(proc.pid) - c0) / el)
        self.backend.append((cpu_of(be) - b0) / el)
        self.sink.append((cpu_of(sk) - s0) / el)
        if count_syscalls:
            calls = strace_counts(proc.pid, lambda: self._tick(time.time() + 10))
            self.syscalls = {k: v / 10.0 for k, v in calls.items()}


def sink_floor(pg, d, period, seconds=20):
    """The server's CPU per row for the rows the PostgreSQL sink stored in its last full
    seconds, written again by a plain client (psql) as pgreaper would at best: per period
    (the sink's --batching-delay), one transaction with one binary COPY per table. Returns
    (rows per second, floor CPU per row in microseconds)."""
    tables = pg.psql("select c.relname from pg_class c join pg_namespace n on n.oid = "
                     "c.relnamespace where n.nspname = 'public' and c.relkind = 'p'",
                     db='sink').split()
    if not tables:
        return 0, float('nan')
    last = float(pg.psql('select floor(extract(epoch from max(t))) from (%s) q' % ' union all '.join(
        'select max(time) t from public.%s' % quote_ident(t) for t in tables), db='sink'))
    script, rows = ['select pg_read_file(\'/proc/self/schedstat\');'], 0
    for k in range(seconds // period):
        lo, hi = last - seconds + k * period, last - seconds + (k + 1) * period
        script.append('begin;')
        for t in tables:
            f = os.path.join(d, 'floor-%s-%d.bin' % (t, k))
            sel = ('select time, dbname, data, tag_data from public.%s where time >= '
                   'to_timestamp(%d) and time < to_timestamp(%d)' % (quote_ident(t), lo, hi))
            n = int(pg.psql('select count(*) from (%s) q' % sel, db='sink'))
            if n == 0:
                continue
            rows += n
            pg.psql("copy (%s) to '%s' (format binary)" % (sel, f), db='sink')
            script.append("\\copy public.%s (time, dbname, data, tag_data) from '%s' "
                          "(format binary)" % (quote_ident(t), f))
        script.append('commit;')
    script.append("select pg_read_file('/proc/self/schedstat');")
    path = os.path.join(d, 'floor.sql')
    with open(path, 'w') as f:
        f.write('\n'.join(script) + '\n')
    out = subprocess.run(['psql', '-X', '-A', '-t', '-q', '-h', pg.sock, '-p', str(pg.port),
                          '-U', 'postgres', '-d', 'sink', '-f', path],
                         capture_output=True, text=True, check=True).stdout.split()
    cpu = (int(out[-3]) - int(out[0])) / 1e9  # schedstat: ns on CPU, first and last
    return rows / seconds, 1e6 * cpu / max(rows, 1)


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def median_ms(v):
    return 1e3 * statistics.median(v) if v else float('nan')


def spread(v):
    """' (min-max)' over the rounds, when there are several."""
    return ' (%.2f-%.2f)' % (1e3 * min(v), 1e3 * max(v)) if len(v) > 1 else ''


def report(peers, bare, nq):
    print('\n| | client ms / cycle | ratio to backend | server backend ms / cycle | '
          'syscalls / cycle |')
    print('|---|---|---|---|---|')
    for p in peers:
        c, b = median_ms(p.client), median_ms(p.backend)
        extra = ''
        if p.sink_db:
            extra = ' (+ sink backend %.2f ms)' % median_ms(p.sink)
        calls = '-'
        if p.syscalls:
            top = sorted(p.syscalls.items(), key=lambda kv: -kv[1])[:5]
            calls = '%.1f (%s)' % (sum(p.syscalls.values()),
                                   ', '.join('%.1f %s' % (v, k) for k, v in top))
        vs = ' = %.2fx the floor' % (c / median_ms(bare.client)) if p is not bare else ''
        print('| %s | %.2f%s%s | %.1f %% | %.2f%s | %s |' % (p.label, c, spread(p.client), vs,
                                                          100 * c / b, b, extra, calls))
    print('\n%d queries per cycle; medians over the rounds (min-max).' % nq)


def make_peers(a, pg, port, d, queries):
    conn = 'host=127.0.0.1 port=%d user=postgres dbname=bench1' % port
    src = os.path.join(d, 'sources.yaml')
    with open(src, 'w') as f:
        f.write(sources_yaml(queries, conn))
    sqlfile = os.path.join(d, 'queries.sql')
    with open(sqlfile, 'w') as f:
        f.write(''.join(sql + '\n--;\n' for _, sql, _ in queries))
    with open(os.path.join(d, 'exporter.yaml'), 'w') as f:
        f.write(exporter_yaml(queries))
    with open(os.path.join(d, 'collectd.conf'), 'w') as f:
        f.write(collectd_conf(queries, port, d))
    pgr = [a.binary, '--sources', src, '--refresh', '0', '--log-level', 'warn']
    sink = 'postgresql://postgres@127.0.0.1:%d/sink' % port
    eport = free_port()
    bare_bin = os.path.join(os.path.dirname(a.binary), 'bench', 'bare_pipeline')
    big = str(WARMUP + a.seconds + 15)
    bare = Peer('bare libpq pipeline (floor)', [bare_bin, conn, sqlfile, big, '1000',
                                                '--sync-each'])
    peers = [
        Peer('pgreaper batch -> jsonfile', pgr + ['--sink', 'jsonfile:///dev/null']),
        Peer('pgreaper batch -> PostgreSQL sink', pgr + ['--sink', sink] + (
            ['--batching-delay', '%ds' % a.batching_delay] if a.batching_delay else []),
            sink_db='sink'),
        Peer('pgreaper per-metric -> jsonfile',
             pgr + ['--mode', 'per-metric', '--sink', 'jsonfile:///dev/null']),
        Peer('postgres_exporter %s' % exporter_version(),
             ['prometheus-postgres-exporter', '--disable-default-metrics',
              '--disable-settings-metrics', '--no-collector.database',
              '--no-collector.bgwriter', '--extend.query-path', os.path.join(d, 'exporter.yaml'),
              '--web.listen-address', '127.0.0.1:%d' % eport],
             env={'DATA_SOURCE_NAME': 'postgresql://postgres@127.0.0.1:%d/bench1?sslmode=disable'
                                      % port},
             scrape='http://127.0.0.1:%d/metrics' % eport),
        Peer('collectd %s' % collectd_version(),
             ['collectd', '-f', '-C', os.path.join(d, 'collectd.conf')]),
        bare,
    ]
    for i, p in enumerate(peers):
        p.log_path = os.path.join(d, 'peer%d.log' % i)
    return peers, bare


def exporter_version():
    p = subprocess.run(['prometheus-postgres-exporter', '--version'], capture_output=True,
                       text=True)
    words = (p.stdout + p.stderr).split()
    return words[2] if len(words) > 2 else ''


def collectd_version():
    p = subprocess.run(['collectd', '-h'], capture_output=True, text=True)
    for w in (p.stdout + p.stderr).split():
        if w[:1].isdigit() and '.' in w:
            return w.rstrip(',')
    return ''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--seconds', type=int, default=40)
    ap.add_argument('--binary', default=os.path.join(HERE, '..', 'build', 'pgreaper'))
    ap.add_argument('--batching-delay', type=int, default=0, metavar='SECONDS',
                    help='the PostgreSQL sink\'s --batching-delay (default: pgreaper\'s)')
    ap.add_argument('--only', default='',
                    help='run only the peers whose label contains this text (and the floor)')
    ap.add_argument('--keep', action='store_true', help='keep the peers\' files and logs')
    a = ap.parse_args()
    a.binary = os.path.abspath(a.binary)
    if not a.batching_delay:
        h = subprocess.run([a.binary, '--help'], capture_output=True, text=True).stdout
        m = re.search(r'--batching-delay .*\n.*default (\d+)s', h)
        a.batching_delay = int(m.group(1)) if m else 1
    for tool in ('prometheus-postgres-exporter', 'collectd', 'strace'):
        if not shutil.which(tool):
            sys.exit('peers.py: %s is not installed (scripts/deps.sh --bench)' % tool)
    port = free_port()
    pg = Postgres('peers', {'listen_addresses': "'127.0.0.1'", 'port': str(port),
                            'max_connections': '100', 'track_io_timing': 'on',
                            'track_functions': 'all'})
    d = tempfile.mkdtemp(prefix='rp-peers-')
    os.chmod(d, 0o777)  # the server writes the sink floor's COPY files there
    if a.keep:
        print('peers.py: configurations and logs kept in %s' % d)
    try:
        setup_databases(pg, 1, 30)
        pg.psql('create database sink')
        queries = workload(pg, a.binary)
        peers, bare = make_peers(a, pg, port, d, queries)
        peers = [p for p in peers if a.only in p.label or p is bare or p is peers[0]]
        print('peers.py: %d queries a second (%s), %d rounds x %d s, PostgreSQL 15 over TCP' %
              (len(queries), ', '.join(n for n, _, _ in queries), a.rounds, a.seconds))
        for r in range(a.rounds):
            for p in peers:
                print('round %d: %s' % (r + 1, p.label), flush=True)
                p.run(pg, a.seconds, r == a.rounds - 1)
        report(peers, bare, len(queries))
        sink = ([p for p in peers if p.sink_db] or [None])[0]
        if sink is None:
            return
        rate, floor_us = sink_floor(pg, d, a.batching_delay)
        own_us = 1e3 * median_ms(sink.sink) / rate if rate else float('nan')
        print('PostgreSQL sink: %.0f rows a second; the sink backend\'s CPU per stored row '
              '%.1f us, the floor (the same rows, per second one transaction of one binary '
              'COPY per table every %d s, from psql) %.1f us: %.2fx' % (
                  rate, own_us, a.batching_delay, floor_us, own_us / floor_us))
        print('pgreaper\'s client CPU for the sink path: %.2f ms a cycle (%.2fx the collection '
              'path)' % (median_ms(sink.client) - median_ms(peers[0].client),
                         (median_ms(sink.client) - median_ms(peers[0].client)) /
                         median_ms(peers[0].client)))
    finally:
        pg.cleanup()
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    main()
