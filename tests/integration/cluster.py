"""Several instances sharing the sources through --cluster-db: each source is collected by
one instance; when an instance is killed (SIGKILL), frozen (SIGSTOP) or cut off from the
cluster database (its own network namespace, link taken down), its sources move to the
others within the lease TTL plus a tick (the new holder continues the old one's tick
grid), and no source is collected twice beyond one tick."""
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap, skip_all  # noqa: E402

if os.environ.get('RP_VALGRIND'):
    skip_all('timing bounds: not under valgrind (the ASan and normal runs have it)')

TTL = 3.0
TICK = 1.0
BOUND = TTL + TICK + 0.5  # since the last batch: a TTL and a tick, slack for a busy machine
# The jsonfile sink writes a second after its first buffered line: a killed process takes
# up to a tick of measurements it had not written yet with it.
KILL_BOUND = BOUND + TICK
N = 12

METRICS = '''
metrics:
  tick:
    sqls:
      10: select (extract(epoch from now()) * 1e9)::int8 as epoch_ns, 1 as x
'''


def sources(pg):
    return ''.join('- name: s%02d\n  conn_str: %s\n  custom_metrics: {tick: 1}\n'
                   % (i, pg.conn_str()) for i in range(N))


def instance(binary, pg, name, cluster_uri, prefix=(), extra=()):
    r = Reaper(binary, sources(pg), METRICS,
               args=['--cluster-db', cluster_uri, '--instance-name', name,
                     '--lease-ttl', '%gs' % TTL, '--connect-timeout', '2'] + list(extra))
    r.name = name
    if prefix:
        base = r.argv
        r.argv = lambda: list(prefix) + base()
    return r.start()


def ticks(insts):
    """(time s, source, instance) of every tick batch, sorted by time."""
    out = []
    for r in insts:
        for b in r.batches('tick'):
            out.append((b['data'][0]['epoch_ns'] / 1e9, b['dbname'], r.name))
    return sorted(out)


def owners(insts, since):
    own = {}
    for t, s, name in ticks(insts):
        if t >= since:
            own.setdefault(s, set()).add(name)
    return own


def max_gap(insts, srcs, t0, t1):
    """The longest time without a batch, per source in srcs, over [t0, t1]."""
    worst = 0
    for s in srcs:
        ts = [t for t, src, _ in ticks(insts) if src == s and t0 - 2 <= t <= t1]
        ts = sorted(ts)
        for a, b in zip(ts, ts[1:]):
            worst = max(worst, b - a)
    return worst


def first_after(insts, srcs, t0):
    """When the last of srcs had its first batch after t0."""
    return max(min([t for t, src, _ in ticks(insts) if src == s and t > t0] or [float('inf')])
               for s in srcs)


def duplicates(insts):
    """Batches of a source from two instances less than half a tick apart."""
    by_src = {}
    for t, s, name in ticks(insts):
        by_src.setdefault(s, []).append((t, name))
    dup = {}
    for s, v in by_src.items():
        for (a, na), (b, nb) in zip(v, v[1:]):
            if na != nb and b - a < TICK / 2:
                dup[s] = dup.get(s, 0) + 1
    return dup


def settled(t, insts, what, wait=12, shared=False):
    """Wait until every source has exactly one owner among insts (and, when shared, every
    one of insts owns some: an instance that has not joined yet must not pass for one
    that owns nothing)."""
    deadline = time.time() + wait
    while time.time() < deadline:
        own = owners(insts, time.time() - 1.5)
        held = {n for v in own.values() for n in v}
        if len(own) == N and all(len(v) == 1 for v in own.values()) and \
                (not shared or all(i.name in held for i in insts)):
            return own
        time.sleep(0.3)
    t.ok(False, what, owners(insts, time.time() - 1.5))
    return owners(insts, time.time() - 1.5)


def netns_ready():
    return os.geteuid() == 0 and shutil.which('ip') is not None


def netns(*cmd):
    subprocess.run(['ip'] + list(cmd), check=True, capture_output=True)


