"""How much of pgreaper's CPU its own CPU profile sees. The profile's comment states the
process's CPU over the sampled window (CLOCK_PROCESS_CPUTIME_ID) and what the samples
add up to; go tool pprof's total must agree with it, and the samples must cover at least
90 % of the CPU: in --mode=per-metric with some 500 threads that each run for well under
a millisecond at a time (a POSIX CPU-clock timer, noticed at the scheduler tick only,
covered about 12 % there; perf's task-clock alone, which misses the kernel switching
threads in and out, 78-87 %), and in batch mode. Most of it must be on real stacks: the
frame for CPU of threads that had no sample stays a minority. Sampled at 1000 Hz (?hz=)
so that the share is measured on hundreds of samples, not a handful."""
import os
import re
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap, skip_all  # noqa: E402

if os.environ.get('RP_VALGRIND'):
    skip_all('sampling shares: not under valgrind (the ASan and normal runs have it)')

NMETRICS = 15
NSOURCES = 34
METRICS = 'metrics:\n' + ''.join(
    '  m%d:\n    sqls:\n      10: select (extract(epoch from now()) * 1e9)::int8 as epoch_ns, '
    'g as n, md5(g::text) as h from generate_series(1, 100) g\n' % i for i in range(NMETRICS))


def sources(pg):
    return ''.join('- name: db%d\n  conn_str: %s\n  custom_metrics: {%s}\n' % (
        i, pg.conn_str(), ', '.join('m%d: 1' % k for k in range(NMETRICS)))
        for i in range(NSOURCES))


def coverage(t, binary, pg, mode, floor):
    r = Reaper(binary, sources(pg), METRICS,
               args=['--mode', mode, '--pprof-addr', '127.0.0.1:0',
                     '--max-parallel-connections-per-db', '4']).start()
    t.ok(r.wait_log('pprof: serving', 20) and r.wait_batches('m0', count=3, timeout=60),
         '%s: running' % mode, r.log()[-2000:])
    port = int(re.search(r'\(port (\d+)\)', r.log()).group(1))
    threads = len(os.listdir('/proc/%d/task' % r.proc.pid))
    url = 'http://127.0.0.1:%d/debug/pprof/profile?seconds=5&hz=1000' % port
    path = os.path.join(r.dir, 'cpu.pb.gz')
    with urllib.request.urlopen(url, timeout=60) as f, open(path, 'wb') as out:
        out.write(f.read())
    top = subprocess.run(['go', 'tool', 'pprof', '-top', '-unit=ms', path], capture_output=True,
                         text=True).stdout
    m = re.search(r'pgreaper cpu: sampled ([\d.]+) s of the process\'s ([\d.]+) s', top)
    clock = re.search(r'pgreaper cpu clock: (.*)', top)
    weighed = re.search(r'samples weighed by their thread\'s CPU clock; ([\d.]+) s of them '
                        r'after a thread\'s last sample, ([\d.]+) s on threads with no sample', top)
    total = re.search(r'Total samples = ([\d.]+)(m?s)', top)
    sampled, process = (float(m.group(1)), float(m.group(2))) if m else (0.0, 0.0)
    pprof_total = (float(total.group(1)) / (1000 if total.group(2) == 'ms' else 1)
                   if total else -1)
    t.ok(m and clock, '%s: the profile states its coverage and clock (%s)'
         % (mode, clock.group(1) if clock else '?'), top[:600])
    t.ok(abs(pprof_total - sampled) < 0.0015,
         "%s: go tool pprof's total is the samples the comment counts (%.3f s)"
         % (mode, pprof_total))
    share = sampled / process if process else 0
    if clock and clock.group(1).startswith('perf'):
        t.ok(0.90 <= share <= 1.10, '%s, %d threads: the samples cover %.0f %% of the '
             'process\'s %.3f s of CPU (90-110 %%)' % (mode, threads, 100 * share, process))
        alone = float(weighed.group(2)) if weighed else sampled
        t.ok(weighed and (sampled - alone) >= floor * process,
             '%s: %.0f %% of the CPU is on stacks (at least %.0f %%); %.3f s owed after a '
             'thread\'s last sample, %.3f s on threads with no sample'
             % (mode, 100 * (sampled - alone) / (process or 1), 100 * floor,
                float(weighed.group(1)) if weighed else -1, alone), top[:800])
    else:
        t.ok(True, '# SKIP perf events not allowed here: CPU-clock timers, coverage %.0f %%'
             % (100 * share))
    check_labels(t, mode, path, pprof_total)
    t.is_(r.stop(), 0, '%s: exit 0' % mode)


def tag_totals(path):
    """{key: (total seconds, {value: seconds})} from go tool pprof -tags, in milliseconds:
    in its own unit a total of 1.007 s prints as "1.0s"."""
    out = subprocess.run(['go', 'tool', 'pprof', '-tags', '-unit=ms', path],
                         capture_output=True, text=True).stdout
    tags, key = {}, None
    for line in out.splitlines():
        m = re.match(r'\s*(\w+): Total ([\d.]+)(m?s)', line)
        if m:
            key = m.group(1)
            tags[key] = (float(m.group(2)) / (1000 if m.group(3) == 'ms' else 1), {})
            continue
        m = re.match(r'\s*([\d.]+)(m?s) \(.*\): (.*)', line)
        if m and key:
            tags[key][1][m.group(3)] = float(m.group(1)) / (1000 if m.group(2) == 'ms' else 1)
    return tags


def check_labels(t, mode, path, total):
    """Every sample names its thread; per-metric mode's metric threads name their source
    and metric (the labels rp_task_label_thread set), batch mode's samples are the loop's."""
    tags = tag_totals(path)
    role = tags.get('role', (0, {}))
    t.ok(abs(role[0] - total) < 0.0015 and abs(tags.get('tid', (0,))[0] - total) < 0.0015,
         '%s: every sample has a thread label (role %.3f s, tid %.3f s, of %.3f s)'
         % (mode, role[0], tags.get('tid', (0,))[0], total), str(sorted(tags)))
    if mode == 'per-metric':
        metrics = tags.get('metric', (0, {}))[1]
        t.ok(role[1].get('metric', 0) > 0 and len(metrics) >= NMETRICS // 2 and
             all(re.match(r'm\d+$', m) for m in metrics) and
             abs(sum(metrics.values()) - role[1]['metric']) < 0.0015,
             'per-metric: the metric threads\' samples name their metric (%d of %d metrics)'
             % (len(metrics), NMETRICS), str(role) + str(metrics))
    else:
        t.ok(role[1].get('loop', 0) >= 0.5 * total,
             'batch: most samples are the event loop\'s (%.3f of %.3f s)'
             % (role[1].get('loop', 0), total), str(role))


def main():
    if not subprocess.run(['which', 'go'], capture_output=True).returncode == 0:
        skip_all('go tool pprof not installed (Debian golang-go)')
    t = Tap()
    pg = Postgres('cpucov', extra_conf={'max_connections': '200'})
    coverage(t, sys.argv[1], pg, 'per-metric', 0.75)
    coverage(t, sys.argv[1], pg, 'batch', 0.90)
    pg.cleanup()
    t.done()


main()
