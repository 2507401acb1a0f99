"""change_events, computed as pgwatch does from the built-in catalogue's hash metrics:
after a baseline, CREATE TABLE, ALTER TABLE, CREATE INDEX, DROP FUNCTION, ALTER SYSTEM +
reload and GRANT each appear within a few intervals in table_changes, index_changes,
sproc_changes, configuration_changes and privilege_changes, with a change_events row
counting them; nothing is stored for the baseline. Batch and per-metric mode."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

SOURCES = '''
- name: db1
  conn_str: {conn}
  custom_metrics: {{change_events: 1, db_size: 1}}
'''


def rows(r, metric):
    return [row for b in r.batches(metric, 'db1') for row in b['data']]


def wait_row(r, metric, pred, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(pred(x) for x in rows(r, metric)):
            return True
        time.sleep(0.2)
    return False


def run(t, pg, binary, mode):
    pg.psql('drop table if exists t1; drop role if exists rp_reader; '
            'create or replace function rp_f() returns int language sql as $$select 1$$')
    pg.psql('alter system reset work_mem')
    pg.psql('select pg_reload_conf()')
    r = Reaper(binary, SOURCES.format(conn=pg.conn_str()), None,
               args=['--mode=' + mode]).start()
    t.ok(r.wait_batches('db_size', 'db1', 3, timeout=60), '%s: baseline taken' % mode,
         r.log()[-2000:])
    t.is_(rows(r, 'change_events'), [], '%s: nothing stored for the baseline' % mode)
    pg.psql('create table t1 (a int)')
    t.ok(wait_row(r, 'table_changes', lambda x: x['tag_table'] == 'public.t1' and
                  x['event'] == 'create'), '%s: CREATE TABLE is a create' % mode,
         rows(r, 'table_changes'))
    pg.psql('alter table t1 add column b text')
    t.ok(wait_row(r, 'table_changes', lambda x: x['tag_table'] == 'public.t1' and
                  x['event'] == 'alter'), '%s: ALTER TABLE is an alter' % mode,
         rows(r, 'table_changes'))
    pg.psql('create index t1_a on t1 (a)')
    t.ok(wait_row(r, 'index_changes', lambda x: x['tag_index'] == 'public.t1_a' and
                  x['event'] == 'create' and x['table'] == 't1'),
         '%s: CREATE INDEX is a create' % mode, rows(r, 'index_changes'))
    pg.psql('drop function rp_f()')
    t.ok(wait_row(r, 'sproc_changes', lambda x: x['tag_sproc'] == 'public.rp_f' and
                  x['event'] == 'drop' and x.get('tag_oid')),
         '%s: DROP FUNCTION is a drop, with the oid' % mode, rows(r, 'sproc_changes'))
    pg.psql("alter system set work_mem = '7MB'")
    pg.psql('select pg_reload_conf()')
    t.ok(wait_row(r, 'configuration_changes', lambda x: x['tag_setting'] == 'work_mem' and
                  x['event'] == 'alter' and x['value'] == '7168'),
         '%s: ALTER SYSTEM + reload is an alter with the new value' % mode,
         rows(r, 'configuration_changes'))
    pg.psql('create role rp_reader; grant select on t1 to rp_reader')
    t.ok(wait_row(r, 'privilege_changes', lambda x: x['tag_role'] == 'rp_reader' and
                  x['event'] == 'GRANT' and x['tag_object'] == 'public.t1'),
         '%s: GRANT is a GRANT' % mode, rows(r, 'privilege_changes'))
    pg.psql('revoke select on t1 from rp_reader')
    t.ok(wait_row(r, 'privilege_changes', lambda x: x['tag_role'] == 'rp_reader' and
                  x['event'] == 'REVOKE'), '%s: REVOKE is a REVOKE' % mode,
         rows(r, 'privilege_changes'))
    details = [x['details'] for x in rows(r, 'change_events')]
    t.ok(any('tables: 1/0/0' in d for d in details) and
         all(d.startswith('functions: ') and ' privileges: ' in d for d in details),
         '%s: change_events counts per object kind' % mode, details)
    creates = [x for x in rows(r, 'table_changes') if x['event'] == 'create']
    t.is_(len(creates), 1, '%s: a change is stored once' % mode)
    t.ok('metric query failed' not in r.log(), '%s: nothing failed' % mode, r.log()[-2000:])
    t.is_(r.stop(), 0, '%s: exit 0' % mode)
    pg.psql('drop role rp_reader', check=False)


def main():
    t = Tap()
    pg = Postgres('change_events')
    for mode in ('batch', 'per-metric'):
        run(t, pg, sys.argv[1], mode)
    pg.psql('alter system reset work_mem')
    t.done()


if __name__ == '__main__':
    main()
