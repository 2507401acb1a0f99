#!/usr/bin/env bash
# Install the Debian packages pgreaper needs to build, run and test, if any is missing.
# Usage: scripts/deps.sh [--test|--bench]
#   --test adds what the test suite needs; --bench adds that and the peers of bench/peers.py
set -euo pipefail

pkgs=(meson ninja-build pkg-config gcc libc6-dev python3 libuv1-dev libpq-dev libyaml-dev
      zlib1g-dev libprotobuf-c-dev protobuf-c-compiler libunwind-dev libdw-dev
      libcurl4-openssl-dev libcjson-dev libsystemd-dev postgresql-15 postgresql-client-15)
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--bench" ]; then
    pkgs+=(valgrind clang-format golang-go python3-yaml iproute2 pgbouncer pgpool2
          prometheus prometheus-postgres-exporter prometheus-node-exporter patroni etcd-server)
fi
if [ "${1:-}" = "--bench" ]; then
    pkgs+=(collectd-core strace)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "pgreaper: installing missing packages: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "pgreaper: run as root or install: apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
