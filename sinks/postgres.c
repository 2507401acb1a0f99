/* SPDX-License-Identifier: PostgreSQL
 *
 * The PostgreSQL sink: measurements from all sources, in pgwatch's layout, written with
 * binary COPY over one non-blocking libpq connection on the loop (no thread).
 *
 * Each batch is encoded at once into COPY tuples (sinks/pgcopy.c) as one chunk of the
 * bounded buffer (sinks/pgbuffer.c). Every --batching-delay, or sooner when much is
 * waiting, the sink takes the table of the oldest chunk, makes sure its partitions
 * exist, and COPYs that table's waiting chunks in one statement; then the next table.
 * A chunk is freed only when its COPY succeeded: a COPY that fails wrote nothing (it is
 * one transaction), so chunks are retried whole, never duplicated. A COPY cut off by a
 * connection loss is looked up after reconnecting (its sequence number commits with
 * it). While the sink is down or slow, chunks wait up to --sink-buffer-bytes; beyond it
 * the oldest are dropped, counted per metric, and reported once per outage.
 *
 *   OFFLINE --client up--> SCHEMA --> [RESOLVE] --> [TABLES] --> IDLE
 *   IDLE --delay or backlog--> [PARTITIONS] --> COPY_START --> COPY_SEND --> COPY_WAIT
 *   COPY_WAIT --> [LISTING ...] --> IDLE;  IDLE --maintenance due--> MAINTENANCE --> IDLE
 *   any failure --> OFFLINE (the client backs off and reconnects: pgio/client.h)
 *   close: IDLE writes what waits, then CLOSING; the shutdown deadline cuts it short
 *
 * One statement is in flight at a time; the state says which, and query_done() reads
 * its result. The uv callbacks and the client's callback only translate their event and
 * call step(). The sink logs its own transitions (rp_sink_failed, rp_sink_recovered).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <uv.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/mem.h"
#include "pgio/client.h"
#include "pgio/connstr.h"
#include "pgio/pgconn.h"
#include "sinks/pgbuffer.h"
#include "sinks/pgcopy.h"
#include "sinks/postgres_schema.h"
#include "sinks/sink.h"
#include "sinks/spool.h"

#define BACKOFF_MAX_MS   30000 /* rows wait in memory: retry sooner than a source */
#define QUERY_TIMEOUT_MS 120000
#define COPY_MAX_BYTES   (8u << 20)
#define PARTITIONS_AHEAD 3

typedef enum ps_state {
    PS_OFFLINE = 0, /* the client resolves, connects or backs off */
    PS_SCHEMA,      /* the schema script is in flight */
    PS_RESOLVE,     /* asking whether the COPY cut off by the connection loss committed */
    PS_TABLES,      /* creating the catalogue's metric tables */
    PS_IDLE,        /* connected; the timer is the batching delay when data waits */
    PS_PARTITIONS,  /* admin.ensure_partition_metric_time for the COPY about to start */
    PS_COPY_START,  /* COPY sent: waits for the server to accept data */
    PS_COPY_SEND,   /* sending the tuples */
    PS_COPY_WAIT,   /* COPY ended: committed or not is the server's until the result */
    PS_LISTING,     /* registering a (dbname, metric) pair */
    PS_MAINTENANCE, /* dropping old partitions and stale listing entries */
    PS_CLOSING,     /* handles closing; freed when the last is closed */
} ps_state;

static const char *const state_names[] = {"offline",   "schema",     "resolve",     "tables",
                                          "idle",      "partitions", "copy",        "copy",
                                          "copy-wait", "listing",    "maintenance", "closing"};

typedef enum ps_event {
    EV_UP,         /* the client connected */
    EV_IO,         /* socket readiness while connected */
    EV_TIMER,      /* the state's deadline, or the batching delay in IDLE */
    EV_DATA,       /* a batch was buffered */
    EV_FLUSH,      /* write what waits now */
    EV_MAINT,      /* maintenance is due */
    EV_CLOSE,      /* close requested: write what waits, then close */
    EV_CLOSE_LATE, /* the shutdown deadline passed */
} ps_event;

typedef struct pg_sink {
    rp_sink base;
    ps_state state;
    uv_loop_t *loop;
    rp_sink_opts opts;
    rp_pgclient client;     /* client.conn is the connection once connected */
    uv_timer_t timer;       /* batching delay, or the deadline of the statement in flight */
    uv_timer_t maint_timer; /* maintenance interval; shutdown deadline while closing */
    unsigned pending_closes;
    bool maint_due, closing, full_logged;
    unsigned readies;       /* times the schema was ready (reconnects = readies - 1) */
    char logged_error[256]; /* the last error logged, so that a repeated one is not */
    PGresult *result;       /* the statement's first error, else its last result */
    /* the COPY in flight */
    rp_pgcopy_stream copy;
    uint64_t copy_started_ns;
    int64_t writer;       /* this sink's row in admin.pgreaper_writer (random) */
    uint64_t seq;         /* sequence number of the last COPY sent */
    bool resolve_pending; /* the pinned chunks are of a COPY whose outcome is unknown */
    rp_spool *spool;      /* --sink-spool, or NULL */
    uint64_t next_id;     /* of the next chunk */
    uint64_t synced_at;   /* loop ms of the last spool sync */
    bool spool_failed;    /* the spool failed once (logged) */
    /* (dbname, table) pairs to register after a COPY; borrowed from the tables */
    const char **listing;
    size_t nlisting, cap_listing;
    rp_pgbuf buf;
    rp_pgcopy_enc enc;
    rp_buf scratch;
    char period[32]; /* --partition-interval as a PostgreSQL interval ("1 days") */
    rp_sink_closed_cb closed_cb;
    void *closed_arg;
} pg_sink;

static void step(pg_sink *s, ps_event ev);
static void next_work(pg_sink *s);
static void finish_close(pg_sink *s);

