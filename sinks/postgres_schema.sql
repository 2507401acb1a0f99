-- SPDX-License-Identifier: PostgreSQL
--
-- The PostgreSQL sink's schema: pgwatch's sink schema (the "postgres" storage type), so
-- that pgwatch and pgreaper write to one sink database in either order and pgwatch's
-- maintenance functions see and manage pgreaper's tables; plus pgreaper's own
-- admin.pgreaper_writer. Written for pgreaper from pgwatch's documented layout and
-- behaviour (object names, comments, constraints, migration ids, partition bounds).
--
-- Every object is created only when it is missing: on a sink pgwatch set up first,
-- pgwatch's own definitions stay (pgwatch upgrades them with its migrations). A sink made
-- by pgreaper 1 (its own comments and functions, migration row "pgreaper 1: ...") is
-- brought to this layout. The script runs in one transaction under an advisory lock, so
-- several pgreaper processes may start at once. Names built from metric names are always
-- quoted with format('%I'). The C side embeds this file (sinks/meson.build).
begin;
select pg_advisory_xact_lock(723851, 0);

-- Say plainly what is missing (PostgreSQL 15 no longer lets everyone create in public).
do $rp$ begin
  if not has_database_privilege(current_database(), 'CREATE') and
     to_regnamespace('admin') is null then
    raise exception using errcode = '42501', message = format(
      'permission denied for database %s', current_database());
  end if;
  if not has_schema_privilege('public', 'CREATE') then
    raise exception using errcode = '42501', message = 'permission denied for schema public';
  end if;
end $rp$;

create schema if not exists admin;
create schema if not exists subpartitions;
do $rp$ begin -- pgwatch creates it; not needed for writing, so its absence is no error
  create extension if not exists btree_gin;
exception when others then
  raise notice 'btree_gin not created: %', sqlerrm;
end $rp$;

-- Creates a function from its text unless one of that signature exists.
create or replace function pg_temp.rp_define(p_signature text, p_definition text)
    returns void language plpgsql as $rp$
begin
  if to_regprocedure(p_signature) is null then
    execute p_definition;
  end if;
end $rp$;

select pg_temp.rp_define('admin.get_default_storage_type()', $def$
create function admin.get_default_storage_type() returns text language sql as $f$
  select case when exists (select from pg_extension where extname = 'timescaledb')
              then 'timescale' else 'postgres' end
$f$ $def$);

create table if not exists admin.storage_schema_type (
  schema_type text not null default admin.get_default_storage_type(),
  initialized_on timestamptz not null default now(),
  check (schema_type in ('postgres', 'timescale')));
do $rp$ begin -- a pgreaper 1 sink: its table had no check
  if not exists (select from pg_constraint
                  where conrelid = 'admin.storage_schema_type'::regclass and contype = 'c') then
    alter table admin.storage_schema_type
      add check (schema_type in ('postgres', 'timescale'));
  end if;
end $rp$;
create unique index if not exists max_one_row on admin.storage_schema_type ((1));
-- pgreaper writes partitioned tables, never hypertables
insert into admin.storage_schema_type (schema_type)
  select 'postgres' where not exists (select from admin.storage_schema_type);
comment on table admin.storage_schema_type is
  'identifies storage schema for other pgwatch components';
do $rp$ begin
  if (select schema_type from admin.storage_schema_type) <> 'postgres' then
    raise exception using errcode = '0A000', message = format(
      'the sink''s storage schema is "%s" (admin.storage_schema_type); pgreaper writes '
      'only the "postgres" one (time-partitioned tables)',
      (select schema_type from admin.storage_schema_type));
  end if;
end $rp$;

create table if not exists admin.all_distinct_dbname_metrics (
  dbname text not null,
  metric text not null,
  created_on timestamptz not null default now(),
  primary key (dbname, metric));

create table if not exists admin.config (
  key text not null primary key,
  value text not null,
  created_on timestamptz not null default now(),
  last_modified_on timestamptz);
insert into admin.config (key, value)
  values ('timescale_chunk_interval', '2 days'), ('timescale_compress_interval', '1 day')
  on conflict (key) do nothing;
select pg_temp.rp_define('public.trg_config_modified()', $def$
create function public.trg_config_modified() returns trigger language plpgsql as $f$
begin
  new.last_modified_on := now();
  return new;
end $f$ $def$);
do $rp$ begin
  if not exists (select from pg_trigger where tgname = 'config_modified'
                    and tgrelid = 'admin.config'::regclass) then
    create trigger config_modified before update on admin.config
      for each row execute function public.trg_config_modified();
  end if;
end $rp$;

create table if not exists admin.metrics_template (
  time timestamptz not null default now(),
  dbname text not null,
  data jsonb not null,
  tag_data jsonb,
  check (false));
