"""pgwatch's configuration database as the configuration: --sources and --metrics given as
postgresql:// URIs read tables pgwatch.source, pgwatch.metric and pgwatch.preset (the
columns pgwatch's schema has). Rows added or edited are applied within --refresh; a row
that does not validate and a configuration database that is down keep the running
configuration, with one message each. With --config-triggers a change is announced on
LISTEN/NOTIFY and applied at once, without waiting for a poll."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

# The columns of pgwatch's config schema (facts of its format; the DDL is ours).
SCHEMA = '''
create schema pgwatch;
create table pgwatch.metric (name text primary key, sqls jsonb not null, init_sql text,
  description text, node_status text, gauges text[], is_instance_level bool not null default false,
  storage_name text);
create table pgwatch.preset (name text primary key, description text not null,
  metrics jsonb not null);
create table pgwatch.source (name text primary key, connstr text not null,
  is_superuser boolean not null default false, preset_config text references pgwatch.preset(name)
  default 'basic', config jsonb, is_enabled boolean not null default true,
  last_modified_on timestamptz not null default now(), dbtype text not null default 'postgres',
  include_pattern text, exclude_pattern text, custom_tags jsonb, "group" text not null
  default 'default', host_config jsonb, only_if_master bool not null default false,
  preset_config_standby text references pgwatch.preset(name), config_standby jsonb);
'''

METRICS = '''
insert into pgwatch.metric (name, sqls, description, gauges) values
  ('ping', '{"11": "select (extract(epoch from now()) * 1e9)::int8 as epoch_ns, 1 as x"}',
   'one row', '{x}'),
  ('dbname', '{"11": "select (extract(epoch from now()) * 1e9)::int8 as epoch_ns, current_database() as tag_db, 1 as n"}',
   null, null);
insert into pgwatch.preset values ('tiny', 'ping only', '{"ping": 1}');
'''


def main():
    t = Tap()
    pg = Postgres('configdb')
    pg.psql('create database config')
    pg.psql(SCHEMA, db='config')
    pg.psql(METRICS, db='config')
    target = pg.conn_str()
    pg.psql("insert into pgwatch.source (name, connstr, preset_config, custom_tags) values "
            "('one', '%s', 'tiny', '{\"team\": \"a\"}')" % target, db='config')
    uri = 'postgresql://postgres@/config?host=%s&port=%d' % (pg.sock, pg.port)
    r = Reaper(sys.argv[1], '', args=['--refresh', '1'])
    r.args += ['--sources', uri, '--metrics', uri]
    r.sources = r.metrics = None
    real_argv = r.argv

    def argv():
        a = real_argv()
        i = a.index('--sources')
        del a[i:i + 2]  # the placeholder file Reaper writes
        return a
    r.argv = argv
    r.start()
    t.ok(r.wait_batches('ping', count=2), 'a source of pgwatch.source collects a metric of '
         'pgwatch.metric through a preset of pgwatch.preset', r.log())
    b = r.batches('ping')
    t.ok(b and b[0]['custom_tags'].get('team') == 'a', 'custom_tags from the jsonb column',
         b[:1])

    # A source added with custom metrics (pgwatch's config column): applied within --refresh.
    pg.psql("insert into pgwatch.source (name, connstr, preset_config, config) values "
            "('two', '%s', null, '{\"dbname\": 1}')" % target, db='config')
    t.ok(r.wait_batches('dbname', count=1, timeout=15), 'a row added is collected', r.log())

    # A row that does not validate: the running configuration stays, said once.
    pg.psql("update pgwatch.source set config = '{\"nosuchmetric\": 1}' where name = 'two'",
            db='config')
    t.ok(r.wait_log('keeping the running configuration', 15), 'invalid row refused', r.log())
    time.sleep(2.5)
    log = r.log()
    t.is_(log.count('keeping the running configuration'), 1, 'said once, not every poll')
    t.ok('nosuchmetric' in log, 'the message names what is wrong',
         [x for x in log.splitlines() if 'nosuchmetric' in x][:2])
    n = len(r.batches('dbname'))
    t.ok(r.wait_batches('dbname', count=n + 2, timeout=10), 'the running sources go on')

    # The configuration database is dropped: said once, collection goes on.
    pg.psql("update pgwatch.source set config = '{\"dbname\": 1}' where name = 'two'",
            db='config')
    t.ok(r.wait_log('configuration database read again', 15), 'a fixed row is read again')
    pg.psql("alter database config allow_connections false")
    pg.psql("select pg_terminate_backend(pid) from pg_stat_activity where datname = 'config'")
    t.ok(r.wait_log('could not connect to the configuration database', 15),
         'configuration database unreachable: logged', r.log())
    time.sleep(1.5)
    said = r.log().count('could not connect to the configuration database')
    time.sleep(2.5)
    t.is_(r.log().count('could not connect to the configuration database'), said,
          'said once, not at every poll')
    n = len(r.batches('ping'))
    t.ok(r.wait_batches('ping', count=n + 2, timeout=10), 'collection goes on meanwhile')
    pg.psql("alter database config allow_connections true")
    t.ok(r.wait_log('configuration database read again', 15), 'recovery logged', r.log())

    # SIGHUP reads at once (a source removed).
    pg.psql("delete from pgwatch.source where name = 'two'", db='config')
    r.send(1)
    t.ok(r.wait_log('1 removed', 10), 'SIGHUP applies a removal', r.log())
    t.is_(r.stop(), 0, 'clean exit')

    # Without polling: --config-triggers announces every change on LISTEN/NOTIFY.
    pg.psql("update pgwatch.source set preset_config = 'tiny', config = null where name = 'one'",
            db='config')
    r = Reaper(sys.argv[1], '', args=['--refresh', '600', '--config-triggers'])
    r.args += ['--sources', uri, '--metrics', uri]
    r.sources = r.metrics = None
    first_argv = r.argv

    def argv2():
        a = first_argv()
        i = a.index('--sources')
        del a[i:i + 2]  # the placeholder file Reaper writes
        return a
    r.argv = argv2
    r.start()
    t.ok(r.wait_batches('ping', count=1), 'started from the configuration database', r.log())
    time.sleep(1)
    pg.psql("insert into pgwatch.source (name, connstr, preset_config, config) values "
            "('three', '%s', null, '{\"dbname\": 1}')" % target, db='config')
    t0 = time.time()
    t.ok(r.wait_log('reloading configuration (configuration database changed)', 5),
         'a row added is applied at once, not at the next poll', r.log())
    t.ok(time.time() - t0 < 3, 'within %.1f s' % (time.time() - t0))
    out = pg.psql("select count(*) from pg_trigger where tgname = 'pgreaper_config_changed'",
                  db='config')
    t.is_(out.strip(), '3', 'a trigger on each of source, metric and preset')
    pg.psql("update pgwatch.preset set metrics = '{\"ping\": 2}' where name = 'tiny'",
            db='config')
    t.ok(r.wait_log('reloading configuration (configuration database changed)', 5, count=2),
         'a preset edited: applied at once', r.log())
    # Anyone may announce a change; the listening connection comes back after a loss.
    pg.psql("select pg_terminate_backend(pid) from pg_stat_activity "
            "where application_name = 'pgreaper-config'", db='config')
    t.ok(r.wait_log('listening for changes again', 10), 'the LISTEN connection comes back',
         r.log())
    pg.psql("delete from pgwatch.source where name = 'three'", db='config')
    t.ok(r.wait_log('1 removed', 5), 'and changes are announced again', r.log())
    t.is_(r.stop(), 0, 'clean exit')

    # --check reads the database too and reports a bad row by name.
    import subprocess
    pg.psql("update pgwatch.source set preset_config = null, config = '{\"nosuchmetric\": 1}' "
            "where name = 'one'", db='config')
    p = subprocess.run([sys.argv[1], '--check', '--sources', uri, '--metrics', uri],
                       capture_output=True, text=True)
    t.ok(p.returncode == 1 and 'nosuchmetric' in p.stderr and 'pgwatch.source' in p.stderr,
         '--check: the error and where it comes from', p.stderr)
    p = subprocess.run([sys.argv[1], '--check', '--sources',
                        'postgresql://postgres:hunter2@/nodb?host=%s&port=%d' % (pg.sock, pg.port)],
                       capture_output=True, text=True)
    t.ok(p.returncode == 1 and 'could not connect to the configuration database' in p.stderr
         and 'hunter2' not in p.stderr, '--check: unreachable database, password masked', p.stderr)
    pg.cleanup()
    t.done()


main()