/*-------------------------------------------------------------------------
 * Helpers
 *-------------------------------------------------------------------------
 */

static void set_state(pg_sink *s, ps_state next)
{
    rp_log_at(RP_LOG_DEBUG, NULL, NULL, NULL, "sink %s: state %s -> %s", s->base.uri,
              state_names[s->state], state_names[next]);
    s->state = next;
    rp_task_set_state(&s->base.task, state_names[next]);
    uv_timer_stop(&s->timer);
}

static void on_timer(uv_timer_t *t);

static void arm(pg_sink *s, uint64_t ms)
{
    uv_timer_start(&s->timer, on_timer, ms, 0);
}

/* Log a sink error when it differs from the last one logged (transitions only). */
static void log_error_once(pg_sink *s, const char *what, const char *msg)
{
    char line[256];
    snprintf(line, sizeof(line), "%s: %s", what, msg);
    if (strcmp(line, s->logged_error) == 0)
        return;
    snprintf(s->logged_error, sizeof(s->logged_error), "%s", line);
    rp_log_error("sink %s: %s: %s", s->base.uri, what, msg);
}

static const char *conn_error(pg_sink *s)
{
    return rp_pgclient_conn_error(&s->client);
}

/* Give the connection up: the client reports EV_DOWN, handled by went_down(). */
static void fail(pg_sink *s, const char *why)
{
    rp_pgclient_fail(&s->client, why);
}

static bool result_ok(const PGresult *r)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

static const char *sqlstate(const PGresult *r)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return st ? st : "";
}

static const char *result_error(pg_sink *s, const PGresult *r)
{
    return r ? PQresultErrorMessage(r) : conn_error(s);
}

/*-------------------------------------------------------------------------
 * The spool and the buffer's bound
 *-------------------------------------------------------------------------
 */

/* A spool failure does not stop the sink: rows stay in memory, durability is lost. */
static void spool_check(pg_sink *s, int rc)
{
    if (rc < 0 && !s->spool_failed) {
        rp_log_error("sink %s: %s; rows are kept in memory only until it works again", s->base.uri,
                     rp_spool_error(s->spool));
        s->spool_failed = true;
    } else if (rc == 0 && s->spool_failed) {
        s->spool_failed = false;
    }
}

static void spool_sync(pg_sink *s)
{
    if (!s->spool)
        return;
    rp_spool_sync(s->spool);
    s->synced_at = uv_now(s->loop);
}

/* A chunk leaves the buffer for good (written or dropped). */
static void chunk_gone(void *arg, const rp_pgbuf_chunk *c)
{
    pg_sink *s = arg;
    if (s->spool)
        spool_check(s, rp_spool_done(s->spool, c->id));
}

static void remove_chunk(pg_sink *s, rp_pgbuf_chunk *c)
{
    chunk_gone(s, c);
    rp_pgbuf_remove(&s->buf, c);
}

static void sync_stats(pg_sink *s)
{
    s->base.stats.buffered_bytes = s->buf.bytes;
}

/* Drop the oldest chunks not in flight until the buffer fits its bound. */
static void enforce_bound(pg_sink *s)
{
    if (s->buf.bytes <= (uint64_t)s->opts.buffer_bytes)
        return;
    if (!s->full_logged) {
        rp_log_warn("sink %s: buffer of %lld bytes is full: dropping the oldest measurements "
                    "(counted per metric, reported when the sink catches up)",
                    s->base.uri, (long long)s->opts.buffer_bytes);
        s->full_logged = true;
    }
    s->base.stats.rows_dropped +=
        rp_pgbuf_evict(&s->buf, (uint64_t)s->opts.buffer_bytes, chunk_gone, s);
    sync_stats(s);
}

/* Log (once) what was dropped since the last report, per metric. */
static void report_drops(pg_sink *s, const char *when)
{
    rp_buf b = RP_BUF_INIT;
    uint64_t total = 0;
    for (rp_pgbuf_table *t = s->buf.tables; t; t = t->next) {
        if (!t->dropped_report)
            continue;
        rp_buf_printf(&b, "%s%s=%llu", total ? ", " : "", t->name,
                      (unsigned long long)t->dropped_report);
        total += t->dropped_report;
        t->dropped_report = 0;
    }
    if (total)
        rp_log_warn("sink %s: %llu rows were dropped %s because the buffer was full: %s",
                    s->base.uri, (unsigned long long)total, when, b.data);
    rp_buf_fini(&b);
    s->full_logged = false;
}

/*-------------------------------------------------------------------------
 * Accepting a batch
 *-------------------------------------------------------------------------
 */

/* Rows are kept when their time is within what retention keeps, plus a little ahead. */
static bool in_range(const pg_sink *s, int64_t t_us, int64_t now_us)
{
    int64_t keep_ms = s->opts.retention_ms > 7 * 86400000LL ? s->opts.retention_ms : 7 * 86400000LL;
    int64_t lo = now_us - (keep_ms + s->opts.partition_ms) * 1000;
    int64_t hi = now_us + (86400000LL + s->opts.partition_ms) * 1000;
    return t_us >= lo && t_us <= hi;
}

/* Encode b's rows into scratch; the rows kept and their partition range. */
static uint32_t encode_batch(pg_sink *s, rp_pgbuf_table *t, const rp_batch *b, int64_t *lo,
                             int64_t *hi)
{
    rp_pgcopy_begin(&s->enc, b);
    rp_buf_reset(&s->scratch);
    int64_t now = rp_clock_wall_ns() / 1000;
    uint32_t n = 0;
    *lo = INT64_MAX, *hi = INT64_MIN;
    for (size_t r = 0; r < b->nrows; r++) {
        int64_t t_us = rp_batch_row_time(b, r) / 1000;
        if (!in_range(s, t_us, now)) {
            if (t->out_of_range++ == 0)
                rp_log_warn("sink %s: metric \"%s\" of source \"%s\" returned a row time outside "
                            "the kept window; such rows are not stored (counted)",
                            s->base.uri, b->storage, b->source);
            s->base.stats.rows_dropped++;
            continue;
        }
        int64_t p = rp_pgcopy_part_index(t_us, s->opts.partition_ms);
        *lo = p < *lo ? p : *lo;
        *hi = p > *hi ? p : *hi;
        rp_pgcopy_row(&s->enc, &s->scratch, b, r, t_us);
        n++;
    }
    return n;
}

