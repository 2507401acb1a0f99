/* SPDX-License-Identifier: PostgreSQL
 *
 * One thread per (source, metric) with a blocking connection pool: see permetric.h.
 *
 * Threads share a source's mutex for the pool, the server facts (version, role), the
 * counters and the result queue; they never touch the loop. The loop side drains the
 * queue into the sinks when the uv_async_t fires and reaps the threads when they have
 * all exited.
 */
#include "collect/permetric.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libpq-fe.h>

#include "collect/changes.h"
#include "collect/diskusage.h"
#include "collect/logcounts.h"
#include "collect/native.h"
#include "common/clock.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/tasks.h"
#include "pgio/client.h"
#include "pgio/connstr.h"
#include "pgio/pgconn.h"

#define INSTANCE_UP "instance_up"
#define APP_NAME    "pgreaper-per-metric"

typedef struct pm_source pm_source;

/* A statement prepared on one connection: its name is rp_pm_<index>. */
typedef struct pm_stmt {
    uint64_t hash;
    char *sql; /* owned copy */
} pm_stmt;

typedef struct pm_conn {
    PGconn *conn;
    pm_stmt *stmts; /* prepared on this connection, owned */
    size_t nstmts, cap_stmts;
    int timeout_ms; /* statement_timeout set on it; -1 unknown */
    bool discard;   /* a metric changed its session: close it at checkin (not a failure) */
    bool local;     /* the server runs on this host (see collect/native.h) */
} pm_conn;

typedef struct pm_worker {
    pm_source *src;
    pthread_t th;
    bool started;
    const rp_metric_def *def; /* borrowed from src->cat */
    int interval_s[2];        /* [primary, standby]; 0 = not in that role's plan */
    bool is_instance_up;
    bool failing, no_sql_logged;
    int64_t skip_until;       /* CLOCK_MONOTONIC ms; see rp_source_error_unavailable */
    rp_native_state native;   /* for metrics read from /proc */
    rp_logcounts logs;        /* server_log_event_counts: where it read */
    uint64_t err_len;         /* length of the last message, to log an unavailable one once */
    PGcancel *cancel;         /* under src->lock while a query runs */
    uint64_t fetches, errors; /* under src->lock: this metric's share of src->stats */
} pm_worker;

typedef struct pm_item {
    struct pm_item *next;
    PGresult *res;      /* rows to store (owned), or NULL for ... */
    rp_native_row *row; /* ... a row read from /proc (owned), or ... */
    rp_diskusage *disk; /* ... psutil_disk's rows (owned), or else an instance_up value */
    int change;         /* change_events: 1 + input of res, or CHANGE_FINISH */
    const rp_metric_def *def;
    int64_t fetch_ns;
    int up;
} pm_item;

typedef enum pm_phase { PM_IDLE, PM_RUNNING, PM_RESTARTING, PM_CLOSING } pm_phase;

struct pm_source {
    const rp_source_opts *opts;
    rp_source_def def;
    rp_catalog *cat;
    char *masked_conn;
    const char **kw, **val; /* PQconnectdbParams arrays (pointers into params) */
    rp_pgconn_params params;
    char connect_timeout[16];

    pthread_mutex_t lock; /* everything below up to `snapshot` */
    pthread_cond_t pool_cond, stop_cond;
    pm_conn **idle;
    size_t nidle, cap_idle;
    int nopen;
    int server_version;
    bool in_recovery, role_known;
    int64_t runtime_at, retry_at; /* CLOCK_MONOTONIC ms */
    int backoff_ms;
    uint64_t rng; /* backoff jitter */
    bool down, down_logged, was_connected;
    bool stop_threads;
    pm_item *head, **tail;
    rp_source_stats stats;

    rp_source_stats snapshot; /* the loop's copy, for rp_collector_ops.stats */
    pm_worker *w;
    size_t nw;
    rp_metric_count *carried; /* the counts of workers joined so far (names owned; loop) */
    size_t ncarried, cap_carried;
    _Atomic size_t exited;
    pm_phase phase;
    uv_async_t async;
    uv_timer_t drain;
    uv_work_t cancel_work;
    bool cancelling;
    int open_handles;
    rp_task task;
    rp_changes *changes;    /* change_events' state (loop thread) */
    rp_source_def next_def; /* update(): applied once the threads are gone */
    rp_catalog *next_cat;
    rp_source_closed_cb closed_cb;
    void *closed_arg;
};

/*-------------------------------------------------------------------------
 * Results to the loop
 *-------------------------------------------------------------------------
 */

/* Hand an item to the loop (under s->lock). */
static void push_locked(pm_source *s, pm_item init)
{
    pm_item *it = rp_malloc(sizeof(*it));
    *it = init;
    it->next = NULL;
    *s->tail = it;
    s->tail = &it->next;
    uv_async_send(&s->async);
}

static void queue_locked(pm_source *s, PGresult *res, const rp_metric_def *def, int64_t t, int up)
{
    push_locked(s, (pm_item){.res = res, .def = def, .fetch_ns = t, .up = up});
}

#define CHANGE_FINISH (RP_CHANGES_NINPUTS + 1)

typedef struct change_ctx {
    pm_source *s;
    int64_t t;
} change_ctx;

static void emit_change(void *arg, const char *metric, rp_batch *b)
{
    change_ctx *ctx = arg;
    b->source = ctx->s->def.name;
    b->metric = b->storage = metric;
    b->fetch_time_ns = ctx->t;
    b->custom_tags = ctx->s->def.custom_tags;
    b->ncustom_tags = ctx->s->def.ncustom_tags;
    ctx->s->opts->emit(ctx->s->opts->emit_arg, b);
}

