#!/usr/bin/env python3
"""pgwatch's own Grafana dashboards against a sink filled by pgreaper's built-in presets.

Runs pgreaper with its built-in catalogue (preset `full`, intervals scaled down, with some
workload, pg_stat_statements and csvlog) against a throwaway PostgreSQL 15 that is both
source and sink, then runs the SQL of every panel of pgwatch's dashboards (a pgwatch
checkout: `fetch github:cybertec-postgresql/pgwatch`, then `git worktree` or `git show`
into a folder) with Grafana's macros and the dashboards' variables expanded, and prints
per dashboard how many panel queries ran, returned rows, failed, and why each failure
happened. With --pgwatch-metrics, a second sink is filled by pgreaper running pgwatch's
own metrics file (pgwatch's SQL): a panel that fails there too fails for a reason of its
own (a PostgreSQL 16 syntax, a missing Grafana feature, a source kind not monitored), not
because of the built-in catalogue. pgwatch's files are read, never copied into this
repository.

    python3 bench/pgwatch_dashboards.py --dashboards /tmp/pgw/grafana/postgres/v13 \
        --pgwatch-metrics /tmp/pgw/metrics.yaml

Expansion is Grafana's PostgreSQL data source's, simplified: $__timeFilter(x) is a BETWEEN
over the run, $__timeGroup(x, i) a 1-minute bucket, $__interval 1m; a query variable takes
the first value its own query returns on the sink; others their current value.
"""
import argparse
import collections
import glob
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
from pgharness import Postgres, Reaper  # noqa: E402

WORKLOAD = '''
insert into t (v) select md5(random()::text) from generate_series(1, 300);
select count(*) from t where v like 'a%';
select f(1);
do $$ begin raise warning 'bench'; end $$;
'''


def walk(node, found):
    """Every rawSql of a dashboard (classic or v2 layout), with its panel title."""
    if isinstance(node, dict):
        title = node.get('title') or node.get('spec', {}).get('title') if isinstance(
            node.get('spec'), dict) else node.get('title')
        for k, v in node.items():
            if k == 'rawSql' and isinstance(v, str) and v.strip():
                found.append((title, v))
            else:
                walk(v, found)
    elif isinstance(node, list):
        for x in node:
            walk(x, found)


def variables(dash):
    spec = dash.get('spec', dash)
    out = []
    for v in spec.get('variables', []) or spec.get('templating', {}).get('list', []):
        s = v.get('spec', v)
        q = s.get('query')
        if isinstance(q, dict):
            q = q.get('spec', {}).get('__legacyStringValue') or q.get('query')
        cur = (s.get('current') or {}).get('value')
        if isinstance(cur, list):
            cur = cur[0] if cur else ''
        multi = bool(s.get('multi') or s.get('includeAll'))
        out.append((s.get('name'), v.get('kind', s.get('type', '')), q, cur, multi))
    return out


def expand(sql, values, frm, to, quoted=()):
    """Grafana formats a multi-value variable as a quoted list, a single value as is."""
    sql = re.sub(r'\$__timeFilter\(([^)]+)\)',
                 lambda m: "%s BETWEEN '%s' AND '%s'" % (m.group(1), frm, to), sql)
    sql = re.sub(r'\$__timeGroupAlias\(([^,]+),[^)]*\)',
                 lambda m: 'to_timestamp(floor(extract(epoch from %s) / 60) * 60) AS "time"'
                 % m.group(1), sql)
    sql = re.sub(r'\$__timeGroup\(([^,]+),[^)]*\)',
                 lambda m: 'to_timestamp(floor(extract(epoch from %s) / 60) * 60)' % m.group(1),
                 sql)
    sql = sql.replace('$__timeFrom()', "'%s'" % frm).replace('$__timeTo()', "'%s'" % to)
    for name, val in sorted(values.items(), key=lambda kv: -len(kv[0])):
        val = '' if val is None else str(val)
        sql = re.sub(r'\$\{%s:(sqlstring|singlequote)\}' % re.escape(name),
                     lambda m: "'%s'" % val.replace("'", "''"), sql)
        plain = "'%s'" % val.replace("'", "''") if name in quoted else val
        sql = sql.replace('${%s}' % name, plain)
        sql = re.sub(r'\$%s\b' % re.escape(name), lambda m: plain, sql)
    return sql.replace('$__interval', '1m').replace('$interval', '1m')


