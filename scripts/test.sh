#!/usr/bin/env bash
# Run every test: unit, fuzz-corpus replay and integration (a real PostgreSQL 15 started
# by the harness), on a normal -Werror build and on an ASan+UBSan build.
# Usage: scripts/test.sh [--valgrind]   (also run the whole suite under valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test

setup() { # dir, extra meson options...
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" -Dwerror=true "$@" >/dev/null
    fi
    ninja -C "$dir" >/dev/null
}

status=0
rm -f build/meson-logs/testlog*.json build-asan/meson-logs/testlog*.json
setup build
meson test -C build --print-errorlogs || status=1
setup build-asan -Db_sanitize=address,undefined -Dcassert=true
meson test -C build-asan --setup asan --print-errorlogs || status=1
if [ "${1:-}" = "--valgrind" ]; then
    meson test -C build --setup valgrind --print-errorlogs || status=1
fi

# One closing line over every run.
python3 - build/meson-logs/testlog*.json build-asan/meson-logs/testlog*.json <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            result = json.loads(line)['result']
            if result in ('OK', 'EXPECTEDFAIL'):
                passed += 1
            elif result == 'SKIP':
                skipped += 1
            else:
                failed += 1
print('tests: %d passed, %d failed, %d skipped' % (passed, failed, skipped))
PY
exit $status
