"""pgwatch's own file shapes, as its users have them (written here, not copied): a metrics
file with the metrics pgwatch computes in its own code (an empty SQL text, a comment-only
placeholder, PL/Python helper calls) and pgwatch2's legacy keys; a sources file with
every kind, a disabled source of another kind, pgwatch2 keys and $VAR values.

The files load; sources of every kind are taken (the pgbouncer and prometheus ones run,
and fail to connect on their own); the OS metrics come
from /proc with pgwatch's columns when the server is local (a unix socket here); the
placeholders are never sent to the server; change_events (without the hash metrics this file
lacks) and server_log_event_counts (without csvlog) are reported once per source; the same
in per-metric mode."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

METRICS = '''
metrics:
    change_events:
        description: >
            Computed by the collector from the object hash metrics.
        sqls:
            14: ""
    server_log_event_counts:
        description: log tailing, done by the collector itself
        sqls:
            14: |-
                /*
                  placeholder: the collector reads the server log
                */
    cpu_load:
        sqls:
            14: |-
                select (extract(epoch from now()) * 1e9)::int8 as epoch_ns,
                  load_1min, load_5min, load_15min
                from get_load_average();
        init_sql: |-
            CREATE EXTENSION IF NOT EXISTS plpython3u;
        gauges:
            - '*'
        is_instance_level: true
    psutil_mem:
        sqls:
            14: select * from get_psutil_mem()
        is_instance_level: true
    psutil_cpu:
        sqls:
            14: select * from get_psutil_cpu()
        is_instance_level: true
    psutil_disk:
        sqls:
            14: select * from get_psutil_disk()
        is_instance_level: true
    psutil_disk_io_total:
        sqls:
            14: select * from get_psutil_disk_io_total()
        is_instance_level: true
    db_size:
        sqls:
            11: |
                select (extract(epoch from now()) * 1e9)::int8 as epoch_ns,
                  pg_database_size(current_database()) as size_b
        gauges: ['*']
        is_private: false
        metric_attrs:
            is_instance_level: false
    pgbouncer_stats:
        sqls:
            0: show stats
presets:
    exhaustive:
        description: everything
        metrics:
            change_events: 1
            server_log_event_counts: 1
            cpu_load: 1
            psutil_mem: 1
            psutil_cpu: 1
            psutil_disk: 1
            psutil_disk_io_total: 1
            db_size: 1
            patroni_version: 60
'''

SOURCES = '''
- name: exporter
  kind: prometheus
  conn_str: "http://localhost:9187/metrics"
  preset_metrics: exhaustive
  is_enabled: true

- name: local1
  conn_str: {conn}
  kind: postgres
  preset_metrics: exhaustive
  custom_metrics:
  preset_metrics_standby:
  custom_metrics_standby:
  include_pattern:
  exclude_pattern:
  is_enabled: true
  group: default
  custom_tags:
      aws_instance_id: i-0af01c0123456789a

- name: cluster
  kind: patroni
  conn_str: etcd://localhost:2379/service/batman
  stmt_timeout: 5
  preset_metrics:
  custom_metrics:
    wal: 60
  dbname_include_pattern: (bar|postgres)
  dbname_exclude_pattern:
  is_enabled: false
  only_if_master: true

- name: bouncer
  conn_str: postgresql://pgwatch:secret@localhost/pgbouncer
  kind: pgbouncer
  custom_metrics:
    pgbouncer_stats: 10
  is_enabled: true

- name: $RP_TEST_SOURCE
  group: $RP_TEST_GROUP
  conn_str: $RP_TEST_CONN
  kind: $RP_TEST_KIND
  is_enabled: true
  preset_metrics: $RP_TEST_PRESET
'''

OS_COLUMNS = {
    'cpu_load': ['load_1min', 'load_5min', 'load_15min'],
    'psutil_mem': ['total', 'used', 'free', 'buff_cache', 'available', 'percent', 'swap_total',
                   'swap_used', 'swap_free', 'swap_percent'],
    'psutil_cpu': ['cpu_utilization', 'load_1m_norm', 'load_1m', 'load_5m_norm', 'load_5m',
                   'user', 'system', 'idle', 'iowait', 'irqs', 'other'],
    'psutil_disk_io_total': ['read_count', 'write_count', 'read_bytes', 'write_bytes'],
    'psutil_disk': ['tag_dir_or_tablespace', 'tag_path', 'total', 'used', 'free', 'percent'],
}


def check_run(t, r, pg, label, trace):
    t.ok(r.wait_batches('db_size', 'local2', 2, timeout=30), '%s: SQL metrics collect' % label,
         r.log()[-2000:])
    for m, cols in OS_COLUMNS.items():
        t.ok(r.wait_batches(m, 'local1', 2, timeout=20), '%s: %s collects' % (label, m),
             r.log()[-1500:])
        rows = [b['data'][0] for b in r.batches(m, 'local1')]
        t.ok(rows and all(sorted(x) == sorted(cols + ['epoch_ns']) for x in rows),
             "%s: %s has pgwatch's columns" % (label, m), rows[:1])
    mem = r.batches('psutil_mem', 'local1')[-1]['data'][0]
    t.ok(0 < mem['available'] <= mem['total'] and 0 <= mem['percent'] <= 100,
         '%s: memory figures are plausible' % label, mem)
    cpu = r.batches('psutil_cpu', 'local1')[-1]['data'][0]
    parts = sum(cpu[k] for k in ('user', 'system', 'idle', 'iowait', 'irqs', 'other'))
    t.ok(0 <= cpu['cpu_utilization'] <= 100 and parts <= 100.5,
         '%s: CPU shares are percentages' % label, cpu)
    log = r.log()
    for m, said in (('change_events', 'change_events compares the catalogue'),
                    ('server_log_event_counts', 'metric skipped: it cannot run')):
        n = log.count('source=local1 metric=%s: %s' % (m, said))
        t.is_(n, 1, '%s: %s left out, said once' % (label, m))
        t.ok(not r.batches(m), '%s: %s stores nothing' % (label, m))
    t.ok('metric query failed' not in log, '%s: no metric fails' % label, log[-2000:])
    if trace:
        with open(os.path.join(trace, 'local1.trace')) as f:
            sent = f.read()
        t.ok('placeholder' not in sent and 'get_load_average' not in sent and 'get_psutil' not in
             sent, '%s: neither placeholders nor helper calls reach the server' % label)


def main():
    t = Tap()
    pg = Postgres('pgwatch_files')
    env = {'RP_TEST_SOURCE': 'local2', 'RP_TEST_GROUP': 'default',
           'RP_TEST_CONN': pg.conn_str(), 'RP_TEST_KIND': 'postgres',
           'RP_TEST_PRESET': 'exhaustive'}
    src = SOURCES.format(conn=pg.conn_str())

    check = Reaper(sys.argv[1], src, METRICS, args=['--check'], env=env).start()
    rc = check.proc.wait(60)
    out = check.log()
    t.is_(rc, 0, 'pgwatch-shaped files pass --check')
    t.ok('is skipped' not in out and 'invalid source kind' not in out,
         'sources of every kind pgwatch has are taken', out)
    t.ok('"cluster"' not in out, 'a disabled source is not even checked', out)
    t.ok('key "stmt_timeout" is read by pgwatch2 only' in out, 'pgwatch2 keys: a warning', out)
    t.ok('preset "exhaustive" references metric "patroni_version"' in out,
         'a preset naming a metric the file lacks: a warning', out)

    trace = os.path.join(check.dir, 'trace')
    os.mkdir(trace)
    r = Reaper(sys.argv[1], src, METRICS, env=env, args=['--libpq-trace', trace]).start()
    check_run(t, r, pg, 'batch', trace)
    t.is_(r.stop(), 0, 'batch: exit 0')

    r = Reaper(sys.argv[1], src, METRICS, env=env, args=['--mode=per-metric']).start()
    check_run(t, r, pg, 'per-metric', None)
    t.is_(r.stop(), 0, 'per-metric: exit 0')
    t.done()


if __name__ == '__main__':
    main()
