"""Instance-level metrics once per instance: sources that reach the same PostgreSQL
instance share the results of metrics marked is_instance_level. The server counts the
fetches (a sequence the metric advances); every source still stores one result per
interval, never the same fetch twice, and sources of another instance never receive
them. --no-instance-sharing fetches from every source."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

METRICS = '''
metrics:
  inst:
    sqls:
      11: select nextval('inst_calls') as n, current_database() as db,
          current_setting('port')::int as port
    is_instance_level: true
  perdb:
    sqls:
      11: select current_database() as tag_db, 1 as x
presets:
  p:
    metrics: {inst: 2, perdb: 2}
'''

DBS = ('d1', 'd2', 'd3', 'd4')
RUN_S = 16


def sources(a, b):
    out = ''
    for db in DBS:
        out += '- name: a_%s\n  conn_str: "%s"\n  preset_metrics: p\n' % (db, a.conn_str(db))
    for db in DBS[:2]:
        out += '- name: b_%s\n  conn_str: "%s"\n  preset_metrics: p\n' % (db, b.conn_str(db))
    return out


def calls(pg, dbs):
    total = 0
    for db in dbs:
        out = pg.psql('select last_value, is_called from inst_calls', db=db)
        v, called = out.strip().split('|')
        total += int(v) if called.strip() == 't' else 0
    return total


def run(t, binary, a, b, extra):
    for pg, dbs in ((a, DBS), (b, DBS[:2])):
        for db in dbs:
            pg.psql('drop sequence if exists inst_calls; create sequence inst_calls', db=db)
    r = Reaper(binary, sources(a, b), METRICS, args=extra)
    r.start()
    ok = r.wait_batches('inst', 'b_d2', timeout=30) and r.wait_batches('inst', 'a_d4', timeout=30)
    time.sleep(RUN_S)
    rc = r.stop()
    t.ok(ok and rc == 0, 'ran and stopped cleanly %s' % extra, r.log())
    return r, calls(a, DBS), calls(b, DBS[:2])


def main():
    t = Tap()
    a = Postgres('inst_a')
    b = Postgres('inst_b')
    for pg, dbs in ((a, DBS), (b, DBS[:2])):
        for db in dbs:
            pg.psql('create database %s' % db)
    aport, bport = int(a.port), int(b.port)

    r, na, nb = run(t, sys.argv[1], a, b, [])
    per_source = {}
    for bt in r.batches('inst'):
        per_source.setdefault(bt['dbname'], []).append(bt['data'][0])
    t.is_(sorted(per_source), ['a_d1', 'a_d2', 'a_d3', 'a_d4', 'b_d1', 'b_d2'],
          'every source stores the instance-level metric')
    ticks = min(len(v) for v in per_source.values())
    t.ok(ticks >= RUN_S // 2 - 1, 'each source stores one result per interval (%d)' % ticks,
         {k: len(v) for k, v in per_source.items()})
    dup = {k: len(v) - len({(row['n'], row['db']) for row in v}) for k, v in per_source.items()}
    t.ok(not any(dup.values()), 'no source stores the same fetch twice', dup)
    ports = {k: {row['port'] for row in v} for k, v in per_source.items()}
    t.ok(all(p == {aport if k.startswith('a_') else bport} for k, p in ports.items()),
         'a result never crosses to another instance', ports)
    stored_a = sum(len(v) for k, v in per_source.items() if k.startswith('a_'))
    t.ok(na <= stored_a / 3, 'instance a: %d fetches for %d stored results (4 sources)'
         % (na, stored_a))
    s = r.summary()
    t.ok(s.get('instance_results_shared', 0) >= stored_a / 2, 'summary counts the shared ones', s)
    perdb = {bt['dbname'] for bt in r.batches('perdb')}
    t.is_(len(perdb), 6, 'database-level metrics still run on every source')

    r, na2, nb2 = run(t, sys.argv[1], a, b, ['--no-instance-sharing'])
    stored = len([bt for bt in r.batches('inst') if bt['dbname'].startswith('a_')])
    t.ok(na2 >= stored - 4 and na2 >= 3 * na,
         '--no-instance-sharing: every source fetches (%d fetches, %d stored; %d shared)'
         % (na2, stored, na))
    a.cleanup()
    b.cleanup()
    t.done()


main()
