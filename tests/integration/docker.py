"""docker/ without a Docker engine: compose.yml and the Dockerfile reference files that
exist, publish unique host ports on loopback, take every secret from docker/.env (all
listed in .env.example, none baked in), provision the datasource and dashboards Grafana
needs; the entrypoint runs natively against a real PostgreSQL (one source from the
environment, its password never written to disk; clear errors for a missing sink and a
broken sources file), and the health check answers for a running pgreaper."""
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Tap, skip_all  # noqa: E402

try:
    import yaml
except ImportError:
    yaml = None

ROOT = os.environ.get('RP_SOURCE_DIR', os.path.join(os.path.dirname(__file__), '..', '..'))
DOCKER = os.path.join(ROOT, 'docker')


def env_names(path):
    with open(path) as f:
        return {l.split('=', 1)[0] for l in f if re.match(r'^[A-Z_]+=', l)}


def check_compose(t):
    with open(os.path.join(DOCKER, 'compose.yml')) as f:
        text = f.read()
    c = yaml.safe_load(text)
    svc = c['services']
    t.ok({'monitored', 'sink', 'grafana', 'pgreaper', 'pgreaper-per-metric'} <= set(svc),
         'compose has the monitored server, the sink, Grafana and both pgreaper modes')
    t.ok(svc['pgreaper-per-metric'].get('profiles') == ['compare']
         and '--mode' in svc['pgreaper-per-metric']['command']
         and 'per-metric' in svc['pgreaper-per-metric']['command'],
         'the compare profile runs per-metric mode')
    mounts = [v.split(':')[0] for s in svc.values() for v in s.get('volumes', [])
              if v.startswith('.')]
    missing = [m for m in mounts if not os.path.exists(os.path.join(DOCKER, m))]
    t.ok(mounts and not missing, 'every mounted path exists (%d)' % len(mounts), str(missing))
    ports = [re.sub(r'\$\{[A-Z_]+:-(\d+)\}', r'\1', p).split(':')
             for s in svc.values() for p in s.get('ports', [])]
    hosts = [p[1] for p in ports]
    t.ok(len(hosts) == len(set(hosts)) and all(p[0] == '127.0.0.1' for p in ports),
         'host ports are unique and bound to loopback: %s' % ', '.join(hosts))
    used = set(re.findall(r'\$\{([A-Z_]+)', text))
    defined = env_names(os.path.join(DOCKER, '.env.example'))
    t.ok(used <= defined, 'every variable compose uses is in .env.example',
         str(sorted(used - defined)))
    t.ok(not re.search(r'PASSWORD: [^$\s]', text) and 'change-me' not in text,
         'no secret is written in compose.yml')
    build = svc['pgreaper']['build']
    t.ok(os.path.exists(os.path.join(DOCKER, build['context'], build['dockerfile'])),
         'the pgreaper service builds docker/Dockerfile')
    return svc


def check_grafana(t, svc):
    g = svc['grafana']
    with open(os.path.join(DOCKER, 'grafana/provisioning/datasources/pgreaper.yaml')) as f:
        ds = yaml.safe_load(f)['datasources'][0]
    needed = set(re.findall(r'\$\{([A-Z_]+)\}', json.dumps(ds)))
    t.ok(needed <= set(g['environment']), 'the datasource gets %s from the Grafana service'
         % ', '.join(sorted(needed)))
    with open(os.path.join(DOCKER, 'grafana/provisioning/dashboards/pgreaper.yaml')) as f:
        path = yaml.safe_load(f)['providers'][0]['options']['path']
    t.ok(any(v.endswith(':' + path + ':ro') and v.startswith('./grafana/dashboards')
             for v in g['volumes']), 'the dashboards folder is mounted where the provider reads')
    boards = [json.load(open(p)) for p in glob.glob(os.path.join(DOCKER, 'grafana/dashboards/*.json'))]
    uids = [b['uid'] for b in boards]
    ds_ok = all(p['datasource']['uid'] == ds['uid'] for b in boards for p in b['panels'])
    t.ok(len(boards) >= 8 and len(set(uids)) == len(uids) and ds_ok,
         '%d dashboards, unique uids, all on the provisioned datasource' % len(boards))


