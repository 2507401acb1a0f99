#!/usr/bin/env python3
"""Writes pgreaper's Grafana dashboards (docker/grafana/dashboards/*.json) for the
PostgreSQL sink. The dashboards are committed; run this after changing a panel:

    python3 docker/grafana/make_dashboards.py

Every panel's SQL uses the sink's layout (public."<metric>": time, dbname, data jsonb,
tag_data jsonb) and Grafana's macros $__timeFilter, $__timeGroupAlias, $__interval and
the dbname variable (from admin.all_distinct_dbname_metrics). Counters are shown as
per-second rates; a value lower than the previous one (a statistics reset or a server
restart) yields no point instead of a negative spike. Panels whose "main" flag is set must
return rows in tests/integration/dashboards.py.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {'type': 'grafana-postgresql-datasource', 'uid': 'pgreaper-sink'}


def num(field):
    return "(data->>'%s')::float8" % field


def rate(metric, field, series="dbname", where='', part=None):
    """Per-second rate of a counter, per series, with reset handling."""
    return ('select time, series as metric, '
            'case when v >= pv and extract(epoch from time - pt) > 0 '
            'then (v - pv) / extract(epoch from time - pt) end as value\n'
            'from (select time, %(series)s as series, %(v)s as v, lag(%(v)s) over w as pv, '
            'lag(time) over w as pt\n'
            '      from public.%(m)s\n'
            '      where $__timeFilter(time) and dbname in ($dbname)%(where)s\n'
            '      window w as (partition by %(part)s order by time)) x\n'
            'order by time' % {'series': series, 'v': num(field), 'm': metric, 'where': where,
                               'part': part or series})


def gauge(metric, field, series='dbname', where=''):
    return ('select $__timeGroupAlias(time, $__interval), %s as metric, avg(%s) as value\n'
            'from public.%s\nwhere $__timeFilter(time) and dbname in ($dbname)%s\n'
            'group by 1, 2 order by 1' % (series, num(field), metric, where))


def ts(title, sql, unit='short', main=False):
    return {'title': title, 'type': 'timeseries', 'format': 'time_series', 'sql': sql,
            'unit': unit, 'main': main}


def table(title, sql, main=False):
    return {'title': title, 'type': 'table', 'format': 'table', 'sql': sql, 'unit': 'short',
            'main': main}


TAG = "tag_data->>'%s'"

BOARDS = {
    'health': ('pgreaper: health overview', [
        ts('Instance up (1 = connected)', gauge('instance_up', 'is_up'), main=True),
        ts('Transactions per second', rate('db_stats', 'xact_commit'), 'ops', main=True),
        ts('Active sessions', gauge('backends', 'active'), main=True),
        ts('Database size', gauge('db_size', 'size_b'), 'bytes', main=True),
        ts('WAL generated', rate('wal', 'xlog_location_b'), 'Bps'),
        table('Postmaster uptime and role (latest)',
              'select distinct on (dbname) dbname, time, '
              "(data->>'postmaster_uptime_s')::int8 as uptime_s, "
              "(data->>'in_recovery_int')::int as in_recovery\n"
              'from public.db_stats where $__timeFilter(time) and dbname in ($dbname)\n'
              'order by dbname, time desc', main=True),
    ]),
    'database': ('pgreaper: database overview', [
        ts('Commits per second', rate('db_stats', 'xact_commit'), 'ops', main=True),
        ts('Rollbacks per second', rate('db_stats', 'xact_rollback'), 'ops'),
        ts('Cache hit ratio (%)',
           'select time, dbname as metric, 100 * (h - ph) / nullif((h - ph) + (r - pr), 0) as value\n'
           "from (select time, dbname, (data->>'blks_hit')::float8 as h, "
           "(data->>'blks_read')::float8 as r,\n"
           "             lag((data->>'blks_hit')::float8) over w as ph, "
           "lag((data->>'blks_read')::float8) over w as pr\n"
           '      from public.db_stats where $__timeFilter(time) and dbname in ($dbname)\n'
           '      window w as (partition by dbname order by time)) x\n'
           'where h >= ph and r >= pr order by time', 'percent', main=True),
        ts('Tuples inserted per second', rate('db_stats', 'tup_inserted'), 'ops'),
        ts('Tuples fetched per second', rate('db_stats', 'tup_fetched'), 'ops'),
        ts('Sessions (total)', gauge('backends', 'total'), main=True),
        ts('Database size', gauge('db_size', 'size_b'), 'bytes', main=True),
        ts('Temp bytes per second', rate('db_stats', 'temp_bytes'), 'Bps'),
        ts('Deadlocks per second', rate('db_stats', 'deadlocks'), 'ops'),
        ts('WAL generated', rate('wal', 'xlog_location_b'), 'Bps', main=True),
        ts('WAL directory size', gauge('wal_size', 'wal_size_b'), 'bytes'),
    ]),
    'sessions': ('pgreaper: sessions and locks', [
        ts('Sessions by state', 'select $__timeGroupAlias(time, $__interval), '
           "dbname || ' ' || s.state as metric, avg(s.n) as value\n"
           'from public.backends, lateral (values '
           "('active', (data->>'active')::float8), ('idle', (data->>'idle')::float8), "
           "('idle in transaction', (data->>'idleintransaction')::float8)) as s(state, n)\n"
           'where $__timeFilter(time) and dbname in ($dbname)\ngroup by 1, 2 order by 1',
           main=True),
        ts('Waiting active sessions by wait event',
           gauge('wait_events', 'count',
                 series="dbname || ' ' || (tag_data->>'wait_event_type') || ':' || (tag_data->>'wait_event')")),
        ts('Locks by mode', gauge('locks_mode', 'count', series="tag_data->>'lockmode'"),
           main=True),
        ts('Blocked sessions', gauge('backends', 'blocked')),
        ts('Longest transaction (s)', gauge('backends', 'longest_tx_seconds'), 's', main=True),
        table('Who blocks whom (latest)',
              'select distinct on (dbname, waiting_pid, other_pid) dbname, time, waiting_pid, '
              'waiting_mode, waiting_table, other_pid, other_mode, other_query\n'
              "from (select dbname, time, (data->>'waiting_pid')::int as waiting_pid, "
              "(data->>'other_pid')::int as other_pid, tag_data->>'waiting_mode' as waiting_mode, "
              "tag_data->>'waiting_table' as waiting_table, data->>'other_mode' as other_mode, "
              "data->>'other_query' as other_query\n"
              '      from public.blocking_locks where $__timeFilter(time) and dbname in ($dbname)) b\n'
              'order by dbname, waiting_pid, other_pid, time desc limit 50'),
        table('Long-running and idle-in-transaction sessions (latest)',
              'select distinct on (dbname, tag_data) dbname, time, '
              "tag_data->>'pid' as pid, tag_data->>'user' as usr, data->>'state' as state, "
              "(data->>'duration_s')::float8 as duration_s, data->>'query' as query\n"
              'from public.long_running where $__timeFilter(time) and dbname in ($dbname)\n'
              'order by dbname, tag_data, time desc limit 50'),
    ]),
    'replication': ('pgreaper: replication', [
        ts('Replay lag (bytes) per standby',
           gauge('replication', 'replay_lag_b', series="dbname || ' ' || (tag_data->>'application_name')"),
           'bytes'),
        ts('Replay lag (ms) per standby',
           gauge('replication', 'replay_lag_ms', series="dbname || ' ' || (tag_data->>'application_name')"),
           'ms'),
        ts('WAL retained by slots', gauge('replication_slots', 'restart_lsn_lag_b',
                                          series="dbname || ' ' || (tag_data->>'slot_name')"),
           'bytes'),
        ts('Standby: replay gap (bytes)', gauge('wal_receiver', 'replay_lag_b'), 'bytes'),
        ts('Role (1 = standby)', gauge('postgres_role', 'in_recovery_int'), main=True),
        ts('Recovery conflicts per second', rate('database_conflicts', 'confl_snapshot'), 'ops'),
    ]),
    'tables': ('pgreaper: tables and indexes', [
        table('Largest tables (latest)',
              'select distinct on (dbname, tag_data) dbname, '
              "tag_data->>'table_full_name' as table_name, "
              "(data->>'total_relation_size_b')::int8 as total_size_b, "
              "(data->>'n_live_tup')::int8 as live, (data->>'n_dead_tup')::int8 as dead, "
              "(data->>'seconds_since_last_vacuum')::int8 as seconds_since_last_vacuum\n"
              'from public.table_stats where $__timeFilter(time) and dbname in ($dbname)\n'
              'order by dbname, tag_data, time desc limit 100', main=True),
        ts('Sequential scans per second (top tables)',
           rate('table_stats', 'seq_scan', series="dbname || ' ' || (tag_data->>'table_name')"),
           'ops', main=True),
        ts('Dead tuples', gauge('table_stats', 'n_dead_tup',
                                series="dbname || ' ' || (tag_data->>'table_name')")),
        ts('Heap blocks read per second', rate('table_io_stats', 'heap_blks_read',
                                               series="dbname || ' ' || (tag_data->>'table_name')"),
           'ops'),
        table('Index sizes and scans (latest)',
              'select distinct on (dbname, tag_data) dbname, '
              "tag_data->>'index_full_name' as index_name, (data->>'index_size_b')::int8 as size_b, "
              "(data->>'idx_scan')::int8 as scans, (data->>'is_invalid_int')::int as invalid\n"
              'from public.index_stats where $__timeFilter(time) and dbname in ($dbname)\n'
              'order by dbname, tag_data, time desc limit 100', main=True),
        table('Unused indexes (latest)',
              'select distinct on (dbname, tag_data) dbname, '
              "tag_data->>'index_full_name' as index_name, (data->>'index_size_b')::int8 as size_b\n"
              'from public.unused_indexes where $__timeFilter(time) and dbname in ($dbname)\n'
              'order by dbname, tag_data, time desc limit 100'),
        table('Sequences closest to their maximum (latest)',
              'select distinct on (dbname, tag_data) dbname, '
              "tag_data->>'sequence' as seq, (data->>'used_pct')::float8 as used_pct\n"
              'from public.sequences where $__timeFilter(time) and dbname in ($dbname)\n'
              'order by dbname, tag_data, time desc limit 50', main=True),
        ts('Transaction ID age (% towards wraparound)',
           gauge('wraparound', 'pct_towards_wraparound', series="dbname || ' ' || (tag_data->>'datname')"),
           'percent', main=True),
        table('Table bloat estimate (latest)',
              'select distinct on (dbname, tag_data) dbname, '
              "tag_data->>'table_name' as table_name, (data->>'bloat_b')::int8 as bloat_b, "
              "(data->>'bloat_pct')::float8 as bloat_pct\n"
              'from public.table_bloat where $__timeFilter(time) and dbname in ($dbname)\n'
              'order by dbname, tag_data, time desc limit 100'),
    ]),
    'queries': ('pgreaper: query performance', [
        table('Top statements by execution time in the range',
              'select tag_data->>\'queryid\' as queryid, max(tag_data->>\'query\') as query,\n'
              "       max((data->>'calls')::float8) - min((data->>'calls')::float8) as calls,\n"
              "       max((data->>'total_time')::float8) - min((data->>'total_time')::float8) as exec_ms\n"
              'from public.stat_statements where $__timeFilter(time) and dbname in ($dbname)\n'
              'group by 1 order by exec_ms desc nulls last limit 30', main=True),
        ts('Statement calls per second (all top statements)',
           'select time, metric, sum(value) as value from (\n'
           + rate('stat_statements', 'calls', part="dbname, tag_data->>'queryid'").replace('\norder by time', '')
           + '\n) r where value is not null group by 1, 2 order by 1',
           'ops'),
        ts('Function calls per second', rate('sproc_stats', 'sp_calls',
                                             series="dbname || ' ' || (tag_data->>'function_full_name')"),
           'ops'),
    ]),
    'checkpoints': ('pgreaper: checkpointer and background writer', [
        ts('Checkpoints requested per minute (PG < 17 and 17+)',
           rate('checkpointer', 'num_requested').replace('then (v - pv)', 'then 60 * (v - pv)'),
           main=True),
        ts('Checkpoints timed per minute',
           rate('checkpointer', 'num_timed').replace('then (v - pv)', 'then 60 * (v - pv)')),
        ts('Buffers written by checkpoints per second', rate('checkpointer', 'buffers_written'),
           'ops', main=True),
        ts('Buffers cleaned by the background writer per second',
           rate('bgwriter', 'buffers_clean'), 'ops', main=True),
        ts('Buffers allocated per second', rate('bgwriter', 'buffers_alloc'), 'ops'),
    ]),
    'pgreaper': ('pgreaper: pgreaper itself', [
        table('Metrics stored per source (admin.all_distinct_dbname_metrics)',
              'select l.dbname, l.metric, l.created_on as first_seen\n'
              'from admin.all_distinct_dbname_metrics l\n'
              'where l.dbname in ($dbname)\norder by 1, 2', main=True),
        ts('instance_up per source', gauge('instance_up', 'is_up'), main=True),
        ts('Measurements per interval (db_stats rows)',
           'select $__timeGroupAlias(time, $__interval), dbname as metric, count(*) as value\n'
           'from public.db_stats where $__timeFilter(time) and dbname in ($dbname)\n'
           'group by 1, 2 order by 1', main=True),
        ts('Seconds since the last db_stats row',
           'select $__timeGroupAlias(time, $__interval), dbname as metric, '
           'extract(epoch from now() - max(time)) as value\n'
           'from public.db_stats where $__timeFilter(time) and dbname in ($dbname)\n'
           'group by 1, 2 order by 1', 's'),
    ]),
}


def panel(i, p):
    return {
        'id': i + 1, 'title': p['title'], 'type': p['type'], 'datasource': DS,
        'gridPos': {'h': 8, 'w': 12 if p['type'] == 'timeseries' else 24,
                    'x': 0 if p['type'] == 'table' else (i % 2) * 12, 'y': i * 8},
        'fieldConfig': {'defaults': {'unit': p['unit']}, 'overrides': []},
        'targets': [{'refId': 'A', 'datasource': DS, 'editorMode': 'code', 'rawQuery': True,
                     'format': p['format'], 'rawSql': p['sql']}],
        'pgreaper': {'main': p['main']},
    }


def board(uid, title, panels):
    return {
        'uid': 'pgreaper-' + uid, 'title': title, 'tags': ['pgreaper', 'postgresql'],
        'timezone': 'browser', 'schemaVersion': 39, 'version': 1, 'refresh': '1m',
        'time': {'from': 'now-6h', 'to': 'now'},
        'templating': {'list': [{
            'name': 'dbname', 'label': 'Source', 'type': 'query', 'datasource': DS,
            'query': 'select distinct dbname from admin.all_distinct_dbname_metrics order by 1',
            'multi': True, 'includeAll': True, 'refresh': 1,
            'current': {'selected': True, 'text': ['All'], 'value': ['$__all']}}]},
        'panels': [panel(i, p) for i, p in enumerate(panels)],
    }


def main():
    out = os.path.join(HERE, 'dashboards')
    os.makedirs(out, exist_ok=True)
    for uid, (title, panels) in BOARDS.items():
        with open(os.path.join(out, uid + '.json'), 'w') as f:
            json.dump(board(uid, title, panels), f, indent=2, sort_keys=True)
            f.write('\n')


if __name__ == '__main__':
    main()
