"""Sources of kind prometheus: Debian's prometheus-postgres-exporter in front of a real
PostgreSQL 15 and prometheus-node-exporter, scraped on the loop (libcurl's multi interface on libuv); every family a
metric, labels as tag_ columns, as pgwatch stores them. An endpoint of the test's own
serves what goes wrong: a line that does not parse, a body over --result-max-bytes, a
redirect loop, a server slower than --statement-timeout, a 404. Each is one clear
message on its own source; the exporter's source goes on."""
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap, skip_all  # noqa: E402

EXPORTER = '/usr/bin/prometheus-postgres-exporter'
NODE_EXPORTER = '/usr/bin/prometheus-node-exporter'
GOOD = ('# TYPE good gauge\ngood{k="v"} 42\n'
        '# TYPE broken counter\nbroken{k="v" 1\n'
        '# TYPE lat histogram\nlat_bucket{le="1"} 2\nlat_bucket{le="+Inf"} 3\nlat_sum 0.5\n'
        'lat_count 3\n')


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body=b'', headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:  # the scraper gave up (a timeout): what the test wants
            pass

    def do_GET(self):
        if self.path == '/ok':
            self.reply(200, GOOD.encode(), [('Content-Type', 'text/plain; version=0.0.4')])
        elif self.path == '/huge':
            self.reply(200, ('x{a="b"} 1\n' * 200000).encode())
        elif self.path == '/loop':
            self.reply(302, headers=[('Location', '/loop')])
        elif self.path == '/slow':
            time.sleep(4)
            self.reply(200, b'late 1\n')
        else:
            self.reply(404, b'no\n')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def source(name, url, metrics=None):
    out = '- name: %s\n  kind: prometheus\n  conn_str: "%s"\n' % (name, url)
    if metrics:
        out += '  custom_metrics: {%s}\n' % ', '.join('%s: 1' % m for m in metrics)
    return out


