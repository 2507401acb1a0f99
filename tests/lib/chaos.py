"""The chaos run, shared by tests/integration/chaos.py (a few minutes, ASan build in CI)
and bench/chaos.py (30 minutes, release build). pgreaper collects from three real
servers (one a streaming standby that gets promoted) into a jsonfile sink and a
PostgreSQL sink reached through a proxy that cuts connections mid-COPY and between commit
and acknowledgement, with misbehaving metrics, while a driver randomly: restarts, kills
and freezes servers, terminates backends, restarts the sink, reloads changed
configurations (SIGHUP), promotes the standby and fetches profiles. At the end: exit 0,
no sanitizer report, file descriptors and RSS flat after warm-up, and the two sinks
reconcile row by row with the counts pgreaper reported."""
import calendar
import json
import os
import random
import re
import signal
import threading
import time
import urllib.request

from pgharness import Postgres, Reaper, backend_pids, proc_status_kb
from pgproxy import CutProxy

GOOD = {
    'tick': "select (extract(epoch from clock_timestamp()) * 1e9)::int8 as epoch_ns, 1 as n",
    'rows': "select (extract(epoch from clock_timestamp()) * 1e9)::int8 as epoch_ns, g as n, "
            "md5(g::text) as pad from generate_series(1, %d) g",
    'sleepy': "select (extract(epoch from clock_timestamp()) * 1e9)::int8 as epoch_ns, 1 as n, "
              "pg_sleep(random() * 1.5)::text as slept",
    'replay': "select (extract(epoch from clock_timestamp()) * 1e9)::int8 as epoch_ns, 1 as n, "
              "pg_last_wal_replay_lsn()::text as lsn",
}
BAD = {
    'b_begin': 'begin',
    'b_search_path': 'set search_path to nowhere',
    'b_advisory': 'select pg_advisory_lock(42) as locked',
    'b_huge_rows': 'select g as n from generate_series(1, 1000000) g',
    'b_huge_value': "select repeat('v', 20 * 1024 * 1024) as v",
    'b_dup': 'select 1 as a, 2 as a',
    'b_error': 'select 1 / 0 as boom',
}


def metrics_yaml(rows):
    out = ['metrics:']
    for name, sql in list(GOOD.items()) + list(BAD.items()):
        if name == 'rows':
            sql = sql % rows
        out.append('  %s:\n    sqls:\n      11: %s' % (name, json.dumps(sql)))
        if name == 'sleepy':
            out.append('    statement_timeout_seconds: 1')
        if name == 'replay':
            out.append('    node_status: standby')
    return '\n'.join(out) + '\n'


def sources_yaml(servers, extra):
    s1, s2, s3 = servers
    good = '{tick: 1, rows: 2, sleepy: 1, replay: 2%s}' % extra
    bad = '{tick: 2, %s}' % ', '.join('%s: %d' % (b, 5 if 'huge' in b else 1) for b in BAD)
    return ''.join('- name: %s\n  conn_str: %s\n  custom_metrics: %s\n' % (n, c, m) for n, c, m in (
        ('s1', s1.conn_str(), good), ('s2', s2.conn_str(), good),
        ('s3', s3.conn_str(), good), ('bad', s2.conn_str(), bad)))