/* change_events compares on the loop, where its state and the sinks live. */
static void deliver_change(pm_source *s, const pm_item *it)
{
    change_ctx ctx = {s, it->fetch_ns};
    if (!s->changes)
        s->changes = rp_changes_new();
    if (it->change == CHANGE_FINISH)
        rp_changes_finish(s->changes, it->fetch_ns, emit_change, &ctx);
    else if (rp_changes_feed(s->changes, it->change - 1, it->res, it->fetch_ns, emit_change, &ctx) <
             0)
        rp_log_at(RP_LOG_WARN, s->def.name, it->def->name, NULL,
                  "%s lacks the columns change_events compares: ignored",
                  rp_changes_input(it->change - 1));
}

static void deliver_disk(pm_source *s, const pm_item *it)
{
    for (size_t i = 0; i < it->disk->nrows; i++) {
        rp_batch b;
        rp_diskusage_batch(it->disk, i, &b);
        (void)rp_source_write_batch(s->opts, &s->def, it->def, &b, it->fetch_ns);
        rp_batch_fini(&b);
    }
}

static void deliver_native(pm_source *s, const pm_item *it)
{
    rp_batch b;
    rp_native_batch(it->row, &b);
    (void)rp_source_write_batch(s->opts, &s->def, it->def, &b, it->fetch_ns);
    rp_batch_fini(&b);
}

/* On the loop: hand every queued result to the sinks. */
static void deliver(pm_source *s)
{
    pthread_mutex_lock(&s->lock);
    pm_item *it = s->head;
    s->head = NULL;
    s->tail = &s->head;
    pthread_mutex_unlock(&s->lock);
    while (it) {
        pm_item *next = it->next;
        if (it->change)
            deliver_change(s, it);
        else if (it->res)
            (void)rp_source_write_rows(s->opts, &s->def, it->def, it->res, it->fetch_ns);
        else if (it->row)
            deliver_native(s, it);
        else if (it->disk)
            deliver_disk(s, it);
        else
            rp_source_write_up(s->opts, &s->def, it->up, it->fetch_ns);
        PQclear(it->res);
        rp_free(it->row);
        rp_free(it->disk);
        rp_free(it);
        it = next;
    }
}

/*-------------------------------------------------------------------------
 * The connection pool (worker threads)
 *-------------------------------------------------------------------------
 */

static void connect_failed_locked(pm_source *s, const char *why)
{
    s->stats.connect_failures++;
    if (!s->down_logged) {
        if (s->was_connected)
            rp_log_at(RP_LOG_ERROR, s->def.name, NULL, why, "lost connection to source");
        else
            rp_log_at(RP_LOG_ERROR, s->def.name, NULL, why, "could not connect to source \"%s\"",
                      s->masked_conn);
        s->down_logged = true;
    } else {
        rp_log_at(RP_LOG_DEBUG, s->def.name, NULL, why, "reconnect attempt failed");
    }
    s->down = true;
    s->was_connected = false;
    s->retry_at =
        rp_clock_mono_ms() + rp_backoff_jittered(s->backoff_ms, RP_BACKOFF_MIN_MS, &s->rng);
    s->backoff_ms = rp_backoff_next(s->backoff_ms, RP_BACKOFF_MAX_MS);
    queue_locked(s, NULL, NULL, rp_clock_wall_ns(), 0);
}

static void connected_locked(pm_source *s)
{
    bool transition = !s->was_connected; /* more pool connections are not news */
    s->stats.connects++;
    if (s->down_logged)
        rp_log_at(RP_LOG_INFO, s->def.name, NULL, NULL, "reconnected to source");
    else if (!s->was_connected)
        rp_log_at(RP_LOG_INFO, s->def.name, NULL, NULL,
                  "connected to source (per-metric mode, %zu metric threads)", s->nw);
    s->down = s->down_logged = false;
    s->was_connected = true;
    s->backoff_ms = RP_BACKOFF_MIN_MS;
    if (transition) {
        s->runtime_at = 0; /* re-read version and role */
        queue_locked(s, NULL, NULL, rp_clock_wall_ns(), 1);
    }
}

/* Open a connection with the lock released during the (blocking) connect. */
static bool conn_is_local(const PGconn *conn)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    if (getpeername(PQsocket(conn), (struct sockaddr *)&peer, &len) < 0)
        return false;
    return rp_native_peer_is_local((struct sockaddr *)&peer);
}

/* The threads' admission gate: the batch mode's rule (pgio/admit.h), for blocking
 * connects: at most max_connecting attempts at once across all sources. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_active;

static void gate_enter(int limit)
{
    pthread_mutex_lock(&gate_lock);
    while (limit > 0 && gate_active >= limit)
        pthread_cond_wait(&gate_cond, &gate_lock);
    gate_active++;
    pthread_mutex_unlock(&gate_lock);
}

static void gate_leave(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_active--;
    pthread_cond_signal(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static pm_conn *open_locked(pm_source *s)
{
    if (s->down && rp_clock_mono_ms() < s->retry_at)
        return NULL; /* backing off: this tick is skipped */
    s->nopen++;
    pthread_mutex_unlock(&s->lock);
    gate_enter(s->opts->max_connecting);
    PGconn *conn = PQconnectdbParams(s->kw, s->val, 0);
    gate_leave();
    char why[512] = "out of memory";
    bool ok = conn && PQstatus(conn) == CONNECTION_OK;
    if (conn && !ok)
        rp_pgconn_error(conn, s->def.conn_str, why, sizeof(why));
    pthread_mutex_lock(&s->lock);
    if (!ok) {
        PQfinish(conn);
        s->nopen--;
        connect_failed_locked(s, why);
        pthread_cond_signal(&s->pool_cond);
        return NULL;
    }
    connected_locked(s);
    pm_conn *c = rp_calloc(1, sizeof(*c));
    c->conn = conn;
    c->timeout_ms = -1;
    c->local = conn_is_local(conn);
    return c;
}