/* A batch that could only be kept by evicting everything else, and still not fit. */
static bool oversize(pg_sink *s, rp_pgbuf_table *t, const rp_batch *b, uint32_t n)
{
    if (s->scratch.len + RP_PGBUF_CHUNK_OVERHEAD <= (uint64_t)s->opts.buffer_bytes)
        return false;
    if (!t->oversize_logged)
        rp_log_error("sink %s: %u rows of \"%s\" from source \"%s\" take %zu bytes, more than "
                     "--sink-buffer-bytes (%lld): not stored (counted as dropped), nothing "
                     "else evicted",
                     s->base.uri, n, b->storage, b->source, s->scratch.len,
                     (long long)s->opts.buffer_bytes);
    t->oversize_logged = true;
    t->dropped += n;
    s->base.stats.rows_dropped += n;
    return true;
}

static void pg_write_batch(rp_sink *base, const rp_batch *b)
{
    pg_sink *s = (pg_sink *)base;
    if (b->nrows == 0)
        return;
    rp_pgbuf_table *t = rp_pgbuf_table_for(&s->buf, b->storage);
    int64_t lo, hi;
    uint32_t n = encode_batch(s, t, b, &lo, &hi);
    base->stats.batches++;
    base->stats.rows += b->nrows;
    if (n == 0 || oversize(s, t, b, n))
        return;
    rp_spool_chunk sc = {s->next_id++, t->name, b->source,       n,
                         lo,           hi,      s->scratch.data, s->scratch.len};
    rp_pgbuf_add(&s->buf, t, &sc);
    sync_stats(s);
    if (s->spool) {
        spool_check(s, rp_spool_add(s->spool, &sc));
        if (uv_now(s->loop) - s->synced_at >= (uint64_t)s->opts.batching_delay_ms)
            spool_sync(s);
    }
    enforce_bound(s);
    step(s, EV_DATA);
}

/*-------------------------------------------------------------------------
 * Statements: one in flight, its state names it
 *-------------------------------------------------------------------------
 */

/* Send a statement and enter the state that waits for its result. */
static void send_query(pg_sink *s, ps_state waiting, const char *sql, int nparams,
                       const char *const *params)
{
    int ok = nparams ? PQsendQueryParams(s->client.conn, sql, nparams, NULL, params, NULL, NULL, 0)
                     : PQsendQuery(s->client.conn, sql);
    if (!ok) {
        fail(s, NULL);
        return;
    }
    set_state(s, waiting);
    arm(s, QUERY_TIMEOUT_MS);
    int f = PQflush(s->client.conn);
    if (f < 0 || rp_pgclient_watch(&s->client, f ? UV_READABLE | UV_WRITABLE : UV_READABLE) < 0)
        fail(s, NULL);
}

/* Keep the first error, else the last result (a script returns several). */
static void keep_result(pg_sink *s, PGresult *r)
{
    if (!s->result || result_ok(s->result)) {
        PQclear(s->result);
        s->result = r;
    } else {
        PQclear(r);
    }
}

static void query_done(pg_sink *s, PGresult *r);
static void copy_accepted(pg_sink *s);

/* Read what arrived; when the statement is complete, query_done() takes its result. */
static void pump_query(pg_sink *s)
{
    int f = -1;
    if (((s->client.io_events & UV_READABLE) && !PQconsumeInput(s->client.conn)) ||
        (f = PQflush(s->client.conn)) < 0) {
        fail(s, NULL);
        return;
    }
    while (!PQisBusy(s->client.conn)) {
        PGresult *r = PQgetResult(s->client.conn);
        if (!r) {
            PGresult *first = s->result;
            s->result = NULL;
            query_done(s, first);
            PQclear(first);
            return;
        }
        if (PQresultStatus(r) == PGRES_COPY_IN) {
            PQclear(r);
            copy_accepted(s);
            return;
        }
        keep_result(s, r);
    }
    if (PQstatus(s->client.conn) == CONNECTION_BAD)
        fail(s, NULL);
    else if (rp_pgclient_watch(&s->client, f ? UV_READABLE | UV_WRITABLE : UV_READABLE) < 0)
        fail(s, "could not watch the sink connection's socket");
}

/*-------------------------------------------------------------------------
 * A COPY: partitions, the statement, the tuples, the outcome
 *-------------------------------------------------------------------------
 */

static void send_copy(pg_sink *s)
{
    rp_pgbuf_table *t = s->buf.copy_table;
    char *ident = PQescapeIdentifier(s->client.conn, t->name, strlen(t->name));
    if (!ident) {
        fail(s, NULL);
        return;
    }
    /* One implicit transaction: the rows and this COPY's sequence number commit together. */
    rp_buf sql = RP_BUF_INIT;
    rp_buf_printf(&sql,
                  "COPY public.%s (time, dbname, data, tag_data) FROM STDIN (FORMAT binary); "
                  "insert into admin.pgreaper_writer (writer, seq) values (%lld, %llu) "
                  "on conflict (writer) do update set seq = excluded.seq, updated_on = now()",
                  ident, (long long)s->writer, (unsigned long long)++s->seq);
    PQfreemem(ident);
    if (s->spool) {
        uint64_t *ids = rp_calloc(s->buf.ncopy, sizeof(uint64_t));
        for (size_t i = 0; i < s->buf.ncopy; i++)
            ids[i] = s->buf.copy[i]->id;
        spool_check(s, rp_spool_copy(s->spool, s->seq, ids, s->buf.ncopy));
        rp_free(ids);
    }
    rp_pgcopy_stream_init(&s->copy, rp_pgbuf_pinned_iov(&s->buf), s->buf.ncopy);
    s->copy_started_ns = uv_hrtime();
    send_query(s, PS_COPY_START, sql.data, 0, NULL);
    rp_buf_fini(&sql);
}

