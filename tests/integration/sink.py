"""The PostgreSQL sink against a real PostgreSQL 15: what is stored (tables, times, types,
tags, byte-exact text), names that could inject SQL, partitions (dropped by hand, after a
long downtime, across restarts), schema setup by two processes at once, and retention."""
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

NAME = "'it''s \"src\"'"  # YAML for: it's "src"
DB = "it''s \"src\""  # the same name inside an SQL literal
LONG = 'ab"\\\n' * 25000  # 100,000 characters with quotes, backslashes and newlines

METRICS = r'''
metrics:
  types:
    sqls:
      10: |
        select (extract(epoch from now()) * 1e9)::int8 - g * 100000000 as epoch_ns,
               g as n, 9007199254740993::int8 as i8, 2.25::float8 as f8, 3.5::numeric as num,
               'NaN'::float8 as nan_f, '-Infinity'::float8 as ninf, true as flag,
               'x "q" \ b' || chr(10) || 'l' || chr(9) || 't' as txt, 'café ✓ 𝄞' as uni,
               '{"a": [1, "z"]}'::jsonb as js, null::text as nothing,
               'r' || g as tag_row, 'v' as tag_kind
          from generate_series(0, 2) g
  long_text:
    sqls:
      10: select repeat('ab"\' || chr(10), 25000) as long
  evil:
    sqls:
      10: select 1 as one, 'x' as "tag_we""ird"
    storage_name: 'Evil"; drop table admin.migration; --'
  upper:
    sqls:
      10: select 2 as two
    storage_name: MiXeD Case
'''

SOURCES = '''
- name: {name}
  conn_str: {conn}
  custom_metrics: {{types: 1, long_text: 3600, evil: 1, upper: 1}}
  custom_tags: {{env: test, "quote\\"d": "va'lue"}}
'''


def q(pg, sql):
    return pg.psql(sql, db='metrics')


def run_reaper(pg, args=(), name='src1', seconds=3.5):
    sink = 'postgresql:///metrics?host=%s&port=%d&user=postgres' % (pg.sock, pg.port)
    r = Reaper(sys.argv[1], SOURCES.format(name=name, conn=pg.conn_str()), METRICS,
               args=['--sink', sink] + list(args)).start()
    r.wait_log('schema ready', 15)
    time.sleep(seconds)
    return r


