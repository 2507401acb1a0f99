#!/usr/bin/env python3
"""What heap sampling costs, counted in instructions rather than CPU time: CPU time on a
shared 2-vCPU machine moves by about 10 % from run to run, more than the few per cent
to be measured. pgreaper runs in batch mode under valgrind --tool=callgrind (which
leaves malloc to the program, so pgreaper's own interposed malloc and its sampler are
what is counted), once per --heap-sample-rate; after a warm-up its counters are zeroed
(callgrind_control -z), and after --seconds they are dumped: instructions per fetch,
and per malloc call, with the fetches and malloc calls from /debug/vars over the same
window. Rate 0 (counters only) is the baseline. Figures only; never passes or fails.

  python3 bench/heap_cost.py [--rates 0,65536,16384,4096] [--rounds 2]
                             [--sources 6] [--seconds 60] [--interval-scale 0.05]
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
sys.path.insert(0, HERE)
from core import setup_databases  # noqa: E402
from pgharness import Postgres, Reaper  # noqa: E402


class CallgrindReaper(Reaper):
    def argv(self):
        return ['valgrind', '--tool=callgrind', '--dump-instr=no',
                '--callgrind-out-file=%s/cg.%%p' % self.dir] + super().argv()


def counters(port):
    with urllib.request.urlopen('http://127.0.0.1:%d/debug/vars' % port, timeout=30) as f:
        v = json.loads(f.read())
    r, m = v['reaper'], v['memstats']
    return r.get('fetches_ok', 0) + r.get('fetch_errors', 0), m['Mallocs']


def dumped_ir(d, pid):
    """Ir of the last dump (callgrind_control -d) of pid: events since the zeroing."""
    files = [f for f in glob.glob('%s/cg.%d.*' % (d, pid)) if not f.endswith('.0')]
    if not files:
        return 0
    with open(max(files, key=os.path.getmtime)) as f:
        m = re.search(r'^(?:totals|summary): (\d+)', f.read(), re.M)
    return int(m.group(1)) if m else 0


def one_run(a, pg, sources, rate):
    r = CallgrindReaper(a.binary, sources, args=[
        '--interval-scale', a.interval_scale, '--pprof-addr', '127.0.0.1:0'],
        env={'PGREAPER_HEAP_SAMPLE_RATE': str(rate)})
    r.out = '/dev/null'
    r.start()
    try:
        if not r.wait_log('connected to source', 180, count=a.sources):
            print('rate %d: did not start: %s' % (rate, r.log()[-800:]))
            return None
        port = int(re.search(r'\(port (\d+)\)', r.log()).group(1))
        time.sleep(a.warmup)
        pid = r.proc.pid
        subprocess.run(['callgrind_control', '-z', str(pid)], capture_output=True, check=True)
        f0, m0 = counters(port)
        time.sleep(a.seconds)
        f1, m1 = counters(port)
        subprocess.run(['callgrind_control', '-d', str(pid)], capture_output=True, check=True)
        ir = dumped_ir(r.dir, pid)
        return ir, f1 - f0, m1 - m0
    finally:
        r.stop(timeout=120)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rates', default='0,65536,16384,4096')
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--sources', type=int, default=6)
    ap.add_argument('--seconds', type=int, default=60)
    ap.add_argument('--warmup', type=int, default=20)
    ap.add_argument('--interval-scale', default='0.05',
                    help='slower than core.py: under callgrind the loop must keep up')
    ap.add_argument('--preset', default='standard')
    ap.add_argument('--binary', default=os.path.join(HERE, '..', 'build', 'pgreaper'))
    a = ap.parse_args()
    pg = Postgres('heapcost', extra_conf={'max_connections': '100'})
    setup_databases(pg, a.sources, 30)
    sources = ''.join('- name: src%d\n  conn_str: %s\n  preset_metrics: %s\n'
                      % (i + 1, pg.conn_str('bench%d' % (i + 1)), a.preset)
                      for i in range(a.sources))
    print('heap sampling cost in instructions (callgrind), batch mode, %d sources, preset '
          '%s, %d s a run' % (a.sources, a.preset, a.seconds))
    print('%8s %5s %8s %10s %14s %12s %10s' % ('rate', 'round', 'fetches', 'mallocs',
                                               'Ir', 'Ir/fetch', 'vs rate 0'))
    base = {}
    rates = [int(x) for x in a.rates.split(',')]
    for k in range(a.rounds):
        for rate in rates:  # interleaved: drifts of the machine hit every rate alike
            res = one_run(a, pg, sources, rate)
            if not res or not res[1]:
                continue
            ir, fetches, mallocs = res
            per = ir / fetches
            if rate == 0:
                base[k] = per
            rel = '%+.2f %%' % (100 * (per / base[k] - 1)) if k in base else '-'
            print('%8d %5d %8d %10d %14d %12.0f %10s' % (rate, k + 1, fetches, mallocs, ir,
                                                         per, rel), flush=True)
    pg.cleanup()


main()