def main():
    t = Tap()
    binary = sys.argv[1]
    use_netns = netns_ready()
    extra = {'listen_addresses': "'10.77.0.1'"} if use_netns else {}
    if use_netns:
        subprocess.run(['ip', 'netns', 'del', 'rpcut'], capture_output=True)
        subprocess.run(['ip', 'link', 'del', 'rpveth0'], capture_output=True)
        netns('netns', 'add', 'rpcut')
        netns('link', 'add', 'rpveth0', 'type', 'veth', 'peer', 'name', 'rpveth1')
        netns('link', 'set', 'rpveth1', 'netns', 'rpcut')
        netns('addr', 'add', '10.77.0.1/24', 'dev', 'rpveth0')
        netns('link', 'set', 'rpveth0', 'up')
        netns('-n', 'rpcut', 'addr', 'add', '10.77.0.2/24', 'dev', 'rpveth1')
        netns('-n', 'rpcut', 'link', 'set', 'rpveth1', 'up')
        netns('-n', 'rpcut', 'link', 'set', 'lo', 'up')
    pg = Postgres('cluster', extra_conf=extra)
    if use_netns:
        with open(os.path.join(pg.data, 'pg_hba.conf'), 'a') as f:
            f.write('host all all 10.77.0.0/24 trust\n')
        pg.psql('select pg_reload_conf()')
    uri = 'postgresql://postgres@/postgres?host=%s&port=%d' % (pg.sock, pg.port)
    insts = [instance(binary, pg, n, uri) for n in ('A', 'B', 'C')]
    own = settled(t, insts, 'every source collected by exactly one instance', shared=True)
    t.ok(len(own) == N and all(len(v) == 1 for v in own.values()),
         'every source collected by exactly one instance', own)
    by = {n: sorted(s for s, v in own.items() if n in v) for n in ('A', 'B', 'C')}
    t.ok(all(by[n] for n in by), 'the three share the sources', by)

    # kill -9: A's sources move to B and C.
    a = insts[0]
    t_kill = time.time()
    a.kill()
    own = settled(t, insts[1:], "A's sources re-homed", wait=BOUND + 6)
    t.ok(all(len(own.get(s, ())) == 1 for s in by['A']), "A's sources are collected again",
         own)
    time.sleep(1)
    late = first_after(insts[1:], by['A'], t_kill) - t_kill
    t.ok(late <= BOUND, "A's sources collected again within TTL + a tick of the kill: %.2f s"
         % late)
    gap = max_gap(insts, by['A'], t_kill, time.time())
    t.ok(gap <= KILL_BOUND, 'no gap longer than TTL + a tick (+ what A had not written): %.2f s'
         % gap)

    # SIGSTOP: B's sources move to C; once B wakes, it does not collect what C holds.
    b, c = insts[1], insts[2]
    own = owners(insts[1:], time.time() - 1.5)
    b_srcs = sorted(s for s, v in own.items() if 'B' in v)
    t_stop = time.time()
    b.send(signal.SIGSTOP)
    own = settled(t, [c], "B's sources re-homed to C", wait=BOUND + 6)
    b.send(signal.SIGCONT)
    own = settled(t, [b, c], 'B back: the sources shared again', shared=True)
    gap = max_gap(insts, b_srcs, t_stop, time.time())  # B has written what it held
    t.ok(gap <= BOUND, 'frozen instance: no gap longer than TTL + a tick: %.2f s' % gap)
    t.ok(b.wait_log('not collecting them', 5), 'B noticed its leases expired', b.log()[-1500:])
    time.sleep(2)
    dup = duplicates(insts)
    t.ok(all(v <= 1 for v in dup.values()), 'no source collected twice beyond one tick', dup)

    if use_netns:
        d = instance(binary, pg, 'D', 'postgresql://postgres@10.77.0.1:%d/postgres' % pg.port,
                     prefix=('ip', 'netns', 'exec', 'rpcut'))
        live = [b, c, d]
        t.ok(d.wait_log('sources running here', 15), 'D takes leases', d.log()[-1500:])
        time.sleep(2)
        own = settled(t, live, 'D joined')
        d_srcs = sorted(s for s, v in own.items() if 'D' in v)
        t.ok(d_srcs, 'D took a share', own)
        t_cut = time.time()
        netns('link', 'set', 'rpveth0', 'down')
        own = settled(t, [b, c], "D's sources re-homed", wait=BOUND + 8)
        t.ok(all(len(own.get(s, ())) == 1 for s in d_srcs), 'cut off: its sources moved', own)
        time.sleep(1)
        gap = max_gap(live, d_srcs, t_cut, time.time())
        t.ok(gap <= BOUND, 'cut off: no gap longer than TTL + a tick: %.2f s' % gap)
        t.ok(d.wait_log('not collecting them', 5), 'D fenced itself when its leases expired',
             d.log()[-1500:])
        dup = duplicates(live)
        t.ok(all(v <= 1 for v in dup.values()), 'cut off: nothing collected twice', dup)
        netns('link', 'set', 'rpveth0', 'up')
        t.ok(d.wait_log('cluster database reachable again', 20), 'D reconnects', d.log()[-800:])
        own = settled(t, live, 'D back in', wait=15)
        t.is_(d.stop(), 0, 'D exits cleanly')
        subprocess.run(['ip', 'netns', 'del', 'rpcut'], capture_output=True)
        subprocess.run(['ip', 'link', 'del', 'rpveth0'], capture_output=True)
    else:
        t.ok(True, '# skip network namespace cut: needs root and iproute2')

    # A clean stop gives the leases back at once: C takes them without waiting a TTL.
    own = owners([b, c], time.time() - 1.5)
    b_srcs = sorted(s for s, v in own.items() if 'B' in v)
    t_stop = time.time()
    t.is_(b.stop(), 0, 'B exits cleanly')
    own = settled(t, [c], 'C holds everything', wait=TTL)
    t.ok(time.time() - t_stop < TTL + TICK, 'released at exit: re-homed before a TTL')
    time.sleep(1)
    gap = max_gap([b, c], b_srcs, t_stop, time.time())
    t.ok(gap < TTL, 'released at exit: no gap as long as a TTL: %.2f s' % gap)
    dup = duplicates([b, c])
    t.ok(all(v <= 1 for v in dup.values()), 'released at exit: nothing collected twice', dup)
    rows = pg.psql("select count(*) from pgreaper.lease where holder = 'B' and expires_at > now()")
    t.is_(rows, '0', 'no live lease left to B')
    t.is_(c.stop(), 0, 'C exits cleanly')
    pg.cleanup()
    t.done()


main()
