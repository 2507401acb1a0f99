"""pgreaper compare on a short run against a real PostgreSQL: exits 0, prints the
side-by-side table with every cell filled, the same in JSON, keeps both modes' heap and
goroutine profiles (readable by go tool pprof -diff_base when golang-go is installed),
and refuses a broken sources file with file:line:col."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Tap, valgrind_prefix  # noqa: E402


def run(binary, args, timeout=300):
    p = subprocess.run(valgrind_prefix() + [binary, 'compare'] + args, capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def main():
    t = Tap()
    pg = Postgres('compare')
    binary = sys.argv[1]
    d = tempfile.mkdtemp(prefix='rp-compare-')
    src = os.path.join(d, 'sources.yaml')
    with open(src, 'w') as f:
        f.write(''.join('- name: db%d\n  conn_str: %s\n  preset_metrics: standard\n'
                        % (i, pg.conn_str()) for i in (1, 2)))
    common = ['--sources', src, '--duration', '6s', '--warmup', '3s', '--sample-interval', '2s',
              '--interval-scale', '0.02']
    rc, out, err = run(binary, common + ['--output', os.path.join(d, 'md')])
    t.is_(rc, 0, 'compare exits 0')
    rows = [l for l in out.splitlines() if l.startswith('| ') and not l.startswith('| |')]
    cells = [c.strip() for r in rows for c in r.strip('|').split('|')[1:]]
    t.ok(len(rows) == 13, 'the table has its 13 rows', out + err)
    t.ok(cells and all(c and 'nan' not in c.lower() for c in cells), 'every cell is filled', out)
    m = re.search(r'\| OS threads \(by role\) \| (\d+) .*\| (\d+) \(.*metric (\d+)', out)
    t.ok(m and int(m.group(1)) <= 3 and int(m.group(3)) >= 20,
         'batch mode at most 3 threads; per-metric mode one thread per metric', out)
    g = re.search(r'\| goroutine-equivalents: threads \+ event-loop tasks \(by role\) \| (\d+) \(.*'
                  r'\| (\d+) \(.*metric (\d+)', out)
    t.ok(g and int(g.group(2)) - int(g.group(1)) >= int(g.group(3)) - 3,
         'goroutine-equivalents: per-metric mode counts its metric threads, batch mode does not '
         'have them', out)
    profiles = [os.path.join(d, 'md', '%s.%s.pb.gz' % (mode, kind))
                for mode in ('batch', 'per-metric') for kind in ('heap', 'goroutine')]
    t.ok(all(os.path.getsize(p) > 0 for p in profiles), 'both modes\' heap and goroutine '
         'profiles are kept')
    if shutil.which('go'):
        env = dict(os.environ, PPROF_TMPDIR=d, HOME=d)
        p = subprocess.run(['go', 'tool', 'pprof', '-top', '-diff_base', profiles[1], profiles[3]],
                           capture_output=True, text=True, env=env)
        t.ok(p.returncode == 0 and 'Type: goroutine' in p.stdout,
             'go tool pprof -diff_base compares the goroutine profiles', p.stderr)
    else:
        t.ok(True, '# SKIP go tool pprof not installed')
    rc, out, err = run(binary, common + ['--format', 'json', '--output', os.path.join(d, 'js')])
    doc = json.loads(out) if rc == 0 else {}
    modes = doc.get('modes', {})
    t.ok(set(modes) == {'batch', 'per-metric'} and modes['per-metric']['threads']
         > modes['batch']['threads'] and modes['batch']['fetches'] > 0, 'JSON output', out + err)
    bad = os.path.join(d, 'bad.yaml')
    with open(bad, 'w') as f:
        f.write('- name: x\n  conn_str: host=/tmp\n  preset_metrics: nope\n')
    rc, out, err = run(binary, ['--sources', bad, '--duration', '2s'])
    t.ok(rc == 1 and re.search(r'bad\.yaml:3:\d+: .*nope', err), 'a broken sources file is refused '
         'with file:line:col', err)
    rc, out, err = run(binary, ['--duration', 'soon'])
    t.ok(rc == 2 and 'soon' in err, 'bad flags: exit 2 with the reason', err)
    shutil.rmtree(d, True)
    pg.cleanup()
    t.done()


if __name__ == '__main__':
    main()
