"""Collection against a real PostgreSQL: schedule, types, tags, failing SQL in the same
pipeline, role filtering, storage_name, one connection, one round trip per tick."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap, backend_pids  # noqa: E402

METRICS = r'''
metrics:
  every1:
    sqls:
      10: |
        select (extract(epoch from now()) * 1e9)::int8 as epoch_ns,
               1::int2 as i2, 2::int4 as i4, 9007199254740993::int8 as i8,
               1.5::float4 as f4, 2.25::float8 as f8, 3.14159265358979323846::numeric as num,
               'NaN'::float8 as nan_f, 'NaN'::numeric as nan_n, 'Infinity'::float8 as inf_f,
               true as flag, 'x "quoted" \ back' || chr(10) || 'line' as txt,
               'pg_class'::name as nm, '{"a": [1, 2]}'::jsonb as js,
               timestamptz '2026-01-02 03:04:05+00' as ts, null::int as nothing,
               'café ✓' as uni, 'value1' as tag_dim
  every2:
    sqls:
      10: select (extract(epoch from now()) * 1e9)::int8 as epoch_ns, g as n, 'r' || g as tag_row from generate_series(1, 3) g
  every3:
    sqls:
      10: select 3 as three
    storage_name: every3_store
  broken:
    sqls:
      10: select 1 / (extract(epoch from now()) * 0)::int as boom
  standby_only:
    sqls:
      10: select 1 as should_not_run
    node_status: standby
'''

SOURCES = '''
- name: src1
  conn_str: {conn}
  custom_metrics:
    every1: 1
    every2: 2
    every3: 3
    broken: 1
    standby_only: 1
  custom_tags:
    env: test
    team: "db ops"
'''


def main():
    t = Tap()
    pg = Postgres('collect')
    trace_dir = os.path.join(pg.root, 'trace')
    os.mkdir(trace_dir)
    r = Reaper(sys.argv[1], SOURCES.format(conn=pg.conn_str()), METRICS,
               args=['--libpq-trace', trace_dir]).start()
    t.ok(r.wait_log('connected to source', 15), 'connected', r.log())
    t.ok(r.wait_batches('every1', count=1, timeout=15), 'first batch arrived', r.log())
    started = time.time()
    pids_during = backend_pids(pg)
    time.sleep(10.3 - (time.time() - started))
    t.is_(r.stop(), 0, 'SIGTERM: exit code 0')
    t.is_(len(pids_during), 1, 'exactly one connection to the source')

    n1 = len(r.batches('every1'))
    n2 = len(r.batches('every2'))
    n3 = len(r.batches('every3_store'))
    t.between(n1, 10, 12, '1 s metric: 10-11 batches in 10 s (+1 for the first)')
    t.between(n2, 5, 7, '2 s metric: 5-6 batches in 10 s')
    t.between(n3, 4, 5, '3 s metric: 4 batches in 10 s')
    t.is_(len(r.batches('every3')), 0, 'storage_name decides where a metric is stored')
    t.is_(len(r.batches('broken')), 0, 'broken metric stores nothing')
    t.is_(len(r.batches('standby_only')), 0, 'standby-only metric is not run on a primary')

    b = r.batches('every1')[0]
    row = b['data'][0]
    t.is_(b['dbname'], 'src1', 'dbname is the source name')
    t.is_(b['custom_tags'], {'env': 'test', 'team': 'db ops'}, 'custom tags')
    t.is_((row['i2'], row['i4'], row['i8']), (1, 2, 9007199254740993), 'integers are numbers')
    t.is_((row['f4'], row['f8']), (1.5, 2.25), 'floats are numbers')
    t.ok(isinstance(row['num'], float) and abs(row['num'] - 3.14159265358979) < 1e-12,
         'numeric is a number')
    t.is_((row['nan_f'], row['nan_n'], row['inf_f']), (None, None, None), 'NaN and Inf are null')
    t.is_(row['flag'], True, 'bool is true/false')
    t.is_(row['txt'], 'x "quoted" \\ back\nline', 'text with quotes, backslash, newline')
    t.is_(row['nm'], 'pg_class', 'name is text')
    t.is_(row['js'], {'a': [1, 2]}, 'jsonb embedded as JSON')
    t.is_(row['ts'], '2026-01-02 03:04:05+00', 'timestamptz as text')
    t.is_(row['nothing'], None, 'SQL null')
    t.is_(row['uni'], 'café ✓', 'unicode byte-exact')
    t.is_(row['tag_dim'], 'value1', 'tag column kept in jsonfile rows')
    t.ok(abs(row['epoch_ns'] / 1e9 - time.time()) < 60, 'epoch_ns is the row time in ns')
    rows2 = r.batches('every2')[0]['data']
    t.is_([x['tag_row'] for x in rows2], ['r1', 'r2', 'r3'], 'multi-row result, one batch')

    log = r.log()
    t.is_(log.count('metric=broken: metric query failed'), 1,
          'failing metric logged once, not every tick')
    t.ok('division by zero' in log, 'the SQL error is in the log')
    s = r.summary()
    t.between(s.get('fetch_errors', 0), 9, 12, 'failures counted every tick')
    t.is_(s.get('sink_rows_written'), s.get('sink_rows'), 'every row given to the sink written')
    t.is_(sum(len(x['data']) for x in r.lines()), s.get('sink_rows'),
          'rows in the file = rows counted')
    t.is_(s.get('skipped_ticks'), 0, 'no skipped ticks')

    # Round trips: in the libpq trace, every pipeline's messages (F) are sent before any
    # answer (B) arrives: count the F-runs that end in a Sync and hold several metrics.
    with open(os.path.join(trace_dir, 'src1.trace')) as f:
        trace = [ln.split('\t') for ln in f.read().splitlines() if '\t' in ln]
    runs = []
    cur = None
    for fields in trace:
        d = fields[1]
        if d == 'F':
            if cur is None:
                cur = {'syncs': 0, 'executes': 0}
                runs.append(cur)
            kind = fields[3].split(' ')[0] if len(fields) > 3 else ''
            cur['syncs'] += kind == 'Sync'
            cur['executes'] += kind == 'Execute'
        else:
            cur = None
    runs = [x for x in runs if x['syncs'] > 0]  # drop the final Terminate
    t.ok(len(runs) >= 1 and runs[0]['executes'] == 1, 'first flight is the runtime query')
    multi = [x for x in runs if x['executes'] >= 4]
    t.ok(len(multi) >= 2, 'ticks at 0 s and 6 s (4 due metrics) each go out as one flight',
         runs[:8])
    t.ok(all(x['syncs'] == x['executes'] for x in runs), 'a sync point after each query', runs)
    t.is_(len(runs), s.get('pipelines'), 'one send-flight per pipeline: one round trip per tick')
    t.is_(s.get('socket_writes'), s.get('pipelines'), 'one send() per pipeline')
    t.ok(s.get('writes_coalesced', 0) >= s.get('queries', 0),
         "libpq's writes at each sync point were gathered into it", s)
    # The answers come one sync point at a time (3-6 a pipeline here: read as they come,
    # 3.5 reads a pipeline); read settling takes them with one or two reads a pipeline
    # (more for the first, slower ones, and on a loaded machine).
    t.ok(s.get('socket_reads', 0) <= 2.5 * s.get('pipelines', 1),
         'about one read per pipeline, not one per answer', s)
    t.done()


if __name__ == '__main__':
    main()
