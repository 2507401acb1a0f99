#!/usr/bin/env bash
# Try pgreaper on this machine: installs what is missing, builds, starts a throwaway
# PostgreSQL 15 in .quickstart/ (unix socket only), and runs pgreaper on it with the
# built-in "standard" preset, writing measurements to .quickstart/measurements.jsonl
# until Ctrl-C. Extra arguments go to pgreaper (e.g. --interval-scale 0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/.quickstart
scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null

pgbin=/usr/lib/postgresql/15/bin
as_pg=()
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); fi

mkdir -p "$root"
chmod 755 "$root"
sock=$root/sock
data=$root/data
if [ ! -d "$data" ]; then
    mkdir -p "$sock"
    [ ${#as_pg[@]} -gt 0 ] && chown postgres "$root" "$sock"
    "${as_pg[@]}" "$pgbin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
    cat >> "$data/postgresql.auto.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$sock'
CONF
fi

stop_pg() { "${as_pg[@]}" "$pgbin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true; }
trap stop_pg EXIT
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$data" -l "$root/server.log" -w start >/dev/null

cat > "$root/sources.yaml" <<YAML
- name: local
  conn_str: host=$sock user=postgres dbname=postgres
  preset_metrics: standard
  custom_tags:
    env: quickstart
YAML

out=$root/measurements.jsonl
cat <<MSG
pgreaper quickstart
  PostgreSQL 15:  running in $data (socket $sock)
  sources:        $root/sources.yaml (preset "standard", intervals 60 s to 2 h)
  measurements:   $out  (one JSON line per metric fetch)
  watch them:     tail -f $out
  stop:           Ctrl-C (stops pgreaper and the throwaway PostgreSQL)

MSG
./build/pgreaper --sources "$root/sources.yaml" --sink "jsonfile://$out" "$@" || true
echo "measurements kept in $out"
