"""pgreaper's own metrics at /metrics: the Prometheus text format as Debian's promtool
checks it, on a listener of its own (--metrics-addr, /metrics alone) and on the pprof
listener (behind its token); counters that follow what happens (fetches, a failing
metric, a source that is down, a reload and a refused one), per source and per (source,
metric) in both modes, kept across reloads; then scraped by a real
Prometheus 2.42, whose HTTP API answers PromQL over them: a rate, a label, the schedule
lateness histogram."""
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap, skip_all  # noqa: E402
from promharness import (PROMTOOL, available, free_port, prometheus, promql,  # noqa: E402
                         wait_for)

METRICS = '''
metrics:
  tick:
    sqls:
      10: select (extract(epoch from now()) * 1e9)::int8 as epoch_ns, 1 as x
  broken:
    sqls:
      10: select 1/0 as x
'''


def sources(pg):
    return ('- name: up\n  conn_str: %s\n  custom_metrics: {tick: 1, broken: 1}\n'
            '- name: down\n  conn_str: host=127.0.0.1 port=1 dbname=x connect_timeout=1\n'
            '  custom_metrics: {tick: 1}\n' % pg.conn_str())


def get(port, path, token=None):
    req = urllib.request.Request('http://127.0.0.1:%d%s' % (port, path))
    if token:
        req.add_header('Authorization', 'Bearer ' + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get('Content-Type', ''), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, '', e.read().decode()


def sample(text, name, **labels):
    """The value of one sample of the exposition, or None."""
    want = ','.join('%s="%s"' % kv for kv in labels.items())
    head = name + ('{%s}' % want if want else '')
    for line in text.splitlines():
        if line.startswith(head + ' '):
            return float(line.split()[-1])
    return None


def check_exposition(t, text):
    r = subprocess.run([PROMTOOL, 'check', 'metrics'], input=text, capture_output=True,
                       text=True)
    t.is_(r.returncode, 0, 'promtool check metrics accepts the exposition')
    t.is_((r.stdout + r.stderr).strip(), '', 'with no lint remark')


def own_listener(t, r, mport):
    code, ctype, text = get(mport, '/metrics')
    t.is_(code, 200, '/metrics on --metrics-addr')
    t.ok(ctype.startswith('text/plain; version=0.0.4'), 'in the text format, version 0.0.4',
         ctype)
    t.is_(get(mport, '/debug/vars')[0], 404, 'the metrics listener serves nothing else')
    t.is_(get(mport, '/debug/pprof/heap')[0], 404, '... no profile either')
    return text


def counters_follow(t, r, mport):
    text = wait_for(lambda: (lambda x: x if (sample(x, 'pgreaper_source_fetch_errors_total',
                                                    source='up') or 0) >= 2 else None)(
        get(mport, '/metrics')[2]))
    t.ok(text, 'the failing metric is counted', text and text[:300])
    text = text or ''
    t.ok((sample(text, 'pgreaper_source_fetches_total', source='up') or 0) >= 2,
         'fetches of the source that is up are counted')
    t.is_(sample(text, 'pgreaper_source_up', source='up'), 1.0, 'the source that is up: 1')
    t.is_(sample(text, 'pgreaper_source_up', source='down'), 0.0, 'the source that is down: 0')
    t.ok((sample(text, 'pgreaper_source_connect_failures_total', source='down') or 0) >= 1,
         'its failed attempts are counted')
    t.ok((sample(text, 'pgreaper_schedule_lateness_seconds_count') or 0) >= 2,
         'the lateness histogram counts ticks')
    t.ok((sample(text, 'pgreaper_sink_rows_total', sink='jsonfile://' + r.out) or 0) >= 1,
         'the sink counts the rows it accepted (labelled with its URI)')
    t.ok((sample(text, 'process_resident_memory_bytes') or 0) > 1e6, 'process_* figures')
    per_metric_counts(t, text, 'up')
    check_exposition(t, text)


def metric_samples(text, name, source):
    """{metric: value} of one per-(source, metric) family."""
    pat = re.compile(r'^%s\{source="%s",metric="([^"]+)"\} (\S+)$' % (name, source), re.M)
    return {m: float(v) for m, v in pat.findall(text)}


def per_metric_counts(t, text, source, mode='batch'):
    ok = metric_samples(text, 'pgreaper_metric_fetches_total', source)
    err = metric_samples(text, 'pgreaper_metric_fetch_errors_total', source)
    t.ok(err.get('broken', 0) >= 2 and err.get('tick') == 0,
         '%s: errors by metric: the failing one, not the other' % mode, err)
    t.ok(ok.get('tick', 0) >= 2 and ok.get('broken') == 0,
         '%s: fetches by metric: the working one, not the failing one' % mode, ok)
    t.is_(sum(ok.values()), sample(text, 'pgreaper_source_fetches_total', source=source),
          '%s: the metrics\' fetches add up to the source\'s' % mode)
    t.is_(sum(err.values()), sample(text, 'pgreaper_source_fetch_errors_total', source=source),
          '%s: ... and so do their errors' % mode)
    return ok, err


def per_metric_mode(t, pg):
    """The same counts in --mode=per-metric, where a reload restarts the metric threads:
    the counts go on from where they were."""
    mport = free_port()
    r = Reaper(sys.argv[1], sources(pg), METRICS,
               args=['--mode=per-metric', '--metrics-addr', '127.0.0.1:%d' % mport,
                     '--log-level', 'info']).start()
    t.ok(r.wait_log('metrics: serving /metrics', 20), 'per-metric: the metrics listener is up',
         r.log())
    text = wait_for(lambda: (lambda x: x if (sample(x, 'pgreaper_source_fetch_errors_total',
                                                    source='up') or 0) >= 2 else None)(
        get(mport, '/metrics')[2])) or ''
    before, _ = per_metric_counts(t, text, 'up', 'per-metric')
    r.send(signal.SIGHUP)
    wait_for(lambda: sample(get(mport, '/metrics')[2], 'pgreaper_config_reloads_total') == 1.0)
    after = metric_samples(get(mport, '/metrics')[2], 'pgreaper_metric_fetches_total', 'up')
    t.ok(after.get('tick', 0) >= before.get('tick', 1),
         'per-metric: a reload (threads restarted) keeps the counts', (before, after))
    t.is_(r.stop(), 0, 'per-metric: pgreaper exits 0')


def reloads(t, r, mport, pg):
    before = metric_samples(get(mport, '/metrics')[2], 'pgreaper_metric_fetches_total', 'up')
    r.send(signal.SIGHUP)
    t.ok(wait_for(lambda: sample(get(mport, '/metrics')[2], 'pgreaper_config_reloads_total')
                  == 1.0), 'a reload is counted')
    after = metric_samples(get(mport, '/metrics')[2], 'pgreaper_metric_fetches_total', 'up')
    t.ok(after.get('tick', 0) >= before.get('tick', 1), 'a reload keeps the per-metric counts',
         (before, after))
    r.write_sources('- name: [broken\n')
    r.send(signal.SIGHUP)
    t.ok(wait_for(lambda: sample(get(mport, '/metrics')[2],
                                 'pgreaper_config_reload_failures_total') == 1.0),
         'a refused reload is counted')
    r.write_sources(sources(pg))


def pprof_listener(t, r):
    port = int(re.search(r'pprof: serving .*\(port (\d+)\)', r.log()).group(1))
    t.is_(get(port, '/metrics')[0], 401, 'on the pprof listener, /metrics needs its token')
    code, _, text = get(port, '/metrics', token='s3cret')
    t.ok(code == 200 and 'pgreaper_build_info' in text, '... and is served with it')


def with_prometheus(t, mport):
    with prometheus('pgreaper', mport) as pport:
        up = wait_for(lambda: promql(pport, 'up{job="pgreaper"} == 1'), timeout=30)
        t.ok(up, 'Prometheus scrapes pgreaper', up)
        rate = wait_for(lambda: promql(pport, 'rate(pgreaper_fetches_total[5s]) > 0'),
                        timeout=20)
        t.ok(rate, 'rate() of a counter pgreaper exports is above 0', rate)
        down = promql(pport, 'pgreaper_source_up == 0')
        t.ok([x['metric'].get('source') for x in down] == ['down'],
             'the source that is down, as a label', down)
        q = promql(pport, 'histogram_quantile(0.99, rate('
                          'pgreaper_schedule_lateness_seconds_bucket[5s]))')
        v = float(q[0]['value'][1]) if q else float('nan')
        t.ok(0 <= v < 1, 'a dashboard query: p99 schedule lateness under a second: %s' % v, q)


def main():
    if not available():
        skip_all('needs Debian prometheus (scripts/deps.sh --test)')
    t = Tap()
    pg = Postgres('ownmetrics')
    mport = free_port()
    r = Reaper(sys.argv[1], sources(pg), METRICS,
               args=['--metrics-addr', '127.0.0.1:%d' % mport, '--pprof-addr', '127.0.0.1:0',
                     '--pprof-token', 's3cret', '--log-level', 'info']).start()
    t.ok(r.wait_log('metrics: serving /metrics', 20), 'the metrics listener is up', r.log())
    check_exposition(t, own_listener(t, r, mport))
    counters_follow(t, r, mport)
    reloads(t, r, mport, pg)
    pprof_listener(t, r)
    with_prometheus(t, mport)
    t.is_(r.stop(), 0, 'pgreaper exits 0')
    t.ok('s3cret' not in r.log(), 'the token is not in the log')
    per_metric_mode(t, pg)
    pg.cleanup()
    t.done()


main()
