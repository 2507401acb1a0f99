"""A real Prometheus for the tests (Debian's prometheus 2.42, started on loopback with a
scrape config of the test's own), and the small helpers the Prometheus tests share."""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

PROMETHEUS = '/usr/bin/prometheus'
PROMTOOL = '/usr/bin/promtool'


def available():
    return os.path.exists(PROMETHEUS) and os.path.exists(PROMTOOL)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_for(fn, timeout=20):
    """fn()'s first true value within timeout seconds, else its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    return fn()


def promql(port, query):
    """The result vector of an instant query ([] while Prometheus is not up yet)."""
    url = 'http://127.0.0.1:%d/api/v1/query?%s' % (port, urllib.parse.urlencode({'query': query}))
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())['data']['result']
    except (urllib.error.URLError, ConnectionError):
        return []


@contextlib.contextmanager
def prometheus(job, target_port):
    """Prometheus scraping 127.0.0.1:target_port every second as job; yields its port."""
    d = tempfile.mkdtemp(prefix='rp-prom-')
    port = free_port()
    conf = os.path.join(d, 'prometheus.yml')
    with open(conf, 'w') as f:
        f.write('global: {scrape_interval: 1s, evaluation_interval: 1s}\n'
                'scrape_configs:\n  - job_name: %s\n'
                '    static_configs: [{targets: ["127.0.0.1:%d"]}]\n' % (job, target_port))
    p = subprocess.Popen([PROMETHEUS, '--config.file=' + conf, '--storage.tsdb.path=' + d,
                          '--web.listen-address=127.0.0.1:%d' % port],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield port
    finally:
        p.terminate()
        p.wait(10)
        shutil.rmtree(d, True)
