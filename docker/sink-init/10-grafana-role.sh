#!/bin/bash
# The sink: a read-only login for Grafana, allowed to read every table pgreaper creates.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v pw="$SINK_GRAFANA_PASSWORD" <<'SQL'
create role grafana login password :'pw';
create schema if not exists admin;
grant usage on schema public, admin to grafana;
alter default privileges in schema public grant select on tables to grafana;
alter default privileges in schema admin grant select on tables to grafana;
SQL