/* Pin the oldest table's chunks; create the partitions they need unless known. */
static void start_copy(pg_sink *s)
{
    rp_pgbuf_pin_oldest(&s->buf, COPY_MAX_BYTES);
    rp_pgbuf_table *t = s->buf.copy_table;
    int64_t lo, hi;
    rp_pgbuf_pinned_parts(&s->buf, &lo, &hi);
    int64_t now_part = rp_pgcopy_part_index(rp_clock_wall_ns() / 1000, s->opts.partition_ms);
    hi = hi > now_part ? hi : now_part;
    if (t->ensured && lo >= t->ens_lo && hi <= t->ens_hi) {
        send_copy(s);
        return;
    }
    if (t->ensured) { /* keep one contiguous known range */
        lo = lo < t->ens_lo ? lo : t->ens_lo;
        hi = hi > t->ens_hi ? hi : t->ens_hi;
    }
    t->ens_lo = lo;
    t->ens_hi = hi + PARTITIONS_AHEAD;
    char from[32], to[32];
    double secs = (double)s->opts.partition_ms / 1000.0;
    snprintf(from, sizeof(from), "%.0f", (double)lo * secs);
    snprintf(to, sizeof(to), "%.0f", (double)t->ens_hi * secs);
    const char *params[4] = {t->name, from, to, s->period};
    t->ensured = true; /* cleared if it fails */
    /* pgwatch's function, one partition after the other until [from, to] is covered, so
     * that the bounds are the ones pgwatch computes whoever creates them */
    send_query(s, PS_PARTITIONS,
               "with recursive p (upto) as (\n"
               "  select (admin.ensure_partition_metric_time($1, to_timestamp($2::float8),\n"
               "                                             $4::interval)).part_available_to\n"
               "    from (select set_config('lock_timeout', '10s', true)) l\n"
               "  union all\n"
               "  select (admin.ensure_partition_metric_time($1, p.upto, $4::interval))"
               ".part_available_to\n"
               "    from p where p.upto <= to_timestamp($3::float8))\n"
               "select count(*) from p",
               4, params);
}

static void partitions_done(pg_sink *s, PGresult *r)
{
    rp_pgbuf_table *t = s->buf.copy_table;
    if (!result_ok(r)) {
        char what[160];
        snprintf(what, sizeof(what), "could not create partitions for \"%s\"", t->name);
        log_error_once(s, what, result_error(s, r));
        t->ensured = false;
        rp_pgbuf_unpin(&s->buf);
        fail(s, "partition creation failed");
        return;
    }
    send_copy(s);
}

static void copy_accepted(pg_sink *s)
{
    set_state(s, PS_COPY_SEND);
    arm(s, QUERY_TIMEOUT_MS);
    step(s, EV_IO);
}

/* Hand pieces to libpq; 1: all handed (COPY ended), 0: wait for writable, -1: failed. */
static int put_copy(pg_sink *s)
{
    const char *p;
    size_t n;
    while (rp_pgcopy_stream_peek(&s->copy, &p, &n)) {
        int r = PQputCopyData(s->client.conn, p, (int)n);
        if (r <= 0)
            return r;
        s->base.stats.bytes += n;
        rp_pgcopy_stream_advance(&s->copy, n);
    }
    int e = PQputCopyEnd(s->client.conn, NULL);
    return e < 0 ? -1 : e;
}

static void pump_copy(pg_sink *s)
{
    if ((s->client.io_events & UV_READABLE) && !PQconsumeInput(s->client.conn)) {
        fail(s, NULL);
        return;
    }
    int r = put_copy(s);
    /* Only flush here: consuming input again after queueing COPY data made COPYs stall
     * under CPU load in sink.py, 5 runs of 7. */
    int f = r < 0 ? -1 : PQflush(s->client.conn);
    if (f < 0) {
        fail(s, NULL);
        return;
    }
    if (r == 1) { /* COPY ended: from now on only the server knows whether it commits */
        s->base.stats.rows_unacked = rp_pgbuf_pinned_rows(&s->buf);
        set_state(s, PS_COPY_WAIT);
        arm(s, QUERY_TIMEOUT_MS);
    }
    int events = (r == 0 || f) ? UV_READABLE | UV_WRITABLE : UV_READABLE;
    if (rp_pgclient_watch(&s->client, events) < 0)
        fail(s, "could not watch the sink connection's socket");
}

static void queue_listing(pg_sink *s, rp_pgbuf_table *t, const char *dbname)
{
    if (rp_pgbuf_listed(t, dbname))
        return;
    rp_grow((void **)&s->listing, &s->cap_listing, s->nlisting + 2, sizeof(char *));
    s->listing[s->nlisting++] = t->listed[t->nlisted - 1];
    s->listing[s->nlisting++] = t->name;
}

static void copy_succeeded(pg_sink *s)
{
    rp_sink_note_write(&s->base, (uv_hrtime() - s->copy_started_ns) / 1000);
    rp_pgbuf_table *t = s->buf.copy_table;
    t->failures = 0;
    for (size_t i = 0; i < s->buf.ncopy; i++) {
        rp_pgbuf_chunk *c = s->buf.copy[i];
        queue_listing(s, t, c->dbname);
        s->base.stats.rows_written += c->nrows;
        remove_chunk(s, c);
    }
    s->buf.ncopy = 0;
    sync_stats(s);
}

/* Errors that say "not now" rather than "never": keep the rows and reconnect later. */
static bool transient(const char *st)
{
    return !strncmp(st, "08", 2) || !strncmp(st, "53", 2) || !strncmp(st, "57", 2) ||
           !strncmp(st, "40", 2) || !strcmp(st, "55P03") || !strcmp(st, "42501") || !*st;
}