static void conn_free(pm_conn *c)
{
    PQfinish(c->conn);
    for (size_t i = 0; i < c->nstmts; i++)
        rp_free(c->stmts[i].sql);
    rp_free(c->stmts);
    rp_free(c);
}

/* Blocking checkout: an idle connection, a new one while under the limit, else wait. */
static pm_conn *checkout(pm_source *s)
{
    pm_conn *c = NULL;
    pthread_mutex_lock(&s->lock);
    while (!s->stop_threads) {
        if (s->nidle > 0) {
            c = s->idle[--s->nidle];
            break;
        }
        if (s->nopen < s->opts->max_conns) {
            c = open_locked(s);
            break;
        }
        pthread_cond_wait(&s->pool_cond, &s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return c;
}

static void checkin(pm_source *s, pm_conn *c, bool broken)
{
    pthread_mutex_lock(&s->lock);
    if (c->discard) {
        conn_free(c);
        s->nopen--;
    } else if (broken || PQstatus(c->conn) != CONNECTION_OK) {
        char why[512];
        rp_pgconn_error(c->conn, s->def.conn_str, why, sizeof(why));
        conn_free(c);
        s->nopen--;
        s->stats.disconnects++;
        if (!s->down_logged)
            rp_log_at(RP_LOG_ERROR, s->def.name, NULL, why, "lost connection to source");
        s->down_logged = true;
        s->was_connected = false;
    } else {
        rp_grow((void **)&s->idle, &s->cap_idle, s->nidle + 1, sizeof(pm_conn *));
        s->idle[s->nidle++] = c;
    }
    pthread_cond_signal(&s->pool_cond);
    pthread_mutex_unlock(&s->lock);
}

static void close_pool(pm_source *s)
{
    for (size_t i = 0; i < s->nidle; i++)
        conn_free(s->idle[i]);
    s->nidle = 0;
    s->nopen = 0;
}

/*-------------------------------------------------------------------------
 * Metric threads
 *-------------------------------------------------------------------------
 */

static void count_round_trip(pm_source *s)
{
    pthread_mutex_lock(&s->lock);
    s->stats.pipelines++;
    pthread_mutex_unlock(&s->lock);
}

/* Read version and role when unknown or older than runtime_refresh_ms. -EIO: broken. */
static int refresh_runtime(pm_source *s, pm_conn *c)
{
    pthread_mutex_lock(&s->lock);
    bool due = !s->role_known || rp_clock_mono_ms() - s->runtime_at >= s->opts->runtime_refresh_ms;
    if (due)
        s->runtime_at = rp_clock_mono_ms(); /* one thread refreshes, the others go on */
    pthread_mutex_unlock(&s->lock);
    if (!due)
        return 0;
    const char *console = rp_source_def_console(&s->def);
    PGresult *res = PQexec(c->conn, console ? console
                                            : "select current_setting('server_version_num')::int, "
                                              "pg_is_in_recovery()");
    count_round_trip(s);
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    pthread_mutex_lock(&s->lock);
    if (ok && console) {
        s->server_version = rp_source_console_version(PQgetvalue(res, 0, 0));
        s->in_recovery = false;
        s->role_known = true;
    } else if (ok) {
        bool recovery = PQgetvalue(res, 0, 1)[0] == 't';
        if (s->role_known && recovery != s->in_recovery)
            rp_log_at(RP_LOG_INFO, s->def.name, NULL, NULL, "source is now a %s",
                      recovery ? "standby" : "primary");
        s->server_version = atoi(PQgetvalue(res, 0, 0));
        s->in_recovery = recovery;
        s->role_known = true;
    } else {
        s->runtime_at = 0;
    }
    pthread_mutex_unlock(&s->lock);
    PQclear(res);
    return ok || PQstatus(c->conn) == CONNECTION_OK ? 0 : -EIO;
}

/* The worker's interval for the server's current role (0: not collected in that role). */
static int current_interval(pm_worker *w)
{
    pm_source *s = w->src;
    pthread_mutex_lock(&s->lock);
    int iv;
    if (!s->role_known)
        iv = w->interval_s[0] ? w->interval_s[0] : w->interval_s[1];
    else if (s->in_recovery && s->def.only_if_master)
        iv = 0;
    else
        iv = w->interval_s[s->in_recovery ? 1 : 0];
    pthread_mutex_unlock(&s->lock);
    return iv;
}

static int set_timeout(pm_source *s, pm_conn *c, int ms)
{
    char v[24], q[80];
    if (c->timeout_ms == ms || rp_source_def_console(&s->def))
        return 0; /* a pooler's console has no settings */
    snprintf(v, sizeof(v), "%d", ms);
    snprintf(q, sizeof(q), "select set_config('statement_timeout', '%s', false)", v);
    PGresult *res = PQexec(c->conn, q);
    count_round_trip(s);
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    c->timeout_ms = ok ? ms : -1;
    return ok ? 0 : -EIO;
}

/*
 * Run a metric's SQL the way pgx runs a query by default (QueryExecModeCacheStatement),
 * as pgwatch 3 does: prepared on first use on each pooled connection (one more round
 * trip), then Bind/Execute by name. For a pooler's console, the simple protocol (all it
 * takes); through a pooler in transaction mode (--no-prepared, no_prepared), the unnamed
 * statement (pgx's exec mode).
 */
static PGresult *exec_metric(pm_source *s, pm_conn *c, const char *sql)
{
    if (rp_source_def_console(&s->def))
        return PQexec(c->conn, sql);
    if (s->opts->no_prepared || s->def.no_prepared)
        return PQexecParams(c->conn, sql, 0, NULL, NULL, NULL, NULL, 0);
    uint64_t h = rp_hash_str(RP_HASH_INIT, sql);
    size_t i = 0;
    while (i < c->nstmts && (c->stmts[i].hash != h || strcmp(c->stmts[i].sql, sql) != 0))
        i++;
    char name[32];
    snprintf(name, sizeof(name), "rp_pm_%zu", i);
    if (i == c->nstmts) {
        PGresult *res = PQprepare(c->conn, name, sql, 0, NULL);
        count_round_trip(s);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            return res; /* the metric's error, as its execution would report it */
        PQclear(res);
        rp_grow((void **)&c->stmts, &c->cap_stmts, c->nstmts + 1, sizeof(pm_stmt));
        c->stmts[c->nstmts++] = (pm_stmt){.hash = h, .sql = rp_strdup(sql)};
    }
    return PQexecPrepared(c->conn, name, 0, NULL, NULL, NULL, 0);
}

static void metric_failed(pm_worker *w, const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (rp_source_error_unavailable(state)) {
        uint64_t len = strlen(PQresultErrorMessage(res));
        rp_log_at(len == w->err_len ? RP_LOG_DEBUG : RP_LOG_WARN, w->src->def.name, w->def->name,
                  PQresultErrorMessage(res),
                  "metric skipped: it cannot run on this server (SQLSTATE %s); tried again every "
                  "10 minutes",
                  state);
        w->err_len = len;
        w->skip_until = rp_clock_mono_ms() + 10 * 60 * 1000;
    } else if (!w->failing)
        rp_log_at(RP_LOG_ERROR, w->src->def.name, w->def->name, PQresultErrorMessage(res),
                  "metric query failed (SQLSTATE %s)", state ? state : "?");
    w->failing = true;
}

/* A metric that ran a command or left a transaction open: disabled (logged once), and its
 * connection is dropped so that no other metric sees what it changed. */
static void offender(pm_worker *w, const char *what)
{
    rp_log_at(RP_LOG_ERROR, w->src->def.name, w->def->name, NULL,
              "metric disabled: it %s; a metric must be one query that leaves the session as it "
              "found it (it runs again once a reload changes its SQL)",
              what);
    w->skip_until = INT64_MAX;
    w->failing = true;
    pthread_mutex_lock(&w->src->lock);
    w->src->stats.fetch_errors++;
    w->errors++;
    w->src->stats.session_resets++;
    pthread_mutex_unlock(&w->src->lock);
}

/* This design reads a result whole (PQexec): the caps keep an oversized one out of the
 * sinks, after the fact. Tried again in 10 minutes. */
static bool over_caps(pm_worker *w, const PGresult *res)
{
    uint64_t max_rows, max_bytes, bytes = 0, rows = (uint64_t)PQntuples(res);
    rp_source_result_caps(w->src->opts, w->def, &max_rows, &max_bytes);
    for (int r = 0; r < PQntuples(res) && bytes <= max_bytes; r++)
        bytes += rp_source_row_bytes(res, r);
    if (rows <= max_rows && bytes <= max_bytes)
        return false;
    rp_log_at(RP_LOG_ERROR, w->src->def.name, w->def->name, NULL,
              "metric result too large: %llu rows, %s%llu bytes (caps: %llu rows, %llu bytes; "
              "raise --result-max-rows/--result-max-bytes or the metric's "
              "result_max_rows/result_max_bytes); nothing stored, tried again in 10 minutes",
              (unsigned long long)rows, bytes > max_bytes ? "over " : "", (unsigned long long)bytes,
              (unsigned long long)max_rows, (unsigned long long)max_bytes);
    w->skip_until = rp_clock_mono_ms() + 10 * 60 * 1000;
    w->failing = true;
    pthread_mutex_lock(&w->src->lock);
    w->src->stats.fetch_errors++;
    w->errors++;
    w->src->stats.results_over_cap++;
    pthread_mutex_unlock(&w->src->lock);
    return true;
}

/* Store (hand over) or log one result. */
static void take_result(pm_worker *w, PGresult *res, int64_t t)
{
    pm_source *s = w->src;
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        char what[96];
        snprintf(what, sizeof(what), "ran %.40s, a command, not a query", PQcmdStatus(res));
        offender(w, what);
        PQclear(res);
        return;
    }
    if (PQresultStatus(res) == PGRES_TUPLES_OK && over_caps(w, res)) {
        PQclear(res);
        return;
    }
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (ok && w->failing)
        rp_log_at(RP_LOG_INFO, s->def.name, w->def->name, NULL, "metric query succeeded again");
    if (!ok)
        metric_failed(w, res);
    w->failing = !ok;
    pthread_mutex_lock(&s->lock);
    s->stats.ticks++;
    s->stats.queries++;
    s->stats.pipelines++;
    if (ok) {
        s->stats.fetches_ok++;
        w->fetches++;
        s->stats.rows += (uint64_t)PQntuples(res);
        s->stats.values += (uint64_t)PQntuples(res) * (uint64_t)PQnfields(res);
        queue_locked(s, res, w->def, t, -1);
    } else {
        s->stats.fetch_errors++;
        w->errors++;
        PQclear(res);
    }
    pthread_mutex_unlock(&s->lock);
}

static int metric_timeout_ms(const pm_worker *w)
{
    if (w->def->statement_timeout_s >= 0)
        return w->def->statement_timeout_s * 1000;
    return w->src->opts->statement_timeout_ms;
}

/* One fetch on c. -EIO when the connection broke. */
static void queue_row(pm_worker *w, rp_native_row *row, int rc, int64_t t);

/* A metric pgwatch reads from the OS: from /proc, queued like a result. */
static void run_native(pm_worker *w)
{
    rp_native_row *row = rp_malloc(sizeof(*row));
    int64_t t = rp_clock_wall_ns();
    queue_row(w, row, rp_native_read(w->def->code, &w->native, t, row), t);
}

/* server_log_event_counts (collect/logcounts.h). */
static int run_logs(pm_worker *w, pm_conn *c)
{
    char offset[24], err[200];
    const char *vals[3];
    rp_logcounts_params(&w->logs, offset, vals);
    int64_t t = rp_clock_wall_ns();
    PGresult *res = PQexecParams(c->conn, rp_logcounts_sql, 3, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        metric_failed(w, res);
        PQclear(res);
        return PQstatus(c->conn) == CONNECTION_OK ? 0 : -EIO;
    }
    rp_native_row *row = rp_malloc(sizeof(*row));
    int rc = rp_logcounts_result(&w->logs, res, c->local, t, row, err, sizeof(err));
    PQclear(res);
    if (rc < 0) {
        if (!w->failing)
            rp_log_at(RP_LOG_WARN, w->src->def.name, w->def->name, err,
                      "metric skipped: it cannot run on this server; tried again every 10 "
                      "minutes");
        w->failing = true;
        w->skip_until = rp_clock_mono_ms() + 10 * 60 * 1000;
        rp_free(row);
        return 0;
    }
    if (rc > 0) {
        rp_free(row);
        return 0;
    }
    queue_row(w, row, 0, t);
    return 0;
}

/* psutil_disk of a local server (collect/diskusage.h). */
static int run_disk(pm_worker *w, pm_conn *c)
{
    int64_t t = rp_clock_wall_ns();
    PGresult *res = PQexec(c->conn, rp_diskusage_sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        metric_failed(w, res);
        PQclear(res);
        return PQstatus(c->conn) == CONNECTION_OK ? 0 : -EIO;
    }
    char err[200];
    rp_diskusage *d = rp_malloc(sizeof(*d));
    int rc = rp_diskusage_read(res, t, d, err, sizeof(err));
    PQclear(res);
    pm_source *s = w->src;
    pthread_mutex_lock(&s->lock);
    if (rc < 0) {
        s->stats.fetch_errors++;
        w->errors++;
        if (!w->failing)
            rp_log_at(RP_LOG_ERROR, s->def.name, w->def->name, NULL, "%s", err);
        w->failing = true;
        rp_free(d);
    } else {
        w->failing = false;
        s->stats.fetches_ok++;
        w->fetches++;
        s->stats.rows += d->nrows;
        push_locked(s, (pm_item){.disk = d, .def = w->def, .fetch_ns = t});
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void queue_row(pm_worker *w, rp_native_row *row, int rc, int64_t t)
{
    pm_source *s = w->src;
    pthread_mutex_lock(&s->lock);
    if (rc < 0) {
        s->stats.fetch_errors++;
        w->errors++;
        if (!w->failing)
            rp_log_at(RP_LOG_ERROR, s->def.name, w->def->name, NULL,
                      "could not read the metric from this host's /proc: %s", strerror(-rc));
        w->failing = true;
        rp_free(row);
    } else {
        w->failing = false;
        s->stats.fetches_ok++;
        w->fetches++;
        s->stats.rows++;
        s->stats.values += row->ncols;
        push_locked(s, (pm_item){.row = row, .def = w->def, .fetch_ns = t});
    }
    pthread_mutex_unlock(&s->lock);
}

static void queue_change(pm_worker *w, PGresult *res, int change, int64_t t)
{
    pm_source *s = w->src;
    pthread_mutex_lock(&s->lock);
    push_locked(s, (pm_item){.res = res, .def = w->def, .fetch_ns = t, .change = change});
    pthread_mutex_unlock(&s->lock);
}

/* change_events: the catalogue's hash metrics, compared on the loop (deliver_change). */
static int run_changes(pm_worker *w, pm_conn *c, int version)
{
    int64_t t = rp_clock_wall_ns();
    int sent = 0;
    for (int k = 0; k < RP_CHANGES_NINPUTS; k++) {
        const rp_metric_def *d = rp_catalog_metric(w->src->cat, rp_changes_input(k));
        const char *sql = d ? rp_metric_sql_for(d, version) : NULL;
        if (!sql)
            continue;
        PGresult *res = PQexec(c->conn, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            metric_failed(w, res);
            PQclear(res);
            if (PQstatus(c->conn) != CONNECTION_OK)
                return -EIO;
            continue;
        }
        queue_change(w, res, k + 1, t);
        sent++;
    }
    if (sent)
        queue_change(w, NULL, CHANGE_FINISH, t);
    else if (!w->no_sql_logged)
        rp_log_at(RP_LOG_WARN, w->src->def.name, w->def->name, NULL,
                  "change_events compares the catalogue's sproc_hashes, table_hashes, "
                  "index_hashes, configuration_hashes and privilege_changes, none of which "
                  "has SQL for this server: left out");
    w->no_sql_logged = sent == 0;
    return 0;
}

static int run_metric(pm_worker *w, pm_conn *c)
{
    pm_source *s = w->src;
    if (w->def->code == RP_CODE_CHANGE_EVENTS) {
        pthread_mutex_lock(&s->lock);
        int version = s->server_version;
        pthread_mutex_unlock(&s->lock);
        return run_changes(w, c, version);
    }
    if (w->def->code == RP_CODE_LOG_EVENT_COUNTS)
        return run_logs(w, c);
    if (w->def->code == RP_CODE_PSUTIL_DISK && c->local)
        return run_disk(w, c);
    if (c->local && rp_native_from_os(w->def->code)) {
        run_native(w);
        return 0;
    }
    pthread_mutex_lock(&s->lock);
    int version = s->server_version;
    pthread_mutex_unlock(&s->lock);
    const char *sql = rp_metric_sql_for(w->def, version);
    char v[16];
    if (!sql) {
        if (!w->no_sql_logged)
            rp_log_at(RP_LOG_WARN, s->def.name, w->def->name, NULL,
                      "metric has no SQL for PostgreSQL %s: skipped",
                      rp_pgconn_version_str(version, v, sizeof(v)));
        w->no_sql_logged = true;
        return 0;
    }
    if (set_timeout(s, c, metric_timeout_ms(w)) < 0)
        return PQstatus(c->conn) == CONNECTION_OK ? 0 : -EIO;
    pthread_mutex_lock(&s->lock);
    w->cancel = PQgetCancel(c->conn);
    pthread_mutex_unlock(&s->lock);
    int64_t t = rp_clock_wall_ns();
    PGresult *res = exec_metric(s, c, sql);
    pthread_mutex_lock(&s->lock);
    PQfreeCancel(w->cancel);
    w->cancel = NULL;
    pthread_mutex_unlock(&s->lock);
    bool command = PQresultStatus(res) == PGRES_COMMAND_OK;
    take_result(w, res, t);
    if (PQstatus(c->conn) != CONNECTION_OK)
        return -EIO;
    if (!command && PQtransactionStatus(c->conn) != PQTRANS_IDLE)
        offender(w, "left a transaction open (rolled back)");
    else if (!command)
        return PQstatus(c->conn) == CONNECTION_OK ? 0 : -EIO;
    c->discard = true; /* the session may carry the change */
    return 0;
}

static void fetch_once(pm_worker *w)
{
    pm_source *s = w->src;
    if (rp_clock_mono_ms() < w->skip_until)
        return; /* the server cannot run this metric: tried again later */
    pm_conn *c = checkout(s);
    if (!c)
        return;
    bool broken = refresh_runtime(s, c) < 0;
    if (!broken && current_interval(w) > 0) {
        if (w->is_instance_up) {
            pthread_mutex_lock(&s->lock);
            queue_locked(s, NULL, NULL, rp_clock_wall_ns(), 1);
            pthread_mutex_unlock(&s->lock);
        } else {
            broken = run_metric(w, c) < 0;
        }
    }
    checkin(s, c, broken);
}

static void record_lateness(pm_source *s, int64_t late_ms)
{
    int b = 0;
    while (b < 15 && late_ms >= ((int64_t)1 << b))
        b++;
    pthread_mutex_lock(&s->lock);
    s->stats.lateness_ms_hist[late_ms <= 0 ? 0 : b]++;
    s->stats.lateness_ms_sum += late_ms > 0 ? (uint64_t)late_ms : 0;
    pthread_mutex_unlock(&s->lock);
}

/* Sleep until deadline (CLOCK_MONOTONIC ms) or until the threads are told to stop. */
static void sleep_until(pm_source *s, int64_t deadline)
{
    struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000};
    pthread_mutex_lock(&s->lock);
    while (!s->stop_threads && pthread_cond_timedwait(&s->stop_cond, &s->lock, &ts) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&s->lock);
}

static bool stopping(pm_source *s)
{
    pthread_mutex_lock(&s->lock);
    bool stop = s->stop_threads;
    pthread_mutex_unlock(&s->lock);
    return stop;
}

/* Fetch, then sleep to the next deadline on a fixed grid (late ticks are skipped). */
static void *worker_main(void *arg)
{
    pm_worker *w = arg;
    pm_source *s = w->src;
    char name[16];
    snprintf(name, sizeof(name), "%s/%s", s->def.name, w->def->name);
    rp_task_label_thread("metric", name, s->def.name, w->def->name);
    int64_t next = rp_clock_mono_ms();
    while (!stopping(s)) {
        record_lateness(s, rp_clock_mono_ms() - next);
        fetch_once(w);
        int iv = current_interval(w);
        int64_t step = (int64_t)(iv > 0 ? iv : w->interval_s[0] + w->interval_s[1]) * 1000;
        next += step;
        for (int64_t now = rp_clock_mono_ms(); next <= now; next += step) {
            pthread_mutex_lock(&s->lock);
            s->stats.skipped_ticks++;
            pthread_mutex_unlock(&s->lock);
        }
        sleep_until(s, next);
    }
    atomic_fetch_add(&s->exited, 1);
    uv_async_send(&s->async);
    return NULL;
}

/*-------------------------------------------------------------------------
 * The loop side: threads' lifecycle
 *-------------------------------------------------------------------------
 */

static pm_worker *find_worker(pm_source *s, const char *name)
{
    for (size_t i = 0; i < s->nw; i++)
        if (strcmp(s->w[i].def->name, name) == 0)
            return &s->w[i];
    return NULL;
}

/* One worker per metric of the primary or standby plan, with its interval in each role. */
static void plan_workers(pm_source *s)
{
    rp_plan_entry *plan[2];
    size_t n[2];
    for (int role = 0; role < 2; role++)
        n[role] =
            rp_source_resolve(&s->def, s->cat, role == 1, s->opts->interval_scale, &plan[role]);
    s->w = rp_calloc(n[0] + n[1] + 1, sizeof(pm_worker));
    s->nw = 0;
    for (int role = 0; role < 2; role++) {
        for (size_t i = 0; i < n[role]; i++) {
            pm_worker *w = find_worker(s, plan[role][i].def->name);
            if (!w) {
                w = &s->w[s->nw++];
                w->src = s;
                w->def = plan[role][i].def;
                w->is_instance_up = strcmp(w->def->name, INSTANCE_UP) == 0;
            }
            w->interval_s[role] = plan[role][i].interval_s;
        }
        free(plan[role]);
    }
}

static void start_threads(pm_source *s)
{
    plan_workers(s);
    atomic_store(&s->exited, 0);
    pthread_mutex_lock(&s->lock);
    s->stop_threads = false;
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < s->nw; i++) {
        int rc = pthread_create(&s->w[i].th, NULL, worker_main, &s->w[i]);
        s->w[i].started = rc == 0;
        if (rc != 0) {
            rp_log_at(RP_LOG_ERROR, s->def.name, s->w[i].def->name, NULL,
                      "could not start a metric thread: %s", strerror(rc));
            atomic_fetch_add(&s->exited, 1);
        }
    }
    s->phase = PM_RUNNING;
    rp_task_set_state(&s->task, "threads running");
}

static void tell_threads_to_stop(pm_source *s)
{
    pthread_mutex_lock(&s->lock);
    s->stop_threads = true;
    pthread_cond_broadcast(&s->stop_cond);
    pthread_cond_broadcast(&s->pool_cond);
    pthread_mutex_unlock(&s->lock);
}

/* Worker thread of the libuv pool: cancel the queries still running (PQcancel blocks). */
static void cancel_queries(uv_work_t *req)
{
    pm_source *s = req->data;
    char err[256];
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->nw; i++)
        if (s->w[i].cancel && !PQcancel(s->w[i].cancel, err, sizeof(err)))
            rp_log_at(RP_LOG_WARN, s->def.name, s->w[i].def->name, err, "could not cancel query");
    pthread_mutex_unlock(&s->lock);
}

