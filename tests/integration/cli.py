"""The command line: --check, --help, --version, usage errors, PGREAPER_* variables,
and bad input that must be refused with a precise message before anything runs."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Tap, valgrind_prefix  # noqa: E402

BIN = sys.argv[1]


def run(args, env=None, timeout=120):
    e = {k: v for k, v in os.environ.items() if not k.startswith('PGREAPER_')}
    e.update(env or {})
    r = subprocess.run(valgrind_prefix() + [BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=e, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def write(d, name, text):
    p = os.path.join(d, name)
    with open(p, 'w') as f:
        f.write(text)
    return p


def main():
    t = Tap()
    d = tempfile.mkdtemp(prefix='rp-cli-')
    good = write(d, 'good.yaml', '- name: db1\n  conn_str: host=/tmp dbname=x\n'
                 '  preset_metrics: standard\n')
    rc, out, err = run(['--check', '--sources', good])
    t.is_(rc, 0, '--check on a valid config exits 0')
    t.ok(out.startswith('configuration is valid: 1 sources (1 enabled), '), 'and says so', out)

    rc, out, err = run(['--check'], env={'PGREAPER_SOURCES': good})
    t.is_(rc, 0, 'PGREAPER_SOURCES works like --sources')

    bad = write(d, 'bad.yaml', '- name: db1\n  conn_str: host=/tmp\n  preset_metrics: standrd\n'
                '- name: db1\n  conn_str: ""\n  custom_metrics: {db_stats: 0}\n  colour: red\n')
    rc, out, err = run(['--check', '--sources', bad])
    t.is_(rc, 1, '--check on an invalid config exits 1')
    want = [
        bad + ':7:3: unrecognized key "colour" in source',
    ]
    t.ok(all(w in err for w in want), 'unknown key reported with file:line:col', err)
    rc, out, err = run(['--check', '--allow-unknown-keys', '--sources', bad])
    t.ok(bad + ':3:19: source "db1": preset "standrd" is not defined' in err,
         'unknown preset with file:line:col', err)
    t.ok(bad + ':5:13: source "db1" has an empty conn_str' in err, 'empty conn_str', err)
    t.ok(bad + ':4:9: duplicate source name "db1" (first defined at ' + bad + ':1:9)' in err,
         'duplicate name points at both places', err)
    t.ok(bad + ':7:3: warning: ignored unrecognized key "colour" in source' in err,
         '--allow-unknown-keys turns it into a warning', err)
    t.ok('configuration has 3 errors' in err, 'all errors reported in one run', err)

    pw = write(d, 'pw.yaml', '- name: db1\n  conn_str: "postgresql://u:hunter%zz2@h/db"\n'
               '  preset_metrics: basic\n')
    rc, out, err = run(['--check', '--sources', pw])
    t.is_(rc, 1, 'malformed conn_str refused')
    t.ok(pw + ':2:13: source "db1": invalid conn_str: invalid percent-encoded token' in err,
         'libpq reason with file:line:col', err)
    t.ok('hunter' not in err, 'no password in the message', err)

    rc, out, err = run(['--check', '--sources', good, '--sink', 'grpc://u:secret@h:9187'])
    t.is_(rc, 1, 'a sink this version lacks is refused')
    t.ok('sink "grpc" is not supported by this version of pgreaper' in err, 'with a clear '
         'message', err)
    t.ok('secret' not in err, 'no password from the sink URI', err)
    rc, out, err = run(['--check', '--sources', good, '--sink', 'prometheus://u:secret@h:9187'])
    t.is_(rc, 1, 'a prometheus sink with a user and password is refused (it listens)')
    t.ok('expected prometheus://HOST:PORT' in err and 'secret' not in err,
         'with the expected form and no password', err)

    metrics = write(d, 'm.yaml', 'metrics:\n  x:\n    sqls:\n      11: select 1\n'
                    'presets:\n  p:\n    metrics: {x: 0}\n')
    rc, out, err = run(['--check', '--sources', good, '--metrics', metrics])
    t.is_(rc, 1, 'bad metrics file refused')
    t.ok(metrics + ':7:18: interval of metric "x" in preset "p" must be between 1 and 2678400, '
         'not 0' in err, 'interval error with file:line:col', err)

    rc, out, err = run(['--check', '--sources', os.path.join(d, 'missing.yaml')])
    t.is_(rc, 1, 'missing file refused')
    t.ok('missing.yaml: could not open file: No such file or directory' in err, 'names the file',
         err)

    rc, out, err = run(['--help'])
    t.is_(rc, 0, '--help exits 0')
    t.ok('--sources FILE|DIR|URI' in out and 'PGREAPER_SINK' in out, '--help lists flags and env',
         out)
    rc, out, err = run(['--version'])
    t.ok(rc == 0 and out.startswith('pgreaper '), '--version')
    rc, out, err = run(['--bogus'])
    t.is_(rc, 2, 'unknown flag exits 2')
    t.ok('invalid or incomplete option "--bogus"' in err, 'and names it', err)
    rc, out, err = run(['--sources', good])
    t.is_(rc, 2, 'no sink exits 2')
    t.ok('no sink given' in err, 'and says what is missing', err)
    rc, out, err = run(['--sources', good, '--sink', 'jsonfile:-'], env={'PGREAPER_REFRESH': 'x'})
    t.is_(rc, 2, 'bad environment value exits 2')
    t.ok('environment variable PGREAPER_REFRESH' in err, 'and names the variable', err)
    rc, out, err = run(['--sources', good, '--sink', 'jsonfile:///nonexistent-dir/x.jsonl'])
    t.is_(rc, 1, 'sink that cannot be opened exits 1')
    t.ok('could not open file "/nonexistent-dir/x.jsonl"' in err, 'with the reason', err)

    # Sink strings: --check uses the sink's own parser; no password in any message.
    for sink, want in (('postgresql://u:hunter2@127.0.0.1/x?bad=1',
                        'invalid URI query parameter: "bad"'),
                       ('host=/tmp password=hunter2 dbnme=x', 'invalid connection option "dbnme"'),
                       ('postgresql://u:hunter2@[::1/x', 'invalid'),
                       ('foo://u:hunter2@h/x', 'unknown sink type "foo"'),
                       ('just-text hunter2', 'invalid sink')):
        rc, out, err = run(['--check', '--sources', good, '--sink', sink])
        t.ok(rc == 1 and want in err, '--check refuses sink %r' % sink.replace('hunter2', 'PW'), err)
        t.ok('hunter2' not in err + out, 'no password in the message for %r'
             % sink.replace('hunter2', 'PW'), err)
        if not sink.startswith('just'):
            rc, out, err = run(['--sources', good, '--sink', sink])
            t.ok(rc == 1 and 'hunter2' not in err, 'a run refuses it too, masked', err)
    rc, out, err = run(['--check', '--sources', good, '--sink',
                        'host=/tmp port=5432 password=hunter2 dbname=metrics'])
    t.is_(rc, 0, 'a key=value sink string is a PostgreSQL sink')

    # Bad flag values exit 2.
    for addr in ('nonsense', '127.0.0.1:99999', 'db.example:6060', '0.0.0.0:6060'):
        rc, out, err = run(['--sources', good, '--sink', 'jsonfile:-', '--pprof-addr', addr])
        t.ok(rc == 2 and '--help' in err, '--pprof-addr %s exits 2' % addr, (rc, err))

    # YAML limits: refused at once with file:line:col.
    deep = write(d, 'deep.yaml', '[' * 100000 + ']' * 100000)
    rc, out, err = run(['--check', '--sources', deep], timeout=20)
    t.ok(rc == 1 and deep + ':1:65: YAML nested deeper than 64 levels' in err,
         '100,000 nested brackets: refused at 1:65', err[:300])
    with open(os.path.join(d, 'big.yaml'), 'w') as f:
        f.write('# ' + 'x' * (17 << 20) + '\n')
    rc, out, err = run(['--check', '--sources', os.path.join(d, 'big.yaml')], timeout=20)
    t.ok(rc == 1 and 'file is larger than 16 MiB' in err, '17 MiB file refused', err[:300])
    laughs = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n' + ''.join(
        'l%d: &l%d [%s]\n' % (i, i, ','.join(['*' + ('a' if i == 0 else 'l%d' % (i - 1))] * 10))
        for i in range(12))
    rc, out, err = run(['--check', '--sources', write(d, 'laughs.yaml', laughs)], timeout=20)
    t.ok(rc == 1, 'billion laughs refused quickly', err[:300])
    t.done()


if __name__ == '__main__':
    main()