comment on table admin.metrics_template is 'used as a template for all new metric definitions';
create index if not exists metrics_template_dbname_time_idx
  on admin.metrics_template (dbname, time);

-- pgwatch's migration list: its migrator counts the rows, so pgreaper adds none of its
-- own (its version is admin.config's pgreaper_schema). Made here on a new sink, and on
-- one made by pgreaper 1 (whose own row goes); a list pgwatch made is pgwatch's to keep.
do $rp$ begin
  if to_regclass('admin.migration') is null then
    create table admin.migration (
      id bigint primary key,
      version text not null);
  elsif not exists (select from admin.migration where version like 'pgreaper %') then
    return;
  end if;
  delete from admin.migration where version like 'pgreaper %';
  insert into admin.migration (id, version)
    select v.id, v.version
      from (values (0, '01110 Apply postgres sink schema migrations'),
                   (1, '01180 Apply admin functions migrations for v5'),
                   (2, '01409 Switch to time-only partitioning'),
                   (3, '01474 Change drop_all_metric_tables to procedure'),
                   (4, '01529 Fix ensure_partition_metric_time partitioning strategy'))
           as v (id, version)
     where not exists (select from admin.migration m where m.id = v.id);
end $rp$;

-- A top-level metric table, without partitions, so dashboards never query a missing
-- table; false when it exists.
select pg_temp.rp_define('admin.ensure_dummy_metrics_table(text)', $def$
create function admin.ensure_dummy_metrics_table(metric text) returns boolean
    language plpgsql as $f$
begin
  if to_regclass(format('public.%I', metric)) is not null then
    return false;
  end if;
  if (select schema_type from admin.storage_schema_type) = 'timescale' then
    perform admin.ensure_partition_timescale(metric);
  else
    execute format('create table public.%I (like admin.metrics_template including indexes)'
                   ' partition by range (time)', metric);
  end if;
  execute format('comment on table public.%I is %L', metric, 'pgwatch-generated-metric-lvl');
  return true;
end $f$ $def$);

-- Every top-level metric table: in public, with a time column and the metric comment.
select pg_temp.rp_define('admin.get_top_level_metric_tables()', $def$
create function admin.get_top_level_metric_tables(out table_name text) returns setof text
    language sql as $f$
  select c.oid::regclass::text
    from pg_class c
   where c.relnamespace = 'public'::regnamespace
     and c.relkind in ('r', 'p')
     and obj_description(c.oid, 'pg_class') = 'pgwatch-generated-metric-lvl'
     and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'time')
   order by 1
$f$ $def$);

-- Drops every metric table, one partition per transaction (CALL it outside a transaction).
select pg_temp.rp_define('admin.drop_all_metric_tables()', $def$
create procedure admin.drop_all_metric_tables() language plpgsql as $f$
declare
  v_table text;
  v_part text;
  v_count int := 0;
begin
  for v_table in select t.table_name from admin.get_top_level_metric_tables() t loop
    for v_part in
      select p.relid::regclass::text
        from pg_partition_tree(v_table::regclass) p
       where p.level > 0
       order by p.level desc, p.relid::regclass::text
    loop
      raise notice 'dropping partition %', v_part;
      execute 'drop table if exists ' || v_part;
      commit;
    end loop;
    raise notice 'dropping table %', v_table;
    execute 'drop table ' || v_table;
    v_count := v_count + 1;
    commit;
  end loop;
  truncate admin.all_distinct_dbname_metrics;
  commit;
  raise notice 'dropped % top-level metric tables', v_count;
end $f$ $def$);

select pg_temp.rp_define('admin.truncate_all_metric_tables()', $def$
create function admin.truncate_all_metric_tables() returns int language plpgsql as $f$
declare
  v_table text;
  v_count int := 0;
begin
  for v_table in select t.table_name from admin.get_top_level_metric_tables() t loop
    raise notice 'truncating %', v_table;
    execute 'truncate table ' || v_table;
    v_count := v_count + 1;
  end loop;
  truncate admin.all_distinct_dbname_metrics;
  return v_count;
end $f$ $def$);