def main():
    t = Tap()
    if not os.path.exists(EXPORTER):
        skip_all('prometheus-postgres-exporter not installed')
    pg = Postgres('promkind')
    eport = free_port()
    env = dict(os.environ, DATA_SOURCE_NAME='host=%s port=%d user=postgres dbname=postgres '
               'sslmode=disable' % (pg.sock, pg.port))
    exporter = subprocess.Popen([EXPORTER, '--web.listen-address=127.0.0.1:%d' % eport],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nport = free_port()
    node = None
    if os.path.exists(NODE_EXPORTER):
        node = subprocess.Popen([NODE_EXPORTER, '--web.listen-address=127.0.0.1:%d' % nport,
                                 '--collector.disable-defaults', '--collector.loadavg',
                                 '--collector.cpu', '--collector.meminfo'],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = 'http://127.0.0.1:%d' % srv.server_address[1]
    for _ in range(50):
        try:
            socket.create_connection(('127.0.0.1', eport), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    src = (source('exporter', 'http://user:s3cret@127.0.0.1:%d/metrics' % eport,
                  ['pg_up', 'pg_stat_database_xact_commit', 'pg_settings_max_connections'])
           + source('fake', base + '/ok', ['good', 'broken', 'lat'])
           + source('huge', base + '/huge', ['x']) + source('loop', base + '/loop', ['x'])
           + source('slow', base + '/slow', ['late']) + source('gone', base + '/nothing', ['x'])
           + source('secret', base.replace('//', '//u:pw2@') + '/nothing', ['x'])
           + (source('node', 'http://127.0.0.1:%d/metrics' % nport,
                     ['node_load1', 'node_cpu_seconds_total', 'node_memory_MemTotal_bytes'])
              if node else '')
           + '- name: db\n  conn_str: "%s"\n  custom_metrics: {db_stats: 1}\n' % pg.conn_str())
    r = Reaper(sys.argv[1], src, args=['--result-max-bytes', '1048576', '--statement-timeout', '2'])
    r.start()
    t.ok(r.wait_batches('pg_up', 'exporter', count=2, timeout=30), 'an exporter scraped',
         r.log())
    up = r.batches('pg_up', 'exporter')[-1]['data'][0]
    t.ok(up.get('pg_up') == 1 and 'epoch_ns' in up, 'pg_up: the value under the family name', up)
    t.ok(r.wait_batches('pg_stat_database_xact_commit', 'exporter', timeout=15),
         'a family with labels', r.log())
    rows = r.batches('pg_stat_database_xact_commit', 'exporter')[-1]['data']
    t.ok(any(x.get('tag_datname') == 'postgres' for x in rows)
         and all(isinstance(x['pg_stat_database_xact_commit'], (int, float)) for x in rows),
         'labels become tag_ columns, values numbers', rows[:2])
    t.ok(not r.batches('pg_stat_database_blks_hit'), 'families not named are not stored')

    if node:
        t.ok(r.wait_batches('node_cpu_seconds_total', 'node', timeout=15)
             and r.wait_batches('node_load1', 'node', timeout=5), 'node exporter scraped',
             r.log())
        cpu = r.batches('node_cpu_seconds_total', 'node')[-1]['data']
        t.ok(cpu and all('tag_cpu' in x and 'tag_mode' in x for x in cpu)
             and {x['tag_mode'] for x in cpu} >= {'idle', 'user', 'system'},
             'node_cpu_seconds_total: a row per cpu and mode', cpu[:2])
        mem = r.batches('node_memory_MemTotal_bytes', 'node')
        t.ok(mem and mem[-1]['data'][0]['node_memory_MemTotal_bytes'] > 1e6,
             'a large gauge stays a number', mem[-1:])
    else:
        t.ok(True, '# SKIP prometheus-node-exporter not installed')
        t.ok(True, '# SKIP prometheus-node-exporter not installed')
        t.ok(True, '# SKIP prometheus-node-exporter not installed')
    t.ok(r.wait_batches('good', 'fake', count=2, timeout=15), 'a family next to a broken one')
    lat = r.batches('lat', 'fake')
    t.ok(lat and lat[-1]['data'][0].get('lat') == 3, 'a histogram stores its count', lat[-1:])
    t.ok(not r.batches('broken'), 'the broken family is left out')
    time.sleep(3)
    log = r.log()
    lines = [x for x in log.splitlines() if 'source=fake metric=broken' in x]
    t.ok(len(lines) == 1 and 'line 4' in log and 'does not parse' in lines[0],
         'said once, with the family and the line', lines)
    for name, said in (('huge', 'response body over 1048576 bytes'),
                       ('loop', 'Maximum (3) redirects followed'),
                       ('slow', 'timed out'), ('gone', 'HTTP status 404')):
        got = [x for x in log.splitlines() if 'source=%s:' % name in x and 'scrape of' in x]
        t.ok(len(got) == 1 and said in log, '%s: one clear error (%s)' % (name, said), got)
    t.ok('s3cret' not in log and 'pw2' not in log and '//u:****@127.0.0.1' in log,
         'a URL\'s password never appears in the log, masked where the URL is shown',
         [x for x in log.splitlines() if 's3cret' in x or 'pw2' in x or 'secret' in x][:3])
    n = len(r.batches('pg_up', 'exporter'))
    m = len(r.batches('db_stats', 'db'))
    t.ok(r.wait_batches('pg_up', 'exporter', count=n + 2, timeout=10)
         and r.wait_batches('db_stats', 'db', count=m + 2, timeout=10),
         'the other sources go on')
    t.is_(r.stop(), 0, 'clean exit')
    s = r.summary()
    t.ok(s.get('fetch_errors', 0) >= 4, 'failed scrapes counted as fetch errors', s)
    for p in (exporter, node):
        if p:
            p.terminate()
            p.wait(10)
    srv.shutdown()
    pg.cleanup()
    t.done()


main()