/* A COPY that failed wrote nothing. Missing table or partition: recreate and retry;
 * anything else twice in a row: the rows cannot be stored, drop and count them. */
static void copy_failed(pg_sink *s, PGresult *r)
{
    rp_pgbuf_table *t = s->buf.copy_table;
    const char *st = sqlstate(r);
    t->ensured = false;
    if (++t->failures <= 2 && (!strcmp(st, "23514") || !strcmp(st, "42P01")))
        return; /* the next cycle recreates what is missing */
    if (t->failures <= 1)
        return;
    uint64_t rows = rp_pgbuf_pinned_rows(&s->buf);
    for (size_t i = 0; i < s->buf.ncopy; i++)
        remove_chunk(s, s->buf.copy[i]);
    s->buf.ncopy = 0;
    sync_stats(s);
    s->base.stats.rows_dropped += rows;
    t->dropped += rows;
    rp_log_error("sink %s: could not store %llu rows of \"%s\": %s", s->base.uri,
                 (unsigned long long)rows, t->name, r ? PQresultErrorMessage(r) : "no result");
    t->failures = 0;
}

/* The COPY's statement finished (or failed before the server took data). A clean result,
 * or a permanent error on a healthy connection, settles its rows; a lost connection or
 * a transient error (the server may have committed before it failed) leaves them pinned
 * for resolve_unknown. */
static void copy_done(pg_sink *s, PGresult *r)
{
    if (PQstatus(s->client.conn) == CONNECTION_BAD || (!result_ok(r) && transient(sqlstate(r)))) {
        char why[300];
        snprintf(why, sizeof(why), "%s", result_error(s, r));
        fail(s, why); /* went_down() keeps a sent COPY's chunks pinned for resolve_unknown */
        return;
    }
    s->base.stats.rows_unacked = 0;
    if (result_ok(r))
        copy_succeeded(s);
    else
        copy_failed(s, r);
    rp_pgbuf_unpin(&s->buf);
    next_work(s);
}

/*-------------------------------------------------------------------------
 * Listing, maintenance, connecting
 *-------------------------------------------------------------------------
 */

static bool send_listing(pg_sink *s)
{
    if (s->nlisting == 0)
        return false;
    s->nlisting -= 2;
    const char *params[2] = {s->listing[s->nlisting], s->listing[s->nlisting + 1]};
    send_query(s, PS_LISTING,
               "insert into admin.all_distinct_dbname_metrics (dbname, metric) "
               "values ($1, $2) on conflict do nothing",
               2, params);
    return true;
}

static void start_maintenance(pg_sink *s)
{
    s->maint_due = false;
    char older[32];
    snprintf(older, sizeof(older), "%lld", (long long)(s->opts.retention_ms / 1000));
    const char *params[1] = {older};
    const char *sql =
        s->opts.retention_ms > 0
            ? "select admin.drop_old_time_partitions(older_than => make_interval(secs => "
              "$1::float8)), admin.maintain_unique_sources(), admin.forget_stale_writers() "
              "from (select set_config('lock_timeout', '5s', true)) l"
            : "select 0, admin.maintain_unique_sources(), admin.forget_stale_writers(), $1::text "
              "from (select set_config('lock_timeout', '5s', true)) l";
    send_query(s, PS_MAINTENANCE, sql, 1, params);
}

static void maintenance_done(pg_sink *s, PGresult *r)
{
    if (!result_ok(r)) {
        rp_log_warn("sink %s: maintenance failed (retried at the next interval): %s", s->base.uri,
                    result_error(s, r));
        return;
    }
    const char *dropped = PQgetvalue(r, 0, 0);
    rp_log_at(atoi(dropped) > 0 ? RP_LOG_INFO : RP_LOG_DEBUG, NULL, NULL, NULL,
              "sink %s: maintenance dropped %s partitions older than the retention window "
              "and %s stale listing entries",
              s->base.uri, dropped, PQgetvalue(r, 0, 1));
    for (rp_pgbuf_table *t = s->buf.tables; t; t = t->next) {
        rp_pgbuf_forget_listing(t); /* re-register the pairs it may have removed */
        t->ensured = false;
    }
}

/* Tables for the catalogue's metrics, made up front (failure is not fatal). pgwatch's
 * ensure_dummy_metrics_table checks and creates without a lock, so each call runs under
 * the metric's own advisory lock (the one ensure_partition_metric_time takes), taken in
 * name order: writers starting together on a new sink wait for each other instead of
 * colliding on the table's row type. */
static void after_schema(pg_sink *s)
{
    if (!s->opts.metric_tables || !*s->opts.metric_tables) {
        next_work(s);
        return;
    }
    const char *params[1] = {s->opts.metric_tables};
    send_query(s, PS_TABLES,
               "select count(*) filter (where admin.ensure_dummy_metrics_table(m.m))\n"
               "  from (select distinct m from unnest(string_to_array($1, E'\\n')) m\n"
               "         order by m) m\n"
               "  cross join lateral (select pg_advisory_xact_lock(coalesce(nullif(\n"
               "    regexp_replace(md5(m.m), '\\D', '', 'g'), ''), '0')::varchar(10)::int8)) l",
               1, params);
}

/* Whether the COPY cut off by the connection loss committed: its sequence number is in
 * admin.pgreaper_writer if and only if it did. */
static void resolve_unknown(pg_sink *s)
{
    char writer[24], seq[24];
    snprintf(writer, sizeof(writer), "%lld", (long long)s->writer);
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)s->seq);
    const char *params[2] = {writer, seq};
    send_query(s, PS_RESOLVE,
               "select coalesce((select seq from admin.pgreaper_writer where writer = $1), 0) "
               ">= $2::bigint",
               2, params);
}

