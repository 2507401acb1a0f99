"""The built-in metric library against a real PostgreSQL 15: every metric's SQL for the
server's version runs without error (with pg_stat_statements loaded and the presets'
init_sql applied), returns epoch_ns and exactly the columns docs/metrics.md lists, its
gauges exist; presets reference only existing metrics; docs/metrics.md is what
`pgreaper metric doc` prints; and without pg_stat_statements the `full` preset skips that
metric with one message while every other metric is collected."""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

SETUP = '''
create table pgr_t (id serial primary key, v text);
create index pgr_t_v on pgr_t (v);
insert into pgr_t (v) select md5(g::text) from generate_series(1, 5000) g;
create sequence pgr_seq maxvalue 100;
select nextval('pgr_seq') from generate_series(1, 90);
create function pgr_f(int) returns int language plpgsql as $$ begin return $1 + 1; end $$;
select pgr_f(g) from generate_series(1, 10) g;
analyze;
'''

# The helper functions pgwatch's users install for remote hosts, with their signatures and
# constant values: the SQL variants of the metrics pgreaper reads from /proc when local.
HELPERS = '''
create function get_load_average(out load_1min float8, out load_5min float8,
                                 out load_15min float8) language sql as $$ select 1.0, 2.0, 3.0 $$;
create function get_psutil_cpu(out cpu_utilization float8, out load_1m_norm float8,
    out load_1m float8, out load_5m_norm float8, out load_5m float8, out "user" float8,
    out system float8, out idle float8, out iowait float8, out irqs float8, out other float8)
  language sql as $$ select 1.0, 0.1, 0.2, 0.1, 0.2, 1.0, 1.0, 97.0, 0.5, 0.2, 0.3 $$;
create function get_psutil_mem(out total int8, out used int8, out free int8,
    out buff_cache int8, out available int8, out percent float8, out swap_total int8,
    out swap_used int8, out swap_free int8, out swap_percent float8)
  language sql as $$ select 8, 4, 2, 2, 4, 50.0, 0, 0, 0, 0.0 $$;
create function get_psutil_disk(out dir_or_tablespace text, out path text, out total float8,
    out used float8, out free float8, out percent float8) returns setof record
  language sql as $$ select 'data_directory', '/x', 10.0, 5.0, 5.0, 50.0 $$;
create function get_psutil_disk_io_total(out read_count int8, out write_count int8,
                                         out read_bytes int8, out write_bytes int8)
  language sql as $$ select 1, 2, 3, 4 $$;
'''
FROM_PROC = ('cpu_load', 'psutil_cpu', 'psutil_mem', 'psutil_disk_io_total', 'psutil_disk')


