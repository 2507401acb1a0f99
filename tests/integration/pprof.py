"""/debug/pprof against a real PostgreSQL, read by the real `go tool pprof` (golang-go):
off by default, loopback only unless allowed, token enforced; heap, allocs, goroutine,
threadcreate and a 2-second CPU profile parse with no warning and name pgreaper's own
functions (static ones too) and libpq's; a known allocation is attributed exactly; -base
works; the goroutine count is threads + tasks and grows by one task per added source;
debug=1/2 texts have Go's layout; no password appears anywhere."""
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap, skip_all  # noqa: E402

PASSWORD = 'Secr3tPassw0rd'
TOKEN = 'tok-7d1f'
METRICS = '''
metrics:
  one:
    sqls:
      10: select 1 as one
  two:
    sqls:
      10: select 2 as two
'''
BAD_OUTPUT = ('Local symbolization failed', 'Main binary filename not available', 'warning',
              'parsing profile', 'unrecognized')


def sources(conn, n):
    return ''.join('- name: db%d\n  conn_str: %s\n  custom_metrics: {one: 1, two: 1}\n'
                   % (i, conn) for i in range(1, n + 1))


def fetch(port, path, token=TOKEN, method='GET', data=None, timeout=30):
    req = urllib.request.Request('http://127.0.0.1:%d%s' % (port, path), method=method, data=data)
    if token:
        req.add_header('Authorization', 'Bearer ' + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class Pprof:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix='rp-pprof-')
        self.env = dict(os.environ, PPROF_TMPDIR=self.tmp, HOME=self.tmp)

    def run(self, *args):
        p = subprocess.run(['go', 'tool', 'pprof'] + list(args), capture_output=True, text=True,
                           env=self.env, timeout=120)
        return p.returncode, p.stdout, p.stderr

    def clean(self, t, what, rc, out, err):
        bad = [b for b in BAD_OUTPUT if b.lower() in err.lower()]
        t.ok(rc == 0 and not bad, '%s: go tool pprof exit 0, no warning' % what,
             'rc=%s stderr=%s' % (rc, err[-600:]))


def listening_inodes():
    inodes = set()
    for f in ('/proc/net/tcp', '/proc/net/tcp6'):
        with open(f) as fh:
            for line in list(fh)[1:]:
                parts = line.split()
                if parts[3] == '0A':
                    inodes.add(parts[9])
    return inodes


def process_listens(pid):
    socks = set()
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            target = os.readlink('/proc/%d/fd/%s' % (pid, fd))
        except OSError:
            continue
        m = re.match(r'socket:\[(\d+)\]', target)
        if m:
            socks.add(m.group(1))
    return bool(socks & listening_inodes())


def port_of(r):
    m = re.search(r'pprof: serving .* \(port (\d+)\)', r.log())
    return int(m.group(1)) if m else None


def check_security_defaults(t, pg, binary):
    r = Reaper(binary, sources(pg.conn_str(), 1), METRICS).start()
    t.ok(r.wait_batches('one'), 'default run collects')
    pid = r.proc.pid
    t.ok(not process_listens(pid) and 'pprof' not in r.log(), 'pprof is off by default')
    r.stop()
    for addr in ('0.0.0.0:0', ':0'):
        r = Reaper(binary, sources(pg.conn_str(), 1), METRICS, args=['--pprof-addr', addr]).start()
        rc = r.proc.wait(30)
        t.ok(rc == 2 and 'refusing to serve pprof on non-loopback address' in r.log()
             and '--pprof-allow-remote' in r.log(), 'non-loopback %s refused without the flag' % addr,
             r.log()[-300:])
    r = Reaper(binary, sources(pg.conn_str(), 1), METRICS, args=['--pprof-addr', 'nonsense'])
    r.start()
    t.ok(r.proc.wait(30) == 2 and 'invalid pprof address "nonsense"' in r.log(),
         'a bad --pprof-addr is a usage error (exit 2)', r.log()[-300:])
    r = Reaper(binary, sources(pg.conn_str(), 1), METRICS,
               args=['--pprof-addr', '0.0.0.0:0', '--pprof-allow-remote']).start()
    t.ok(r.wait_log('pprof: serving'), 'non-loopback allowed with --pprof-allow-remote')
    r.stop()