-- Time partitions whose upper bound is older than now() - older_than.
select pg_temp.rp_define('admin.get_old_time_partitions(interval,text)', $def$
create function admin.get_old_time_partitions(older_than interval, schema_type text default '')
    returns setof text language plpgsql as $f$
declare
  v_type text := schema_type;
begin
  if v_type = '' then
    select s.schema_type into v_type from admin.storage_schema_type s;
  end if;
  if v_type = 'postgres' then
    return query
      select c.oid::regclass::text
        from pg_class c
        join pg_inherits i on i.inhrelid = c.oid
       where c.relnamespace = 'subpartitions'::regnamespace
         and c.relkind in ('r', 'p')
         and obj_description(c.oid, 'pg_class') = 'pgwatch-generated-metric-time-lvl'
         and (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']*)''\)'))[1]::timestamptz
             < now() - older_than
       order by 1;
  elsif v_type = 'timescale' then
    return query execute
      'select c::text from timescaledb_information.hypertables h,
              show_chunks(h.hypertable_name::regclass, $1) c order by 1' using older_than;
  else
    raise exception 'unsupported schema type: %', v_type;
  end if;
end $f$ $def$);

-- Detaches and drops those partitions; returns how many.
select pg_temp.rp_define('admin.drop_old_time_partitions(interval,text)', $def$
create function admin.drop_old_time_partitions(older_than interval, schema_type text default '')
    returns int language plpgsql as $f$
declare
  v_type text := schema_type;
  v_part text;
  v_parent text;
  v_count int := 0;
begin
  if v_type = '' then
    select s.schema_type into v_type from admin.storage_schema_type s;
  end if;
  if v_type = 'postgres' then
    for v_part in select p from admin.get_old_time_partitions(older_than, 'postgres') p loop
      select i.inhparent::regclass::text into v_parent
        from pg_inherits i where i.inhrelid = v_part::regclass;
      raise notice 'detaching sub-partition: %', v_part;
      execute format('alter table %s detach partition %s', v_parent, v_part);
      raise notice 'dropping sub-partition:  %', v_part;
      execute 'drop table if exists ' || v_part;
      v_count := v_count + 1;
    end loop;
  elsif v_type = 'timescale' then
    execute 'select count(*) from timescaledb_information.hypertables h,
                    drop_chunks(h.hypertable_name::regclass, $1)'
      into v_count using older_than;
  else
    raise exception 'unsupported schema type: %', v_type;
  end if;
  return v_count;
end $f$ $def$);

-- Keeps admin.all_distinct_dbname_metrics equal to the (dbname, metric) pairs that have
-- rows; one writer at a time (the others return 0). Returns the rows changed.
select pg_temp.rp_define('admin.maintain_unique_sources()', $def$
create function admin.maintain_unique_sources() returns int language plpgsql as $f$
declare
  v_table text;
  v_metric text;
  v_metrics text[] := '{}';
  v_names text[];
  v_n bigint;
  v_changed bigint := 0;
begin
  if not pg_try_advisory_xact_lock(1571543679778230000) then
    raise notice 'another writer maintains admin.all_distinct_dbname_metrics now';
    return 0;
  end if;
  for v_table in select t.table_name from admin.get_top_level_metric_tables() t loop
    v_metric := regexp_replace(v_table, '^public\.', '');
    v_metrics := v_metrics || v_metric;
    -- the distinct names by skipping through the (dbname, time) index
    execute format('with recursive d (dbname) as (
                      select min(dbname) from %1$s
                      union all
                      select (select min(t.dbname) from %1$s t where t.dbname > d.dbname)
                        from d where d.dbname is not null)
                    select array_agg(dbname) from d where dbname is not null', v_table)
      into v_names;
    delete from admin.all_distinct_dbname_metrics l
     where l.metric = v_metric and not (l.dbname = any (coalesce(v_names, '{}')));
    get diagnostics v_n = row_count;
    v_changed := v_changed + v_n;
    insert into admin.all_distinct_dbname_metrics (dbname, metric)
      select n, v_metric from unnest(v_names) n
      on conflict do nothing;
    get diagnostics v_n = row_count;
    v_changed := v_changed + v_n;
  end loop;
  delete from admin.all_distinct_dbname_metrics l where not (l.metric = any (v_metrics));
  get diagnostics v_n = row_count;
  return v_changed + v_n;
end $f$ $def$);