static void check_threads(pm_source *s);

static void on_cancelled(uv_work_t *req, int status)
{
    pm_source *s = req->data;
    s->cancelling = false;
    check_threads(s);
}

static void on_drain_timeout(uv_timer_t *t)
{
    pm_source *s = t->data;
    if (s->cancelling)
        return;
    rp_log_at(RP_LOG_WARN, s->def.name, NULL, NULL,
              "metric queries still running after the drain time: cancelling them");
    s->cancelling = true;
    s->cancel_work.data = s;
    uv_queue_work(s->opts->loop, &s->cancel_work, cancel_queries, on_cancelled);
}

static void free_source(pm_source *s);

static void on_handle_closed(uv_handle_t *h)
{
    pm_source *s = h->data;
    if (--s->open_handles == 0)
        free_source(s);
}

static rp_metric_count *find_carried(const pm_source *s, const char *name)
{
    for (size_t i = 0; i < s->ncarried; i++)
        if (strcmp(s->carried[i].metric, name) == 0)
            return &s->carried[i];
    return NULL;
}

/* Keep a joined worker's counts for the next threads of the same metric. */
static void carry_counts(pm_source *s, const pm_worker *w)
{
    rp_metric_count *c = find_carried(s, w->def->name);
    if (!c) {
        rp_grow((void **)&s->carried, &s->cap_carried, s->ncarried + 1, sizeof(*s->carried));
        c = &s->carried[s->ncarried++];
        *c = (rp_metric_count){.metric = rp_strdup(w->def->name)};
    }
    c->fetches += w->fetches;
    c->errors += w->errors;
}

