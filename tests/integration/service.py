"""pgreaper under a service manager: systemd's notify protocol on a socket of the test's
own (NOTIFY_SOCKET, WATCHDOG_USEC as systemd sets them): READY=1 once the configuration
is applied and the sinks are open, RELOADING=1 then READY=1 around a reload (a good one
and a refused one), WATCHDOG=1 from the loop at half the interval, STOPPING=1 at
SIGTERM. And the unit meson configures from dist/pgreaper.service.in passes systemd-analyze verify."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

WATCHDOG_US = 400000

METRICS = '''
metrics:
  tick:
    sqls:
      10: select 1 as x
'''


class Manager:
    """The manager's end of the notify socket: every datagram, with its arrival time."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.msgs = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            with self.lock:
                self.msgs.append((time.time(), data.decode()))

    def since(self, t0, key=None):
        with self.lock:
            return [(t, m) for t, m in self.msgs if t >= t0 and (key is None or key in m)]

    def wait(self, key, t0, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.since(t0, key)
            if found:
                return found[0]
            time.sleep(0.05)
        return None

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def unit_verifies(t, binary):
    src = os.path.join(os.environ.get('RP_BUILD_DIR', '.'), 'pgreaper.service')  # configured
    analyze = shutil.which('systemd-analyze')
    if not analyze:
        t.ok(True, '# skip systemd-analyze verify: systemd-analyze not installed')
        return
    d = tempfile.mkdtemp(prefix='rp-unit-')
    with open(src) as f:  # the installed path of the binary, here the one under test
        text = re.sub(r'^ExecStart=\S+', 'ExecStart=' + os.path.abspath(binary), f.read(),
                      flags=re.M)
    path = os.path.join(d, 'pgreaper.service')
    with open(path, 'w') as f:
        f.write(text)
    r = subprocess.run([analyze, 'verify', path], capture_output=True, text=True)
    out = '\n'.join(line for line in (r.stdout + r.stderr).splitlines()
                    if 'pgreaper.service' in line)
    t.ok(r.returncode == 0 and not out, 'the configured pgreaper.service passes systemd-analyze verify',
         r.stdout + r.stderr)
    shutil.rmtree(d, True)


def main():
    t = Tap()
    pg = Postgres('service')
    d = tempfile.mkdtemp(prefix='rp-notify-')
    m = Manager(os.path.join(d, 'notify'))
    good = '- name: db\n  conn_str: %s\n  custom_metrics: {tick: 1}\n' % pg.conn_str()
    t0 = time.time()
    r = Reaper(sys.argv[1], good, METRICS,
               env={'NOTIFY_SOCKET': os.path.join(d, 'notify'),
                    'WATCHDOG_USEC': str(WATCHDOG_US)}).start()
    ready = m.wait('READY=1', t0)
    t.ok(ready, 'READY=1 once the configuration is applied', r.log()[-800:])
    t.ok(ready and 'STATUS=collecting 1 sources' in ready[1], 'with a STATUS line',
         ready and ready[1])
    t.ok(r.wait_log('service: watchdog every 200 ms', 5), 'the watchdog is half the interval',
         r.log()[-800:])
    time.sleep(2.0)
    pings = m.since(ready[0] if ready else t0, 'WATCHDOG=1')
    t.ok(len(pings) >= 6, 'WATCHDOG=1 from the loop: %d in 2 s' % len(pings))
    gaps = [b[0] - a[0] for a, b in zip(pings, pings[1:])]
    t.ok(gaps and max(gaps) < WATCHDOG_US / 1e6, 'never a watchdog interval apart: %.2f s'
         % (max(gaps) if gaps else -1))

    t1 = time.time()
    r.send(signal.SIGHUP)
    reloading = m.wait('RELOADING=1', t1, 10)
    t.ok(reloading and re.search(r'MONOTONIC_USEC=\d+', reloading[1]),
         'SIGHUP: RELOADING=1 with MONOTONIC_USEC', reloading)
    again = m.wait('READY=1', t1, 10)
    t.ok(again and reloading and again[0] >= reloading[0], 'then READY=1 again')

    t2 = time.time()
    r.write_sources('- name: [broken\n')
    r.send(signal.SIGHUP)
    t.ok(m.wait('RELOADING=1', t2, 10) and m.wait('READY=1', t2, 10),
         'a refused reload: RELOADING=1, then READY=1 (the running configuration stays)')
    t.ok(r.wait_log('keeping the running configuration', 5), '(it was refused)')

    t3 = time.time()
    rc = r.stop()
    t.ok(m.wait('STOPPING=1', t3, 5), 'SIGTERM: STOPPING=1')
    t.is_(rc, 0, 'exit 0')
    m.close()
    shutil.rmtree(d, True)

    plain = Reaper(sys.argv[1], good, METRICS).start()
    t.ok(plain.wait_batches('tick', timeout=20), 'without NOTIFY_SOCKET it runs as before')
    t.is_(plain.stop(), 0, '... and exits 0')
    unit_verifies(t, sys.argv[1])
    pg.cleanup()
    t.done()


main()
