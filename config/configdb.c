/* SPDX-License-Identifier: PostgreSQL
 *
 * pgwatch's configuration database read as configuration text: see configdb.h. The SQL
 * maps pgwatch's columns to the keys of its YAML files (connstr -> conn_str, dbtype ->
 * kind, preset_config -> preset_metrics, config -> custom_metrics, ...); nulls are left
 * out, so a key is absent as it would be from a file.
 */
#include "config/configdb.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "pgio/connstr.h"
#include "pgio/pgconn.h"

static const char sources_sql[] =
    "select json_strip_nulls(json_build_object("
    "'name', name, 'conn_str', connstr, 'kind', dbtype, 'group', \"group\", "
    "'preset_metrics', preset_config, 'custom_metrics', config, "
    "'preset_metrics_standby', preset_config_standby, 'custom_metrics_standby', config_standby, "
    "'is_enabled', is_enabled, 'only_if_master', only_if_master, 'custom_tags', custom_tags, "
    "'include_pattern', include_pattern, 'exclude_pattern', exclude_pattern))::text "
    "from pgwatch.source order by name";

static const char metrics_sql[] =
    "select 'metrics', to_json(name)::text, json_strip_nulls(json_build_object("
    "'sqls', sqls, 'init_sql', init_sql, 'description', description, "
    "'node_status', node_status, 'gauges', gauges, 'is_instance_level', is_instance_level, "
    "'storage_name', storage_name))::text from pgwatch.metric "
    "union all "
    "select 'presets', to_json(name)::text, json_strip_nulls(json_build_object("
    "'description', description, 'metrics', metrics))::text from pgwatch.preset "
    "order by 1, 2";

bool rp_configdb_is_uri(const char *s)
{
    return s && (strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0);
}

void rp_configdb_label(const char *uri, const char *table, rp_buf *out)
{
    rp_connstr_mask(uri, out);
    rp_buf_printf(out, " (%s)", table);
}

/* Connect, run sql, hand back the result (NULL and err filled on failure). */
static PGresult *query(const char *uri, int timeout_s, const char *sql, char *err, size_t errlen)
{
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%d", timeout_s);
    const char *kw[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *val[] = {uri, timeout, "pgreaper-config", NULL};
    PGconn *conn = PQconnectdbParams(kw, val, 1);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        char why[400];
        snprintf(err, errlen, "could not connect to the configuration database: %s",
                 conn ? rp_pgconn_error(conn, uri, why, sizeof(why)) : "out of memory");
        PQfinish(conn);
        return NULL;
    }
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char why[400];
        snprintf(err, errlen, "could not read the configuration database: %s",
                 rp_pgconn_error(conn, uri, why, sizeof(why)));
        PQclear(res);
        res = NULL;
    }
    PQfinish(conn);
    return res;
}

int rp_configdb_read_sources(const char *uri, int connect_timeout_s, rp_buf *out, char *err,
                             size_t errlen)
{
    PGresult *res = query(uri, connect_timeout_s, sources_sql, err, errlen);
    if (!res)
        return -EIO;
    rp_buf_puts(out, "# pgwatch.source, one source a line\n");
    for (int i = 0; i < PQntuples(res); i++)
        rp_buf_printf(out, "- %s\n", PQgetvalue(res, i, 0));
    PQclear(res);
    return 0;
}

int rp_configdb_read_metrics(const char *uri, int connect_timeout_s, rp_buf *out, char *err,
                             size_t errlen)
{
    PGresult *res = query(uri, connect_timeout_s, metrics_sql, err, errlen);
    if (!res)
        return -EIO;
    const char *section = "";
    rp_buf_puts(out, "# pgwatch.metric and pgwatch.preset, one a line\n");
    for (int i = 0; i < PQntuples(res); i++) {
        if (strcmp(section, PQgetvalue(res, i, 0)) != 0) {
            section = PQgetvalue(res, i, 0);
            rp_buf_printf(out, "%s:\n", section);
        }
        rp_buf_printf(out, "  %s: %s\n", PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
    }
    PQclear(res);
    return 0;
}