static void join_threads(pm_source *s)
{
    for (size_t i = 0; i < s->nw; i++) {
        if (s->w[i].started)
            pthread_join(s->w[i].th, NULL); /* they have all returned: no wait */
        carry_counts(s, &s->w[i]);
    }
    free(s->w);
    s->w = NULL;
    s->nw = 0;
}

/* On the loop, after every wake-up: when the threads are gone, restart or close. */
static void check_threads(pm_source *s)
{
    if (s->phase < PM_RESTARTING || atomic_load(&s->exited) < s->nw || s->cancelling)
        return;
    join_threads(s);
    deliver(s);
    uv_timer_stop(&s->drain);
    if (s->phase == PM_RESTARTING) {
        rp_source_def_fini(&s->def);
        s->def = s->next_def;
        memset(&s->next_def, 0, sizeof(s->next_def));
        rp_catalog_unref(s->cat);
        s->cat = s->next_cat;
        s->next_cat = NULL;
        start_threads(s);
        rp_log_at(RP_LOG_INFO, s->def.name, NULL, NULL, "metrics updated (%zu metric threads)",
                  s->nw);
        return;
    }
    close_pool(s);
    s->phase = PM_IDLE; /* nothing more to check */
    s->open_handles = 2;
    uv_close((uv_handle_t *)&s->async, on_handle_closed);
    uv_close((uv_handle_t *)&s->drain, on_handle_closed);
}

