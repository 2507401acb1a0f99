#!/bin/sh
# Format (or with --check, verify) every C file with the pinned clang-format.
set -eu
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-clang-format}
case "$($CF --version)" in *" 14."*) ;; *) echo "warning: clang-format 14 is the pinned version" >&2 ;; esac
files=$(git ls-files '*.c' '*.h')
if [ "${1:-}" = "--check" ]; then
    $CF --dry-run --Werror $files
else
    $CF -i $files
fi