static void resolve_done(pg_sink *s, PGresult *r)
{
    if (!result_ok(r) || PQntuples(r) != 1) {
        log_error_once(s, "could not look up the outcome of an interrupted COPY",
                       result_error(s, r));
        fail(s, "could not look up the outcome of an interrupted COPY");
        return;
    }
    bool written = PQgetvalue(r, 0, 0)[0] == 't';
    s->resolve_pending = false;
    s->base.stats.rows_unacked = 0;
    s->base.stats.copies_resolved++;
    rp_log_info("sink %s: the COPY of %llu rows to \"%s\" cut off by the connection loss %s",
                s->base.uri, (unsigned long long)rp_pgbuf_pinned_rows(&s->buf),
                s->buf.copy_table->name,
                written ? "had been committed: not sent again" : "was not committed: sent again");
    if (written)
        copy_succeeded(s);
    rp_pgbuf_unpin(&s->buf);
    after_schema(s);
}

static void schema_done(pg_sink *s, PGresult *r)
{
    if (!result_ok(r)) {
        char why[512];
        snprintf(why, sizeof(why), "%s%s", result_error(s, r),
                 !strcmp(sqlstate(r), "42501")
                     ? " (the sink role needs CREATE on the database and on schema public, "
                       "or an administrator must run the schema setup once)"
                     : "");
        /* A failed script leaves the transaction open: abandon the connection. */
        log_error_once(s, "could not prepare the sink schema", why);
        fail(s, why);
        return;
    }
    rp_pgclient_settled(&s->client);
    s->logged_error[0] = '\0';
    if (s->base.failing)
        rp_sink_recovered(&s->base, "sink %s: connected again; %llu rows waiting are being written",
                          s->base.uri, (unsigned long long)s->buf.rows);
    else
        rp_log_info("sink %s: connected, schema ready", s->base.uri);
    s->base.stats.reconnects += s->readies++ > 0;
    report_drops(s, "while the sink was unavailable");
    if (s->resolve_pending)
        resolve_unknown(s);
    else
        after_schema(s);
}

/* The statement in flight is complete: r is its first error, else its last result. */
static void query_done(pg_sink *s, PGresult *r)
{
    switch (s->state) {
    case PS_SCHEMA:
        schema_done(s, r);
        return;
    case PS_RESOLVE:
        resolve_done(s, r);
        return;
    case PS_PARTITIONS:
        partitions_done(s, r);
        return;
    case PS_COPY_START:
    case PS_COPY_WAIT:
        copy_done(s, r);
        return;
    case PS_TABLES:
        if (!result_ok(r))
            rp_log_warn("sink %s: could not create the metric tables up front (they are "
                        "created when first written): %s",
                        s->base.uri, result_error(s, r));
        break;
    case PS_LISTING:
        if (!result_ok(r))
            rp_log_warn("sink %s: could not update admin.all_distinct_dbname_metrics: %s",
                        s->base.uri, result_error(s, r));
        break;
    case PS_MAINTENANCE:
        maintenance_done(s, r);
        break;
    default:
        return;
    }
    next_work(s);
}

/*-------------------------------------------------------------------------
 * Idle: what to do next
 *-------------------------------------------------------------------------
 */

/* Rewrite the spool from the buffer when it has grown past twice what is live. Only
 * between COPYs: no COPY outcome is pending then. */
static bool next_live(void *arg, rp_spool_chunk *sc)
{
    rp_pgbuf_chunk **cur = arg;
    rp_pgbuf_chunk *c = *cur;
    if (!c)
        return false;
    *sc = (rp_spool_chunk){c->id,      c->t->name, c->dbname, c->nrows,
                           c->part_lo, c->part_hi, c->data,   c->len};
    *cur = c->next;
    return true;
}

static void maybe_compact(pg_sink *s)
{
    if (!s->spool || s->resolve_pending || !rp_spool_wants_compaction(s->spool, s->buf.bytes))
        return;
    rp_pgbuf_chunk *cur = s->buf.head;
    spool_check(s, rp_spool_compact(s->spool, s->seq, next_live, &cur));
}

static bool backlog(const pg_sink *s)
{
    return s->buf.bytes >= (uint64_t)s->opts.buffer_bytes / 4 || s->buf.head->t != s->buf.tail->t ||
           s->buf.rows > 10000;
}

static void start_flush(pg_sink *s)
{
    spool_sync(s);
    if (s->buf.head)
        start_copy(s);
}

/* Connected with nothing in flight: register, maintain, write, or wait. */
static void next_work(pg_sink *s)
{
    set_state(s, PS_IDLE);
    if (rp_pgclient_watch(&s->client, UV_READABLE) < 0) {
        fail(s, "could not watch the sink connection's socket");
        return;
    }
    if (send_listing(s))
        return;
    maybe_compact(s);
    if (s->maint_due && !s->closing) {
        start_maintenance(s);
        return;
    }
    if (!s->buf.head) {
        if (s->closing)
            finish_close(s);
        else if (s->full_logged || s->base.stats.rows_dropped)
            report_drops(s, "while the sink was unavailable or slow");
        return;
    }
    if (s->closing || backlog(s))
        start_flush(s); /* keep writing while a backlog remains or we are closing */
    else
        arm(s, (uint64_t)s->opts.batching_delay_ms);
}

/*-------------------------------------------------------------------------
 * The client's events, the timers, and step()
 *-------------------------------------------------------------------------
 */

/* The connection was lost or could not be made (the client backs off and retries). */
static void went_down(pg_sink *s)
{
    bool was_up = s->state != PS_OFFLINE && s->state != PS_SCHEMA;
    PQclear(s->result);
    s->result = NULL;
    if (s->state == PS_COPY_WAIT)
        s->resolve_pending = true; /* keep them pinned: looked up after reconnecting */
    if (!s->resolve_pending)
        rp_pgbuf_unpin(&s->buf);
    s->nlisting = 0;
    for (rp_pgbuf_table *t = s->buf.tables; t; t = t->next) {
        t->ensured = false; /* someone may have dropped partitions meanwhile */
        rp_pgbuf_forget_listing(t);
    }
    set_state(s, PS_OFFLINE);
    s->base.stats.write_errors++;
    rp_sink_failed(&s->base, s->client.error,
                   "sink %s: %s; measurements are kept (up to --sink-buffer-bytes) until it is "
                   "back",
                   s->base.uri,
                   was_up ? "lost connection to the sink" : "could not connect to the sink");
    if (s->closing && !s->buf.head) /* nothing left to write: no reason to wait */
        finish_close(s);
}