def check_access(t, port):
    st, hd, body = fetch(port, '/debug/pprof/', token=None)
    t.ok(st == 401 and hd.get('X-Go-Pprof') == '1', 'no token: 401 with X-Go-Pprof')
    st, _, _ = fetch(port, '/debug/pprof/', token='wrong')
    t.is_(st, 401, 'wrong token: 401')
    st, hd, body = fetch(port, '/debug/pprof/')
    t.ok(st == 200 and b'full goroutine stack dump' in body and 'text/html' in hd['Content-Type'],
         'bearer token: index page')
    st, _, _ = fetch(port, '/debug/pprof/?token=' + TOKEN, token=None)
    t.is_(st, 200, 'token as a query parameter')
    for path, code, text in (('/debug/pprof/heap?debug=x', 400, b'debug'),
                             ('/debug/pprof/heap?seconds=5', 400, b'seconds'),
                             ('/debug/pprof/nope', 404, b'Unknown profile'),
                             ('/elsewhere', 404, b'not found')):
        st, hd, body = fetch(port, path)
        t.ok(st == code and text in body and hd.get('X-Go-Pprof') == '1'
             and hd['Content-Type'].startswith('text/plain'), '%s: %d as Go sends it' % (path, code),
             '%s %s' % (st, body))


def local_functions(binary):
    out = subprocess.run(['nm', binary], capture_output=True, text=True).stdout
    return {l.split()[2] for l in out.splitlines() if len(l.split()) == 3 and l.split()[1] == 't'}


def heap_profiled(port):
    return json.loads(fetch(port, '/debug/vars')[2])['memstats']['HeapProfiled']


def check_profiles(t, pp, port, binary):
    heap_ok = heap_profiled(port)
    base = 'http://127.0.0.1:%d/debug/pprof/' % port
    statics = local_functions(binary)
    seen = ''
    for name in ('heap', 'allocs', 'goroutine', 'threadcreate', 'mutex', 'block'):
        url = base + name + '?token=' + TOKEN
        for mode in ('-raw', '-top', '-traces'):
            rc, out, err = pp.run(mode, url)
            pp.clean(t, '%s %s' % (name, mode), rc, out, err)
            seen += out
    names = set(re.findall(r'[A-Za-z_][A-Za-z0-9_]*', seen))
    t.ok(names & statics, "pgreaper's static functions are named",
         'none of %d local symbols seen' % len(statics))
    if heap_ok:
        t.ok(any(n.startswith('PQ') for n in names), "libpq's functions are named")
    else:
        t.ok(True, '# SKIP malloc not interposed (sanitizer build): no libpq allocation stacks')
    t.ok('rp_reaper_run' in names and 'uv_run' in names, 'the loop thread stack is complete')
    rc, out, err = pp.run('-top', base + 'allocs?token=' + TOKEN)
    t.ok('Type: alloc_space' in out, 'allocs defaults to alloc_space')
    rc, out, err = pp.run('-top', base + 'heap?token=' + TOKEN)
    t.ok('Type: inuse_space' in out, 'heap defaults to inuse_space')
    h1, h2 = os.path.join(pp.tmp, 'h1.pb.gz'), os.path.join(pp.tmp, 'h2.pb.gz')
    for path in (h1, h2):
        with open(path, 'wb') as f:
            f.write(fetch(port, '/debug/pprof/heap')[2])
        time.sleep(1.5)
    rc, out, err = pp.run('-top', '-base', h1, h2)
    pp.clean(t, '-base diff of two heap profiles', rc, out, err)
    g = os.path.join(pp.tmp, 'g.pb.gz')
    with open(g, 'wb') as f:
        f.write(fetch(port, '/debug/pprof/goroutine')[2])
    rc, out, err = pp.run('-raw', '-symbolize=none', g)
    t.ok(rc == 0 and 'rp_reaper_run' in out, 'names come from the profile itself (-symbolize=none)')


def hammer(port, until):
    while time.time() < until:
        fetch(port, '/debug/pprof/goroutine?debug=2')
        fetch(port, '/debug/pprof/heap')


