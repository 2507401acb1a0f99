"""One sink, two writers: pgreaper's PostgreSQL sink schema is pgwatch's, in either order,
on a real PostgreSQL 15.

- pgreaper first: the objects pgwatch looks for exist with pgwatch's names, constraints,
  comments and migration list (ids 0-4, nothing else, so pgwatch's migrator finds
  nothing to do); partitions have pgwatch's bounds (weekly ones start on Monday 00:00);
  then what pgwatch does at start and when writing (its statements, run here) works:
  it skips its own set-up, finds the "postgres" type, gets the partition pgreaper's rows
  are in, writes a row, and its maintenance functions list and manage pgreaper's tables.
- pgwatch first: a sink set up the way pgwatch sets one up (written here, from a reading
  of pgwatch's DDL; its partition function records its calls), with a pgwatch row in
  today's partition: pgreaper keeps pgwatch's functions and migration list, adds only its
  own table, writes through pgwatch's partition function into the same partition.
- a sink made by pgreaper 1 (its comments, functions and migration row, epoch-aligned
  weekly partitions starting on a Thursday): converted at start, and writing goes on in
  the existing partitions without overlap errors."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

METRICS = '''
metrics:
  m:
    sqls:
      10: select (extract(epoch from now()) * 1e9)::int8 as epoch_ns, 1 as v, 'a' as tag_k
'''
SOURCES = '''
- name: {name}
  conn_str: {conn}
  custom_metrics: {{m: 1}}
'''

PGWATCH_MIGRATIONS = ('01110 Apply postgres sink schema migrations,'
                      '01180 Apply admin functions migrations for v5,'
                      '01409 Switch to time-only partitioning,'
                      '01474 Change drop_all_metric_tables to procedure,'
                      '01529 Fix ensure_partition_metric_time partitioning strategy')

# A sink as pgwatch sets it up (the objects pgreaper relies on), written for this test.
# ensure_partition_metric_time records each call in pgwatch_calls.
PGWATCH_SCHEMA = r'''
create schema admin;
create schema subpartitions;
create function admin.get_default_storage_type() returns text language sql
  as $$ select 'postgres' $$;
create table admin.storage_schema_type (
  schema_type text not null default admin.get_default_storage_type(),
  initialized_on timestamptz not null default now(),
  check (schema_type in ('postgres', 'timescale')));
insert into admin.storage_schema_type default values;
create unique index max_one_row on admin.storage_schema_type ((1));
create table admin.all_distinct_dbname_metrics (dbname text not null, metric text not null,
  created_on timestamptz not null default now(), primary key (dbname, metric));
create table admin.config (key text not null primary key, value text not null,
  created_on timestamptz not null default now(), last_modified_on timestamptz);
create table admin.metrics_template (time timestamptz not null default now(),
  dbname text not null, data jsonb not null, tag_data jsonb, check (false));
create index on admin.metrics_template (dbname, time);
create table admin.migration (id bigint primary key, version text not null);
insert into admin.migration
  select i - 1, v from unnest(string_to_array('%(migrations)s', ',')) with ordinality u(v, i);
create table public.pgwatch_calls (metric text, at timestamptz default clock_timestamp());
create function admin.ensure_dummy_metrics_table(metric text) returns boolean
language plpgsql as $f$ begin
  if to_regclass(format('public.%%I', metric)) is not null then return false; end if;
  execute format('create table public.%%I (like admin.metrics_template including indexes)'
                 ' partition by range (time)', metric);
  execute format('comment on table public.%%I is $$pgwatch-generated-metric-lvl$$', metric);
  return true;
end $f$;
create function admin.get_top_level_metric_tables(out table_name text) returns setof text
language sql as $f$
  select c.oid::regclass::text from pg_class c
   where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
     and obj_description(c.oid, 'pg_class') = 'pgwatch-generated-metric-lvl' order by 1
$f$;
create function admin.ensure_partition_metric_time(metric text, metric_timestamp timestamptz,
    partition_period interval default '1 day', partitions_to_precreate int default 3,
    out part_available_from timestamptz, out part_available_to timestamptz)
returns record language plpgsql as $f$
declare s timestamptz := date_trunc('day', metric_timestamp); n text;
begin
  insert into public.pgwatch_calls (metric) values (metric);
  perform admin.ensure_dummy_metrics_table(metric);
  part_available_from := s;
  part_available_to := s + partition_period;
  for i in 0 .. partitions_to_precreate loop
    n := format('%%s_%%s', metric, to_char(s, 'YYYYMMDD'));
    if to_regclass(format('subpartitions.%%I', n)) is null then
      execute format('create table subpartitions.%%I partition of public.%%I'
                     ' for values from (%%L) to (%%L)', n, metric, s, s + partition_period);
      execute format('comment on table subpartitions.%%I is $$pgwatch-generated-metric-time-lvl$$', n);
    end if;
    s := s + partition_period;
  end loop;
end $f$;
create function admin.drop_old_time_partitions(older_than interval, schema_type text default '')
returns int language sql as $f$ select 0 $f$;
create function admin.maintain_unique_sources() returns int language sql as $f$ select 0 $f$;
select admin.ensure_partition_metric_time('m', now());
insert into public.m values (now(), 'written-by-pgwatch', '{"v": 1}', '{"k": "a"}');
''' % {'migrations': PGWATCH_MIGRATIONS}

# A sink made by pgreaper 1: its own comments, function and migration row; a weekly
# partition aligned to the Unix epoch (Thursday 00:00 UTC) holding now().
PGREAPER1_SCHEMA = r'''
create schema admin;
create schema subpartitions;
create table admin.migration (id int primary key, version text not null,
  applied_on timestamptz not null default now());
insert into admin.migration (id, version)
  values (1, 'pgreaper 1: admin schema, metrics_template, partition and retention functions');
create table admin.storage_schema_type (schema_type text not null,
  initialized_on timestamptz not null default now());
insert into admin.storage_schema_type (schema_type) values ('postgres');
create table admin.metrics_template (time timestamptz not null, dbname text not null,
  data jsonb not null, tag_data jsonb, check (false));
create index metrics_template_dbname_time_idx on admin.metrics_template (dbname, time);
create table admin.all_distinct_dbname_metrics (dbname text not null, metric text not null,
  created_on timestamptz not null default now(), primary key (dbname, metric));
create function admin.ensure_partitions(p_metric text, p_from timestamptz, p_to timestamptz,
  p_step_s bigint) returns int language sql as $$ select 0 $$;
create table public.m (like admin.metrics_template including indexes) partition by range (time);
comment on table public.m is 'pgreaper-generated-metric-lvl';
do $$
declare s timestamptz := to_timestamp(floor(extract(epoch from now()) / 604800) * 604800);
begin
  execute format('create table subpartitions.%I partition of public.m for values from (%L) to (%L)',
                 'm_' || to_char(s at time zone 'UTC', 'YYYYMMDD'), s, s + interval '7 days');
  execute format('comment on table subpartitions.%I is %L',
                 'm_' || to_char(s at time zone 'UTC', 'YYYYMMDD'), 'pgreaper-generated-metric-time-lvl');
end $$;
'''


def reaper(pg, db, args=(), seconds=3):
    sink = 'postgresql:///%s?host=%s&port=%d&user=postgres' % (db, pg.sock, pg.port)
    r = Reaper(sys.argv[1], SOURCES.format(name='reaper-' + db, conn=pg.conn_str()), METRICS,
               args=['--sink', sink] + list(args)).start()
    r.wait_log('schema ready', 20)
    time.sleep(seconds)
    return r


def pgreaper_first(t, pg):
    pg.psql('create database a')
    q = lambda sql: pg.psql(sql, db='a')  # noqa: E731
    r = reaper(pg, 'a', ['--partition-interval', '7 days'])
    t.is_(r.stop(), 0, 'pgreaper first: exit 0')
    t.ok('ERROR' not in r.log(), 'pgreaper first: no error', r.log()[-2000:])
    t.is_(q("select string_agg(version, ',' order by id) from admin.migration"),
          PGWATCH_MIGRATIONS, "admin.migration holds pgwatch's ids 0-4 and nothing else")
    t.is_(q("select string_agg(table_name, ',') from admin.get_top_level_metric_tables() "
            "where table_name = 'm'"), 'm',
          "pgwatch's get_top_level_metric_tables() sees pgreaper's table")
    t.is_(q("select schema_type = 'timescale' from admin.storage_schema_type"), 'f',
          "the storage schema type pgwatch reads is postgres")
    dup = q("select count(*) from pg_indexes where schemaname = 'admin' "
            "and indexname = 'max_one_row'")
    chk = q("select count(*) from pg_constraint where conrelid = "
            "'admin.storage_schema_type'::regclass and contype = 'c'")
    t.ok(dup == '1' and chk == '1', "storage_schema_type has pgwatch's index and check")
    t.is_(q("select string_agg(key, ',' order by key) from admin.config"),
          'pgreaper_schema,timescale_chunk_interval,timescale_compress_interval',
          "admin.config holds pgwatch's keys and pgreaper's schema version")
    bounds = q("select count(*), count(*) filter (where extract(isodow from lo) = 1 and "
               "lo = date_trunc('day', lo) and hi - lo = interval '7 days' and "
               "obj_description(oid, 'pg_class') = 'pgwatch-generated-metric-time-lvl' and "
               "relname = 'm_' || to_char(lo, 'YYYYMMDD')) "
               "from (select c.oid, c.relname, (regexp_match(pg_get_expr(c.relpartbound, c.oid), "
               "'FROM \\(''([^'']+)''\\)'))[1]::timestamptz lo, "
               "(regexp_match(pg_get_expr(c.relpartbound, c.oid), "
               "'TO \\(''([^'']+)''\\)'))[1]::timestamptz hi from pg_inherits i "
               "join pg_class c on c.oid = i.inhrelid where i.inhparent = 'public.m'::regclass) p")
    n, good = bounds.split('|')
    t.ok(int(n) >= 4 and n == good, 'weekly partitions with pgwatch\'s names, comment and '
         'bounds (Monday 00:00, 7 days)', bounds)
    # What pgwatch does against this sink, in its order.
    t.is_(q("select exists (select from pg_namespace where nspname = 'admin')"), 't',
          'pgwatch would find the admin schema and skip its own set-up')
    t.is_(q("select count(*) from admin.migration"), '5', "pgwatch's migrator: 5 of 5 applied")
    t.is_(q("select admin.ensure_dummy_metrics_table('pgwatch_only')"), 't',
          "pgwatch's ensure_dummy_metrics_table makes its table")
    part = q("select tableoid::regclass from public.m order by time desc limit 1")
    got = q("select format('subpartitions.m_%s', to_char(part_available_from, 'YYYYMMDD')) "
            "from admin.ensure_partition_metric_time('m', now(), '7 days')")
    t.is_(got, part, "pgwatch's partition call returns the partition pgreaper writes to")
    q("insert into public.m values (now(), 'pgwatch-src', '{\"v\": 2}', '{\"k\": \"b\"}')")
    t.ok(int(q("select admin.maintain_unique_sources()")) >= 1 and
         q("select count(*) from admin.all_distinct_dbname_metrics where metric = 'm'") == '2',
         "pgwatch's maintain_unique_sources lists both writers' sources")
    t.is_(q("select admin.drop_old_time_partitions(older_than => '1 day')"), '0',
          "pgwatch's retention drops no current partition")
    r = reaper(pg, 'a', ['--partition-interval', '7 days'], seconds=2)
    t.is_(r.stop(), 0, 'pgreaper again after pgwatch: exit 0')
    t.is_(q("select count(*) from admin.migration"), '5', 'migration list unchanged')
    t.is_(q("select count(*) from public.m where dbname = 'pgwatch-src'"), '1',
          "pgwatch's row is kept")


def pgwatch_first(t, pg):
    pg.psql('create database b')
    q = lambda sql: pg.psql(sql, db='b')  # noqa: E731
    pg.psql(PGWATCH_SCHEMA, db='b')
    calls = int(q('select count(*) from public.pgwatch_calls'))
    r = reaper(pg, 'b')
    t.is_(r.stop(), 0, 'pgwatch first: exit 0')
    t.ok('ERROR' not in r.log(), 'pgwatch first: no error', r.log()[-2000:])
    t.ok(int(q('select count(*) from public.pgwatch_calls')) > calls,
         "pgreaper made its partitions through pgwatch's function (kept, not replaced)")
    t.is_(q("select count(*) from pg_proc where proname = 'ensure_partition_metric_time'"), '1',
          'no second version of the function')
    t.is_(q("select string_agg(version, ',' order by id) from admin.migration"),
          PGWATCH_MIGRATIONS, "pgwatch's migration list untouched")
    t.is_(q("select count(distinct tableoid) from public.m where time > now() - interval '1 hour'"),
          '1', "pgreaper's rows and pgwatch's are in the same partition")
    t.ok(int(q("select count(*) from public.m where dbname = 'reaper-b'")) > 0, 'rows written')
    t.is_(q("select to_regclass('admin.pgreaper_writer') is not null and exists (select from "
            "admin.config where key = 'pgreaper_schema')"), 't', "pgreaper's own table added")


def pgreaper1_sink(t, pg):
    pg.psql('create database c')
    q = lambda sql: pg.psql(sql, db='c')  # noqa: E731
    pg.psql(PGREAPER1_SCHEMA, db='c')
    r = reaper(pg, 'c', ['--partition-interval', '7 days'])
    t.is_(r.stop(), 0, 'pgreaper 1 sink: exit 0')
    t.ok('ERROR' not in r.log(), 'pgreaper 1 sink: no error', r.log()[-2000:])
    t.is_(q("select string_agg(version, ',' order by id) from admin.migration"),
          PGWATCH_MIGRATIONS, "pgreaper 1's migration row replaced by pgwatch's list")
    t.is_(q("select count(*) from pg_class where obj_description(oid, 'pg_class') like "
            "'pgreaper-generated%'"), '0', 'no pgreaper 1 comment left')
    t.is_(q("select string_agg(table_name, ',') from admin.get_top_level_metric_tables() "
            "where table_name = 'm'"), 'm', 'the converted table is a pgwatch metric table')
    t.is_(q("select to_regprocedure('admin.ensure_partitions(text,timestamptz,timestamptz,"
            "bigint)') is null"), 't', "pgreaper 1's function dropped")
    t.ok(int(q("select count(*) from public.m")) > 0, 'rows written into the old partition')
    t.ok(int(q("select count(*) from pg_inherits where inhparent = 'public.m'::regclass")) >= 2,
         'the next partitions follow on the Thursday-aligned one without overlap')


def main():
    t = Tap()
    pg = Postgres('sink_compat')
    pgreaper_first(t, pg)
    pgwatch_first(t, pg)
    pgreaper1_sink(t, pg)
    pg.cleanup()
    t.done()


if __name__ == '__main__':
    main()