static void on_client(void *owner, rp_pgclient_event ev)
{
    pg_sink *s = owner;
    if (ev == RP_PGCLIENT_EV_DOWN) {
        went_down(s);
        return;
    }
    if (s->client.io_error) /* let libpq read the error */
        s->client.io_events |= UV_READABLE;
    step(s, ev == RP_PGCLIENT_EV_UP ? EV_UP : EV_IO);
}

static void on_timer(uv_timer_t *t)
{
    step(t->data, EV_TIMER);
}

static void on_maint_timer(uv_timer_t *t)
{
    pg_sink *s = t->data;
    step(s, s->closing ? EV_CLOSE_LATE : EV_MAINT);
}

static void step_offline(pg_sink *s, ps_event ev)
{
    if (ev == EV_UP) {
        send_query(s, PS_SCHEMA, rp_pg_schema_sql, 0, NULL);
    } else if (ev == EV_CLOSE && !s->buf.head) {
        finish_close(s);
    } else if (ev == EV_CLOSE) {
        rp_pgclient_connect(&s->client); /* try to write what waits now, not after the backoff */
    }
}

static void step_idle(pg_sink *s, ps_event ev)
{
    switch (ev) {
    case EV_IO: /* nothing is expected: a notice, or the server went away */
        if (!PQconsumeInput(s->client.conn) || PQstatus(s->client.conn) == CONNECTION_BAD)
            fail(s, NULL);
        break;
    case EV_TIMER:
    case EV_FLUSH:
        start_flush(s);
        break;
    case EV_DATA:
        if (s->buf.bytes >= (uint64_t)s->opts.buffer_bytes / 4)
            start_flush(s);
        else if (!uv_is_active((uv_handle_t *)&s->timer))
            arm(s, (uint64_t)s->opts.batching_delay_ms);
        break;
    case EV_MAINT:
    case EV_CLOSE:
        next_work(s);
        break;
    default:
        break;
    }
}

static void step(pg_sink *s, ps_event ev)
{
    if (ev == EV_CLOSE_LATE) {
        finish_close(s);
        return;
    }
    switch (s->state) {
    case PS_OFFLINE:
        step_offline(s, ev);
        break;
    case PS_IDLE:
        step_idle(s, ev);
        break;
    case PS_COPY_SEND:
        if (ev == EV_IO)
            pump_copy(s);
        else if (ev == EV_TIMER)
            fail(s, "no answer from the sink before the deadline");
        break;
    case PS_SCHEMA:
    case PS_RESOLVE:
    case PS_TABLES:
    case PS_PARTITIONS:
    case PS_COPY_START:
    case PS_COPY_WAIT:
    case PS_LISTING:
    case PS_MAINTENANCE:
        if (ev == EV_IO)
            pump_query(s);
        else if (ev == EV_TIMER)
            fail(s, "no answer from the sink before the deadline");
        break;
    case PS_CLOSING:
        break;
    }
}

/*-------------------------------------------------------------------------
 * Opening and closing
 *-------------------------------------------------------------------------
 */

static void replayed(void *arg, const rp_spool_chunk *sc)
{
    pg_sink *s = arg;
    rp_pgbuf_add(&s->buf, rp_pgbuf_table_for(&s->buf, sc->table), sc);
}

/* Open the spool: its chunks come back into the buffer in order; the COPY cut off by a
 * crash, if any, is looked up after connecting (see resolve_unknown). */
static int open_spool(pg_sink *s, const char *dir, char *err, size_t errlen)
{
    rp_spool_state st;
    if (rp_spool_open(dir, s->loop, replayed, s, &st, &s->spool, err, errlen) < 0)
        return -EIO;
    s->writer = st.writer;
    s->seq = st.seq;
    s->next_id = st.next_id;
    s->base.stats.rows_replayed = st.rows;
    for (rp_pgbuf_chunk *c = s->buf.head; c && st.nunknown; c = c->next) {
        for (size_t i = 0; i < st.nunknown; i++)
            if (c->id == st.unknown_ids[i])
                rp_pgbuf_pin(&s->buf, c);
    }
    s->resolve_pending = s->buf.ncopy > 0;
    sync_stats(s);
    rp_free(st.unknown_ids);
    if (st.chunks)
        rp_log_info("sink %s: %llu rows (%llu chunks) from the spool in \"%s\" are written "
                    "first%s",
                    s->base.uri, (unsigned long long)st.rows, (unsigned long long)st.chunks, dir,
                    s->resolve_pending ? "; one COPY cut off by the stop is looked up" : "");
    return 0;
}

static int64_t random_writer(void)
{
    uint64_t w = 0;
    if (getrandom(&w, sizeof(w), 0) != (ssize_t)sizeof(w))
        w = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    return (int64_t)(w >> 1); /* positive: a bigint */
}

static void free_sink(pg_sink *s)
{
    rp_pgbuf_fini(&s->buf);
    if (s->spool)
        rp_spool_close(s->spool); /* syncs what is left: replayed at the next start */
    rp_buf_fini(&s->scratch);
    rp_pgcopy_enc_fini(&s->enc);
    rp_free(s->listing);
    if (s->closed_cb)
        s->closed_cb(s->closed_arg, &s->base.stats);
    rp_task_unregister(&s->base.task);
    rp_free((char *)s->opts.metric_tables);
    rp_free(s->base.uri);
    rp_free(s);
}