def main():
    t = Tap()
    pg = Postgres('sink')
    pg.psql('create database metrics')
    r = run_reaper(pg, name=NAME)
    t.is_(r.stop(), 0, 'exit 0')
    s = r.summary()
    t.ok(s.get('sink_rows') and s.get('sink_rows_dropped') == 0, 'nothing dropped', s)

    # Tables, listing, partitions.
    t.is_(q(pg, "select string_agg(id::text, ',' order by id) from admin.migration"), '0,1,2,3,4',
          "pgwatch's migration list (ids 0-4), nothing of pgreaper's")
    tables = q(pg, "select string_agg(relname, ',' order by relname) from pg_class where "
                   "relnamespace = 'public'::regnamespace and relkind = 'p'")
    t.ok('types' in tables.split(',') and 'MiXeD Case' in tables.split(','),
         'one partitioned table per metric, names kept as given', tables)
    t.is_(q(pg, "select to_regclass(format('public.%I', "
                "'Evil\"; drop table admin.migration; --')) is not null"), 't',
          'a name with quotes and SQL is only a table name')
    t.is_(q(pg, "select count(*) from admin.migration"), '5', 'and injected nothing')
    t.is_(q(pg, "select count(*) from admin.all_distinct_dbname_metrics "
                "where dbname = '%s'" % DB), '5', 'listing has each (dbname, metric) once')
    parts = int(q(pg, "select count(*) from pg_inherits where inhparent = 'public.types'::regclass"))
    t.is_(parts, 4, "today's partition and 3 ahead")

    # Content.
    rows = q(pg, "select count(*), count(distinct time) from public.types").split('|')
    t.ok(int(rows[0]) >= 9 and rows[0] == rows[1], 'each row keeps its own time', rows)
    t.is_(q(pg, "select count(*) from public.types where time <> to_timestamp(((extract(epoch "
                "from time) * 1e6)::int8 / 1e6))"), '0', 'times stored to the microsecond')
    # Rows of one fetch lie 100 ms apart (a tick's rows never meet the next tick's, whose
    # now() is about 1 s later): each n = 0 row has its n = 2 row 200 ms before it.
    t.is_(q(pg, "select count(*) = (select count(*) from public.types where data->>'n' = '0') "
                "from public.types a join public.types b on b.time = a.time - interval '200 ms' "
                "where a.data->>'n' = '0' and b.data->>'n' = '2'"), 't',
          'row times from epoch_ns, not the fetch')
    one = "select %s from public.types where data->>'n' = '1' limit 1"
    t.is_(q(pg, one % "jsonb_typeof(data->'i8') || jsonb_typeof(data->'f8') || "
                      "jsonb_typeof(data->'num') || jsonb_typeof(data->'flag')"),
          'numbernumbernumberboolean', 'numbers stay numbers, bool stays bool')
    t.is_(q(pg, one % "(data->>'i8')::numeric = 9007199254740993"), 't', 'int8 exact')
    t.is_(q(pg, one % "jsonb_typeof(data->'nan_f') || jsonb_typeof(data->'ninf') || "
                      "jsonb_typeof(data->'nothing')"), 'nullnullnull', 'NaN, Inf, null')
    t.is_(q(pg, one % "data->>'txt' = 'x \"q\" \\ b' || chr(10) || 'l' || chr(9) || 't'"), 't',
          'quotes, backslash, newline, tab survive')
    t.is_(q(pg, one % "data->>'uni' = 'café ✓ 𝄞'"), 't', 'unicode survives')
    t.is_(q(pg, one % "data->'js' = '{\"a\": [1, \"z\"]}'::jsonb"), 't', 'jsonb embedded')
    t.is_(q(pg, one % "data ? 'epoch_ns' or data ? 'tag_row'"), 'f',
          'data holds fields only (no epoch_ns, no tags)')
    t.is_(q(pg, one % "tag_data::text"),
          '{"env": "test", "row": "r1", "kind": "v", "quote\\"d": "va\'lue"}',
          'tag_data: custom tags and tag_ columns without the prefix')
    t.is_(q(pg, one % "dbname"), 'it\'s "src"', 'dbname is the source name, quotes kept')
    long_md5 = q(pg, "select md5(data->>'long') from public.long_text")
    t.is_(long_md5, hashlib.md5(LONG.encode()).hexdigest(), '100,000-character text byte-exact')
    t.is_(q(pg, "select tag_data->>'we\"ird' from public.\"Evil\"\"; drop table "
                "admin.migration; --\" limit 1"), 'x', 'odd tag names kept')

    # Today's partition dropped by hand: recreated, rows written.
    today = q(pg, "select 'types_' || to_char(now(), 'YYYYMMDD')")
    q(pg, 'drop table subpartitions."%s"' % today)
    before = int(q(pg, "select count(*) from public.types"))
    r = run_reaper(pg, name=NAME, seconds=3)
    t.is_(r.stop(), 0, 'second run exits 0')
    t.is_(q(pg, "select to_regclass('subpartitions.\"%s\"') is not null" % today), 't',
          "dropped partition recreated")
    t.ok(int(q(pg, "select count(*) from public.types")) > before, 'and rows written to it')
    t.is_(int(q(pg, "select count(*) from pg_inherits where inhparent = "
                    "'public.types'::regclass")), 4, 'restarts add no partitions')

    # A long downtime: partitions exist for old days only; a restart creates today's.
    q(pg, "select admin.ensure_partition_metric_time('types', now() - interval '30 days')")
    for p in q(pg, "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
                   "where i.inhparent = 'public.types'::regclass and c.relname >= "
                   "'types_' || to_char(now() - interval '1 day', 'YYYYMMDD')").split():
        q(pg, 'drop table subpartitions."%s"' % p)
    r = run_reaper(pg, args=['--retention', '0'], name=NAME, seconds=2)
    t.is_(r.stop(), 0, 'run after a long downtime exits 0')
    t.is_(q(pg, "select count(*) from public.types where time > now() - interval '1 minute'") != '0',
          True, 'current rows written after the downtime')
    t.is_(int(q(pg, "select count(*) from pg_inherits where inhparent = "
                    "'public.types'::regclass")), 8, 'old partitions kept, today + 3 recreated')

    # Four processes set up a fresh sink at the same moment (schema and tables).
    pg.psql('create database metrics2')
    sink2 = 'postgresql:///metrics2?host=%s&port=%d&user=postgres' % (pg.sock, pg.port)
    rs = [Reaper(sys.argv[1], SOURCES.format(name='p%d' % i, conn=pg.conn_str()), METRICS,
                 args=['--sink', sink2]).start() for i in range(4)]
    for i, x in enumerate(rs):
        t.ok(x.wait_log('schema ready', 15), 'process %d set the schema up' % i, x.log())
    time.sleep(2)
    for i, x in enumerate(rs):
        t.is_(x.stop(), 0, 'process %d exits 0' % i)
        t.ok('ERROR' not in x.log(), 'process %d logged no error' % i, x.log())
        t.ok('NOTICE' not in x.log(), "process %d: server notices stay out of the log" % i)
    t.is_(pg.psql("select count(distinct dbname) from public.types", db='metrics2'),
          str(len(rs)), 'all wrote')

    # A sink database that pgwatch set up first (admin.migration without a key, its own
    # template): pgreaper adds its parts and writes.
    pg.psql('create database metrics4')
    pg.psql('create schema admin; create table admin.migration (id int, version text); '
            "insert into admin.migration values (0, '00179'), (1, '00824'); "
            'create table admin.metrics_template (time timestamptz default now() not null, '
            'dbname text not null, data jsonb not null, tag_data jsonb, check (false))',
            db='metrics4')
    sink4 = 'postgresql:///metrics4?host=%s&port=%d&user=postgres' % (pg.sock, pg.port)
    r = Reaper(sys.argv[1], SOURCES.format(name=NAME, conn=pg.conn_str()), METRICS,
               args=['--sink', sink4]).start()
    t.ok(r.wait_log('schema ready', 15), 'schema set up over a pgwatch one', r.log())
    time.sleep(2)
    t.is_(r.stop(), 0, 'exit 0 on a pgwatch sink')
    t.ok(int(pg.psql('select count(*) from public.types', db='metrics4')) > 0, 'rows written')
    t.is_(pg.psql("select string_agg(version, ',' order by id) from admin.migration",
                  db='metrics4'), '00179,00824', "pgwatch's migration rows are pgwatch's")

    # A sink role without the right to create the schema: a clear error, collection goes
    # on, and the rows are written once the right is granted.
    pg.psql('create database metrics3')
    pg.psql('create role writer login')
    sink3 = 'postgresql:///metrics3?host=%s&port=%d&user=writer' % (pg.sock, pg.port)
    r = Reaper(sys.argv[1], SOURCES.format(name=NAME, conn=pg.conn_str()), METRICS,
               args=['--sink', sink3]).start()
    t.ok(r.wait_log('could not prepare the sink schema', 15), 'missing right reported', r.log())
    t.ok('permission denied for database metrics3' in r.log() and
         'needs CREATE on the database and on schema public' in r.log(),
         'the message says what is missing', r.log())
    t.ok(r.wait_batches('types', count=3, timeout=10), 'collection goes on meanwhile')
    pg.psql('grant create on database metrics3 to writer')
    t.ok(r.wait_log('permission denied for schema public', 20),
         'then the missing right on schema public is named', r.log())
    t.is_(r.log().count('could not prepare the sink schema'), 2,
          'each distinct error is logged once, not at every retry')
    pg.psql('grant create on schema public to writer', db='metrics3')
    t.ok(r.wait_log('connected again', 40), 'retried after the grant', r.log())
    time.sleep(2)
    t.is_(r.stop(), 0, 'exit 0')
    t.is_(pg.psql("select count(*) from public.types", db='metrics3'),
          str(sum(len(b['data']) for b in r.batches('types'))),
          'every row collected while the sink refused is stored')

    # Retention drops exactly the partitions older than the window.
    q(pg, "select count(admin.ensure_partition_metric_time('types', now() - make_interval(days => d))) "
          "from generate_series(1, 6) d")
    r = run_reaper(pg, args=['--retention', '3 days', '--maintenance-interval', '1h'],
                   name=NAME, seconds=2)
    t.ok(r.wait_log('maintenance dropped', 10), 'maintenance ran', r.log())
    t.is_(r.stop(), 0, 'retention run exits 0')
    left = q(pg, "select count(*) filter (where upper <= now() - interval '3 days'), "
                 "count(*) filter (where upper > now() - interval '3 days') from ("
                 "select (regexp_match(pg_get_expr(c.relpartbound, c.oid), "
                 "'TO \\(''([^'']+)''\\)'))[1]::timestamptz as upper from pg_inherits i "
                 "join pg_class c on c.oid = i.inhrelid "
                 "where i.inhparent = 'public.types'::regclass) x").split('|')
    t.is_(left[0], '0', 'no partition ending before the window is left')
    t.ok(int(left[1]) >= 6, 'partitions inside the window are kept', left)
    t.done()


if __name__ == '__main__':
    main()