def check_cpu(t, pp, port):
    url = 'http://127.0.0.1:%d/debug/pprof/profile?seconds=2&token=%s' % (port, TOKEN)
    th = threading.Thread(target=hammer, args=(port, time.time() + 2.5))
    th.start()
    rc, out, err = pp.run('-top', url)
    th.join()
    pp.clean(t, 'CPU profile (2 s)', rc, out, err)
    m = re.search(r'Duration: ([\d.]+)s, Total samples = ([\d.]+)(m?s)', out)
    t.ok(m and 1.8 <= float(m.group(1)) <= 3 and float(m.group(2)) > 0,
         'CPU profile: 2 s long, samples taken', out[:400])
    t.ok('Type: cpu' in out, 'CPU profile type')
    res = {}
    th = threading.Thread(target=lambda: res.update(first=fetch(port, '/debug/pprof/profile?seconds=2')))
    th.start()
    time.sleep(0.5)
    st, hd, body = fetch(port, '/debug/pprof/profile?seconds=1')
    th.join()
    t.ok(st == 500 and b'cpu profiling already in use' in body and res['first'][0] == 200,
         'a second concurrent CPU profile is refused with 500')
    st, _, body = fetch(port, '/debug/pprof/profile?seconds=1&debug=1')
    t.ok(st == 400 and b'incompatible' in body, 'seconds and debug: 400')


def goroutine_counts(pp, port):
    rc, out, err = pp.run('-traces', 'http://127.0.0.1:%d/debug/pprof/goroutine?token=%s'
                          % (port, TOKEN))
    return (len(re.findall(r'^\s+kind:\s+thread$', out, re.M)),
            len(re.findall(r'^\s+kind:\s+task$', out, re.M)), out)


def check_goroutines(t, pp, r, port, pg):
    threads, tasks, out = goroutine_counts(pp, port)
    live = len(os.listdir('/proc/%d/task' % r.proc.pid))
    t.is_(threads, live, 'one thread sample per OS thread (/proc/PID/task)')
    t.is_(tasks, 5, 'tasks: 2 sources + 1 sink + http + supervisor')
    t.ok(re.search(r'^\s+\d+\s+state:\w+$', out, re.M) and re.search(r'role:\s+source$', out, re.M)
         and re.search(r'source:\s+db2$', out, re.M),
         'task samples carry synthetic state frames and labels')
    r.write_sources(sources(pg.conn_str(password=PASSWORD), 3))
    r.send(signal.SIGHUP)
    r.wait_log('configuration applied')
    time.sleep(1)
    threads2, tasks2, _ = goroutine_counts(pp, port)
    t.ok(tasks2 == tasks + 1 and threads2 == threads, 'adding a source adds exactly one task',
         'threads %d->%d tasks %d->%d' % (threads, threads2, tasks, tasks2))
    st, _, text = fetch(port, '/debug/pprof/goroutine?debug=1')
    lines = text.decode().splitlines()
    head = re.match(r'^goroutine profile: total (\d+)$', lines[0])
    recs = [re.match(r'^(\d+) @(( 0x[0-9a-f]+)+)$', l) for l in lines if ' @ ' in l]
    t.ok(head and recs and all(recs) and sum(int(m.group(1)) for m in recs) == int(head.group(1)),
         "debug=1: Go's header and records, counts add up to the total")
    t.ok(any(l.startswith('# labels: {"kind":"task"') for l in lines)
         and any(re.match(r'^#\t0x[0-9a-f]+\t\S+', l) for l in lines), 'debug=1: labels and frames')
    st, _, text = fetch(port, '/debug/pprof/goroutine?debug=2')
    text = text.decode()
    t.ok(re.search(r'^thread \d+ \[[RS](, \w+)?, loop, [^\]]+\]:$', text, re.M)
         and re.search(r'^task \d+ \[\w+, \d+ ms\]: role=source source=db3$', text, re.M)
         and re.search(r'^uv_run\(\.\.\.\)\n\t\S+libuv\S* \+0x[0-9a-f]+$', text, re.M),
         'debug=2: one stanza per thread and task, Go-shaped frames', text[:600])
    loop_stacks = []
    for _ in range(5):
        text = fetch(port, '/debug/pprof/goroutine?debug=2')[2].decode()
        m = re.search(r'^thread \d+ \[[^\]]*loop[^\]]*\]:\n(.*?)\n\n', text, re.M | re.S)
        loop_stacks.append(m.group(1) if m else '')
        time.sleep(0.2)
    t.ok(not any('conn_step' in s or 'uv_queue_work' in s for s in loop_stacks)
         and sum('epoll' in s for s in loop_stacks) >= 4,
         'the loop thread is shown where it waits (epoll), not serving the profile request',
         loop_stacks)
    st, _, text = fetch(port, '/debug/pprof/heap?debug=1')
    t.ok(re.match(r'heap profile: \d+: \d+ \[\d+: \d+\] @ heap/2\n', text.decode()),
         'heap?debug=1: legacy header with 2 x rate')


