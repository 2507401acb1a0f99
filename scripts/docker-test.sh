#!/usr/bin/env bash
# The docker compose stack, really run, as its first user would (everything but Grafana,
# which has no Debian package). As root, on Debian bookworm:
#
#   scripts/docker-test.sh
#
# Installs docker.io, docker-compose and debootstrap if missing; starts dockerd if none
# runs (and stops it again at the end); makes the base image debian:bookworm (tagged
# bookworm-slim too) with debootstrap if Docker does not have it, kept as a tarball in
# $PGREAPER_DOCKER_CACHE (default /var/cache/pgreaper-docker) for the next run; builds
# pgreaper's image (docker/Dockerfile) and a PostgreSQL 15 image from Debian's packages
# (docker/postgres/Dockerfile; compose.yml uses it through POSTGRES_IMAGE instead of the
# official postgres image, which cannot be pulled here); then tests/docker_stack.py starts
# docker/compose.yml and checks it (TAP). Exits non-zero when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${PGREAPER_DOCKER_CACHE:-/var/cache/pgreaper-docker}
mirror=${PGREAPER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
export DOCKER_BUILDKIT=0 # the legacy builder: BuildKit would pull its frontend image

step() { printf '== %s (%ds)\n' "$*" "$SECONDS"; }

missing=()
for p in docker.io docker-compose debootstrap; do
    dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" > /dev/null
fi

dockerd_pid=
stop_dockerd() {
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2> /dev/null || true
        wait "$dockerd_pid" 2> /dev/null || true
    fi
}
trap stop_dockerd EXIT
if ! docker info > /dev/null 2>&1; then
    step "starting dockerd"
    dockerd > /tmp/pgreaper-dockerd.log 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 60); do
        docker info > /dev/null 2>&1 && break
        sleep 1
    done
    docker info > /dev/null 2>&1 || { cat /tmp/pgreaper-dockerd.log >&2; exit 1; }
fi

if ! docker image inspect debian:bookworm > /dev/null 2>&1; then
    if [ ! -s "$cache/bookworm.tar" ]; then
        step "debootstrap bookworm into $cache"
        mkdir -p "$cache"
        rm -rf "$cache/root"
        debootstrap --variant=minbase bookworm "$cache/root" "$mirror" > "$cache/debootstrap.log"
        rm -rf "$cache/root"/var/cache/apt/archives/*.deb "$cache/root"/var/lib/apt/lists/*
        tar -C "$cache/root" --numeric-owner -cf "$cache/bookworm.tar.tmp" .
        mv "$cache/bookworm.tar.tmp" "$cache/bookworm.tar"
        rm -rf "$cache/root"
    fi
    step "docker import debian:bookworm"
    docker import "$cache/bookworm.tar" debian:bookworm > /dev/null
fi
docker image inspect debian:bookworm-slim > /dev/null 2>&1 ||
    docker tag debian:bookworm debian:bookworm-slim

step "building pgreaper:local"
start=$SECONDS
docker build -q -f docker/Dockerfile -t pgreaper:local . > /dev/null
echo "build_seconds=$((SECONDS - start))" > /tmp/pgreaper-docker-build.txt
step "building pgreaper-postgres:15"
docker build -q -f docker/postgres/Dockerfile -t pgreaper-postgres:15 . > /dev/null

step "running the stack"
python3 tests/docker_stack.py
