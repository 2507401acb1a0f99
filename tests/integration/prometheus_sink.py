"""The Prometheus sink (prometheus://HOST:PORT/NAMESPACE): the latest measurement of every
(source, metric, row), named and typed as pgwatch names them (NAMESPACE_metric_column,
gauge from the metric's gauges, counter otherwise; dbname, custom tags and tag_ columns
as labels; text columns and NULLs left out), checked by Debian's promtool and scraped by
a real Prometheus 2.42; a row that a later fetch no longer returns disappears, a source
removed stops being served after `stale` seconds, rows with the same labels are served
once and counted, and a series cap drops (counts, says) what would pass it."""
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap, skip_all  # noqa: E402
from promharness import (PROMTOOL, available, free_port, prometheus, promql,  # noqa: E402
                         wait_for)

METRICS = '''
metrics:
  dbstat:
    gauges: [numbackends]
    sqls:
      11: |
        select (extract(epoch from now()) * 1e9)::int8 as epoch_ns, datname as tag_datname,
               numbackends, xact_commit, 'text' as note, null::int8 as nothing, true as flag
          from pg_stat_database where datname = 'postgres'
  rowsvar:
    gauges: ['*']
    sqls:
      11: select k as tag_k, v from pt order by k
  twins:
    sqls:
      11: select 1 as v union all select 2
presets:
  p:
    metrics: {dbstat: 1, rowsvar: 1, twins: 1}
'''


def sources(pg, names=('local',)):
    return ''.join('- name: %s\n  conn_str: %s\n  preset_metrics: p\n'
                   '  custom_tags: {env: prod, "team-a": dba}\n' % (n, pg.conn_str())
                   for n in names)


def scrape(port):
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=10) as r:
            return r.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return ''


def samples(text, name):
    """{labels text: (value, timestamp)} of one family."""
    out = {}
    for line in text.splitlines():
        m = re.match(r'^%s(\{[^}]*\})? (\S+)(?: (\d+))?$' % re.escape(name), line)
        if m:
            out[m.group(1) or ''] = (float(m.group(2)), m.group(3))
    return out


def names_and_types(t, text):
    r = subprocess.run([PROMTOOL, 'check', 'metrics'], input=text, capture_output=True,
                       text=True)
    remarks = [x for x in (r.stdout + r.stderr).splitlines() if x.strip()]
    t.ok(r.returncode in (0, 3) and all('should have "_total" suffix' in x for x in remarks),
         'promtool parses the page; its only remarks are pgwatch\'s counter names', remarks)
    t.ok('# TYPE pgwatch_dbstat_numbackends gauge' in text, 'a column in gauges: a gauge')
    t.ok('# TYPE pgwatch_dbstat_xact_commit counter' in text, 'any other column: a counter')
    t.ok('# TYPE pgwatch_rowsvar_v gauge' in text, 'gauges: ["*"]: every column a gauge')
    nb = samples(text, 'pgwatch_dbstat_numbackends')
    want = '{datname="postgres",dbname="local",env="prod",team_a="dba"}'
    t.ok(list(nb) == [want], 'labels: the tag_ column, dbname and custom tags (made safe)', nb)
    ts = nb.get(want, (0, None))[1]
    t.ok(ts and abs(int(ts) / 1000 - time.time()) < 30, 'samples carry the fetch time', ts)
    t.ok(samples(text, 'pgwatch_dbstat_flag').get(want, (None,))[0] == 1.0, 'a boolean: 1')
    t.ok('pgwatch_dbstat_note' not in text and 'pgwatch_dbstat_nothing' not in text,
         'text columns and NULLs are left out')


def rows_and_dups(t, pg, port):
    text = scrape(port)
    t.is_(len(samples(text, 'pgwatch_rowsvar_v')), 3, 'one series per row')
    pg.psql("delete from pt where k = 'b'")
    gone = wait_for(lambda: len(samples(scrape(port), 'pgwatch_rowsvar_v')) == 2, 10)
    t.ok(gone, 'a row the next fetch does not return is no longer served')
    text = scrape(port)
    t.is_(len(samples(text, 'pgwatch_twins_v')), 1, 'two rows with the same labels: one served')
    errs = samples(text, 'pgwatch_exporter_last_scrape_errors')
    t.is_(errs.get('', (0,))[0], 1.0, 'and the other counted in last_scrape_errors')


def with_prometheus(t, sport):
    with prometheus('pgwatch', sport) as pport:
        got = wait_for(lambda: promql(pport, 'pgwatch_dbstat_xact_commit{dbname="local",'
                                             'datname="postgres",env="prod"}'), 30)
        t.ok(got and float(got[0]['value'][1]) > 0, 'Prometheus stores the sink\'s series, '
             'labels and all', got)
        rate = wait_for(lambda: promql(pport, 'rate(pgwatch_dbstat_xact_commit[10s]) > 0'), 30)
        t.ok(rate, 'rate() over a pgwatch counter', rate)


def stale_and_cap(t, pg, binary):
    port = free_port()
    r = Reaper(binary, sources(pg, ('one', 'two')), METRICS,
               args=['--sink', 'prometheus://127.0.0.1:%d/pgwatch?stale=2' % port]).start()
    t.ok(wait_for(lambda: 'dbname="two"' in scrape(port)), 'two sources served', r.log()[-500:])
    r.write_sources(sources(pg, ('one',)))
    r.send(signal.SIGHUP)
    t.ok(wait_for(lambda: 'dbname="two"' not in scrape(port) and 'dbname="one"' in scrape(port),
                  10), 'a removed source stops being served after stale=2 s')
    t.is_(r.stop(), 0, 'exits 0')

    port = free_port()
    r = Reaper(binary, sources(pg), METRICS,
               args=['--sink', 'prometheus://127.0.0.1:%d/pgwatch?max_series=4' % port]).start()
    t.ok(r.wait_log('series cap 4 reached', 20), 'the series cap is said', r.log()[-500:])
    t.ok(len(re.findall(r'^pgwatch_(?!exporter)\w+\{', scrape(port), re.M)) <= 4,
         'and never passed')
    t.is_(r.stop(), 0, 'exits 0')
    m = re.search(r'sink_rows_dropped=(\d+)', r.log())
    t.ok(m and int(m.group(1)) > 0, 'what it left out is counted as dropped', m and m.group(0))


def main():
    if not available():
        skip_all('needs Debian prometheus (scripts/deps.sh --test)')
    t = Tap()
    pg = Postgres('promsink')
    pg.psql("create table pt (k text, v int); insert into pt values ('a', 1), ('b', 2), ('c', 3)")
    port = free_port()
    r = Reaper(sys.argv[1], sources(pg), METRICS,
               args=['--sink', 'prometheus://127.0.0.1:%d/pgwatch' % port]).start()
    t.ok(r.wait_log('serving /metrics on 127.0.0.1:%d' % port, 20), 'the sink listens',
         r.log()[-800:])
    text = wait_for(lambda: (lambda x: x if 'pgwatch_rowsvar_v' in x else None)(scrape(port)))
    t.ok(text, 'measurements are served', r.log()[-800:])
    names_and_types(t, text or '')
    rows_and_dups(t, pg, port)
    with_prometheus(t, port)
    t.is_(r.stop(), 0, 'exits 0')
    stale_and_cap(t, pg, sys.argv[1])
    pg.cleanup()
    t.done()


main()
