#!/bin/sh
# pgreaper's container entrypoint: pick the sources (a mounted sources.yaml, or one
# source described by the environment), check the configuration, then run pgreaper with
# the container's arguments. Runs natively too (tests/integration/docker.py).
#
#   PGREAPER_SOURCES       sources file or folder (default /etc/pgreaper/sources.yaml)
#   PGREAPER_SOURCE_CONN   instead of a file: the connection string of one source; it stays
#                          in the environment (the generated file refers to it as $VAR)
#   PGREAPER_SOURCE_NAME   that source's name (default monitored)
#   PGREAPER_PRESET        its preset (default standard)
#   PGREAPER_SINK          where measurements go (required), and every other PGREAPER_*
#   PGREAPER_BIN           the binary (default pgreaper on PATH)
#   PGREAPER_RUN_DIR       where the generated sources file goes (default /tmp)
set -eu

bin=${PGREAPER_BIN:-pgreaper}
if [ -n "${PGREAPER_SOURCE_CONN:-}" ]; then
    PGREAPER_SOURCES="${PGREAPER_RUN_DIR:-/tmp}/pgreaper-sources.yaml"
    umask 077
    cat > "$PGREAPER_SOURCES" <<YAML
- name: "${PGREAPER_SOURCE_NAME:-monitored}"
  conn_str: \$PGREAPER_SOURCE_CONN
  preset_metrics: "${PGREAPER_PRESET:-standard}"
YAML
fi
PGREAPER_SOURCES=${PGREAPER_SOURCES:-/etc/pgreaper/sources.yaml}
export PGREAPER_SOURCES

if [ ! -e "$PGREAPER_SOURCES" ]; then
    echo "pgreaper: no sources: mount a sources.yaml at $PGREAPER_SOURCES or set PGREAPER_SOURCE_CONN" >&2
    exit 2
fi
if [ -z "${PGREAPER_SINK:-}" ]; then
    echo "pgreaper: no sink: set PGREAPER_SINK (for example postgresql://user:password@sink/pgreaper_metrics)" >&2
    exit 2
fi
# Configuration errors are printed as file:line:col and stop the container at once.
"$bin" --check > /dev/null
exec "$bin" "$@"