def psql(pg, db, sql):
    r = subprocess.run(['psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-h', pg.sock,
                        '-p', str(pg.port), '-U', 'postgres', '-d', db],
                       input=sql, capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


def why(err):
    m = re.search(r'ERROR:\s+(.*)', err)
    msg = m.group(1) if m else err.strip()[:120]
    msg = re.sub(r'\d+', 'N', msg) if 'syntax' in msg else msg
    return msg[:140]


def fill(pg, binary, preset, seconds, sinks):
    """One pgreaper per sink database: (name, metrics file or None for the built-in)."""
    pg.psql('create extension pg_stat_statements; create table t (id serial primary key, '
            'v text); create function f(int) returns int language sql as $$select $1$$; '
            'create sequence s1')
    rs = []
    for db, metrics in sinks:
        pg.psql('create database %s' % db)
        src = '- name: src1\n  conn_str: %s\n  preset_metrics: %s\n' % (pg.conn_str(), preset)
        sink = 'postgresql:///%s?host=%s&port=%d&user=postgres' % (db, pg.sock, pg.port)
        text = open(metrics).read() if metrics else None
        rs.append(Reaper(binary, src, text,
                         args=['--interval-scale', '0.02', '--sink', sink]).start())
    end = time.time() + seconds
    while time.time() < end:
        pg.psql(WORKLOAD, check=False)
        time.sleep(1)
    pg.psql('create table made_later (a int)')
    time.sleep(8)
    for r in rs:
        r.stop()


SQLS = {}  # (sink, dashboard) -> {panel index: expanded SQL that failed}


def run_panels(pg, db, path, t0, t1):
    """(queries, ran, with rows, {(title, error)}) of one dashboard on one sink."""
    with open(path) as f:
        dash = json.load(f)
    values = {'dbname': 'src1', 'databases': 'src1', 'monitoredsource': 'src1'}
    quoted = set()
    for name, kind, q, cur, multi in variables(dash):
        if multi:
            quoted.add(name)
        if name in values:
            continue
        val = cur
        if 'Query' in kind or kind == 'query':
            rc, out, _ = psql(pg, db, expand(q or '', values, t0, t1, quoted))
            first = out.splitlines()[0] if rc == 0 and out.strip() else None
            val = first if first is not None else cur
        values[name] = '' if val in (None, '$__all') else val
    found = []
    walk(dash, found)
    ok = rows = 0
    failed = {}
    sqls = SQLS.setdefault((db, path), {})
    for i, (title, sql) in enumerate(found):
        rc, out, err = psql(pg, db, expand(sql, values, t0, t1, quoted))
        if rc == 0:
            ok += 1
            rows += bool(out.strip())
        else:
            failed[i] = why(err)
            sqls[i] = expand(sql, values, t0, t1, quoted)
    return len(found), ok, rows, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--dashboards', required=True, help="pgwatch's grafana/postgres/vNN")
    ap.add_argument('--pgwatch-metrics', help="pgwatch's metrics.yaml: fill a second sink "
                    "with it, the baseline that tells the dashboards' own failures apart")
    ap.add_argument('--preset', default='full')
    ap.add_argument('--seconds', type=float, default=60)
    ap.add_argument('--binary', default=os.path.join(HERE, '..', 'build', 'pgreaper'))
    ap.add_argument('--show-sql', action='store_true',
                    help='print the expanded SQL of panels that fail on the built-in sink only')
    a = ap.parse_args()
    pg = Postgres('pgwatch_dashboards', {
        'shared_preload_libraries': "'pg_stat_statements'", 'track_functions': "'all'",
        'logging_collector': 'on', 'log_destination': "'csvlog'", 'lc_messages': "'C'"})
    t0 = time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(time.time() - 3600))
    sinks = [('builtin', None)] + ([('pgwatch', a.pgwatch_metrics)] if a.pgwatch_metrics else [])
    fill(pg, a.binary, a.preset, a.seconds, sinks)
    t1 = time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(time.time() + 60))
    totals = collections.Counter()
    reasons = collections.Counter()
    print('built-in catalogue, preset %s (baseline: %s)\n' % (a.preset, a.pgwatch_metrics or 'none'))
    print('| dashboard | queries | ran | with rows | failed | failed on the baseline too |')
    print('|---|---|---|---|---|---|')
    for path in sorted(glob.glob(os.path.join(a.dashboards, '*.json'))):
        n, ok, rows, failed = run_panels(pg, 'builtin', path, t0, t1)
        base = run_panels(pg, 'pgwatch', path, t0, t1)[3] if a.pgwatch_metrics else {}
        both = [i for i in failed if i in base]
        totals.update(queries=n, ran=ok, rows=rows, both=len(both))
        for i, msg in failed.items():
            reasons[(os.path.basename(path), msg, i in base)] += 1
            if a.show_sql and i not in base:
                print('\n-- %s #%d: %s\n%s\n' % (os.path.basename(path), i, msg,
                                                 SQLS[('builtin', path)][i]))
        print('| %s | %d | %d | %d | %d | %d |' % (os.path.basename(path), n, ok, rows,
                                                   n - ok, len(both)))
    print('| all | %d | %d | %d | %d | %d |' % (totals['queries'], totals['ran'], totals['rows'],
                                               totals['queries'] - totals['ran'], totals['both']))
    print('\nfailures by cause (* = fails on the baseline too):')
    for (dash, msg, inbase), c in sorted(reasons.items()):
        print('  %s %s: %dx %s' % ('*' if inbase else ' ', dash, c, msg))
    pg.cleanup()


if __name__ == '__main__':
    main()