def pgreaper(binary, *args):
    p = subprocess.run([binary] + list(args), capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def metric_names(binary, preset=None):
    rc, out, _ = pgreaper(binary, 'metric', 'list', *(['--preset', preset] if preset else []))
    return [l.split()[0] for l in out.splitlines()[1:]] if rc == 0 else []


def doc_gauges(doc, metric):
    m = re.search(r'^## %s\n.*?^- Gauges: ([^\n]*)$' % re.escape(metric), doc, re.M | re.S)
    g = m.group(1) if m else ''
    return [] if g in ('all', 'none (all counters)') else [x.strip() for x in g.split(',')]


def psql(pg, sql, header=False):
    r = subprocess.run(['psql', '-X', '-A', '-q', '-v', 'ON_ERROR_STOP=1', '-h', pg.sock, '-p',
                        str(pg.port), '-U', 'postgres', '-d', 'postgres', '-c', sql]
                       + ([] if header else ['-t']), capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def header(pg, sql):
    """Result column names of sql, from psql's header line (no rows fetched)."""
    rc, out, _ = psql(pg, 'select * from (%s) q limit 0' % sql.rstrip().rstrip(';'), header=True)
    return out.splitlines()[0].split('|') if rc == 0 and out else []


def check_metric(t, pg, binary, doc, name):
    rc, sql, err = pgreaper(binary, 'metric', 'print-sql', name, '--pg-version', '15')
    if rc != 0 and 'no SQL for PostgreSQL 15' in err:
        t.ok(True, '%s: no SQL for 15 (newer views only)' % name)
        return
    if rc == 0 and not sql.strip():
        t.ok(name in ('change_events', 'server_log_event_counts'),
             '%s: no SQL of its own, computed by pgreaper' % name)
        return
    rc2, cols, _ = pgreaper(binary, 'metric', 'print-sql', name, '--pg-version', '15', '--columns')
    want = [c.strip() for c in cols.strip().split(',')]
    got = header(pg, sql)
    rrc, _, rerr = psql(pg, sql)
    gauges = doc_gauges(doc, name)
    t.ok(rc == 0 and rrc == 0 and got == want and 'epoch_ns' in got
         and set(gauges) <= set(got),
         '%s: runs on 15, returns epoch_ns and the documented columns, gauges exist' % name,
         'rc=%s err=%s\n got %s\nwant %s\ngauges %s' % (rc, rerr[-300:], got, want, gauges))


def check_from_proc(t, pg, binary):
    """Read from /proc (the source is on this host), the host metrics have the columns
    of their SQL through the helper functions."""
    src = ('- name: local\n  conn_str: %s\n  custom_metrics: {%s}\n'
           % (pg.conn_str(), ', '.join('%s: 1' % m for m in FROM_PROC)))
    r = Reaper(binary, src).start()
    for m in FROM_PROC:
        r.wait_batches(m, count=1, timeout=20)
    r.stop()
    for m in FROM_PROC:
        _, sql, _ = pgreaper(binary, 'metric', 'print-sql', m, '--pg-version', '15')
        got = list(r.batches(m)[0]['data'][0]) if r.batches(m) else []
        t.is_(got, header(pg, sql), '%s: from /proc with the columns of its SQL' % m)


def check_without_extension(t, binary):
    pg = Postgres('metrics_noext')
    src = '- name: plain\n  conn_str: %s\n  preset_metrics: full\n' % pg.conn_str()
    r = Reaper(binary, src, args=['--interval-scale', '0.0034']).start()
    t.ok(r.wait_batches('db_stats', count=3) and r.wait_batches('wal', count=2),
         'full preset without pg_stat_statements: the other metrics are collected')
    time.sleep(4)
    r.stop()
    for m in ('stat_statements', 'stat_statements_calls'):
        lines = [l for l in r.log().splitlines() if 'metric=%s:' % m in l]
        t.ok(len(lines) == 1 and 'metric skipped' in lines[0] and 'SQLSTATE 42P01' in lines[0],
             '%s without pg_stat_statements: one clear message, not an error storm' % m,
             '\n'.join(lines))
    expected = ('metric=stat_statements:', 'metric=stat_statements_calls:',
                'has no SQL for PostgreSQL', 'metric=server_log_event_counts:')
    errors = [l for l in r.log().splitlines() if re.search(r'\] (ERROR|WARNING):', l)
              and not any(e in l for e in expected)]
    t.ok(not errors, 'no other metric fails', '\n'.join(errors[:5]))
    pg.cleanup()


def main():
    t = Tap()
    binary = sys.argv[1]
    root = os.environ.get('RP_SOURCE_DIR', os.path.join(os.path.dirname(__file__), '..', '..'))
    rc, doc, _ = pgreaper(binary, 'metric', 'doc')
    with open(os.path.join(root, 'docs', 'metrics.md')) as f:
        t.ok(rc == 0 and f.read() == doc, 'docs/metrics.md is the output of pgreaper metric doc '
             '(regenerate: pgreaper metric doc > docs/metrics.md)')
    names = metric_names(binary)
    t.ok(len(names) >= 30, 'the catalogue has %d metrics' % len(names))
    rc, out, _ = pgreaper(binary, 'preset', 'list')
    presets = [l.split()[0] for l in out.splitlines()[1:]]
    t.ok({'minimal', 'basic', 'standard', 'exhaustive', 'full', 'debug', 'standby'} <= set(presets),
         'the presets exist: %s' % ', '.join(presets))
    t.ok(all(set(metric_names(binary, p)) <= set(names) and metric_names(binary, p)
             for p in presets), 'presets reference only existing metrics')
    # The pooler consoles' metrics run on PgBouncer and Pgpool-II (tests/integration/poolers.py).
    console = {n for n in names if n.startswith(('pgbouncer_', 'pgpool_'))}
    t.ok(len(console) == 6, 'six metrics for pooler consoles')
    names = [n for n in names if n not in console]
    t.is_(set(metric_names(binary, 'debug')), set(names), 'debug runs every PostgreSQL metric')
    pg = Postgres('metrics', {'shared_preload_libraries': "'pg_stat_statements'",
                              'track_functions': "'all'", 'track_io_timing': 'on'})
    rc, init, _ = pgreaper(binary, 'metric', 'print-init', 'full')
    pg.psql(init + SETUP + HELPERS)
    for name in names:
        check_metric(t, pg, binary, doc, name)
    check_from_proc(t, pg, binary)
    pg.cleanup()
    check_without_extension(t, binary)
    t.done()


if __name__ == '__main__':
    main()
