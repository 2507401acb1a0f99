"""PgBouncer and Pgpool-II from Debian's packages, started on a unix socket in a temp dir
in front of a harness Postgres (as the postgres user when the tests run as root, since
neither runs as root)."""
import atexit
import os
import pwd
import shutil
import subprocess
import tempfile
import time

from pgharness import skip_all


def _owned_dir(prefix):
    root = tempfile.mkdtemp(prefix=prefix)
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        pw = pwd.getpwnam('postgres')
        os.chown(root, pw.pw_uid, pw.pw_gid)
    return root


def _as_postgres(argv):
    return (['runuser', '-u', 'postgres', '--'] + argv) if os.geteuid() == 0 else argv


class _Daemon:
    port = 0
    binary = ''

    def _start(self, argv, name):
        self.argv, self.name = argv, name
        self.start()

    def start(self):
        argv, name = self.argv, self.name
        self.logf = open(os.path.join(self.root, name + '.out'), 'a')
        self.proc = subprocess.Popen(_as_postgres(argv), stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        atexit.register(self.cleanup)
        sock = os.path.join(self.root, '.s.PGSQL.%d' % self.port)
        for _ in range(100):
            if os.path.exists(sock):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError('%s did not start: %s' % (name, self.log()))

    def log(self):
        out = ''
        for f in sorted(os.listdir(self.root)):
            if f.endswith(('.log', '.out')):
                with open(os.path.join(self.root, f), errors='replace') as fh:
                    out += fh.read()
        return out

    def conn_str(self, db='postgres', user='postgres'):
        return 'host=%s port=%d user=%s dbname=%s' % (self.root, self.port, user, db)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class PgBouncer(_Daemon):
    """pgbouncer in front of pg: every database, auth trust, users postgres and watcher,
    admin console for postgres (database "pgbouncer")."""

    binary = '/usr/sbin/pgbouncer'

    def __init__(self, pg, pool_mode='transaction', port=6432):
        if not os.path.exists(self.binary):
            skip_all('pgbouncer not installed (Debian package pgbouncer)')
        self.root = _owned_dir('rp-pgbouncer-')
        self.port = port
        self.proc = None
        ini = os.path.join(self.root, 'pgbouncer.ini')
        with open(os.path.join(self.root, 'users.txt'), 'w') as f:
            f.write('"postgres" ""\n"watcher" ""\n')
        with open(ini, 'w') as f:
            f.write('[databases]\n* = host=%s port=%d\n\n[pgbouncer]\n'
                    'listen_addr =\nlisten_port = %d\nunix_socket_dir = %s\n'
                    'auth_type = trust\nauth_file = %s/users.txt\nadmin_users = postgres\n'
                    'pool_mode = %s\nlogfile = %s/pgbouncer.log\nmax_client_conn = 200\n'
                    'default_pool_size = 4\nstats_period = 1\n'
                    % (pg.sock, pg.port, port, self.root, self.root, pool_mode, self.root))
        self._start([self.binary, ini], 'pgbouncer')


class Pgpool(_Daemon):
    """pgpool (raw mode, one backend: pg), no connection cache, four children."""

    binary = '/usr/sbin/pgpool'

    def __init__(self, pg, port=9999):
        if not os.path.exists(self.binary):
            skip_all('pgpool not installed (Debian package pgpool2)')
        self.root = _owned_dir('rp-pgpool-')
        self.port = port
        self.proc = None
        conf = os.path.join(self.root, 'pgpool.conf')
        with open(conf, 'w') as f:
            f.write("backend_clustering_mode = 'raw'\nlisten_addresses = ''\nport = %d\n"
                    "socket_dir = '%s'\npcp_listen_addresses = ''\n"
                    "pcp_port = %d\npcp_socket_dir = '%s'\n"
                    "backend_hostname0 = '%s'\nbackend_port0 = %d\nbackend_weight0 = 1\n"
                    "backend_flag0 = 'ALLOW_TO_FAILOVER'\nnum_init_children = 4\n"
                    "max_pool = 1\nenable_pool_hba = off\npid_file_name = '%s/pgpool.pid'\n"
                    "logdir = '%s'\nlog_destination = 'stderr'\nhealth_check_period = 0\n"
                    "sr_check_period = 0\nfailover_on_backend_error = off\n"
                    "memory_cache_enabled = off\nwd_ipc_socket_dir = '%s'\n"
                    % (port, self.root, port + 1, self.root, pg.sock, pg.port, self.root,
                       self.root, self.root))
        open(os.path.join(self.root, 'pcp.conf'), 'w').close()
        self._start([self.binary, '-n', '-f', conf, '-F', os.path.join(self.root, 'pcp.conf')],
                    'pgpool')
