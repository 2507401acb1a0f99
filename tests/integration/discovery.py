"""postgres-continuous-discovery: one sources entry for every database of a server, with
pgwatch's filter (templates, databases that refuse connections and those the role may not
connect to are left out; include_pattern and exclude_pattern are PostgreSQL regular
expressions). Each database is a source named <entry>_<dbname> with the entry's metrics
and tags. A database created or dropped is picked up within --refresh; a listing that
fails, or a pattern the server refuses, keeps the databases found before."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

METRICS = '''
metrics:
  dbname:
    sqls:
      11: select current_database() as tag_db, 1 as n
presets:
  one:
    metrics: {dbname: 1}
'''


def sources(conn, include='^app_', exclude='skip'):
    return '''
- name: srv
  kind: postgres-continuous-discovery
  conn_str: "%s"
  include_pattern: '%s'
  exclude_pattern: '%s'
  preset_metrics: one
  custom_tags: {env: test}
- name: plain
  conn_str: "%s"
  custom_metrics: {dbname: 1}
''' % (conn, include, exclude, conn)


def dbnames(r):
    return {b['dbname'] for b in r.batches('dbname')}


def main():
    t = Tap()
    pg = Postgres('discovery')
    for db in ('app_a', 'app_b', 'app_skip', 'other_c', 'app_closed', 'app_private'):
        pg.psql('create database %s' % db)
    pg.psql('alter database app_closed allow_connections false')
    pg.psql("create role watcher login; revoke connect on database app_private from public; "
            "grant pg_monitor to watcher")
    conn = pg.conn_str(user='watcher')
    r = Reaper(sys.argv[1], sources(conn), METRICS, args=['--refresh', '1'])
    r.start()
    t.ok(r.wait_batches('dbname', 'srv_app_b', timeout=30), 'discovered databases collected',
         r.log())
    time.sleep(2)
    got = dbnames(r)
    t.is_(sorted(got), ['plain', 'srv_app_a', 'srv_app_b'],
          'templates, app_closed (no connections), app_private (no CONNECT), other_c '
          '(include_pattern) and app_skip (exclude_pattern) left out')
    b = r.batches('dbname', 'srv_app_a')[0]
    t.ok(b['data'][0].get('tag_db') == 'app_a' and b['custom_tags'].get('env') == 'test',
         'each source connects to its database and carries the entry\'s tags', b)

    pg.psql('create database app_new')
    t.ok(r.wait_batches('dbname', 'srv_app_new', timeout=15), 'a new database is picked up',
         r.log())
    pg.psql('drop database app_b with (force)')
    t.ok(r.wait_log('1 removed', 15), 'a dropped database: its source is removed', r.log())
    time.sleep(1.5)
    n = len(r.batches('dbname', 'srv_app_b'))
    time.sleep(2.5)
    t.is_(len(r.batches('dbname', 'srv_app_b')), n, 'and no longer collected')

    # The listing fails (its database refuses connections): the sources stay.
    pg.psql('alter database postgres allow_connections false', db='app_a')
    t.ok(r.wait_log('database discovery failed', 15), 'a failed listing is logged', r.log())
    line = [x for x in r.log().splitlines() if 'database discovery failed' in x]
    t.ok(line and 'srv' in line[0] and 'stay monitored' in line[0]
         and 'not currently accepting connections' in r.log(),
         'with the entry, the reason and what happens', line[:1])
    n = len(r.batches('dbname', 'srv_app_new'))
    time.sleep(3)
    t.is_(r.log().count('database discovery failed'), 1, 'said once, not every refresh')
    t.ok(len(r.batches('dbname', 'srv_app_new')) >= n + 2, 'discovered sources go on meanwhile')
    pg.psql('alter database postgres allow_connections true', db='app_a')
    t.ok(r.wait_log('database discovery works again', 15), 'recovery logged', r.log())

    # A pattern the server refuses: the old list stays, the reason is logged.
    r.write_sources(sources(conn, include='(app'))
    r.send(signal.SIGHUP)
    t.ok(r.wait_log('invalid regular expression', 15), 'a broken pattern: the server\'s reason',
         r.log())
    n = len(r.batches('dbname', 'srv_app_a'))
    t.ok(r.wait_batches('dbname', 'srv_app_a', count=n + 2, timeout=10),
         'the databases found before stay monitored')
    r.write_sources(sources(conn, include='^other'))
    r.send(signal.SIGHUP)
    t.ok(r.wait_batches('dbname', 'srv_other_c', timeout=15), 'a new pattern applies', r.log())
    t.ok(r.wait_log('2 removed', 15), 'the databases it no longer matches are removed', r.log())
    t.is_(r.stop(), 0, 'clean exit')
    s = r.summary()
    t.ok(s.get('discovery_entries') == 1 and s.get('discovery_listings', 0) >= 5
         and s.get('discovery_failures', 0) >= 2, 'summary counts listings and failures', s)
    pg.cleanup()
    t.done()


main()
