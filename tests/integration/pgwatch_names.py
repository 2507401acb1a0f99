"""The built-in catalogue under pgwatch's names, on a real PostgreSQL 15: the built-in
`exhaustive` and `full` presets run (with pg_stat_statements, archiving on, a replication
slot, a partitioned table, a function, a long statement, DDL and a RAISE WARNING in the
csvlog during the run), and every metric pgwatch's `exhaustive` and `full` presets name
that pgreaper promises is in the preset, is stored under pgwatch's name and has every
column pgwatch's metric has. Metrics that return no row on a lone primary (replication,
wal_receiver) are checked on their SQL's columns instead. No metric fails.

PROMISED is the list docs/config.md refers to: pgwatch's metric names and columns (facts
about pgwatch's file, master at the time of writing), not its SQL."""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

PROMISED = {
    'archiver': 'archived_count failed_count is_failing_int seconds_since_last_failure',
    'archiver_pending_count': 'archiver_pending_count',
    'backends': 'total instance_total max_connections background_workers active idle '
                'idleintransaction waiting blocked longest_waiting_seconds avg_waiting_seconds '
                'longest_session_seconds avg_session_seconds longest_tx_seconds avg_tx_seconds '
                'longest_autovacuum_seconds longest_query_seconds avg_query_seconds '
                'max_xmin_age_tx av_workers',
    'bgwriter': 'checkpoints_timed checkpoints_req checkpoint_write_time checkpoint_sync_time '
                'buffers_checkpoint buffers_clean maxwritten_clean buffers_backend '
                'buffers_backend_fsync buffers_alloc',
    'checkpointer': 'num_timed num_requested write_time sync_time buffers_written last_reset_s',
    'change_events': 'details',
    'cpu_load': 'load_1min load_5min load_15min',
    'datfrozenxid': 'datfrozenxid_age datminmxid_age',
    'db_size': 'size_b catalog_size_b indexes_size_b',
    'db_stats': 'numbackends xact_commit xact_rollback blks_read blks_hit tup_returned '
                'tup_fetched tup_inserted tup_updated tup_deleted conflicts temp_files '
                'temp_bytes deadlocks blk_read_time blk_write_time postmaster_uptime_s '
                'checksum_failures checksum_last_failure_s in_recovery_int tag_sys_id '
                'session_time active_time idle_in_transaction_time sessions '
                'sessions_abandoned sessions_fatal sessions_killed invalid_indexes',
    'index_stats': 'tag_schema tag_index_name tag_index_full_name tag_table_name '
                   'tag_table_full_name idx_scan idx_tup_read idx_tup_fetch idx_blks_read '
                   'idx_blks_hit index_size_b index_full_name_val tag_index_def_hash '
                   'index_def is_invalid_int is_pk_int is_uq_or_exc tag_sys_id',
    'instance_up': 'is_up',
    'locks': 'tag_locktype count',
    'locks_mode': 'tag_lockmode count',
    'postgres_role': 'in_recovery_int',
    'replication': 'tag_application_name tag_usename tag_client_info sent_lag_b write_lag_b '
                   'flush_lag_b replay_lag_b write_lag_ms flush_lag_ms replay_lag_ms state '
                   'sync_state is_sync_int in_recovery_int',
    'replication_slots': 'tag_slot_name tag_plugin active non_active_int restart_lsn_lag_b '
                         'xmin_age_tx',
    'sequence_health': 'max_used_pct p50_used_seq_count p75_used_seq_count',
    'settings_num': 'tag_name value',
    'sproc_stats': 'tag_schema tag_function_name tag_function_full_name tag_oid sp_calls '
                   'self_time total_time',
    'stat_activity': 'query count',
    'stat_statements': 'tag_queryid users calls total_time rows shared_blks_hit '
                       'shared_blks_read shared_blks_written shared_blks_dirtied '
                       'temp_blks_read temp_blks_written blk_read_time blk_write_time '
                       'temp_blk_read_time temp_blk_write_time wal_fpi wal_bytes '
                       'total_plan_time jit_generation_time tag_query',
    'stat_statements_calls': 'calls total_time total_plan_time',
    'table_bloat_approx_summary_sql': 'approx_table_bloat_b approx_bloat_percentage',
    'table_io_stats': 'tag_schema tag_table_name tag_table_full_name is_part_root '
                      'heap_blks_read heap_blks_hit idx_blks_read idx_blks_hit toast_blks_read '
                      'toast_blks_hit tidx_blks_read tidx_blks_hit',
    'table_stats': 'tag_schema tag_table_name tag_table_full_name is_part_root table_size_b '
                   'tag_table_size_cardinality_mb total_relation_size_b toast_size_b '
                   'seconds_since_last_vacuum seconds_since_last_analyze no_autovacuum '
                   'seq_scan seq_tup_read idx_scan idx_tup_fetch n_tup_ins n_tup_upd n_tup_del '
                   'n_tup_hot_upd n_live_tup n_dead_tup vacuum_count autovacuum_count '
                   'analyze_count autoanalyze_count tx_freeze_age',
    'wal': 'xlog_location_b in_recovery_int postmaster_uptime_s tag_sys_id timeline',
    'wal_receiver': 'replay_lag_b last_replay_s',
    'wal_size': 'wal_size_b wal_file_count',
    # pgwatch's full preset adds these
    'kpi': 'wal_location_b numbackends active_backends blocked_backends kpi_oldest_tx_s tps '
           'xact_commit xact_rollback blks_read blks_hit temp_bytes seq_scans_on_tbls_gt_10mb '
           'tup_inserted tup_updated tup_deleted sproc_calls blk_read_time blk_write_time '
           'deadlocks in_recovery_int postmaster_uptime_s',
    'logical_subscriptions': 'tag_subname subenabled relcount state_i state_d state_s state_r',
    'psutil_cpu': 'cpu_utilization load_1m_norm load_1m load_5m_norm load_5m user system idle '
                  'iowait irqs other',
    'psutil_mem': 'total used free buff_cache available percent swap_total swap_used '
                  'swap_free swap_percent',
    'psutil_disk_io_total': 'read_count write_count read_bytes write_bytes',
    'psutil_disk': 'tag_dir_or_tablespace tag_path total used free percent',
    'server_log_event_counts': 'debug info notice warning error log fatal panic debug_total '
                               'info_total notice_total warning_total error_total log_total '
                               'fatal_total panic_total',
    'stat_ssl': 'total on off',
}

