#!/usr/bin/env python3
"""docker/compose.yml run for real (started by scripts/docker-test.sh, which builds the
images): the monitored server, the sink and pgreaper (Grafana has no Debian package and
cannot run here), with the PostgreSQL services from pgreaper-postgres:15.

Checks, as a user would: pgreaper's container becomes healthy; the sink has rows of the
standard preset for the monitored server within a minute; the pprof port answers
`go tool pprof` from the host with the token and refuses a request without it; the
compare profile adds the per-metric container and both write; the sink stopped until
pgreaper holds rows, then started again, loses no row (each pgreaper's written count
equals the rows in the sink, none dropped); `docker
stop` ends pgreaper with exit 0 within the grace period and its summary in `docker
logs`; the image runs as a non-root user, has no compiler and adds under 40 MB to its
base; Grafana's provisioning files have the keys Grafana's provisioning reads, and every
panel of the dashboards runs against this live sink. Prints the image sizes, build time,
time to healthy and time to the first row. TAP on stdout."""
import glob
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..')
sys.path.insert(0, os.path.join(HERE, 'lib'))
sys.path.insert(0, os.path.join(HERE, 'integration'))
from pgharness import Tap  # noqa: E402
from dashboards import expand  # noqa: E402

PROJECT = 'pgreaper_test'
SINK_PORT = 15434
GRACE_S = 30


class Stack:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='rp-docker-')
        self.env = {
            'MONITORED_PASSWORD': secrets.token_hex(12), 'SINK_PASSWORD': secrets.token_hex(12),
            'SINK_GRAFANA_PASSWORD': secrets.token_hex(12),
            'GRAFANA_ADMIN_PASSWORD': secrets.token_hex(12), 'PPROF_TOKEN': secrets.token_hex(16),
            'PGREAPER_PRESET': 'standard', 'MONITORED_PORT': '15433', 'SINK_PORT': str(SINK_PORT),
            'GRAFANA_PORT': '13000', 'POSTGRES_IMAGE': 'pgreaper-postgres:15'}
        self.env_file = os.path.join(self.dir, 'stack.env')
        with open(self.env_file, 'w') as f:
            f.write(''.join('%s=%s\n' % kv for kv in self.env.items()))

    def compose(self, *args, profile=None):
        argv = ['docker-compose', '-p', PROJECT, '-f', os.path.join(ROOT, 'docker', 'compose.yml'),
                '--env-file', self.env_file] + (['--profile', profile] if profile else [])
        return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=600)

    def container(self, service):
        return self.compose('ps', '-q', service).stdout.strip()

    def sql(self, query, db='pgreaper_metrics'):
        r = subprocess.run(['psql', '-X', '-A', '-t', '-q', '-h', '127.0.0.1', '-p', str(SINK_PORT),
                            '-U', 'postgres', '-d', db, '-c', query], capture_output=True,
                           text=True, env=dict(os.environ, PGPASSWORD=self.env['SINK_PASSWORD']),
                           timeout=60)
        return r.stdout.strip() if r.returncode == 0 else None


def docker(*args):
    return subprocess.run(['docker'] + list(args), capture_output=True, text=True, timeout=300)


