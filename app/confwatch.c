/* SPDX-License-Identifier: PostgreSQL
 *
 * LISTEN for configuration changes. See confwatch.h.
 */
#include "app/confwatch.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mem.h"
#include "pgio/client.h"

typedef enum cw_state {
    CW_OFFLINE,  /* connecting or backing off */
    CW_TRIGGERS, /* the triggers' statements are in flight */
    CW_LISTEN,   /* LISTEN is in flight */
    CW_IDLE,     /* listening */
    CW_CLOSED,
} cw_state;

struct rp_confwatch {
    cw_state state;
    rp_pgclient client;
    char *triggers_sql; /* NULL: no triggers to create */
    rp_confwatch_cb cb;
    void *arg;
    PGresult *res; /* the last result of the statements in flight */
    bool in_flight;
    bool logged_down, triggers_said, listened_once;
};

/* The triggers for a comma-separated list of tables, in one implicit transaction. */
static char *triggers_sql(const char *tables)
{
    rp_buf b = RP_BUF_INIT;
    rp_buf_puts(&b, "set lock_timeout = '2s'; create schema if not exists pgreaper; "
                    "create or replace function pgreaper.config_changed() returns trigger "
                    "language plpgsql as $f$ begin perform pg_notify('" RP_CONFWATCH_CHANNEL
                    "', tg_table_name); return null; end $f$;");
    for (const char *p = tables; *p;) {
        size_t n = strcspn(p, ",");
        rp_buf_printf(&b,
                      " create or replace trigger pgreaper_config_changed after insert or "
                      "update or delete or truncate on %.*s for each statement execute "
                      "function pgreaper.config_changed();",
                      (int)n, p);
        p += n + (p[n] == ',');
    }
    return b.data;
}

static void send_sql(rp_confwatch *w, cw_state next, const char *sql)
{
    w->state = next;
    PGconn *conn = w->client.conn;
    int f = PQsendQuery(conn, sql) ? PQflush(conn) : -1;
    if (f < 0 || rp_pgclient_watch(&w->client, f ? UV_READABLE | UV_WRITABLE : UV_READABLE) < 0) {
        rp_pgclient_fail(&w->client, NULL);
        return;
    }
    w->in_flight = true;
}

static void connected(rp_confwatch *w)
{
    rp_pgclient_settled(&w->client);
    if (w->logged_down)
        rp_log_info("configuration database: listening for changes again");
    w->logged_down = false;
    if (w->triggers_sql)
        send_sql(w, CW_TRIGGERS, w->triggers_sql);
    else
        send_sql(w, CW_LISTEN, "LISTEN " RP_CONFWATCH_CHANNEL);
}

static bool res_ok(const PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* The statements in flight are done (w->res holds the last result, or the error). */
static void result_done(rp_confwatch *w)
{
    bool ok = res_ok(w->res);
    if (w->state == CW_TRIGGERS) {
        if (!ok && !w->triggers_said)
            rp_log_at(RP_LOG_WARN, NULL, NULL, w->res ? PQresultErrorMessage(w->res) : NULL,
                      "configuration database: could not create the triggers that announce "
                      "changes; changes apply at the next --refresh poll, or at once when "
                      "something runs NOTIFY " RP_CONFWATCH_CHANNEL);
        w->triggers_said = true;
        send_sql(w, CW_LISTEN, "LISTEN " RP_CONFWATCH_CHANNEL);
        return;
    }
    if (!ok) {
        rp_pgclient_fail(&w->client, w->res ? PQresultErrorMessage(w->res) : NULL);
        return;
    }
    w->state = CW_IDLE;
    if (!w->listened_once)
        rp_log_debug("configuration database: listening on channel " RP_CONFWATCH_CHANNEL);
    else
        w->cb(w->arg); /* back after a loss: what changed meanwhile was not announced */
    w->listened_once = true;
}

/* Socket readiness: results of the statements in flight, notifications. */
static void readable(rp_confwatch *w)
{
    PGconn *conn = w->client.conn;
    if (!PQconsumeInput(conn) || PQflush(conn) < 0) {
        rp_pgclient_fail(&w->client, NULL);
        return;
    }
    while (w->in_flight && !PQisBusy(conn)) {
        PGresult *r = PQgetResult(conn);
        if (!r) {
            w->in_flight = false;
            result_done(w);
            PQclear(w->res);
            w->res = NULL;
            if (w->state == CW_OFFLINE)
                return; /* given up: conn is gone */
            conn = w->client.conn;
            break;
        }
        PQclear(w->res);
        w->res = r;
    }
    int n = 0;
    for (PGnotify *nf; (nf = PQnotifies(conn)) != NULL; n++)
        PQfreemem(nf);
    if (n > 0 && w->state == CW_IDLE)
        w->cb(w->arg);
}

static void went_down(rp_confwatch *w)
{
    PQclear(w->res);
    w->res = NULL;
    w->in_flight = false;
    w->state = CW_OFFLINE;
    if (!w->logged_down)
        rp_log_at(RP_LOG_WARN, NULL, NULL, w->client.error,
                  "configuration database: not listening for changes; they apply at the next "
                  "--refresh poll until the connection is back");
    w->logged_down = true;
}

static void on_client(void *owner, rp_pgclient_event ev)
{
    rp_confwatch *w = owner;
    if (w->state == CW_CLOSED)
        return;
    if (ev == RP_PGCLIENT_EV_UP)
        connected(w);
    else if (ev == RP_PGCLIENT_EV_IO)
        readable(w);
    else
        went_down(w);
}

int rp_confwatch_open(uv_loop_t *loop, const rp_confwatch_opts *o, rp_confwatch_cb cb, void *arg,
                      rp_confwatch **out)
{
    rp_confwatch *w = rp_calloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    w->triggers_sql = o->tables ? triggers_sql(o->tables) : NULL;
    rp_pgclient_opts co = {.application_name = "pgreaper-config",
                           .connect_timeout_ms = o->connect_timeout_ms,
                           .backoff_min_ms = RP_BACKOFF_MIN_MS,
                           .backoff_max_ms = RP_BACKOFF_MAX_MS,
                           .jitter_seed = (uint64_t)(uintptr_t)w,
                           .admit = o->admit};
    rp_pgclient_init(&w->client, loop, o->uri, &co, on_client, w);
    rp_pgclient_connect(&w->client);
    *out = w;
    return 0;
}

static void on_closed(void *owner)
{
    rp_confwatch *w = owner;
    PQclear(w->res);
    rp_free(w->triggers_sql);
    rp_free(w);
}

void rp_confwatch_close(rp_confwatch *w)
{
    if (!w || w->state == CW_CLOSED)
        return;
    w->state = CW_CLOSED;
    rp_pgclient_close(&w->client, on_closed);
}