def nfds(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


class Chaos:
    def __init__(self, binary, duration, seed=1, log=print):
        self.binary = binary
        self.duration = duration
        self.rnd = random.Random(seed)
        self.say = log
        self.actions = {}
        self.samples = []  # (t, fds, rss_kb)
        self.timeline = []  # (t, action)

    def count(self, what):
        self.actions[what] = self.actions.get(what, 0) + 1
        self.timeline.append((time.time(), what))

    def setup(self):
        self.s1 = Postgres('chaos1', extra_conf={'wal_level': 'replica', 'max_wal_senders': '4'})
        self.s3 = Postgres('chaos3', standby_of=self.s1)
        self.s2 = Postgres('chaos2')
        self.sink = Postgres('chaosk')
        self.sink.psql('create database metrics')
        self.proxy = CutProxy(os.path.join(self.sink.sock, '.s.PGSQL.%d' % self.sink.port),
                              seed=self.rnd.randint(1, 1000))
        self.rows = 300
        self.extra = ''
        uri = 'host=127.0.0.1 port=%d user=postgres dbname=metrics sslmode=disable' % self.proxy.port
        self.r = Reaper(self.binary, sources_yaml((self.s1, self.s2, self.s3), ''),
                        metrics_yaml(self.rows),
                        args=['--sink', uri, '--batching-delay', '200ms', '--pprof-addr',
                              '127.0.0.1:0', '--shutdown-timeout', '20'],
                        env={'ASAN_OPTIONS': 'abort_on_error=1:detect_leaks=1:quarantine_size_mb=16'})
        self.r.start()
        if not self.r.wait_log('pprof: serving', 30):
            raise RuntimeError('pgreaper did not start: ' + self.r.log()[-2000:])
        self.port = int(re.search(r'\(port (\d+)\)', self.r.log()).group(1))
        self.promoted = False

    # --- actions -------------------------------------------------------------------
    def restart_source(self):
        pg = self.rnd.choice([self.s2, self.s1 if self.promoted else self.s2])
        pg.stop(self.rnd.choice(['fast', 'immediate']))
        time.sleep(self.rnd.uniform(0.2, 2))
        pg.start()

    def terminate_backends(self):
        pg = self.rnd.choice([self.s1, self.s2, self.s3])
        pids = backend_pids(pg)
        if pids:
            pg.psql('select pg_terminate_backend(%d)' % self.rnd.choice(pids), check=False)

    def kill_backend(self):
        pg = self.rnd.choice([self.s1, self.s2])
        pids = backend_pids(pg)
        if pids:
            os.kill(self.rnd.choice(pids), signal.SIGKILL)  # the server restarts all backends

    def cut_sink(self):
        with self.proxy.lock:
            if self.rnd.random() < 0.5:
                self.proxy.cut_after_commit += 1
            else:
                self.proxy.cut_mid_copy += 1

    def terminate_sink(self):
        pids = backend_pids(self.sink, 'pgreaper-sink')
        if pids:
            self.sink.psql('select pg_terminate_backend(%d)' % pids[0], check=False)

    def restart_sink(self):
        self.sink.stop('fast')
        time.sleep(self.rnd.uniform(0.5, 3))
        self.sink.start()

    def reload(self):
        self.rows = self.rnd.choice([200, 300, 400])
        self.extra = self.rnd.choice(['', ', b_extra_off: 0'.replace(', b_extra_off: 0', ''),
                                      ', tick: 2', ', rows: 1'])
        with open(self.r.metrics, 'w') as f:
            f.write(metrics_yaml(self.rows))
        self.r.write_sources(sources_yaml((self.s1, self.s2, self.s3), self.extra))
        self.r.send(signal.SIGHUP)

    def promote(self):
        self.s3._run(['pg_ctl', '-D', self.s3.data, '-w', 'promote'], check=False)
        self.promoted = True

    def profiles(self):
        for path in ('/debug/pprof/goroutine?debug=1', '/debug/pprof/heap', '/debug/vars',
                     '/debug/pprof/profile?seconds=1'):
            try:
                urllib.request.urlopen('http://127.0.0.1:%d%s' % (self.port, path), timeout=10).read()
            except Exception as e:  # noqa: BLE001 (counted, reported at the end)
                self.count('profile_error:%s' % type(e).__name__)

    def sample(self):
        pid = self.r.proc.pid
        try:
            self.samples.append((time.time(), nfds(pid), proc_status_kb(pid, 'VmRSS')))
        except OSError:
            pass

    # --- run -------------------------------------------------------------------------
    def run(self):
        self.setup()
        start = time.time()
        actions = [(self.restart_source, 2), (self.terminate_backends, 4),
                   (self.kill_backend, 1), (self.cut_sink, 4), (self.terminate_sink, 2),
                   (self.restart_sink, 1), (self.reload, 4)]
        names = [a for a, w in actions for _ in range(w)]
        stop = threading.Event()

        def sampler():  # RSS and fds every second, profiles every 5 s
            n = 0
            while not stop.is_set():
                self.sample()
                if n % 5 == 4:
                    self.profiles()
                    self.count('profiles')
                n += 1
                stop.wait(1)
        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        while time.time() - start < self.duration and self.r.proc.poll() is None:
            time.sleep(self.rnd.uniform(0.3, 1.5))
            act = self.rnd.choice(names)
            if not self.promoted and time.time() - start > self.duration / 2:
                act = self.promote  # once, half-way: the standby becomes a primary
            act()
            self.count(act.__name__)
        # Quiet end: let the sink catch up, then stop.
        with self.proxy.lock:
            self.proxy.cut_after_commit = self.proxy.cut_mid_copy = 0
        time.sleep(5)
        stop.set()
        th.join()
        self.crashed = self.r.proc.poll()
        self.rc = self.r.stop(timeout=60)
        return self.report()

    @staticmethod
    def iso_us(text):
        """'2026-11-29T16:44:58.921592546Z' -> microseconds since the epoch."""
        whole, frac = text.rstrip('Z').split('.')
        t = calendar.timegm(time.strptime(whole, '%Y-%m-%dT%H:%M:%S'))
        return t * 1000000 + int(frac[:6].ljust(6, '0'))

    def biggest_rise(self):
        """The largest RSS rise between two samples, with the actions just before it."""
        best = None
        for (t0, _, r0), (t1, _, r1) in zip(self.samples, self.samples[1:]):
            if best is None or r1 - r0 > best[0]:
                best = (r1 - r0, t0, t1)
        if not best:
            return None
        start = self.samples[0][0]
        return {'kb': best[0], 'at_s': round(best[2] - start, 1),
                'actions_before': [a for t, a in self.timeline if best[1] - 3 <= t <= best[2]]}

    def reconcile(self):
        want = {}
        for b in self.r.lines():
            for row in b['data']:
                us = row['epoch_ns'] // 1000 if 'epoch_ns' in row else self.iso_us(b['time'])
                key = (b['metric'], b['dbname'], us, row.get('n'))
                want[key] = want.get(key, 0) + 1
        got = {}
        metrics = {m for m, _, _, _ in want}
        for metric in sorted(metrics):
            out = self.sink.psql("select dbname, (extract(epoch from time) * 1e6)::int8, "
                                 "data->>'n' from public.%s" % metric, db='metrics', check=False)
            for line in out.splitlines():
                db, us, n = line.split('|')
                key = (metric, db, int(us), int(n) if n else None)
                got[key] = got.get(key, 0) + 1
        return {
            'rows_json': sum(want.values()),
            'rows_sink': sum(got.values()),
            'lost': sum(c for k, c in want.items() if k not in got),
            'duplicated': sum(c - 1 for c in got.values() if c > 1),
            'extra': sum(c for k, c in got.items() if k not in want),
            'examples': [('lost',) + k for k in want if k not in got][:3]
                        + [('extra',) + k for k in got if k not in want][:3],
        }

    def report(self):
        log = self.r.log()
        rec = self.reconcile()
        s = self.r.summary()
        warm = [x for x in self.samples if x[0] - self.samples[0][0] > self.duration / 3]
        early = [x for x in self.samples if x not in warm]
        return {
            'rc': self.rc, 'crashed_before_stop': self.crashed,
            'sanitizer': 'AddressSanitizer' in log or 'runtime error:' in log
                         or 'LeakSanitizer' in log,
            'actions': self.actions,
            'cuts_after_commit': self.proxy.done_after_commit,
            'cuts_mid_copy': self.proxy.done_mid_copy,
            'fds_warm_max': max((x[1] for x in early), default=0),
            'fds_late_max': max((x[1] for x in warm), default=0),
            'rss_warm_kb': max((x[2] for x in early), default=0),
            'rss_late_kb': max((x[2] for x in warm), default=0),
            'rss_end_kb': self.samples[-1][2] if self.samples else 0,
            'rss_biggest_rise': self.biggest_rise(),
            'reconcile': rec,
            'summary': s,
            'log_tail': log[-3000:],
            'log_errors': len([l for l in log.splitlines() if ' ERROR: ' in l]),
        }