def wait(pred, timeout, step=1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


def rows_in_sink(s, dbname):
    tables = (s.sql('select table_name from admin.get_top_level_metric_tables()') or '').split()
    total = 0
    for t in tables:
        n = s.sql("select count(*) from %s where dbname = '%s'" % (t, dbname))
        total += int(n or 0)
    return total


def pending(s):
    """Rows pgreaper (batch mode) has given its sink and not yet written, from /debug/vars."""
    try:
        req = urllib.request.Request('http://127.0.0.1:6060/debug/vars', headers={
            'Authorization': 'Bearer ' + s.env['PPROF_TOKEN']})
        v = json.load(urllib.request.urlopen(req, timeout=10))['sinks']
        return v['rows'] - v['rows_written'] - v['rows_dropped']
    except (OSError, ValueError, KeyError):
        return -1


def summary_counts(logs):
    m = re.search(r'summary: .*sink_rows_written=(\d+) sink_rows_dropped=(\d+)', logs)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def check_image(t):
    size = int(docker('image', 'inspect', '-f', '{{.Size}}', 'pgreaper:local').stdout or 0)
    base = int(docker('image', 'inspect', '-f', '{{.Size}}', 'debian:bookworm-slim').stdout or 0)
    print('# image pgreaper:local %.1f MB on a base of %.1f MB: adds %.1f MB'
          % (size / 1e6, base / 1e6, (size - base) / 1e6))
    t.ok(0 < size - base < 40e6, 'the image adds under 40 MB to its base (%.1f MB)'
         % ((size - base) / 1e6))
    uid = docker('run', '--rm', '--entrypoint', 'id', 'pgreaper:local', '-u').stdout.strip()
    t.ok(uid not in ('', '0'), 'the image runs as a non-root user (uid %s)' % uid)
    cc = docker('run', '--rm', '--entrypoint', 'sh', 'pgreaper:local', '-c',
                'command -v gcc cc c99 tcc clang || true').stdout.strip()
    t.is_(cc, '', 'the image has no compiler')


def check_provisioning(t):
    prov = os.path.join(ROOT, 'docker', 'grafana', 'provisioning')
    with open(os.path.join(prov, 'datasources', 'pgreaper.yaml')) as f:
        ds = yaml.safe_load(f)
    d = (ds.get('datasources') or [{}])[0]
    t.ok(ds.get('apiVersion') == 1 and d.get('name') and d.get('uid') and
         d.get('type') in ('grafana-postgresql-datasource', 'postgres') and d.get('url') and
         d.get('user') and (d.get('jsonData') or {}).get('database') and
         (d.get('secureJsonData') or {}).get('password'),
         'datasource provisioning: apiVersion 1 and the keys a PostgreSQL datasource needs', ds)
    with open(os.path.join(prov, 'dashboards', 'pgreaper.yaml')) as f:
        dp = yaml.safe_load(f)
    p = (dp.get('providers') or [{}])[0]
    t.ok(dp.get('apiVersion') == 1 and p.get('name') and p.get('type') == 'file' and
         (p.get('options') or {}).get('path') == '/var/lib/grafana/dashboards',
         'dashboard provisioning: a file provider reading the mounted folder', dp)
    return d.get('uid')


def check_dashboards(t, s, uid, sources):
    frm, to = s.sql("select now() - interval '1 hour', now() + interval '1 minute'").split('|')
    failed = []
    n = 0
    for path in sorted(glob.glob(os.path.join(ROOT, 'docker', 'grafana', 'dashboards', '*.json'))):
        board = json.load(open(path))
        for p in board['panels']:
            n += 1
            if p['datasource'].get('uid') != uid:
                failed.append('%s: datasource %s' % (p['title'], p['datasource']))
            if s.sql(expand(p['targets'][0]['rawSql'], frm, to, sources)) is None:
                failed.append(p['title'])
    t.ok(n > 0 and not failed, 'every dashboard panel (%d) runs against the live sink' % n,
         failed)


def main():
    t = Tap()
    s = Stack()
    try:
        run(t, s)
    finally:
        print('# ' + s.compose('logs', '--no-color', '--tail', '20').stdout[-3000:].replace(
            '\n', '\n# ') if os.environ.get('RP_DOCKER_LOGS') else '# stack stopped')
        s.compose('--profile', 'compare', 'down', '-v', '--remove-orphans')
    t.done()


def run(t, s):
    check_image(t)
    uid = check_provisioning(t)
    t0 = time.time()
    r = s.compose('up', '-d', 'monitored', 'sink', 'pgreaper')
    t.ok(r.returncode == 0, 'docker-compose up (monitored, sink, pgreaper)', r.stderr[-2000:])
    reaper = s.container('pgreaper')
    first = wait(lambda: (s.sql("select count(*) from public.db_stats where dbname = 'monitored'")
                          or '0') != '0', 60, step=0.2)
    print('# first row in the sink %.1f s after docker-compose up' % (time.time() - t0))
    t.ok(first, 'the sink has db_stats rows of the monitored server within a minute')
    healthy = wait(lambda: docker('inspect', '-f', '{{.State.Health.Status}}', reaper)
                   .stdout.strip() == 'healthy', 150)
    print('# healthy after %.0f s (first health check after 30 s)' % (time.time() - t0))
    t.ok(healthy, "pgreaper's container becomes healthy", docker('logs', reaper).stderr[-2000:])
    time.sleep(5)
    metrics = s.sql("select count(*) from admin.all_distinct_dbname_metrics "
                    "where dbname = 'monitored'")
    t.ok(metrics and int(metrics) >= 8, 'rows of the standard preset (%s metrics)' % metrics)

    token = s.env['PPROF_TOKEN']
    pp = subprocess.run(['go', 'tool', 'pprof', '-raw',
                         'http://127.0.0.1:6060/debug/pprof/heap?token=%s' % token],
                        capture_output=True, text=True, timeout=120)
    t.ok(pp.returncode == 0 and 'Samples' in pp.stdout, 'go tool pprof reads the heap profile '
         'from the host with the token', pp.stderr[-1000:])
    try:
        urllib.request.urlopen('http://127.0.0.1:6060/debug/pprof/heap', timeout=10)
        refused = False
    except urllib.error.HTTPError as e:
        refused = e.code in (401, 403)
    t.ok(refused, 'without the token the pprof port refuses')

    r = s.compose('up', '-d', 'pgreaper-per-metric', profile='compare')
    t.ok(r.returncode == 0, 'docker-compose --profile compare up adds the per-metric container',
         r.stderr[-2000:])
    t.ok(wait(lambda: (s.sql("select count(*) from public.db_stats where dbname = "
                             "'monitored-per-metric'") or '0') != '0', 90),
         'the per-metric container writes too')

    # The sink goes away until pgreaper holds rows it could not write (the standard
    # preset's 60 s ticks: up to a minute), then comes back.
    sink = s.container('sink')
    r = docker('stop', sink)
    t.ok(r.returncode == 0, 'docker stop of the sink')
    held = wait(lambda: max(pending(s), 0), 75)
    t.ok(held, 'pgreaper holds the rows it could not write (%s rows)' % held)
    r = docker('start', sink)
    t.ok(r.returncode == 0 and wait(lambda: s.sql('select 1') == '1', 60), 'the sink is back')
    t.ok(wait(lambda: pending(s) == 0, 60), 'the rows it held are written')
    check_dashboards(t, s, uid, ['monitored', 'monitored-per-metric'])

    for service, dbname in (('pgreaper', 'monitored'), ('pgreaper-per-metric',
                                                         'monitored-per-metric')):
        cid = s.container(service)
        t1 = time.time()
        docker('stop', '-t', str(GRACE_S), cid)
        took = time.time() - t1
        code = docker('inspect', '-f', '{{.State.ExitCode}}', cid).stdout.strip()
        logs = docker('logs', cid)
        written, dropped = summary_counts(logs.stdout + logs.stderr)
        t.ok(code == '0' and took < GRACE_S, '%s: docker stop: exit %s after %.1f s'
             % (service, code, took))
        t.ok(written is not None, '%s: its summary is in docker logs' % service)
        stored = rows_in_sink(s, dbname)
        t.ok(written and stored == written and dropped == 0,
             '%s: every row it wrote is in the sink after the sink outage '
             '(written %s, stored %s, dropped %s)' % (service, written, stored, dropped))
    try:
        with open('/tmp/pgreaper-docker-build.txt') as f:
            print('# image ' + f.read().strip())
    except OSError:
        pass


if __name__ == '__main__':
    main()
