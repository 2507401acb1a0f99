#!/bin/sh
# Runs a test program, under valgrind when RP_VALGRIND is set (meson test --setup valgrind).
# Integration tests are Python; their harness wraps the pgreaper process the same way.
if [ -n "${RP_VALGRIND:-}" ]; then
    exec valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite --track-origins=yes --quiet \
        --suppressions="$(dirname "$0")/valgrind.supp" "$@"
fi
exec "$@"