static void on_async(uv_async_t *a)
{
    pm_source *s = a->data;
    deliver(s);
    check_threads(s);
}

/*-------------------------------------------------------------------------
 * Creation and the collector interface
 *-------------------------------------------------------------------------
 */

static void set_kw(pm_source *s, size_t *n, const char *k, const char *v)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(s->kw[i], k) == 0)
            return; /* the conn_str's own value wins */
    s->kw[*n] = k;
    s->val[(*n)++] = v;
}

/* Keyword arrays for PQconnectdbParams: the conn_str's, then our defaults. */
static void build_keywords(pm_source *s)
{
    const rp_pgconn_params *p = &s->params;
    size_t n = 0;
    s->kw = rp_calloc(p->nkw + 4, sizeof(char *));
    s->val = rp_calloc(p->nkw + 4, sizeof(char *));
    for (size_t i = 0; i < p->nkw; i++) {
        s->kw[n] = p->kw[i];
        s->val[n++] = p->val[i];
    }
    snprintf(s->connect_timeout, sizeof(s->connect_timeout), "%d",
             s->opts->connect_timeout_ms < 2000 ? 2 : s->opts->connect_timeout_ms / 1000);
    set_kw(s, &n, "application_name", APP_NAME);
    set_kw(s, &n, "client_encoding", "UTF8");
    set_kw(s, &n, "connect_timeout", s->connect_timeout);
}