static int pg_check(const char *uri, char *err, size_t errlen)
{
    rp_pgconn_params p;
    char why[200];
    int rc = rp_pgconn_params_load(&p, uri, why, sizeof(why));
    rp_pgconn_params_fini(&p);
    if (rc < 0) {
        rp_buf masked = RP_BUF_INIT;
        rp_connstr_mask(uri, &masked);
        snprintf(err, errlen, "invalid PostgreSQL sink \"%s\": %s", masked.data, why);
        rp_buf_fini(&masked);
    }
    return rc;
}

/* In days when whole days (so that a week is "7 days", as pgwatch's users give it: the
 * partition then starts on Monday, and spans 7 calendar days across DST changes). */
static void format_period(int64_t ms, char *out, size_t len)
{
    if (ms % 86400000 == 0)
        snprintf(out, len, "%lld days", (long long)(ms / 86400000));
    else if (ms % 3600000 == 0)
        snprintf(out, len, "%lld hours", (long long)(ms / 3600000));
    else
        snprintf(out, len, "%lld seconds", (long long)(ms / 1000));
}

static int pg_open(const char *uri, uv_loop_t *loop, const rp_sink_opts *opts, rp_sink **out,
                   char *err, size_t errlen)
{
    if (pg_check(uri, err, errlen) < 0)
        return -EINVAL;
    pg_sink *s = rp_calloc(1, sizeof(*s));
    rp_buf masked = RP_BUF_INIT;
    rp_connstr_mask(uri, &masked);
    s->base.ops = &rp_sink_postgresql_ops;
    s->base.uri = masked.data;
    s->loop = loop;
    s->opts = *opts;
    s->opts.metric_tables = opts->metric_tables ? rp_strdup(opts->metric_tables) : NULL;
    format_period(opts->partition_ms, s->period, sizeof(s->period));
    s->writer = random_writer();
    if (opts->spool_dir && open_spool(s, opts->spool_dir, err, errlen) < 0) {
        free_sink(s);
        return -EIO;
    }
    rp_pgclient_opts co = {.application_name = "pgreaper-sink",
                           .connect_timeout_ms = (int)opts->connect_timeout_ms,
                           .backoff_min_ms = RP_BACKOFF_MIN_MS,
                           .backoff_max_ms = BACKOFF_MAX_MS,
                           .jitter_seed = (uint64_t)s->writer,
                           .task = &s->base.task,
                           .admit = opts->admit,
                           .admit_first = true};
    rp_pgclient_init(&s->client, loop, uri, &co, on_client, s);
    uv_timer_init(loop, &s->timer);
    uv_timer_init(loop, &s->maint_timer);
    s->timer.data = s->maint_timer.data = s;
    s->maint_due = opts->maintenance_ms > 0;
    if (opts->maintenance_ms > 0)
        uv_timer_start(&s->maint_timer, on_maint_timer, (uint64_t)opts->maintenance_ms,
                       (uint64_t)opts->maintenance_ms);
    rp_pgclient_connect(&s->client);
    *out = &s->base;
    return 0;
}

static int pg_flush(rp_sink *base)
{
    step((pg_sink *)base, EV_FLUSH);
    return 0;
}

static void on_part_closed(void *owner)
{
    pg_sink *s = owner;
    if (--s->pending_closes == 0)
        free_sink(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    on_part_closed(h->data);
}

/* Report what could not be written. */
static void account_at_exit(pg_sink *s)
{
    uint64_t unknown =
        s->state == PS_COPY_WAIT || s->resolve_pending ? rp_pgbuf_pinned_rows(&s->buf) : 0;
    uint64_t dropped = s->buf.rows - unknown;
    if (s->spool && s->buf.rows) {
        s->base.stats.rows_spooled_at_exit += s->buf.rows;
        rp_log_warn("sink %s: %llu rows could not be written before shutdown: kept in the "
                    "spool, written at the next start",
                    s->base.uri, (unsigned long long)s->buf.rows);
        unknown = dropped = 0;
    }
    if (dropped) {
        s->base.stats.rows_dropped += dropped;
        rp_log_error("sink %s: %llu rows could not be written before shutdown", s->base.uri,
                     (unsigned long long)dropped);
    }
    if (unknown) {
        s->base.stats.rows_unknown += unknown;
        rp_log_error("sink %s: %llu rows were sent in a COPY whose commit was not confirmed "
                     "before shutdown: they may or may not be stored",
                     s->base.uri, (unsigned long long)unknown);
    }
    s->base.stats.rows_unacked = 0;
    report_drops(s, "during this run");
}

/* Report, then close everything; freed when the last handle is closed. */
static void finish_close(pg_sink *s)
{
    if (s->state == PS_CLOSING)
        return;
    account_at_exit(s);
    PQclear(s->result);
    s->result = NULL;
    set_state(s, PS_CLOSING);
    s->pending_closes = 3;
    rp_pgclient_close(&s->client, on_part_closed);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
    uv_close((uv_handle_t *)&s->maint_timer, on_timer_closed);
}

static void pg_close(rp_sink *base, rp_sink_closed_cb cb, void *arg)
{
    pg_sink *s = (pg_sink *)base;
    s->closed_cb = cb;
    s->closed_arg = arg;
    s->closing = true;
    uv_timer_start(&s->maint_timer, on_maint_timer, (uint64_t)s->opts.shutdown_timeout_ms, 0);
    step(s, EV_CLOSE);
}

const rp_sink_ops rp_sink_postgresql_ops = {
    .scheme = "postgresql",
    .open = pg_open,
    .check = pg_check,
    .write_batch = pg_write_batch,
    .flush = pg_flush,
    .close = pg_close,
};

const rp_sink_ops rp_sink_postgres_ops = {
    .scheme = "postgres",
    .open = pg_open,
    .check = pg_check,
    .write_batch = pg_write_batch,
    .flush = pg_flush,
    .close = pg_close,
};
