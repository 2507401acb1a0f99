#!/usr/bin/env python3
"""Core benchmark: N sources (N databases on one local PostgreSQL 15) x the largest
built-in preset with intervals scaled to 1-5 s, for D seconds. Prints figures, never
passes or fails.

  python3 bench/core.py [--sources 6] [--duration 60] [--binary build/pgreaper]

Figures: threads, RSS and anonymous memory (smaps_rollup), pgreaper CPU, fetches, rows
and values, pgreaper CPU per tick and per 1,000 fetches, the CPU the PostgreSQL backends
spent answering the same queries (from /proc of pgreaper's backends), their ratio,
malloc calls per result value in steady state (LD_PRELOAD counter), pipelines per tick,
tick lateness p50/p99.
"""
import argparse
import json
import re
import urllib.request
import os
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
from pgharness import Postgres, Reaper, backend_pids, proc_status_kb  # noqa: E402


def proc_cpu(pid):
    """CPU seconds of a process, user + system, with nanosecond resolution."""
    total = 0
    for tid in os.listdir('/proc/%d/task' % pid):
        with open('/proc/%d/task/%s/schedstat' % (pid, tid)) as f:
            total += int(f.read().split()[0])
    return total / 1e9


def proc_user_sys(pid):
    """(user, system) CPU seconds from /proc/PID/stat (clock-tick resolution)."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    tick = os.sysconf('SC_CLK_TCK')
    return int(fields[11]) / tick, int(fields[12]) / tick


def smaps(pid):
    out = {}
    with open('/proc/%d/smaps_rollup' % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == 'kB':
                out[parts[0].rstrip(':')] = int(parts[1])
    return out


def malloc_counts(path):
    with open(path, 'rb') as f:
        return struct.unpack('QQ', f.read(16))


def percentile(hist, q):
    total = sum(hist)
    if total == 0:
        return 0
    acc = 0
    for i, n in enumerate(hist):
        acc += n
        if acc >= q * total:
            return 0 if i == 0 else 2 ** (i - 1)
    return 2 ** 15


def lateness_hist(log):
    for line in log.splitlines():
        if 'tick lateness histogram' in line:
            return [int(x) for x in line.rsplit(': ', 1)[1].split(',')]
    return []


def fetch(port, path):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=60) as f:
        return f.read()


def pprof_port(r):
    m = re.search(r'\(port (\d+)\)', r.log())
    return int(m.group(1))


def vars_counts(port):
    """(mallocs, bytes allocated) from pgreaper's own exact counters."""
    m = json.loads(fetch(port, '/debug/vars'))['memstats']
    return m['Mallocs'], m['TotalAlloc']


def heap_figures(port):
    m = json.loads(fetch(port, '/debug/vars'))['memstats']
    return [('live heap (HeapAlloc) / objects', '%.2f MiB / %d' % (m['HeapAlloc'] / 2**20,
                                                                   m['HeapObjects'])),
            ('heap samples live (rate %d)' % m['HeapSampleRate'], '%d' % m['HeapSamplesLive'])]


def reaper_counts(port):
    return json.loads(fetch(port, '/debug/vars'))['reaper']


