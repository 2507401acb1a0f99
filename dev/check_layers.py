#!/usr/bin/env python3
"""The one-way house: fail when an #include crosses a layer rule.

Each folder of the daemon may include its own headers and those of the folders listed
for it below, nothing else (system and library headers are not checked). The rules are
the architecture of docs/architecture.md; change both together.

Usage: dev/check_layers.py [--stamp FILE] [ROOT]   exit 1 and one line per crossing
       dev/check_layers.py --self-test            shows that a crossing is caught
"""
import os
import re
import sys
import tempfile

ALLOWED = {
    'common': set(),
    'model': {'common'},
    'pgio': {'common'},
    'pprof': {'common'},
    'config': {'common', 'model', 'pgio'},
    'collect': {'common', 'model', 'pgio', 'config'},
    'sinks': {'common', 'model', 'pgio'},
    'app': {'common', 'model', 'pgio', 'pprof', 'config', 'collect', 'sinks'},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def crossings(root):
    out = []
    for layer, allowed in sorted(ALLOWED.items()):
        folder = os.path.join(root, layer)
        if not os.path.isdir(folder):
            out.append('%s/: missing folder' % layer)
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith(('.c', '.h')):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding='utf-8') as f:
                text = f.read()
            for m in INCLUDE.finditer(text):
                target = m.group(1).split('/')[0] if '/' in m.group(1) else None
                if target is None or target == layer or target not in ALLOWED:
                    continue  # same folder, generated (rp_config.h) or not ours
                if target not in allowed:
                    line = text.count('\n', 0, m.start()) + 1
                    out.append('%s/%s:%d: %s/ may not include "%s" (allowed: %s)'
                               % (layer, name, line, layer, m.group(1),
                                  ', '.join(sorted(allowed)) or 'nothing'))
    return out


def self_test():
    with tempfile.TemporaryDirectory() as root:
        for layer in ALLOWED:
            os.mkdir(os.path.join(root, layer))
        with open(os.path.join(root, 'collect', 'x.c'), 'w') as f:
            f.write('#include "common/mem.h"\n#include "sinks/sink.h"\n')
        found = crossings(root)
        ok = len(found) == 1 and found[0].startswith('collect/x.c:2:')
    print('ok 1 - a crossing is reported with file:line' if ok else 'not ok 1 - %r' % found)
    print('ok 2 - the source tree crosses no rule' if not crossings(SRC) else
          'not ok 2 - the source tree crosses a rule')
    print('1..2')
    return 0 if ok and not crossings(SRC) else 1


SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')

if __name__ == '__main__':
    args = sys.argv[1:]
    if args == ['--self-test']:
        sys.exit(self_test())
    stamp = None
    if len(args) >= 2 and args[0] == '--stamp':
        stamp, args = args[1], args[2:]
    found = crossings(args[0] if args else SRC)
    for line in found:
        print(line, file=sys.stderr)
    if found:
        sys.exit(1)
    if stamp:
        with open(stamp, 'w') as f:
            f.write('ok\n')
