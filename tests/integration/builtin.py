"""The built-in catalogue on a real PostgreSQL 15, as a role that is only a member of
pg_monitor (what the README tells DBAs to grant): every metric of the standard preset
runs without error and the ones that describe this server return rows."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

SOURCES = '''
- name: builtin
  conn_str: {conn}
  preset_metrics: standard
'''

WITH_ROWS = ['instance_up', 'db_stats', 'db_size', 'backends', 'wal', 'locks_mode', 'bgwriter',
             'checkpointer', 'postgres_role', 'settings', 'table_stats', 'index_stats', 'cpu_load',
             'sequence_health', 'stat_statements']


def main():
    t = Tap()
    pg = Postgres('builtin', {'shared_preload_libraries': "'pg_stat_statements'"})
    pg.psql('create extension pg_stat_statements')
    pg.psql('create role monitor login in role pg_monitor')
    pg.psql('create table accounts (id int primary key, balance numeric)')
    pg.psql('insert into accounts select g, g * 1.5 from generate_series(1, 1000) g; analyze')
    pg.psql('create sequence s1; select count(*) from accounts where balance > 10', check=True)
    conn = pg.conn_str().replace('user=postgres', 'user=monitor')
    r = Reaper(sys.argv[1], SOURCES.format(conn=conn), None,
               args=['--interval-scale', '0.0167']).start()
    t.ok(r.wait_batches('table_stats', count=1, timeout=20), 'first tick stored', r.log())
    t.ok(r.wait_batches('db_stats', count=3, timeout=20), 'further ticks stored', r.log())
    t.is_(r.stop(), 0, 'exit code 0')
    s = r.summary()
    t.is_(s.get('fetch_errors'), 0, 'no metric of the standard preset fails for pg_monitor')
    for m in WITH_ROWS:
        t.ok(len(r.batches(m)) > 0, '%s returns rows' % m)
    t.is_(len(r.batches('wal_receiver')), 0, 'standby-only wal_receiver not run on a primary')
    ts = r.batches('table_stats')[0]['data']
    acc = [x for x in ts if x['tag_table_name'] == 'accounts']
    t.ok(acc and acc[0]['n_live_tup'] == 1000 and acc[0]['tag_schema'] == 'public',
         'table_stats sees the test table with its tags', ts[:2])
    settings = r.batches('settings')[0]['data'][0]
    t.ok(settings.get('max_connections') == 100 and settings.get('server_version_num') >= 150000,
         'settings carries the server values', settings)
    t.ok('has no SQL for PostgreSQL' not in r.log(), 'every metric has SQL for 15', r.log())
    t.done()


if __name__ == '__main__':
    main()
