"""A Patroni cluster from Debian's packages on loopback: one etcd (3.4, v3 API) and three
PostgreSQL 15 members, each run by its own patroni (3.0) process as the postgres user.
Patroni creates, replicates and promotes the data directories itself."""
import atexit
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

from pgharness import PG_BIN, skip_all

PATRONI = '/usr/bin/patroni'
ETCD = '/usr/bin/etcd'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _as_postgres(argv):
    return (['runuser', '-u', 'postgres', '--'] + argv) if os.geteuid() == 0 else argv


MEMBER = '''scope: %(scope)s
namespace: /service/
name: %(name)s
restapi:
  listen: 127.0.0.1:%(api)d
  connect_address: 127.0.0.1:%(api)d
etcd3:
  hosts: 127.0.0.1:%(etcd)d
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    postgresql:
      use_pg_rewind: false
  initdb: [{encoding: UTF8}, {locale: C}]
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:%(port)d
  connect_address: 127.0.0.1:%(port)d
  data_dir: %(dir)s/data
  bin_dir: %(bin)s
  pgpass: %(dir)s/pgpass
  authentication:
    replication: {username: postgres}
    superuser: {username: postgres}
  parameters:
    unix_socket_directories: '%(dir)s'
    fsync: 'off'
    max_connections: 60
'''


class PatroniCluster:
    def __init__(self, scope='batman', members=3):
        for b in (PATRONI, ETCD):
            if not os.path.exists(b):
                skip_all('%s not installed (Debian packages patroni, etcd-server)' % b)
        self.scope = scope
        self.root = tempfile.mkdtemp(prefix='rp-patroni-')
        os.chmod(self.root, 0o755)
        self.pw = pwd.getpwnam('postgres') if os.geteuid() == 0 else None
        self._own(self.root)
        self.etcd_port = free_port()
        peer = free_port()
        url = 'http://127.0.0.1:%d' % self.etcd_port
        self.etcd = subprocess.Popen(_as_postgres(
            [ETCD, '--name', 'e1', '--data-dir', self.root + '/etcd',
             '--listen-client-urls', url, '--advertise-client-urls', url,
             '--listen-peer-urls', 'http://127.0.0.1:%d' % peer,
             '--initial-advertise-peer-urls', 'http://127.0.0.1:%d' % peer,
             '--initial-cluster', 'e1=http://127.0.0.1:%d' % peer]),
            stdout=open(self.root + '/etcd.log', 'w'), stderr=subprocess.STDOUT)
        atexit.register(self.cleanup)
        self.members = {}
        for i in range(members):
            name = 'pg%d' % (i + 1)
            d = os.path.join(self.root, name)
            os.mkdir(d)
            self._own(d)
            conf = MEMBER % dict(scope=scope, name=name, api=free_port(), etcd=self.etcd_port,
                                 port=free_port(), dir=d, bin=PG_BIN)
            with open(d + '/patroni.yml', 'w') as f:
                f.write(conf)
            self.members[name] = {'dir': d, 'proc': None,
                                  'api': int(conf.split('listen: 127.0.0.1:')[1].split()[0])}
        for i, name in enumerate(self.members):
            self.start(name)
            if i == 0:
                self.wait(lambda c: any(m['role'] == 'leader' for m in c), 60)

    def _own(self, p):
        if self.pw:
            os.chown(p, self.pw.pw_uid, self.pw.pw_gid)

    def start(self, name):
        m = self.members[name]
        m['proc'] = subprocess.Popen(_as_postgres([PATRONI, m['dir'] + '/patroni.yml']),
                                     stdout=open(m['dir'] + '/patroni.log', 'a'),
                                     stderr=subprocess.STDOUT)

    def stop(self, name):
        m = self.members[name]
        m['proc'].terminate()
        m['proc'].wait(60)

    def dcs_url(self, namespace_only=False):
        return 'etcd://127.0.0.1:%d/service%s' % (self.etcd_port,
                                                  '' if namespace_only else '/' + self.scope)

    def api(self, path, body=None, name=None):
        alive = [n for n in self.members
                 if self.members[n]['proc'] and self.members[n]['proc'].poll() is None]
        port = self.members[name or alive[0]]['api']
        req = urllib.request.Request('http://127.0.0.1:%d%s' % (port, path),
                                     data=json.dumps(body).encode() if body else None)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read().decode()

    def state(self):
        """[{name, role, state}] as Patroni's REST API reports them."""
        try:
            return [{k: m.get(k) for k in ('name', 'role', 'state')}
                    for m in json.loads(self.api('/cluster'))['members']]
        except (OSError, ValueError, KeyError, IndexError):
            return []

    def wait(self, pred, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            c = self.state()
            if c and pred(c):
                return c
            time.sleep(0.5)
        return None

    def leader(self):
        for m in self.state():
            if m['role'] == 'leader':
                return m['name']
        return None

    def healthy(self, n, timeout=90):
        return self.wait(lambda c: len(c) == n and sum(m['role'] == 'leader' for m in c) == 1
                         and all(m['state'] in ('running', 'streaming') for m in c), timeout)

    def log(self):
        out = ''
        for n, m in self.members.items():
            with open(m['dir'] + '/patroni.log', errors='replace') as f:
                out += '--- %s\n%s' % (n, f.read()[-3000:])
        return out

    def cleanup(self):
        for m in self.members.values():
            if m['proc'] and m['proc'].poll() is None:
                m['proc'].terminate()
                try:
                    m['proc'].wait(30)
                except subprocess.TimeoutExpired:
                    m['proc'].kill()
        for m in self.members.values():  # a postmaster left behind by a killed patroni
            pid = os.path.join(m['dir'], 'data', 'postmaster.pid')
            if os.path.exists(pid):
                subprocess.run(_as_postgres([os.path.join(PG_BIN, 'pg_ctl'), '-D',
                                             m['dir'] + '/data', '-m', 'immediate', 'stop']),
                               capture_output=True)
        if self.etcd.poll() is None:
            self.etcd.terminate()
            self.etcd.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)
