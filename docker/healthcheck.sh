#!/bin/bash
# Container health: pgreaper answers /debug/vars on its loopback pprof listener
# (PGREAPER_PPROF=1 or PGREAPER_PPROF_ADDR) and has at least one source running.
set -eu
port=${PGREAPER_HEALTH_PORT:-6060}
auth=""
[ -n "${PGREAPER_PPROF_TOKEN:-}" ] && auth="Authorization: Bearer ${PGREAPER_PPROF_TOKEN}"$'\r\n'
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /debug/vars HTTP/1.1\r\nHost: localhost\r\n%s\r\n' "$auth" >&3
reply=$(cat <&3)
case "$reply" in
    "HTTP/1.1 200"*'"sources_live": '[1-9]*) exit 0 ;;
    *) echo "pgreaper unhealthy: ${reply%%$'\r'*}" >&2; exit 1 ;;
esac