def check_vars_and_secrets(t, port, pp):
    st, hd, body = fetch(port, '/debug/vars')
    v = json.loads(body)
    ms, proc = v['memstats'], v['process']
    t.ok(not ms['HeapProfiled'] or ms['HeapAlloc'] > 0 and ms['Mallocs'] >= ms['Frees'] > 0 and ms['TotalAlloc'] >= ms['HeapAlloc']
         and ms['HeapObjects'] == ms['Mallocs'] - ms['Frees'] - ms['ProfilerObjects'],
         '/debug/vars memstats are consistent (HeapObjects: without the profiler\'s own)')
    t.ok(proc['threads'] >= 1 and proc['tasks'] == 6 and proc['MaxRSS'] > 0
         and proc['uptime_seconds'] > 1, '/debug/vars process figures')
    t.ok(v['reaper']['fetches_ok'] > 0 and v['sinks']['rows'] > 0 and 'db3' in v['sources'],
         '/debug/vars reaper and sink counters')
    texts = [body]
    for path in ('heap', 'allocs', 'goroutine', 'threadcreate', 'mutex', 'block', 'heap?debug=1',
                 'goroutine?debug=1', 'goroutine?debug=2', 'cmdline', 'profile?seconds=1', ''):
        raw = fetch(port, '/debug/pprof/' + path)[2]
        texts.append(gzip.decompress(raw) if raw[:2] == b'\x1f\x8b' else raw)
    blob = b'\n'.join(texts)
    t.ok(PASSWORD.encode() not in blob, 'no password in any profile, text or /debug/vars')
    cmd = fetch(port, '/debug/pprof/cmdline')[2]
    t.ok(TOKEN.encode() not in cmd and b'--pprof-token\x00****' in cmd,
         'cmdline masks the pprof token')


def profile_total(pp, path, index):
    """The total of one sample type of a saved profile, as go tool pprof -top sums it."""
    rc, out, err = pp.run('-top', '-sample_index=' + index, '-unit=B', path)
    m = re.search(r'of (\d+)B? total', out)
    return int(m.group(1)) if rc == 0 and m else -1, out


def check_heap_exact(t, pp, port):
    """At --heap-sample-rate 1 the profile is the heap: every live object, from the first
    malloc of the process (the shared libraries' constructors run before main), at the
    usable size HeapAlloc counts, without the profiler's own memory; and HeapAlloc is what
    glibc says is in use (pgreaper runs with glibc's tcache off: glibc counts cached
    chunks as in use), less its 8-byte chunk headers and the profiler's memory."""
    if not heap_profiled(port):
        t.ok(True, '# SKIP malloc not interposed (sanitizer build): no exact heap')
        return
    path = os.path.join(pp.tmp, 'exact.pb.gz')
    with open(path, 'wb') as f:
        f.write(fetch(port, '/debug/pprof/heap')[2])
    space, out = profile_total(pp, path, 'inuse_space')
    objects, _ = profile_total(pp, path, 'inuse_objects')
    m = re.search(r'exact: HeapAlloc=(\d+) HeapObjects=(\d+)', out)
    alloc, nobj = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    t.ok(alloc > 0 and abs(space - alloc) <= 0.02 * alloc,
         'rate 1: inuse_space %d B vs HeapAlloc %d B as the profile was taken (within 2 %%)'
         % (space, alloc), out[:600])
    t.ok(nobj > 0 and abs(objects - nobj) <= 0.02 * nobj,
         'rate 1: inuse_objects %d vs HeapObjects %d (within 2 %%)' % (objects, nobj))
    rc, out, _ = pp.run('-top', '-unit=B', path)
    t.ok("before main: shared libraries' constructors" in out,
         "what libraries allocated before main is in it, under a frame that says so")
    ms = json.loads(fetch(port, '/debug/vars')[2])['memstats']
    glibc = ms['GlibcInUse'] - ms['ProfilerHeap'] - 8 * (ms['HeapObjects'] + ms['ProfilerObjects'])
    t.ok(abs(glibc - ms['HeapAlloc']) <= 0.02 * ms['HeapAlloc'],
         "HeapAlloc %d B vs glibc's in-use bytes less headers and the profiler's %d B "
         "(%d B; within 2 %%)" % (ms['HeapAlloc'], ms['ProfilerHeap'], glibc), ms)