static void *pm_create(const rp_source_opts *opts, const rp_source_def *def, rp_catalog *cat)
{
    pm_source *s = rp_calloc(1, sizeof(*s));
    s->opts = opts;
    rp_source_def_copy(&s->def, def);
    s->cat = rp_catalog_ref(cat);
    rp_buf m = RP_BUF_INIT;
    rp_connstr_mask(def->conn_str, &m);
    s->masked_conn = m.data ? m.data : rp_strdup("");
    char err[256];
    if (rp_pgconn_params_load(&s->params, def->conn_str, err, sizeof(err)) < 0)
        rp_log_at(RP_LOG_ERROR, def->name, NULL, err, "invalid conn_str"); /* checked earlier */
    build_keywords(s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->pool_cond, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->stop_cond, &ca);
    pthread_condattr_destroy(&ca);
    s->tail = &s->head;
    s->backoff_ms = RP_BACKOFF_MIN_MS;
    s->rng = rp_hash_str(RP_HASH_INIT, def->name) | 1;
    uv_async_init(opts->loop, &s->async, on_async);
    uv_timer_init(opts->loop, &s->drain);
    s->async.data = s->drain.data = s;
    rp_task_register(&s->task, "source", def->name, NULL);
    return s;
}

static void pm_start(void *c)
{
    start_threads(c);
}

