#!/usr/bin/env bash
# The Debian package, really built and installed, as root on Debian bookworm:
#
#   scripts/deb-test.sh
#
# Builds pgreaper_<version>_<arch>.deb from the committed tree (git archive HEAD) with
# dpkg-buildpackage -us -uc -b in a temporary folder, installs it with apt-get, checks
# where its files went, verifies the installed unit with systemd-analyze, then starts the
# service the way systemd would (the unit's ExecStart and Environment, a notify socket of
# this script's own; systemd itself may not run here): READY=1 must come and SIGTERM must
# give STOPPING=1 and exit 0. Finally purges the package. Exits non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

step() { printf '== %s (%ds)\n' "$*" "$SECONDS"; }

missing=()
for p in debhelper dpkg-dev git; do
    dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

work=$(mktemp -d /tmp/rp-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
git archive --format=tar HEAD | tar -x -C "$work/src"

step "dpkg-buildpackage"
(cd "$work/src" && dpkg-buildpackage -us -uc -b > "$work/build.log" 2>&1) || {
    tail -40 "$work/build.log"
    exit 1
}
deb=$(ls "$work"/pgreaper_*.deb)
step "installing $(basename "$deb")"
apt-get install -y -qq "$deb" > "$work/install.log" 2>&1 || {
    cat "$work/install.log"
    exit 1
}

step "checking the installed package"
python3 - <<'PY'
import os, re, signal, socket, subprocess, sys, tempfile, time

fails = 0
n = 0
def ok(cond, what, diag=''):
    global fails, n
    n += 1
    print('%s %d - %s' % ('ok' if cond else 'not ok', n, what))
    if not cond:
        fails += 1
        for line in str(diag).splitlines()[-20:]:
            print('#   ' + line)

unit = '/lib/systemd/system/pgreaper.service'
for path in ('/usr/bin/pgreaper', unit, '/etc/pgreaper/sources.yaml', '/etc/default/pgreaper',
             '/usr/share/doc/pgreaper/README.md', '/usr/share/doc/pgreaper/observability.md',
             '/usr/share/pgreaper/presets'):
    ok(os.path.exists(path), 'installed: ' + path)
conffiles = open('/var/lib/dpkg/info/pgreaper.conffiles').read().split()
ok('/etc/pgreaper/sources.yaml' in conffiles and '/etc/default/pgreaper' in conffiles,
   'the configuration files are conffiles', conffiles)
v = subprocess.run(['/usr/bin/pgreaper', '--version'], capture_output=True, text=True)
ok(v.returncode == 0 and v.stdout.startswith('pgreaper '), 'pgreaper --version', v.stdout)
r = subprocess.run(['systemd-analyze', 'verify', unit], capture_output=True, text=True)
ok(r.returncode == 0 and 'pgreaper.service' not in r.stdout + r.stderr,
   'systemd-analyze verify on the installed unit', r.stdout + r.stderr)

text = open(unit).read()
exec_start = re.search(r'^ExecStart=(.*)$', text, re.M).group(1).split()
env = dict(os.environ)
for m in re.finditer(r'^Environment=(\w+)=(.*)$', text, re.M):
    env[m.group(1)] = m.group(2)
ok(exec_start[0] == '/usr/bin/pgreaper', 'ExecStart is the installed binary', exec_start)
d = tempfile.mkdtemp()
env['PGREAPER_SINK'] = 'jsonfile://%s/out.jsonl' % d  # StateDirectory is systemd's to make
env['NOTIFY_SOCKET'] = os.path.join(d, 'notify')
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(env['NOTIFY_SOCKET'])
s.settimeout(20)
p = subprocess.Popen(exec_start, env=env, stderr=subprocess.PIPE, text=True)
got = ''
try:
    while 'READY=1' not in got:
        got += s.recv(4096).decode() + '\n'
except socket.timeout:
    pass
ok('READY=1' in got, 'the service as systemd starts it says READY=1', got)
p.send_signal(signal.SIGTERM)
s.settimeout(10)
try:
    while 'STOPPING=1' not in got:
        got += s.recv(4096).decode() + '\n'
except socket.timeout:
    pass
rc = p.wait(30)
ok('STOPPING=1' in got and rc == 0, 'SIGTERM: STOPPING=1 and exit 0', p.stderr.read())
print('1..%d' % n)
sys.exit(1 if fails else 0)
PY

step "purging the package"
apt-get purge -y -qq pgreaper > /dev/null
step "done"
