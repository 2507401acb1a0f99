#!/usr/bin/env bash
# Try pgreaper on this machine: installs what is missing, builds, starts a throwaway
# PostgreSQL 15 in .quickstart/ (unix socket only), and runs pgreaper on it with the
# built-in "standard" preset until Ctrl-C. The same server is the sink: measurements go
# to its database "pgreaper_metrics" (pgwatch layout) and, as JSON lines, to
# .quickstart/measurements.jsonl. Extra arguments go to pgreaper (e.g. --interval-scale 0.1).
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
# the standard preset's stat_statements reads pg_stat_statements (also for older folders)
grep -q '^shared_preload_libraries' "$data/postgresql.auto.conf" ||
    echo "shared_preload_libraries = 'pg_stat_statements'" >> "$data/postgresql.auto.conf"

stop_pg() { "${as_pg[@]}" "$pgbin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true; }
trap stop_pg EXIT
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$data" -l "$root/server.log" -w start >/dev/null

"${as_pg[@]}" /usr/lib/postgresql/15/bin/psql -h "$sock" -U postgres -d postgres -qAtc \
    "select 1 from pg_database where datname = 'pgreaper_metrics'" | grep -q 1 ||
    "${as_pg[@]}" /usr/lib/postgresql/15/bin/createdb -h "$sock" -U postgres pgreaper_metrics
"${as_pg[@]}" /usr/lib/postgresql/15/bin/psql -h "$sock" -U postgres -d postgres -qAtc \
    'create extension if not exists pg_stat_statements'

cat > "$root/sources.yaml" <<YAML
- name: local
  conn_str: host=$sock user=postgres dbname=postgres
  preset_metrics: standard
  custom_tags:
    env: quickstart
YAML

out=$root/measurements.jsonl
sink="postgresql:///pgreaper_metrics?host=$sock&user=postgres"
cat <<MSG
pgreaper quickstart
  PostgreSQL 15:  running in $data (socket $sock)
  sources:        $root/sources.yaml (preset "standard", intervals 60 s to 2 h)
  sink:           database pgreaper_metrics on the same server (pgwatch layout)
                  and $out (one JSON line per metric fetch)
  see the data:   psql -h $sock -U postgres -d pgreaper_metrics -c \
                    "select time, dbname, metric, data from (select 'db_stats' as metric, * from public.db_stats union all select 'backends', * from public.backends) m order by time desc limit 10"
  stop:           Ctrl-C (stops pgreaper and the throwaway PostgreSQL)

MSG
./build/pgreaper --sources "$root/sources.yaml" --sink "$sink" --sink "jsonfile://$out" "$@" || true
echo "measurements kept in database pgreaper_metrics (in $data) and in $out"
