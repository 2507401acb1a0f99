"""Integration-test harness: a throwaway PostgreSQL 15 and a pgreaper process.

The server listens only on a unix socket in a private temporary folder, so tests can
run in parallel. When run as root, initdb and the server run as the 'postgres' user.
The server is stopped at exit, also when a test fails or raises. A test script exits
77 (skipped) when the PostgreSQL server binaries are not installed.
"""
import atexit
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PG_BIN = os.environ.get('RP_PG_BIN', '/usr/lib/postgresql/15/bin')


def _exit_on_signal(signum, frame):
    # meson stops a test that times out with SIGTERM: exit through atexit so the
    # throwaway server and pgreaper are stopped too.
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _exit_on_signal)
signal.signal(signal.SIGINT, _exit_on_signal)


class Tap:
    """Minimal TAP output."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, diag=None):
        self.n += 1
        print('%sok %d - %s' % ('' if cond else 'not ', self.n, name), flush=True)
        if not cond:
            self.failed += 1
            # Also on stderr: meson's --print-errorlogs shows it in CI's console.
            print('not ok %d - %s' % (self.n, name), file=sys.stderr, flush=True)
            if diag is not None:
                for line in str(diag).splitlines()[-40:]:
                    print('#   ' + line, flush=True)
                    print('#   ' + line, file=sys.stderr, flush=True)
        return cond

    def is_(self, got, want, name):
        return self.ok(got == want, name, 'got: %r\nexpected: %r' % (got, want))

    def between(self, got, lo, hi, name):
        return self.ok(lo <= got <= hi, name, 'got: %r, expected %r..%r' % (got, lo, hi))

    def done(self):
        print('1..%d' % self.n, flush=True)
        sys.exit(1 if self.failed else 0)


def skip_all(reason):
    print('1..0 # SKIP %s' % reason, flush=True)
    sys.exit(0)


class Postgres:
    """A throwaway cluster: initdb, start, stop, restart, psql."""

    def __init__(self, name='pg', extra_conf=None, standby_of=None):
        if not os.path.exists(os.path.join(PG_BIN, 'initdb')):
            skip_all('PostgreSQL server binaries not found in %s' % PG_BIN)
        self.root = tempfile.mkdtemp(prefix='rp-%s-' % name)
        os.chmod(self.root, 0o755)
        self.sock = os.path.join(self.root, 'sock')
        self.data = os.path.join(self.root, 'data')
        self.log = os.path.join(self.root, 'server.log')
        os.mkdir(self.sock)
        self.as_root = os.geteuid() == 0
        if self.as_root:
            pw = pwd.getpwnam('postgres')
            for p in (self.root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        if standby_of is None:
            self._run(['initdb', '-D', self.data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8',
                       '--no-sync', '--locale=C'])
        else:
            # A streaming standby: base backup with primary_conninfo and standby.signal.
            self._run(['pg_basebackup', '-D', self.data, '-h', standby_of.sock,
                       '-p', str(standby_of.port), '-U', 'postgres', '-R', '-X', 'stream',
                       '--no-sync'])
        conf = {
            'listen_addresses': "''",
            'unix_socket_directories': "'%s'" % self.sock,
            'fsync': 'off',
            'max_connections': '100',
            'shared_buffers': '32MB',
        }
        conf.update(extra_conf or {})
        self.port = int(conf.get('port', 5432))
        with open(os.path.join(self.data, 'postgresql.auto.conf'), 'a') as f:
            for k, v in conf.items():
                f.write('%s = %s\n' % (k, v))
        atexit.register(self.cleanup)
        self.start()

    def _cmd(self, argv):
        argv = [os.path.join(PG_BIN, argv[0])] + argv[1:]
        if self.as_root:
            argv = ['runuser', '-u', 'postgres', '--'] + argv
        return argv

    def _run(self, argv, check=True):
        r = subprocess.run(self._cmd(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        if check and r.returncode != 0:
            raise RuntimeError('%s failed: %s' % (argv[0], r.stdout))
        return r

    def start(self):
        self._run(['pg_ctl', '-D', self.data, '-l', self.log, '-w', '-t', '60', 'start'])

    def stop(self, mode='fast'):
        self._run(['pg_ctl', '-D', self.data, '-m', mode, '-w', '-t', '60', 'stop'], check=False)

    def cleanup(self):
        if os.path.exists(os.path.join(self.data, 'postmaster.pid')):
            self.stop('immediate')
        shutil.rmtree(self.root, ignore_errors=True)

    def conn_str(self, db='postgres', **extra):
        s = 'host=%s port=%d user=postgres dbname=%s' % (self.sock, self.port, db)
        for k, v in extra.items():
            s += ' %s=%s' % (k, v)
        return s

    def psql(self, sql, db='postgres', check=True):
        r = subprocess.run(['psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
                            '-h', self.sock, '-p', str(self.port), '-U', 'postgres', '-d', db,
                            '-c', sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if check and r.returncode != 0:
            raise RuntimeError('psql failed: %s' % r.stderr)
        return r.stdout.strip()


def valgrind_prefix():
    """The valgrind command line when RP_VALGRIND is set (meson test --setup valgrind)."""
    if not os.environ.get('RP_VALGRIND'):
        return []
    return ['valgrind', '--error-exitcode=99', '--leak-check=full',
            '--errors-for-leak-kinds=definite', '--show-leak-kinds=definite', '--quiet',
            '--suppressions=' + os.path.join(os.path.dirname(__file__), 'valgrind.supp')]


class Reaper:
    """A pgreaper process writing to a jsonfile sink in its own folder."""

    def __init__(self, binary, sources_yaml, metrics_yaml=None, args=(), env=None):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix='rp-reaper-')
        atexit.register(shutil.rmtree, self.dir, True)
        self.sources = os.path.join(self.dir, 'sources.yaml')
        self.write_sources(sources_yaml)
        self.metrics = None
        if metrics_yaml is not None:
            self.metrics = os.path.join(self.dir, 'metrics.yaml')
            with open(self.metrics, 'w') as f:
                f.write(metrics_yaml)
        self.out = os.path.join(self.dir, 'out.jsonl')
        self.logfile = os.path.join(self.dir, 'pgreaper.log')
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.rc = None

    def write_sources(self, text):
        tmp = self.sources + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.rename(tmp, self.sources)

    def argv(self):
        a = valgrind_prefix()
        a += [self.binary, '--sources', self.sources, '--sink', 'jsonfile://' + self.out,
             '--refresh', '0']
        if self.metrics:
            a += ['--metrics', self.metrics]
        return a + self.args

    def start(self):
        self.log_fh = open(self.logfile, 'w')
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=self.log_fh,
                                     env=self.env)
        atexit.register(self.kill)
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=None):
        if timeout is None:  # valgrind makes the final drain and leak check slow
            timeout = 90 if os.environ.get('RP_VALGRIND') else 30
        self.proc.send_signal(sig)
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.rc = 'timeout'
        self.log_fh.close()
        return self.rc

    def log(self):
        with open(self.logfile) as f:
            return f.read()

    def wait_log(self, text, timeout=20, count=1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.log().count(text) >= count:
                return True
            time.sleep(0.1)
        return False

    def lines(self):
        """Every JSON line written so far (a partial last line is ignored)."""
        if not os.path.exists(self.out):
            return []
        # One read, then whole lines only: iterating the file line by line returns a
        # partial last line at EOF and then, if pgreaper appended meanwhile, the rest of
        # that line as if it were a line of its own.
        with open(self.out, 'rb') as f:
            data = f.read()
        whole = data[:data.rfind(b'\n') + 1].decode()
        return [json.loads(raw) for raw in whole.splitlines()]

    def batches(self, metric=None, dbname=None):
        return [b for b in self.lines()
                if (metric is None or b['metric'] == metric)
                and (dbname is None or b['dbname'] == dbname)]

    def wait_batches(self, metric, dbname=None, count=1, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.batches(metric, dbname)) >= count:
                return True
            time.sleep(0.1)
        return False

    def summary(self):
        """The counters of the final 'summary:' log lines as a dict."""
        out = {}
        for line in self.log().splitlines():
            if ' summary: ' in line:
                for p in line.split('summary: ', 1)[1].split():
                    if '=' not in p:
                        continue
                    k, v = p.split('=', 1)
                    try:
                        out[k] = int(v)
                    except ValueError:
                        out[k] = float(v)
        return out


def proc_status_kb(pid, field):
    """A kB figure of /proc/PID/status, such as VmRSS or VmHWM (0 when absent)."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def backend_pids(pg, app='pgreaper'):
    out = pg.psql("select pid from pg_stat_activity where application_name = '%s' "
                  "order by pid" % app)
    return [int(x) for x in out.split()] if out else []