# pgwatch's presets (master): the metrics each names, without those pgreaper leaves out
# (docs/config.md says which and why).
PGWATCH_EXHAUSTIVE = [m for m in PROMISED if m not in (
    'kpi', 'logical_subscriptions', 'psutil_cpu', 'psutil_mem', 'psutil_disk_io_total',
    'psutil_disk', 'server_log_event_counts', 'stat_ssl')]
PGWATCH_FULL = list(PROMISED)
NO_ROW_ON_A_PRIMARY = ('replication', 'wal_receiver', 'logical_subscriptions')

SETUP = '''
create extension pg_stat_statements;
create table plain (id int primary key, v text);
insert into plain select g, md5(g::text) from generate_series(1, 2000) g;
create table parted (id int, at date) partition by range (at);
create table parted_1 partition of parted for values from ('2026-01-01') to ('2026-07-01');
create table parted_2 partition of parted for values from ('2026-07-01') to ('2027-01-01');
insert into parted select g, date '2026-01-01' + g % 360 from generate_series(1, 1000) g;
create sequence seq1 maxvalue 100;
select nextval('seq1') from generate_series(1, 60);
create function f(int) returns int language plpgsql as $$ begin return $1; end $$;
select f(g) from generate_series(1, 10) g;
select pg_create_physical_replication_slot('standby_slot', true);
select count(*) from plain where v like 'a%';
analyze;
'''


def promised(m):
    return PROMISED[m].split()


def sql_columns(binary, m):
    p = subprocess.run([binary, 'metric', 'print-sql', m, '--pg-version', '15', '--columns'],
                       capture_output=True, text=True)
    return [c.strip() for c in p.stdout.split(',')] if p.returncode == 0 else []


def stored_columns(r, m):
    cols = set()
    for b in r.batches(m):
        for row in b['data']:
            cols |= set(row)
    return cols


def preset_metrics(binary, preset):
    p = subprocess.run([binary, 'metric', 'list', '--preset', preset], capture_output=True,
                       text=True)
    return [l.split()[0] for l in p.stdout.splitlines()[1:]]


def workload(pg, stop):
    """A statement running over 100 ms most of the time (stat_activity), calls for
    pg_stat_statements, and one RAISE WARNING a round for server_log_event_counts."""
    while not stop.is_set():
        pg.psql("select pg_sleep(0.8), f(1), count(*) from plain; "
                "do $$ begin raise warning 'pgreaper names test'; end $$", check=False)


def run(t, pg, binary, preset, names):
    inpreset = set(preset_metrics(binary, preset))
    missing = [m for m in names if m not in inpreset]
    t.ok(not missing, '%s: the preset has every promised metric of pgwatch\'s %s'
         % (preset, preset), missing)
    src = '- name: db1\n  conn_str: %s\n  preset_metrics: %s\n' % (pg.conn_str(), preset)
    r = Reaper(binary, src, args=['--interval-scale', '0.01']).start()
    stop = threading.Event()
    th = threading.Thread(target=workload, args=(pg, stop))
    th.start()
    r.wait_batches('sequence_health', count=1, timeout=60)
    pg.psql('create table made_during_the_%s_run (a int)' % preset)
    r.wait_batches('change_events', count=1, timeout=60)
    r.wait_batches('stat_activity', count=1, timeout=30)
    if 'server_log_event_counts' in names:
        r.wait_batches('server_log_event_counts', count=2, timeout=60)
    stop.set()
    th.join()
    t.is_(r.stop(), 0, '%s: exit 0' % preset)
    for m in names:
        want = set(promised(m))
        if m in NO_ROW_ON_A_PRIMARY:
            got = set(sql_columns(binary, m))
            t.ok(want <= got, '%s: %s has pgwatch\'s columns (in its SQL: no row on a primary)'
                 % (preset, m), sorted(want - got))
            continue
        got = stored_columns(r, m)
        t.ok(got and want <= got, '%s: %s stored with pgwatch\'s columns' % (preset, m),
             'stored %d batches, missing %s' % (len(r.batches(m)), sorted(want - got)))
    s = r.summary()
    t.ok(s.get('fetch_errors') == 0, '%s: no metric failed' % preset, r.log()[-3000:])


def main():
    t = Tap()
    binary = sys.argv[1]
    pg = Postgres('pgwatch_names', {'shared_preload_libraries': "'pg_stat_statements'",
                                    'track_functions': "'all'", 'archive_mode': 'on',
                                    'archive_command': "'true'", 'wal_level': 'replica',
                                    'logging_collector': 'on', 'log_destination': "'csvlog'",
                                    'lc_messages': "'C'"})
    pg.psql(SETUP)
    pg.psql('select pg_switch_wal()')
    run(t, pg, binary, 'exhaustive', PGWATCH_EXHAUSTIVE)
    run(t, pg, binary, 'full', PGWATCH_FULL)
    pg.cleanup()
    t.done()


if __name__ == '__main__':
    main()