static void pm_update(void *c, const rp_source_def *def, rp_catalog *cat)
{
    pm_source *s = c;
    if (s->phase == PM_CLOSING)
        return;
    if (s->next_cat) { /* a restart is already pending: take the newest */
        rp_source_def_fini(&s->next_def);
        rp_catalog_unref(s->next_cat);
    }
    rp_source_def_copy(&s->next_def, def);
    s->next_cat = rp_catalog_ref(cat);
    s->phase = PM_RESTARTING;
    rp_task_set_state(&s->task, "restarting threads");
    tell_threads_to_stop(s);
    check_threads(s);
}

static void pm_stop(void *c, int drain_ms, rp_source_closed_cb cb, void *arg)
{
    pm_source *s = c;
    if (s->phase == PM_CLOSING || s->phase == PM_IDLE)
        return;
    s->closed_cb = cb;
    s->closed_arg = arg;
    s->phase = PM_CLOSING;
    rp_task_set_state(&s->task, "stopping threads");
    tell_threads_to_stop(s);
    uv_timer_start(&s->drain, on_drain_timeout, (uint64_t)(drain_ms > 0 ? drain_ms : 0), 0);
    check_threads(s);
}

static void free_source(pm_source *s)
{
    if (s->opts->retired)
        rp_source_stats_add(s->opts->retired, &s->stats);
    rp_source_closed_cb cb = s->closed_cb;
    void *arg = s->closed_arg;
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->pool_cond);
    pthread_cond_destroy(&s->stop_cond);
    free(s->idle);
    free(s->kw);
    free(s->val);
    rp_pgconn_params_fini(&s->params);
    rp_source_def_fini(&s->next_def);
    rp_catalog_unref(s->next_cat);
    rp_source_def_fini(&s->def);
    rp_catalog_unref(s->cat);
    rp_changes_free(s->changes);
    for (size_t i = 0; i < s->ncarried; i++)
        rp_free((char *)s->carried[i].metric);
    rp_free(s->carried);
    free(s->masked_conn);
    rp_task_unregister(&s->task);
    free(s);
    if (cb)
        cb(arg);
}

static const char *pm_name(const void *c)
{
    return ((const pm_source *)c)->def.name;
}

static const rp_source_def *pm_def_of(const void *c)
{
    return &((const pm_source *)c)->def;
}

static const rp_source_stats *pm_stats(const void *c)
{
    pm_source *s = (pm_source *)c;
    pthread_mutex_lock(&s->lock);
    s->snapshot = s->stats;
    pthread_mutex_unlock(&s->lock);
    return &s->snapshot;
}

static size_t pm_metric_counts(const void *c, rp_metric_count *out, size_t cap)
{
    pm_source *s = (pm_source *)c;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->nw && i < cap; i++) {
        const rp_metric_count *old = find_carried(s, s->w[i].def->name);
        out[i] = (rp_metric_count){s->w[i].def->name, s->w[i].fetches, s->w[i].errors};
        if (old) {
            out[i].fetches += old->fetches;
            out[i].errors += old->errors;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return s->nw;
}

static const char *pm_state(const void *c)
{
    const pm_source *s = c;
    static const char *const names[] = {"idle", "running", "restarting", "closing"};
    return s->phase == PM_RUNNING && s->down ? "backoff" : names[s->phase];
}

const rp_collector_ops rp_permetric_ops = {
    .mode = "per-metric",
    .create = pm_create,
    .start = pm_start,
    .update = pm_update,
    .stop = pm_stop,
    .name = pm_name,
    .def_of = pm_def_of,
    .stats = pm_stats,
    .state = pm_state,
    .metric_counts = pm_metric_counts,
};