-- The metric table and its time partitions: the one holding metric_timestamp and
-- partitions_to_precreate after it. Bounds as pgwatch computes them: a week or more
-- starts on Monday 00:00, a day or more at midnight, less at the full hour (the session's
-- time zone), and a new partition starts no earlier than the end of the last existing
-- one. Names: <metric>_YYYYMMDD (_YYYYMMDD_HH24 below a day). Returns the bounds of the
-- partition that holds metric_timestamp. A partition that would overlap one made with
-- other bounds is left out (its rows go to the existing one).
select pg_temp.rp_define('admin.ensure_partition_metric_time(text,timestamptz,interval,integer)', $def$
create function admin.ensure_partition_metric_time(
    metric text, metric_timestamp timestamptz, partition_period interval default '1 day',
    partitions_to_precreate int default 3,
    out part_available_from timestamptz, out part_available_to timestamptz)
    returns record language plpgsql as $f$
declare
  v_last_end timestamptz;
  v_start timestamptz;
  v_end timestamptz;
  v_name text;
begin
  if partition_period < interval '1 hour' then
    raise exception 'Partition period must be at least 1 hour, got: %', partition_period;
  end if;
  -- the lock pgwatch takes for this metric, so that both writers wait for each other
  perform pg_advisory_xact_lock(coalesce(nullif(regexp_replace(md5(metric), '\D', '', 'g'), ''),
                                         '0')::varchar(10)::int8);
  if to_regclass(format('public.%I', metric)) is null then
    execute format('create table public.%I (like admin.metrics_template including indexes)'
                   ' partition by range (time)', metric);
    execute format('comment on table public.%I is %L', metric, 'pgwatch-generated-metric-lvl');
  end if;
  -- the existing partitions: the end of the last one, and the one holding the timestamp
  with b as (
    select (regexp_match(e, 'FROM \(''([^'']*)''\)'))[1]::timestamptz as lo,
           (regexp_match(e, 'TO \(''([^'']*)''\)'))[1]::timestamptz as hi
      from (select pg_get_expr(c.relpartbound, c.oid, true) as e
              from pg_inherits i
              join pg_class c on c.oid = i.inhrelid
             where i.inhparent = format('public.%I', metric)::regclass
               and c.relnamespace = 'subpartitions'::regnamespace) p)
  select max(b.hi),
         max(b.lo) filter (where metric_timestamp >= b.lo and metric_timestamp < b.hi),
         max(b.hi) filter (where metric_timestamp >= b.lo and metric_timestamp < b.hi)
    into v_last_end, part_available_from, part_available_to
    from b;
  if part_available_from is not null then
    return;
  end if;
  v_start := date_trunc(case when partition_period >= interval '1 week' then 'week'
                             when partition_period >= interval '1 day' then 'day'
                             else 'hour' end, metric_timestamp);
  if v_last_end is not null and metric_timestamp >= v_last_end then
    v_start := greatest(v_start, v_last_end);
  end if;
  for i in 0 .. partitions_to_precreate loop
    v_end := v_start + partition_period;
    if i = 0 then
      part_available_from := v_start;
      part_available_to := v_end;
    end if;
    v_name := format('%s_%s', metric, to_char(v_start, case when partition_period >= interval '1 day'
                                                            then 'YYYYMMDD' else 'YYYYMMDD_HH24' end));
    if to_regclass(format('subpartitions.%I', v_name)) is null then
      begin
        execute format('create table subpartitions.%I partition of public.%I'
                       ' for values from (%L) to (%L)', v_name, metric, v_start, v_end);
        execute format('comment on table subpartitions.%I is %L', v_name,
                       'pgwatch-generated-metric-time-lvl');
      exception when invalid_object_definition then
        null; -- overlaps a partition made with other bounds
      end;
    end if;
    v_start := v_end;
  end loop;
end $f$ $def$);

-- pgreaper's own: one row per running pgreaper sink, the sequence number of its last COPY,
-- written in the COPY's own transaction, so that a COPY whose acknowledgement was lost is
-- looked up after reconnecting instead of being sent twice or counted as lost.
create table if not exists admin.pgreaper_writer (
  writer bigint primary key,
  seq bigint not null,
  updated_on timestamptz not null default now());
create or replace function admin.forget_stale_writers() returns int language sql as $f$
  with d as (delete from admin.pgreaper_writer
              where updated_on < now() - interval '7 days' returning 1)
  select count(*)::int from d
$f$;

-- From pgreaper 1: its functions go, its tables and partitions take pgwatch's comments.
drop function if exists admin.ensure_partitions(text, timestamptz, timestamptz, bigint);
drop function if exists admin.partition_name(text, timestamptz, bigint);
drop function if exists admin.drop_old_partitions(timestamptz);
drop function if exists admin.maintain_listing();
do $rp$
declare r record;
begin
  for r in select c.oid::regclass as rel, c.relnamespace = 'public'::regnamespace as top
             from pg_class c
            where c.relnamespace in ('public'::regnamespace, 'subpartitions'::regnamespace)
              and obj_description(c.oid, 'pg_class') in ('pgreaper-generated-metric-lvl',
                                                        'pgreaper-generated-metric-time-lvl')
  loop
    execute format('comment on table %s is %L', r.rel, case when r.top
      then 'pgwatch-generated-metric-lvl' else 'pgwatch-generated-metric-time-lvl' end);
  end loop;
end $rp$;

insert into admin.config (key, value) values ('pgreaper_schema', '2')
  on conflict (key) do update set value = excluded.value;
commit;
