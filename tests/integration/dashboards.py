"""Grafana dashboards against a real sink: a real pgreaper run (debug preset, intervals
scaled to 1.5 s, with some workload) fills a PostgreSQL sink; every panel's SQL from
docker/grafana/dashboards/*.json, with Grafana's macros expanded the way Grafana's
PostgreSQL datasource expands them ($__timeFilter, $__timeGroupAlias, $__interval,
$dbname), runs without error, and every panel marked main returns rows."""
import glob
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

WORKLOAD = '''
insert into pgr_t (v) select md5(random()::text) from generate_series(1, 500);
select count(*) from pgr_t where v like 'a%';
select pgr_f(1);
'''


def expand(sql, frm, to, sources):
    """Grafana's PostgreSQL macros for a time range and the dbname variable."""
    sql = re.sub(r'\$__timeFilter\(([^)]+)\)',
                 lambda m: "%s BETWEEN '%s' AND '%s'" % (m.group(1), frm, to), sql)
    sql = re.sub(r'\$__timeGroupAlias\(([^,]+),\s*\$__interval\)',
                 lambda m: 'floor(extract(epoch from %s)/1)*1 AS "time"' % m.group(1), sql)
    sql = sql.replace('$__interval', '1s')
    return sql.replace('$dbname', ','.join("'%s'" % s for s in sources))


def psql(pg, db, sql):
    r = subprocess.run(['psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-h', pg.sock,
                        '-p', str(pg.port), '-U', 'postgres', '-d', db, '-c', sql],
                       capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def fill_sink(pg, binary):
    pg.psql('create database pgreaper_metrics')
    init = subprocess.run([binary, 'metric', 'print-init', 'full'], capture_output=True,
                          text=True).stdout
    pg.psql(init + '''
        create table pgr_t (id serial primary key, v text);
        create index pgr_t_v on pgr_t (v);
        create sequence pgr_seq maxvalue 100;
        select nextval('pgr_seq') from generate_series(1, 80);
        create function pgr_f(int) returns int language plpgsql as $$ begin return $1; end $$;
        ''')
    src = ''.join('- name: src%d\n  conn_str: %s\n  preset_metrics: debug\n' % (i, pg.conn_str())
                  for i in (1, 2))
    r = Reaper(binary, src, args=['--interval-scale', '0.05', '--sink',
                                  'postgresql://postgres@/pgreaper_metrics?host=%s&port=%d'
                                  % (pg.sock, pg.port)]).start()
    for _ in range(12):
        pg.psql(WORKLOAD)
        time.sleep(2)
    pg.psql('analyze')
    time.sleep(4)
    return r


def main():
    t = Tap()
    binary = sys.argv[1]
    root = os.environ.get('RP_SOURCE_DIR', os.path.join(os.path.dirname(__file__), '..', '..'))
    pg = Postgres('dashboards', {'shared_preload_libraries': "'pg_stat_statements'",
                                 'track_functions': "'all'"})
    r = fill_sink(pg, binary)
    t.is_(r.stop(), 0, 'pgreaper filled the sink and stopped cleanly')
    rc, out, _ = psql(pg, 'pgreaper_metrics', "select now() - interval '1 hour', now() + interval '1 minute'")
    frm, to = out.strip().split('|')
    rc, out, _ = psql(pg, 'pgreaper_metrics', "select string_agg(t, ',' order by t) from "
                      "unnest(array['sproc_changes', 'table_changes', 'index_changes', "
                      "'configuration_changes', 'privilege_changes']) t "
                      "where to_regclass('public.' || t) is not null")
    t.is_(out.strip(), 'configuration_changes,index_changes,privilege_changes,sproc_changes,'
          'table_changes', "change_events' tables exist before the first change")
    files = sorted(glob.glob(os.path.join(root, 'docker', 'grafana', 'dashboards', '*.json')))
    t.ok(len(files) >= 8, '%d dashboards' % len(files))
    for path in files:
        board = json.load(open(path))
        rc, out, err = psql(pg, 'pgreaper_metrics', board['templating']['list'][0]['query'])
        t.ok(rc == 0 and set(out.split()) == {'src1', 'src2'},
             '%s: the dbname variable lists the sources' % os.path.basename(path), err)
        for p in board['panels']:
            sql = expand(p['targets'][0]['rawSql'], frm, to, ['src1', 'src2'])
            rc, out, err = psql(pg, 'pgreaper_metrics', sql)
            rows = len([l for l in out.splitlines() if l.strip()])
            main_panel = p.get('pgreaper', {}).get('main')
            t.ok(rc == 0 and (rows > 0 or not main_panel),
                 '%s / %s: runs%s (%d rows)' % (board['title'], p['title'],
                                               ', returns rows' if main_panel else '', rows),
                 err + sql)
    pg.cleanup()
    t.done()


if __name__ == '__main__':
    main()