def check_lines(t, pp, port):
    """file:line and inlined frames come from the profile itself (pgreaper read its own
    DWARF): -symbolize=none keeps pprof from looking at the binary."""
    path = os.path.join(pp.tmp, 'lines.pb.gz')
    with open(path, 'wb') as f:
        f.write(fetch(port, '/debug/pprof/goroutine')[2])
    rc, out, err = pp.run('-top', '-lines', '-symbolize=none', path)
    t.ok(rc == 0 and re.search(r'rp_reaper_run \S*/app/reaper\.c:\d+$', out, re.M),
         'goroutine -lines: rp_reaper_run at app/reaper.c:NNN without the binary', out[-800:])
    if not heap_profiled(port):
        t.ok(True, '# SKIP malloc not interposed (sanitizer build): no heap stacks')
        return
    with open(path, 'wb') as f:
        f.write(fetch(port, '/debug/pprof/heap')[2])
    rc, out, err = pp.run('-traces', '-lines', '-symbolize=none', path)
    t.ok(rc == 0 and re.search(r'^\s+\w+ \S*/collect/\w+\.c:\d+ \(inline\)$', out, re.M),
         'heap -traces -lines: functions inlined in collect/*.c shown as (inline) frames',
         out[:800])


def check_known_allocation(t, pp):
    exe = os.path.join(os.environ['RP_BUILD_DIR'], 'tests', 'test_heap')
    path = os.path.join(pp.tmp, 'known.pb.gz')
    if subprocess.run([exe, path], capture_output=True).returncode != 0 or not os.path.exists(path):
        t.ok(True, '# SKIP heap interposition not built (sanitizer build)')
        return
    rc, out, err = pp.run('-top', '-sample_index=inuse_space', '-unit=B', path)
    pp.clean(t, 'known-allocation profile', rc, out, err)
    m = re.search(r'^\s*(\d+)B\s.*\balloc_known$', out, re.M)
    got = int(m.group(1)) if m else 0
    t.ok(4096000 * 0.75 <= got <= 4096000 * 1.25,
         'test allocation of 1000 x 4 KiB in alloc_known: inuse_space %d B (within 25 %%)' % got)


def main():
    if not shutil.which('go'):
        skip_all('go tool pprof not installed (Debian golang-go)')
    t = Tap()
    pg = Postgres('pprof')
    binary = sys.argv[1]
    check_security_defaults(t, pg, binary)
    r = Reaper(binary, sources(pg.conn_str(password=PASSWORD), 2), METRICS,
               args=['--pprof-addr', '127.0.0.1:0', '--pprof-token', TOKEN,
                     '--heap-sample-rate', '1'],
               env={'GLIBC_TUNABLES': 'glibc.malloc.tcache_count=0'}).start()
    t.ok(r.wait_log('pprof: serving') and r.wait_batches('two', count=4), 'pgreaper runs with pprof')
    port = port_of(r)
    pp = Pprof()
    check_access(t, port)
    check_profiles(t, pp, port, binary)
    check_cpu(t, pp, port)
    check_goroutines(t, pp, r, port, pg)
    check_vars_and_secrets(t, port, pp)
    check_known_allocation(t, pp)
    check_heap_exact(t, pp, port)
    check_lines(t, pp, port)
    t.is_(r.stop(), 0, 'clean exit with the listener open')
    pg.cleanup()
    t.done()


if __name__ == '__main__':
    main()