def check_dockerfile(t):
    with open(os.path.join(DOCKER, 'Dockerfile')) as f:
        text = f.read()
    froms = re.findall(r'^FROM (\S+)', text, re.M)
    t.ok(len(froms) == 2 and all('bookworm' in x for x in froms), 'multi-stage bookworm build')
    srcs = [s for line in re.findall(r'^COPY (?!--from)(.*)$', text, re.M)
            for s in line.split()[:-1]]
    missing = [s for s in srcs if not os.path.exists(os.path.join(ROOT, s))]
    t.ok(srcs and not missing, 'every COPY source exists', str(missing))
    user = re.findall(r'^USER (\S+)', text, re.M)
    t.ok(user and user[-1] not in ('root', '0'), 'runs as a non-root user')
    t.ok(re.search(r'^HEALTHCHECK .*\n?.*healthcheck\.sh', text, re.M), 'has a health check')
    t.ok('meson setup' in text and 'ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]' in text,
         'builds with meson, starts through the entrypoint')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def check_entrypoint(t, binary):
    pg = Postgres('docker', extra_conf=None)
    d = tempfile.mkdtemp(prefix='rp-docker-')
    out = os.path.join(d, 'out.jsonl')
    port = free_port()
    secret = 'EnvOnlyPassw0rd'
    env = dict(os.environ, PGREAPER_BIN=binary, PGREAPER_RUN_DIR=d,
               PGREAPER_SOURCE_CONN=pg.conn_str(password=secret), PGREAPER_PRESET='basic',
               PGREAPER_SINK='jsonfile://' + out, PGREAPER_PPROF_ADDR='127.0.0.1:%d' % port,
               PGREAPER_INTERVAL_SCALE='0.02', PGREAPER_REFRESH='0')
    p = subprocess.Popen([os.path.join(DOCKER, 'entrypoint.sh')], env=env,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline and not (os.path.exists(out) and '"db_stats"' in open(out).read()):
        time.sleep(0.3)
    t.ok(os.path.exists(out) and '"dbname":"monitored"' in open(out).read(),
         'entrypoint: one source from the environment is collected')
    gen = open(os.path.join(d, 'pgreaper-sources.yaml')).read()
    t.ok(secret not in gen and '$PGREAPER_SOURCE_CONN' in gen,
         'the generated sources file refers to the connection string, no password on disk')
    h = subprocess.run([os.path.join(DOCKER, 'healthcheck.sh')], capture_output=True, text=True,
                       env=dict(os.environ, PGREAPER_HEALTH_PORT=str(port)))
    t.is_(h.returncode, 0, 'health check: healthy while pgreaper runs')
    p.send_signal(signal.SIGTERM)
    t.is_(p.wait(30), 0, 'pgreaper exits 0 on SIGTERM (exec: the entrypoint is replaced)')
    h = subprocess.run([os.path.join(DOCKER, 'healthcheck.sh')], capture_output=True, text=True,
                       env=dict(os.environ, PGREAPER_HEALTH_PORT=str(port)))
    t.ok(h.returncode != 0, 'health check: unhealthy when nothing answers')
    bad_env = {k: v for k, v in env.items() if k != 'PGREAPER_SINK'}
    r = subprocess.run([os.path.join(DOCKER, 'entrypoint.sh')], env=bad_env, capture_output=True,
                       text=True, timeout=30)
    t.ok(r.returncode == 2 and 'no sink' in r.stderr, 'no sink: exit 2 and says so', r.stderr)
    broken = os.path.join(d, 'broken.yaml')
    with open(broken, 'w') as f:
        f.write('- name: x\n  conn_str: host=/tmp\n  preset_metrics: nope\n')
    env2 = {k: v for k, v in env.items() if k != 'PGREAPER_SOURCE_CONN'}
    env2['PGREAPER_SOURCES'] = broken
    r = subprocess.run([os.path.join(DOCKER, 'entrypoint.sh')], env=env2, capture_output=True,
                       text=True, timeout=30)
    t.ok(r.returncode == 1 and re.search(r'broken\.yaml:3:\d+:', r.stderr),
         'a broken mounted sources file stops the container with file:line:col', r.stderr)
    pg.cleanup()


def main():
    if yaml is None:
        skip_all('PyYAML missing (Debian python3-yaml)')
    t = Tap()
    svc = check_compose(t)
    check_grafana(t, svc)
    check_dockerfile(t)
    check_entrypoint(t, sys.argv[1])
    t.done()


if __name__ == '__main__':
    main()