def strace_counts(pid, during):
    """System calls by name of every thread of pid (strace -c -f) while during() runs."""
    import subprocess
    import tempfile
    out = tempfile.NamedTemporaryFile(suffix='.strace', delete=False).name
    st = subprocess.Popen(['strace', '-c', '-f', '-q', '-o', out, '-p', str(pid)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    during()
    st.send_signal(2)
    st.wait()
    calls = {}
    with open(out) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != 'total':
                calls[parts[-1]] = int(parts[3])
    os.unlink(out)
    return calls


def strace_window(pid, port, seconds):
    """Syscalls of every pgreaper thread over a window, per pipeline (strace -c -f)."""
    c = []

    def during():
        time.sleep(0.5)  # attached to every thread
        c.append(reaper_counts(port))
        time.sleep(seconds)
        c.append(reaper_counts(port))

    calls = strace_counts(pid, during)
    c0, c1 = c
    pipelines = max(c1['pipelines'] - c0['pipelines'], 1)
    queries = c1['queries'] - c0['queries']
    # The counters were read over a window slightly shorter than strace's: scale to it.
    scale = seconds / (seconds + 0.5)
    per = {k: v * scale / pipelines for k, v in calls.items()}
    top = ', '.join('%.1f %s' % (v, k) for k, v in
                    sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.05)
    return [('syscalls per pipeline (strace -c -f, %d s)' % seconds,
             '%.1f (%d queries per pipeline): %s' % (sum(per.values()), queries // pipelines,
                                                   top))]


def capture_costs(port, pid):
    """Wall time and pgreaper CPU of the first and the second capture of each profile
    (the first reads symbol tables and DWARF), and the memory the profiler keeps."""
    rows = []
    rss0 = rss_kib(pid)
    for name, path in (('heap', '/debug/pprof/heap'), ('goroutine', '/debug/pprof/goroutine'),
                       ('CPU 1 s', '/debug/pprof/profile?seconds=1')):
        figures = []
        for _ in range(2):
            c0, t0 = proc_cpu(pid), time.time()
            size = len(fetch(port, path))
            c1, t1 = proc_cpu(pid), time.time()
            figures.append('%.1f ms / %.1f ms' % (1e3 * (t1 - t0), 1e3 * (c1 - c0)))
        rows.append(('capture %s: wall / CPU, 1st; 2nd; size' % name,
                     '%s; %s; %d B' % (figures[0], figures[1], size)))
    m = json.loads(fetch(port, '/debug/vars'))['memstats']
    rows.append(('after the captures: ProfilerHeap / RSS growth', '%.2f MiB / %.1f MiB' % (
        m.get('ProfilerHeap', 0) / 2**20, (rss_kib(pid) - rss0) / 1024)))
    return rows


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def setup_databases(pg, n, tables):
    for i in range(n):
        db = 'bench%d' % (i + 1)
        pg.psql('create database %s' % db)
        pg.psql('do $$ begin for i in 1..%d loop execute format('
                "'create table t%%s (id int primary key, v text)', i); "
                "execute format('insert into t%%s select g, md5(g::text) from "
                "generate_series(1, 100) g', i); end loop; end $$" % tables, db=db)
        pg.psql('analyze', db=db)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--sources', type=int, default=6)
    ap.add_argument('--duration', type=int, default=60)
    ap.add_argument('--tables', type=int, default=30, help='user tables per database')
    ap.add_argument('--binary', default=os.path.join(HERE, '..', 'build', 'pgreaper'))
    ap.add_argument('--preset', default='standard')
    ap.add_argument('--tcp', action='store_true', help='connect over TCP on 127.0.0.1')
    ap.add_argument('--extra', default='', help='extra pgreaper flags, space-separated')
    ap.add_argument('--pprof', action='store_true',
                    help='serve /debug/pprof, read allocation counters from /debug/vars and '
                         'measure the cost of one heap, goroutine and 1 s CPU capture')
    ap.add_argument('--strace', type=int, default=0, metavar='SECONDS',
                    help='after the CPU window, count syscalls per pipeline with strace -c -f '
                         'over SECONDS (implies --pprof for the counters)')
    ap.add_argument('--interval-scale', default='0.0167',
                    help='60 s -> 1 s, 300 s -> 5 s (settings: 2 h -> 120 s)')
    a = ap.parse_args()
    a.pprof = a.pprof or a.strace > 0
    shim = os.path.join(os.path.dirname(a.binary), 'bench', 'malloc_count.so')

    conf = {'max_connections': str(max(100, a.sources + 20)), 'track_io_timing': 'on'}
    port = 5432
    if a.tcp:
        import socket
        with socket.socket() as sk:
            sk.bind(('127.0.0.1', 0))
            port = sk.getsockname()[1]
        conf.update({'listen_addresses': "'127.0.0.1'", 'port': str(port)})
    pg = Postgres('bench', conf)
    if a.tcp:
        pg.conn_str = lambda db='postgres': ('host=127.0.0.1 port=%d user=postgres dbname=%s'
                                             % (port, db))
    setup_databases(pg, a.sources, a.tables)
    sources = ''.join('- name: bench%d\n  conn_str: %s\n  preset_metrics: %s\n' %
                      (i + 1, pg.conn_str('bench%d' % (i + 1)), a.preset)
                      for i in range(a.sources))
    env = {}
    count_file = os.path.join(pg.root, 'malloc.count')
    if os.path.exists(shim):
        env = {'LD_PRELOAD': shim, 'RP_MALLOC_COUNT_FILE': count_file}
    extra = a.extra.split() + (['--pprof-addr', '127.0.0.1:0'] if a.pprof else [])
    r = Reaper(a.binary, sources, args=['--interval-scale', a.interval_scale,
                                        '--sink', 'jsonfile:///dev/null'] + extra,
               env=env)
    r.out = '/dev/null'
    r.start()
    pid = r.proc.pid
    if not r.wait_log('connected to source', 20, count=a.sources):
        print(r.log())
        sys.exit(1)
    time.sleep(5)  # warm-up: prepared statements, first rare metrics, libpq buffers
    vport = pprof_port(r) if a.pprof else None
    backends = backend_pids(pg)
    cpu0, bcpu0 = proc_cpu(pid), sum(proc_cpu(b) for b in backends)
    us0 = proc_user_sys(pid)
    m0 = vars_counts(vport) if vport else malloc_counts(count_file) if env else (0, 0)
    t0 = time.time()
    time.sleep(a.duration)
    elapsed = time.time() - t0
    cpu1, bcpu1 = proc_cpu(pid), sum(proc_cpu(b) for b in backends)
    us1 = proc_user_sys(pid)
    m1 = vars_counts(vport) if vport else malloc_counts(count_file) if env else (0, 0)
    threads, sm = proc_status_kb(pid, 'Threads'), smaps(pid)
    hwm = proc_status_kb(pid, 'VmHWM')
    syscalls = strace_window(pid, vport, a.strace) if a.strace else []
    captures = capture_costs(vport, pid) if vport else []
    heap_rows = heap_figures(vport) if vport else []
    rc = r.stop()
    s = r.summary()
    hist = lateness_hist(r.log())
    ticks = max(s.get('ticks', 0), 1)
    fetches = s.get('fetches_ok', 0) + s.get('fetch_errors', 0)
    values = max(s.get('values', 0), 1)
    # The steady-state window is a fraction of the run: scale totals to it.
    win = elapsed / (elapsed + 5)
    cpu = cpu1 - cpu0
    bcpu = bcpu1 - bcpu0
    print('pgreaper core benchmark: %d sources x preset %s, intervals x%s, %.0f s measured, '
          '%s %s(exit %s)' % (a.sources, a.preset, a.interval_scale, elapsed,
                             'TCP' if a.tcp else 'unix socket', a.extra + ' ' if a.extra else '',
                             rc))
    rows = [
        ('threads', '%d' % threads),
        ('connections to the server', '%d' % len(backends)),
        ('RSS (smaps_rollup Rss)', '%.1f MiB' % (sm.get('Rss', 0) / 1024)),
        ('anonymous memory (Anonymous)', '%.1f MiB' % (sm.get('Anonymous', 0) / 1024)),
        ('peak RSS (VmHWM)', '%.1f MiB' % (hwm / 1024)),
        ('ticks / pipelines / skipped ticks', '%d / %d / %d' % (
            s.get('ticks', 0), s.get('pipelines', 0), s.get('skipped_ticks', 0))),
        ('pipelines per tick', '%.2f' % (s.get('pipelines', 0) / ticks)),
        ('socket reads per pipeline', '%.2f' % (
            s.get('socket_reads', 0) / max(s.get('pipelines', 0), 1))),
        ('fetches (ok / failed)', '%d / %d' % (s.get('fetches_ok', 0), s.get('fetch_errors', 0))),
        ('rows / values', '%d / %d' % (s.get('rows', 0), s.get('values', 0))),
        ('pgreaper CPU in window', '%.3f s (%.3f %% of one core)' % (cpu, 100 * cpu / elapsed)),
        ('  of which user / system', '%.2f s / %.2f s' % (us1[0] - us0[0], us1[1] - us0[1])),
        ('pgreaper CPU per tick', '%.1f us' % (1e6 * cpu / (ticks * win))),
        ('pgreaper CPU per 1,000 fetches', '%.1f ms' % (1e3 * cpu / max(fetches * win, 1) * 1000)),
        ('backend CPU for the same queries', '%.3f s' % bcpu),
        ('pgreaper CPU / backend CPU', '%.1f %%' % (100 * cpu / bcpu if bcpu else float('nan'))),
        ('malloc calls in window (steady state)', '%d' % (m1[0] - m0[0])),
        ('malloc calls per result value', '%.3f' % ((m1[0] - m0[0]) / (values * win))),
        ('malloc calls per query', '%.1f' % ((m1[0] - m0[0]) / max(fetches * win, 1))),
        ('bytes allocated per minute', '%.1f MiB' % ((m1[1] - m0[1]) / elapsed * 60 / 2**20)),
        ('tick lateness p50 / p99', '<= %d ms / <= %d ms' % (
            percentile(hist, 0.5), percentile(hist, 0.99))),
    ]
    if m1[0] == m0[0]:  # pgreaper's own wrappers hide the calls from the LD_PRELOAD counter
        rows = [(k, 'n/a (run with --pprof)') if k.startswith(('malloc', 'bytes alloc')) else (k, v)
                for k, v in rows]
    rows += syscalls + heap_rows + captures
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print('  %-*s  %s' % (w, k, v))


if __name__ == '__main__':
    main()
