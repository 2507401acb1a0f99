/* SPDX-License-Identifier: PostgreSQL
 *
 * The PostgreSQL sink: measurements from all sources, in pgwatch's layout, written with
 * binary COPY over one non-blocking libpq connection on the loop (no thread).
 *
 * Each batch is encoded at once into COPY tuples ("time, dbname, data jsonb, tag_data
 * jsonb"; the JSON is written straight into the buffer) as one chunk, appended to a
 * FIFO shared by all metric tables. Every --batching-delay, or sooner when much is
 * waiting, the sink takes the table of the oldest chunk, makes sure its partitions
 * exist, and COPYs that table's waiting chunks in one statement; then the next table.
 * A chunk is freed only when its COPY succeeded: a COPY that fails wrote nothing (it is
 * one transaction), so chunks are retried whole, never duplicated. While the sink is
 * down or slow, chunks wait up to --sink-buffer-bytes; beyond it the oldest are
 * dropped, counted per metric, and reported once per outage.
 *
 * States: BACKOFF → RESOLVING → CONNECTING → QUERY (schema) → IDLE ⇄ QUERY/COPY …
 * Like a source, this sink owns its connection and logs its own transitions.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <uv.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mem.h"
#include "pgio/connstr.h"
#include "pgio/pgconn.h"
#include "sinks/postgres_schema.h"
#include "sinks/sink.h"
#include "sinks/spool.h"

#define BACKOFF_MIN_MS   1000
#define BACKOFF_MAX_MS   30000
#define QUERY_TIMEOUT_MS 120000
#define COPY_MAX_BYTES   (8u << 20)
#define PARTITIONS_AHEAD 3
#define CHUNK_OVERHEAD   ((uint64_t)sizeof(chunk) + 16)
#define PG_EPOCH_US      946684800000000LL /* 2000-01-01 in Unix microseconds */

typedef enum ps_state {
    PS_BACKOFF = 0, /* waits to reconnect (timer) */
    PS_RESOLVING,   /* waits for uv_getaddrinfo */
    PS_CONNECTING,  /* waits for the socket as PQconnectPoll asks; deadline */
    PS_QUERY,       /* a statement is in flight: read results until NULL; deadline */
    PS_COPY_SEND,   /* COPY IN accepted: sending the tuples; deadline */
    PS_IDLE,        /* connected; the timer is the batching delay when data waits */
    PS_CLOSING,     /* handles closing; freed in the last close callback */
} ps_state;

static const char *const state_names[] = {"backoff", "resolving", "connecting", "query",
                                          "copy",    "idle",      "closing"};

struct ptable;

typedef struct chunk {
    struct chunk *next, *prev; /* global FIFO, oldest first */
    uint64_t id;               /* in the spool */
    struct ptable *t;
    uint32_t nrows;
    bool pinned;     /* part of the COPY in flight: never dropped */
    int64_t part_lo; /* partition indexes (time / partition interval) of its rows */
    int64_t part_hi;
    const char *dbname; /* inside data, after the tuples */
    size_t len;         /* tuple bytes */
    char data[];
} chunk;

typedef struct ptable {
    struct ptable *next;
    char *name; /* storage name = table name (quoted when used) */
    bool ensured;
    int64_t ens_lo, ens_hi;  /* partition indexes known to exist */
    uint64_t dropped;        /* rows dropped because the buffer was full */
    uint64_t dropped_report; /* ... since the last report */
    uint64_t out_of_range;   /* rows whose time lies outside what is kept */
    char **listed;           /* dbnames registered in admin.all_distinct_dbname_metrics */
    size_t nlisted, cap_listed;
    int failures;         /* consecutive failed COPYs of this table */
    bool oversize_logged; /* a batch larger than the whole buffer was refused (logged once) */
} ptable;

typedef struct pg_sink pg_sink;
typedef void (*done_fn)(pg_sink *s, PGresult *res);

struct pg_sink {
    rp_sink base;
    ps_state state;
    uv_loop_t *loop;
    rp_sink_opts opts;
    char *conninfo; /* the URI as given (with password): only for connecting */
    rp_pgconn_params params;
    size_t resolve_idx;
    bool resolving;
    uv_getaddrinfo_t resolver;
    PGconn *conn;
    rp_pgconn_watch watch; /* the poll handle on the connection's socket */
    int io_events;
    uv_timer_t timer;       /* backoff, batching delay, or the current deadline */
    uv_timer_t maint_timer; /* maintenance interval; shutdown deadline while closing */
    unsigned pending_closes;
    bool schema_ready, maint_due, connected_once, down_logged, closing, full_logged;
    char logged_error[256]; /* the last error logged, so that a repeated one is not */
    int backoff_ms;
    /* the statement in flight */
    done_fn done;
    PGresult *result; /* the first result of the statement (owned) */
    /* the COPY in flight */
    ptable *copy_table;
    chunk **copy_chunks;
    size_t ncopy, cap_copy, copy_idx, copy_off;
    int copy_phase; /* 0 header, 1 tuples, 2 trailer, 3 end */
    uint64_t copy_started_ns;
    int64_t writer;       /* this sink's row in admin.pgreaper_writer (random) */
    uint64_t seq;         /* sequence number of the last COPY sent */
    bool copy_unacked;    /* the COPY in flight was ended: committed or not is the server's */
    bool resolve_pending; /* copy_chunks are of a COPY cut off while unacknowledged */
    rp_spool *spool;      /* --sink-spool, or NULL */
    uint64_t next_id;     /* of the next chunk */
    uint64_t synced_at;   /* loop ms of the last spool sync */
    bool spool_failed;    /* the spool failed once (logged) */
    /* pending listing inserts after a COPY */
    char **listing;
    size_t nlisting, cap_listing;
    /* the buffer */
    chunk *head, *tail;
    uint64_t buffered_rows;
    ptable *tables;
    rp_buf scratch, keys;
    size_t *key_off;
    size_t key_cap;
    rp_sink_closed_cb closed_cb;
    void *closed_arg;
};

static void step_io(pg_sink *s);
static void enter_backoff(pg_sink *s, const char *why);
static void enter_idle(pg_sink *s);
static void start_flush(pg_sink *s);
static void finish_close(pg_sink *s);
static bool send_listing(pg_sink *s);
static uint64_t copy_rows(const pg_sink *s);

/*-------------------------------------------------------------------------
 * Helpers
 *-------------------------------------------------------------------------
 */

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void put_u16(rp_buf *b, uint16_t v)
{
    unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    rp_buf_append(b, x, 2);
}

static void put_u32(rp_buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    rp_buf_append(b, x, 4);
}

static void put_u64(rp_buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)(v >> 32));
    put_u32(b, (uint32_t)v);
}

static void patch_u32(rp_buf *b, size_t off, uint32_t v)
{
    unsigned char *p = (unsigned char *)b->data + off;
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static int64_t part_index(const pg_sink *s, int64_t time_us)
{
    int64_t step = s->opts.partition_ms * 1000;
    return time_us >= 0 ? time_us / step : -((-time_us + step - 1) / step);
}

static void set_state(pg_sink *s, ps_state next)
{
    rp_log_at(RP_LOG_DEBUG, NULL, NULL, NULL, "sink %s: state %d -> %d", s->base.uri, s->state,
              next);
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
    return rp_pgconn_error(s->conn, s->conninfo, s->base.last_error, sizeof(s->base.last_error));
}

/*-------------------------------------------------------------------------
 * Tables and the buffer
 *-------------------------------------------------------------------------
 */

static ptable *table_for(pg_sink *s, const char *name)
{
    for (ptable *t = s->tables; t; t = t->next) {
        if (strcmp(t->name, name) == 0)
            return t;
    }
    ptable *t = rp_calloc(1, sizeof(*t));
    t->name = rp_strdup(name);
    t->next = s->tables;
    s->tables = t;
    return t;
}

static void forget_listing(ptable *t)
{
    for (size_t i = 0; i < t->nlisted; i++)
        rp_free(t->listed[i]);
    t->nlisted = 0;
}

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

/* A chunk leaves the buffer for good (written or dropped). */
static void chunk_done(pg_sink *s, chunk *c)
{
    if (s->spool)
        spool_check(s, rp_spool_done(s->spool, c->id));
}

static void spool_sync(pg_sink *s)
{
    if (!s->spool)
        return;
    rp_spool_sync(s->spool);
    s->synced_at = uv_now(s->loop);
}

static void fifo_remove(pg_sink *s, chunk *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        s->tail = c->prev;
    s->base.stats.buffered_bytes -= c->len + CHUNK_OVERHEAD;
    s->buffered_rows -= c->nrows;
}

/* Drop the oldest chunks not in flight until the buffer fits its bound. */
static void enforce_bound(pg_sink *s)
{
    chunk *c = s->head;
    while (c && s->base.stats.buffered_bytes > (uint64_t)s->opts.buffer_bytes) {
        chunk *next = c->next;
        if (!c->pinned) {
            if (!s->full_logged) {
                rp_log_warn("sink %s: buffer of %lld bytes is full: dropping the oldest "
                            "measurements (counted per metric, reported when the sink catches up)",
                            s->base.uri, (long long)s->opts.buffer_bytes);
                s->full_logged = true;
            }
            fifo_remove(s, c);
            chunk_done(s, c);
            c->t->dropped += c->nrows;
            c->t->dropped_report += c->nrows;
            s->base.stats.rows_dropped += c->nrows;
            rp_free(c);
        }
        c = next;
    }
}

/* Log (once) what was dropped since the last report, per metric. */
static void report_drops(pg_sink *s, const char *when)
{
    rp_buf b = RP_BUF_INIT;
    uint64_t total = 0;
    for (ptable *t = s->tables; t; t = t->next) {
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
 * Encoding: one batch → one chunk of binary COPY tuples
 *-------------------------------------------------------------------------
 */

/* Escaped keys, once per batch: fields as in data, tags with "tag_" stripped. */
static void encode_keys(pg_sink *s, const rp_batch *b)
{
    rp_buf_reset(&s->keys);
    rp_grow((void **)&s->key_off, &s->key_cap, b->ncols + 1, sizeof(size_t));
    for (size_t c = 0; c < b->ncols; c++) {
        s->key_off[c] = s->keys.len;
        const char *name = b->cols[c].name;
        if (b->cols[c].role == RP_COL_TAG)
            name += 4;
        rp_buf_json_str(&s->keys, name, strlen(name));
        rp_buf_putc(&s->keys, ':');
    }
    s->key_off[b->ncols] = s->keys.len;
}

static void put_json_object(pg_sink *s, const rp_batch *b, size_t row, rp_col_role role,
                            bool custom_tags)
{
    rp_buf *o = &s->scratch;
    size_t len_at = o->len;
    put_u32(o, 0);
    rp_buf_putc(o, 1); /* jsonb binary format version */
    rp_buf_putc(o, '{');
    bool first = true;
    for (size_t i = 0; custom_tags && i < b->ncustom_tags; i++) {
        if (!first)
            rp_buf_putc(o, ',');
        first = false;
        rp_buf_json_str(o, b->custom_tags[i].key, strlen(b->custom_tags[i].key));
        rp_buf_putc(o, ':');
        rp_buf_json_str(o, b->custom_tags[i].value, strlen(b->custom_tags[i].value));
    }
    for (size_t c = 0; c < b->ncols; c++) {
        if (b->cols[c].role != role)
            continue;
        if (!first)
            rp_buf_putc(o, ',');
        first = false;
        rp_buf_append(o, s->keys.data + s->key_off[c], s->key_off[c + 1] - s->key_off[c]);
        rp_batch_json_value(o, b, row, c);
    }
    rp_buf_putc(o, '}');
    patch_u32(o, len_at, (uint32_t)(o->len - len_at - 4));
}

/* Rows are kept when their time is within what retention keeps, plus a little ahead. */
static bool in_range(const pg_sink *s, int64_t t_us, int64_t now_us)
{
    int64_t keep_ms = s->opts.retention_ms > 7 * 86400000LL ? s->opts.retention_ms : 7 * 86400000LL;
    int64_t lo = now_us - (keep_ms + s->opts.partition_ms) * 1000;
    int64_t hi = now_us + (86400000LL + s->opts.partition_ms) * 1000;
    return t_us >= lo && t_us <= hi;
}

static void encode_row(pg_sink *s, const rp_batch *b, size_t row, int64_t t_us, size_t dblen)
{
    rp_buf *o = &s->scratch;
    put_u16(o, 4);
    put_u32(o, 8);
    put_u64(o, (uint64_t)(t_us - PG_EPOCH_US));
    put_u32(o, (uint32_t)dblen);
    rp_buf_append(o, b->source, dblen);
    put_json_object(s, b, row, RP_COL_FIELD, false);
    put_json_object(s, b, row, RP_COL_TAG, true);
}

/* Append a chunk of encoded rows (copied) to the FIFO. */
static chunk *enqueue(pg_sink *s, ptable *t, const rp_spool_chunk *sc)
{
    size_t dblen = strlen(sc->dbname);
    chunk *c = rp_malloc(sizeof(chunk) + sc->len + dblen + 1);
    memset(c, 0, sizeof(*c));
    c->id = sc->id;
    c->t = t;
    c->nrows = sc->nrows;
    c->part_lo = sc->part_lo;
    c->part_hi = sc->part_hi;
    c->len = sc->len;
    memcpy(c->data, sc->data, c->len);
    memcpy(c->data + c->len, sc->dbname, dblen + 1);
    c->dbname = c->data + c->len;
    c->prev = s->tail;
    if (s->tail)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
    s->base.stats.buffered_bytes += c->len + CHUNK_OVERHEAD;
    s->buffered_rows += c->nrows;
    return c;
}

static void pg_write_batch(rp_sink *base, const rp_batch *b)
{
    pg_sink *s = (pg_sink *)base;
    if (b->nrows == 0)
        return;
    ptable *t = table_for(s, b->storage);
    encode_keys(s, b);
    rp_buf_reset(&s->scratch);
    size_t dblen = strlen(b->source);
    int64_t now = wall_us(), lo = INT64_MAX, hi = INT64_MIN;
    uint32_t n = 0;
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
        int64_t p = part_index(s, t_us);
        lo = p < lo ? p : lo;
        hi = p > hi ? p : hi;
        encode_row(s, b, r, t_us, dblen);
        n++;
    }
    base->stats.batches++;
    base->stats.rows += b->nrows;
    if (n == 0)
        return;
    if (s->scratch.len + CHUNK_OVERHEAD > (uint64_t)s->opts.buffer_bytes) {
        /* It could only be kept by evicting everything else, and still not fit. */
        if (!t->oversize_logged)
            rp_log_error("sink %s: %u rows of \"%s\" from source \"%s\" take %zu bytes, more "
                         "than --sink-buffer-bytes (%lld): not stored (counted as dropped), "
                         "nothing else evicted",
                         s->base.uri, n, b->storage, b->source, s->scratch.len,
                         (long long)s->opts.buffer_bytes);
        t->oversize_logged = true;
        t->dropped += n;
        s->base.stats.rows_dropped += n;
        return;
    }
    rp_spool_chunk sc = {s->next_id++, t->name, b->source,       n,
                         lo,           hi,      s->scratch.data, s->scratch.len};
    enqueue(s, t, &sc);
    if (s->spool) {
        spool_check(s, rp_spool_add(s->spool, &sc));
        if (uv_now(s->loop) - s->synced_at >= (uint64_t)s->opts.batching_delay_ms)
            spool_sync(s);
    }
    enforce_bound(s);
    if (s->state == PS_IDLE && !uv_is_active((uv_handle_t *)&s->timer))
        arm(s, (uint64_t)s->opts.batching_delay_ms);
    if (s->state == PS_IDLE && s->base.stats.buffered_bytes >= (uint64_t)s->opts.buffer_bytes / 4)
        start_flush(s);
}

/*-------------------------------------------------------------------------
 * Socket and statements
 *-------------------------------------------------------------------------
 */

static void on_poll(uv_poll_t *h, int status, int events)
{
    pg_sink *s = h->data;
    s->io_events = status < 0 ? UV_READABLE : events;
    step_io(s);
}

static void on_poll_closed(uv_handle_t *h)
{
    pg_sink *s = h->data;
    rp_free(h);
    if (--s->pending_closes == 0 && s->state == PS_CLOSING)
        finish_close(s);
}

static void unwatch(pg_sink *s)
{
    rp_pgconn_watch_stop(&s->watch);
}

static int watch(pg_sink *s, int events)
{
    return rp_pgconn_watch_set(&s->watch, s->conn, events);
}

static void unpin_all(pg_sink *s)
{
    for (size_t i = 0; i < s->ncopy; i++)
        s->copy_chunks[i]->pinned = false;
    s->ncopy = 0;
    s->copy_table = NULL;
}

static void disconnect(pg_sink *s)
{
    unwatch(s);
    if (s->conn)
        PQfinish(s->conn);
    s->conn = NULL;
    PQclear(s->result);
    s->result = NULL;
    if (s->copy_unacked || s->resolve_pending)
        s->resolve_pending = true; /* keep them pinned: looked up after reconnecting */
    else
        unpin_all(s);
    s->copy_unacked = false;
    s->nlisting = 0;
    s->schema_ready = false;
    for (ptable *t = s->tables; t; t = t->next) {
        t->ensured = false; /* someone may have dropped partitions meanwhile */
        forget_listing(t);
    }
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

/* Send a statement; done(s, result) runs when all its results are read. */
static int send_query(pg_sink *s, const char *sql, int nparams, const char *const *params,
                      done_fn done)
{
    int ok = nparams ? PQsendQueryParams(s->conn, sql, nparams, NULL, params, NULL, NULL, 0)
                     : PQsendQuery(s->conn, sql);
    if (!ok)
        return -EIO;
    s->done = done;
    set_state(s, PS_QUERY);
    arm(s, QUERY_TIMEOUT_MS);
    int f = PQflush(s->conn);
    if (f < 0 || watch(s, f ? UV_READABLE | UV_WRITABLE : UV_READABLE) < 0)
        return -EIO;
    return 0;
}

/* Read what arrived and push what is queued. PQflush's result (0 or 1), or -1 after
 * entering BACKOFF because the connection failed. */
static int consume_and_flush(pg_sink *s)
{
    int f = -1;
    if ((!(s->io_events & UV_READABLE) || PQconsumeInput(s->conn)) && (f = PQflush(s->conn)) >= 0)
        return f;
    enter_backoff(s, conn_error(s));
    return -1;
}

/* Read results; when the statement is complete, call its done function. */
static void pump_query(pg_sink *s)
{
    int f = consume_and_flush(s);
    if (f < 0)
        return;
    while (!PQisBusy(s->conn)) {
        PGresult *r = PQgetResult(s->conn);
        if (!r) {
            PGresult *first = s->result;
            s->result = NULL;
            done_fn done = s->done;
            s->done = NULL;
            done(s, first);
            PQclear(first);
            return;
        }
        if (PQresultStatus(r) == PGRES_COPY_IN) {
            PQclear(r);
            set_state(s, PS_COPY_SEND);
            arm(s, QUERY_TIMEOUT_MS);
            step_io(s);
            return;
        }
        /* Keep the first error, else the last result (a script returns several). */
        if (!s->result || (result_ok(s->result) && !result_ok(r))) {
            PQclear(s->result);
            s->result = r;
        } else if (result_ok(s->result) && result_ok(r)) {
            PQclear(s->result);
            s->result = r;
        } else {
            PQclear(r);
        }
    }
    if (PQstatus(s->conn) == CONNECTION_BAD) {
        enter_backoff(s, conn_error(s));
        return;
    }
    if (watch(s, f ? UV_READABLE | UV_WRITABLE : UV_READABLE) < 0)
        enter_backoff(s, "could not watch the sink connection's socket");
}

/*-------------------------------------------------------------------------
 * Flushing: ensure partitions, COPY, register in the listing
 *-------------------------------------------------------------------------
 */

static void copy_done(pg_sink *s, PGresult *r);
static void send_copy(pg_sink *s);

/* Pin the oldest table's waiting chunks (up to COPY_MAX_BYTES) for one COPY. */
static void select_chunks(pg_sink *s)
{
    s->copy_table = s->head->t;
    s->ncopy = 0;
    size_t bytes = 0;
    for (chunk *c = s->head; c && bytes < COPY_MAX_BYTES; c = c->next) {
        if (c->t != s->copy_table)
            continue;
        c->pinned = true;
        rp_grow((void **)&s->copy_chunks, &s->cap_copy, s->ncopy + 1, sizeof(chunk *));
        s->copy_chunks[s->ncopy++] = c;
        bytes += c->len;
    }
}

static void ensure_done(pg_sink *s, PGresult *r)
{
    ptable *t = s->copy_table;
    if (!result_ok(r)) {
        char what[160];
        snprintf(what, sizeof(what), "could not create partitions for \"%s\"", t->name);
        log_error_once(s, what, r ? PQresultErrorMessage(r) : conn_error(s));
        unpin_all(s);
        enter_backoff(s, "partition creation failed");
        return;
    }
    send_copy(s);
}

static void start_copy_cycle(pg_sink *s)
{
    select_chunks(s);
    ptable *t = s->copy_table;
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (size_t i = 0; i < s->ncopy; i++) {
        lo = s->copy_chunks[i]->part_lo < lo ? s->copy_chunks[i]->part_lo : lo;
        hi = s->copy_chunks[i]->part_hi > hi ? s->copy_chunks[i]->part_hi : hi;
    }
    int64_t now_part = part_index(s, wall_us());
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
    char from[32], to[32], step[32];
    double step_s = (double)s->opts.partition_ms / 1000.0;
    snprintf(from, sizeof(from), "%.0f", (double)lo * step_s);
    snprintf(to, sizeof(to), "%.0f", (double)t->ens_hi * step_s);
    snprintf(step, sizeof(step), "%.0f", step_s);
    const char *params[4] = {t->name, from, to, step};
    t->ensured = true;
    if (send_query(s,
                   "select admin.ensure_partitions($1, to_timestamp($2::float8), "
                   "to_timestamp($3::float8), $4::bigint)",
                   4, params, ensure_done) < 0) {
        t->ensured = false;
        enter_backoff(s, conn_error(s));
    }
}

static void send_copy(pg_sink *s)
{
    ptable *t = s->copy_table;
    char *ident = PQescapeIdentifier(s->conn, t->name, strlen(t->name));
    if (!ident) {
        enter_backoff(s, conn_error(s));
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
        uint64_t *ids = rp_calloc(s->ncopy, sizeof(uint64_t));
        for (size_t i = 0; i < s->ncopy; i++)
            ids[i] = s->copy_chunks[i]->id;
        spool_check(s, rp_spool_copy(s->spool, s->seq, ids, s->ncopy));
        rp_free(ids);
    }
    s->copy_idx = s->copy_off = 0;
    s->copy_phase = 0;
    s->copy_started_ns = uv_hrtime();
    int rc = send_query(s, sql.data, 0, NULL, copy_done);
    rp_buf_fini(&sql);
    if (rc < 0)
        enter_backoff(s, conn_error(s));
}

/* Queue data with PQputCopyData; 1: all sent, 0: wait for writable, -1: failed. */
static int put_copy(pg_sink *s)
{
    static const char header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
    static const char trailer[2] = {(char)0xFF, (char)0xFF};
    for (;;) {
        const char *p;
        size_t n;
        if (s->copy_phase == 0) {
            p = header, n = sizeof(header);
        } else if (s->copy_phase == 1 && s->copy_idx < s->ncopy) {
            chunk *c = s->copy_chunks[s->copy_idx];
            p = c->data + s->copy_off, n = c->len - s->copy_off;
            if (n > 65536)
                n = 65536;
        } else if (s->copy_phase <= 2) {
            s->copy_phase = 2;
            p = trailer, n = sizeof(trailer);
        } else {
            int e = PQputCopyEnd(s->conn, NULL);
            if (e < 0)
                return -1;
            return e == 1 ? 1 : 0;
        }
        int r = PQputCopyData(s->conn, p, (int)n);
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        s->base.stats.bytes += n;
        if (s->copy_phase == 1) {
            s->copy_off += n;
            if (s->copy_off == s->copy_chunks[s->copy_idx]->len) {
                s->copy_idx++;
                s->copy_off = 0;
            }
        } else {
            s->copy_phase++;
        }
    }
}

static uint64_t copy_rows(const pg_sink *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < s->ncopy; i++)
        n += s->copy_chunks[i]->nrows;
    return n;
}

static void pump_copy(pg_sink *s)
{
    if ((s->io_events & UV_READABLE) && !PQconsumeInput(s->conn)) {
        enter_backoff(s, conn_error(s));
        return;
    }
    int r = put_copy(s);
    if (r < 0) {
        enter_backoff(s, conn_error(s));
        return;
    }
    /* Only flush here: consuming input again after queueing COPY data (as
     * consume_and_flush does) made COPYs stall under CPU load in sink.py, 5 runs of 7. */
    int f = PQflush(s->conn);
    if (f < 0) {
        enter_backoff(s, conn_error(s));
        return;
    }
    if (r == 1) { /* COPY ended: from now on only the server knows whether it commits */
        s->copy_unacked = true;
        s->base.stats.rows_unacked = copy_rows(s);
        set_state(s, PS_QUERY);
        arm(s, QUERY_TIMEOUT_MS);
    }
    if (watch(s, (r == 0 || f) ? UV_READABLE | UV_WRITABLE : UV_READABLE) < 0)
        enter_backoff(s, "could not watch the sink connection's socket");
}

static bool listed(const ptable *t, const char *dbname)
{
    for (size_t i = 0; i < t->nlisted; i++) {
        if (strcmp(t->listed[i], dbname) == 0)
            return true;
    }
    return false;
}

static void queue_listing(pg_sink *s, ptable *t, const char *dbname)
{
    if (listed(t, dbname))
        return;
    rp_grow((void **)&t->listed, &t->cap_listed, t->nlisted + 1, sizeof(char *));
    t->listed[t->nlisted++] = rp_strdup(dbname);
    rp_grow((void **)&s->listing, &s->cap_listing, s->nlisting + 2, sizeof(char *));
    s->listing[s->nlisting++] = t->listed[t->nlisted - 1]; /* borrowed */
    s->listing[s->nlisting++] = t->name;                   /* borrowed */
}

static void listing_done(pg_sink *s, PGresult *r)
{
    if (!result_ok(r))
        rp_log_warn("sink %s: could not update admin.all_distinct_dbname_metrics: %s", s->base.uri,
                    r ? PQresultErrorMessage(r) : conn_error(s));
    enter_idle(s);
}

static bool send_listing(pg_sink *s)
{
    if (s->nlisting == 0)
        return false;
    s->nlisting -= 2;
    const char *params[2] = {s->listing[s->nlisting], s->listing[s->nlisting + 1]};
    if (send_query(s,
                   "insert into admin.all_distinct_dbname_metrics (dbname, metric) "
                   "values ($1, $2) on conflict do nothing",
                   2, params, listing_done) < 0)
        enter_backoff(s, conn_error(s));
    return true;
}

static void copy_succeeded(pg_sink *s)
{
    uint64_t us = (uv_hrtime() - s->copy_started_ns) / 1000;
    s->base.stats.flushes++;
    s->base.stats.flush_us_total += us;
    s->base.stats.flush_us_max = us > s->base.stats.flush_us_max ? us : s->base.stats.flush_us_max;
    ptable *t = s->copy_table;
    t->failures = 0;
    for (size_t i = 0; i < s->ncopy; i++) {
        chunk *c = s->copy_chunks[i];
        queue_listing(s, t, c->dbname);
        s->base.stats.rows_written += c->nrows;
        fifo_remove(s, c);
        chunk_done(s, c);
        rp_free(c);
    }
    s->ncopy = 0;
    s->copy_table = NULL;
}

/* A COPY that failed wrote nothing. Missing table or partition: recreate and retry;
 * anything else twice in a row: the rows cannot be stored, drop and count them. */
/* Errors that say "not now" rather than "never": keep the rows and reconnect later. */
static bool transient(const char *st)
{
    return !strncmp(st, "08", 2) || !strncmp(st, "53", 2) || !strncmp(st, "57", 2) ||
           !strncmp(st, "40", 2) || !strcmp(st, "55P03") || !strcmp(st, "42501") || !*st;
}

static void copy_failed(pg_sink *s, PGresult *r)
{
    ptable *t = s->copy_table;
    const char *st = sqlstate(r);
    t->ensured = false;
    if (++t->failures <= 2 && (!strcmp(st, "23514") || !strcmp(st, "42P01")))
        return; /* the next cycle recreates what is missing */
    if (t->failures <= 1)
        return;
    uint64_t rows = 0;
    for (size_t i = 0; i < s->ncopy; i++) {
        rows += s->copy_chunks[i]->nrows;
        fifo_remove(s, s->copy_chunks[i]);
        chunk_done(s, s->copy_chunks[i]);
        rp_free(s->copy_chunks[i]);
    }
    s->ncopy = 0;
    s->base.stats.rows_dropped += rows;
    t->dropped += rows;
    rp_log_error("sink %s: could not store %llu rows of \"%s\": %s", s->base.uri,
                 (unsigned long long)rows, t->name, r ? PQresultErrorMessage(r) : "no result");
    t->failures = 0;
}

/* The COPY's statement finished. A clean result, or a permanent error on a healthy
 * connection, settles its rows; a lost connection or a transient error (the server may
 * have committed before it failed) leaves them pinned for resolve_unknown. */
static void copy_done(pg_sink *s, PGresult *r)
{
    if (PQstatus(s->conn) == CONNECTION_BAD) {
        enter_backoff(s, conn_error(s));
        return;
    }
    if (!result_ok(r) && transient(sqlstate(r))) {
        char why[300];
        snprintf(why, sizeof(why), "%s", r ? PQresultErrorMessage(r) : "no result");
        enter_backoff(s, why);
        return;
    }
    s->copy_unacked = false;
    s->base.stats.rows_unacked = 0;
    if (result_ok(r))
        copy_succeeded(s);
    else
        copy_failed(s, r);
    unpin_all(s);
    if (!send_listing(s))
        enter_idle(s);
}

/*-------------------------------------------------------------------------
 * Maintenance
 *-------------------------------------------------------------------------
 */

static void maint_done(pg_sink *s, PGresult *r)
{
    if (!result_ok(r)) {
        rp_log_warn("sink %s: maintenance failed (retried at the next interval): %s", s->base.uri,
                    r ? PQresultErrorMessage(r) : conn_error(s));
    } else {
        const char *dropped = PQgetvalue(r, 0, 0);
        rp_log_at(atoi(dropped) > 0 ? RP_LOG_INFO : RP_LOG_DEBUG, NULL, NULL, NULL,
                  "sink %s: maintenance dropped %s partitions older than the retention window "
                  "and %s stale listing entries",
                  s->base.uri, dropped, PQgetvalue(r, 0, 1));
        for (ptable *t = s->tables; t; t = t->next) {
            forget_listing(t); /* re-register the pairs it may have removed */
            t->ensured = false;
        }
    }
    enter_idle(s);
}

static void start_maintenance(pg_sink *s)
{
    s->maint_due = false;
    char older[32];
    snprintf(older, sizeof(older), "%lld", (long long)(s->opts.retention_ms / 1000));
    const char *params[1] = {older};
    const char *sql = s->opts.retention_ms > 0
                          ? "select admin.drop_old_partitions(now() - make_interval(secs => "
                            "$1::float8)), admin.maintain_listing(), admin.forget_stale_writers()"
                          : "select 0, admin.maintain_listing(), admin.forget_stale_writers(), "
                            "$1::text";
    if (send_query(s, sql, 1, params, maint_done) < 0)
        enter_backoff(s, conn_error(s));
}

static void on_maint_timer(uv_timer_t *t)
{
    pg_sink *s = t->data;
    if (s->closing) { /* the shutdown deadline */
        finish_close(s);
        return;
    }
    s->maint_due = true;
    if (s->state == PS_IDLE)
        enter_idle(s);
}

/*-------------------------------------------------------------------------
 * States
 *-------------------------------------------------------------------------
 */

static void start_flush(pg_sink *s)
{
    spool_sync(s);
    if (s->state == PS_IDLE && s->head)
        start_copy_cycle(s);
}

static bool next_live(void *arg, rp_spool_chunk *sc)
{
    chunk **cur = arg;
    chunk *c = *cur;
    if (!c)
        return false;
    *sc = (rp_spool_chunk){c->id,      c->t->name, c->dbname, c->nrows,
                           c->part_lo, c->part_hi, c->data,   c->len};
    *cur = c->next;
    return true;
}

/* Rewrite the spool from the buffer when it has grown past twice what is live. Only
 * between COPYs: no COPY outcome is pending then. */
static void maybe_compact(pg_sink *s)
{
    if (!s->spool || s->resolve_pending ||
        !rp_spool_wants_compaction(s->spool, s->base.stats.buffered_bytes))
        return;
    chunk *cur = s->head;
    spool_check(s, rp_spool_compact(s->spool, s->seq, next_live, &cur));
}

static void enter_idle(pg_sink *s)
{
    set_state(s, PS_IDLE);
    if (watch(s, UV_READABLE) < 0) {
        enter_backoff(s, "could not watch the sink connection's socket");
        return;
    }
    if (send_listing(s))
        return;
    maybe_compact(s);
    if (s->maint_due && !s->closing) {
        start_maintenance(s);
        return;
    }
    if (!s->head) {
        if (s->closing)
            finish_close(s);
        else if (s->full_logged || s->base.stats.rows_dropped)
            report_drops(s, "while the sink was unavailable or slow");
        return;
    }
    /* Keep writing while a backlog remains or we are closing; else wait for the delay. */
    if (s->closing || s->base.stats.buffered_bytes >= (uint64_t)s->opts.buffer_bytes / 4 ||
        s->head->t != s->tail->t || s->buffered_rows > 10000)
        start_flush(s);
    else
        arm(s, (uint64_t)s->opts.batching_delay_ms);
}

/* Tables for the catalogue's metrics made (or not: not fatal); then write as usual. */
static void tables_done(pg_sink *s, PGresult *r)
{
    if (!result_ok(r))
        rp_log_warn("sink %s: could not create the metric tables up front (they are created "
                    "when first written): %s",
                    s->base.uri, r ? PQresultErrorMessage(r) : conn_error(s));
    enter_idle(s);
}

static void create_metric_tables(pg_sink *s)
{
    char step[32];
    snprintf(step, sizeof(step), "%lld", (long long)(s->opts.partition_ms / 1000));
    const char *params[2] = {s->opts.metric_tables, step};
    if (send_query(s,
                   "select count(admin.ensure_partitions(m, now(), now(), $2::int8)) "
                   "from unnest(string_to_array($1, E'\\n')) m",
                   2, params, tables_done) < 0)
        enter_backoff(s, conn_error(s));
}

static void after_schema(pg_sink *s)
{
    if (s->opts.metric_tables && *s->opts.metric_tables)
        create_metric_tables(s);
    else
        enter_idle(s);
}

/* Whether the COPY cut off by the connection loss committed: its sequence number is in
 * admin.pgreaper_writer if and only if it did. */
static void resolve_done(pg_sink *s, PGresult *r)
{
    if (!result_ok(r) || PQntuples(r) != 1) {
        log_error_once(s, "could not look up the outcome of an interrupted COPY",
                       r ? PQresultErrorMessage(r) : conn_error(s));
        enter_backoff(s, "could not look up the outcome of an interrupted COPY");
        return;
    }
    bool written = PQgetvalue(r, 0, 0)[0] == 't';
    s->resolve_pending = false;
    s->base.stats.rows_unacked = 0;
    s->base.stats.copies_resolved++;
    rp_log_info("sink %s: the COPY of %llu rows to \"%s\" cut off by the connection loss %s",
                s->base.uri, (unsigned long long)copy_rows(s), s->copy_table->name,
                written ? "had been committed: not sent again" : "was not committed: sent again");
    if (written)
        copy_succeeded(s);
    unpin_all(s);
    after_schema(s);
}

static void resolve_unknown(pg_sink *s)
{
    char writer[24], seq[24];
    snprintf(writer, sizeof(writer), "%lld", (long long)s->writer);
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)s->seq);
    const char *params[2] = {writer, seq};
    if (send_query(s,
                   "select coalesce((select seq from admin.pgreaper_writer where writer = $1), 0) "
                   ">= $2::bigint",
                   2, params, resolve_done) < 0)
        enter_backoff(s, conn_error(s));
}

static void schema_done(pg_sink *s, PGresult *r)
{
    if (!result_ok(r)) {
        char why[512];
        const char *st = sqlstate(r);
        snprintf(why, sizeof(why), "%s%s", r ? PQresultErrorMessage(r) : conn_error(s),
                 !strcmp(st, "42501")
                     ? " (the sink role needs CREATE on the database and on schema public, "
                       "or an administrator must run the schema setup once)"
                     : "");
        /* A failed script leaves the transaction open: abandon the connection. */
        log_error_once(s, "could not prepare the sink schema", why);
        enter_backoff(s, why);
        return;
    }
    s->schema_ready = true;
    s->backoff_ms = BACKOFF_MIN_MS;
    s->logged_error[0] = '\0';
    if (s->down_logged)
        rp_log_info("sink %s: connected again; %llu rows waiting are being written", s->base.uri,
                    (unsigned long long)s->buffered_rows);
    else
        rp_log_info("sink %s: connected, schema ready", s->base.uri);
    s->base.stats.reconnects += s->connected_once;
    s->connected_once = true;
    s->down_logged = false;
    report_drops(s, "while the sink was unavailable");
    if (s->resolve_pending)
        resolve_unknown(s);
    else
        after_schema(s);
}

static void connected(pg_sink *s)
{
    if (PQsetnonblocking(s->conn, 1) != 0 ||
        send_query(s, rp_pg_schema_sql, 0, NULL, schema_done) < 0)
        enter_backoff(s, conn_error(s));
}

static void step_connecting(pg_sink *s)
{
    int wait = rp_pgconn_poll_wait(PQconnectPoll(s->conn));
    if (wait == 0) {
        connected(s);
        return;
    }
    if (wait < 0) {
        enter_backoff(s, conn_error(s));
        return;
    }
    if (watch(s, wait) < 0)
        enter_backoff(s, "could not watch the sink connection's socket");
}

static void enter_connecting(pg_sink *s)
{
    set_state(s, PS_CONNECTING);
    s->conn = rp_pgconn_start(&s->params, "pgreaper-sink");
    if (!s->conn || PQstatus(s->conn) == CONNECTION_BAD || watch(s, UV_WRITABLE) < 0) {
        enter_backoff(s, conn_error(s));
        return;
    }
    arm(s, (uint64_t)s->opts.connect_timeout_ms);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    pg_sink *s = req->data;
    s->resolving = false;
    if (status == 0)
        rp_pgconn_set_addr(&s->params, s->resolve_idx, res);
    uv_freeaddrinfo(res);
    if (s->state == PS_CLOSING) {
        if (--s->pending_closes == 0)
            finish_close(s);
        return;
    }
    if (status < 0) {
        snprintf(s->base.last_error, sizeof(s->base.last_error),
                 "could not resolve host \"%s\": %s", s->params.hosts[s->resolve_idx],
                 uv_strerror(status));
        enter_backoff(s, s->base.last_error);
        return;
    }
    s->resolve_idx++;
    set_state(s, PS_BACKOFF);
    on_timer(&s->timer); /* continue resolving */
}

static void start_resolving(pg_sink *s)
{
    set_state(s, PS_RESOLVING);
    s->resolve_idx = rp_pgconn_next_lookup(&s->params, s->resolve_idx);
    if (s->resolve_idx >= s->params.nhosts) {
        enter_connecting(s);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    s->resolver.data = s;
    if (uv_getaddrinfo(s->loop, &s->resolver, on_resolved, s->params.hosts[s->resolve_idx], NULL,
                       &hints) < 0) {
        enter_backoff(s, "could not start resolving the sink host");
        return;
    }
    s->resolving = true;
}

static void enter_backoff(pg_sink *s, const char *why)
{
    char reason[256];
    snprintf(reason, sizeof(reason), "%s", why ? why : "unknown error");
    bool was_up = s->schema_ready;
    disconnect(s);
    set_state(s, PS_BACKOFF);
    s->resolve_idx = 0;
    s->base.stats.write_errors++;
    if (!s->down_logged) {
        rp_log_at(RP_LOG_ERROR, NULL, NULL, reason,
                  "sink %s: %s; measurements are kept (up to "
                  "--sink-buffer-bytes) until it is back",
                  s->base.uri,
                  was_up ? "lost connection to the sink" : "could not connect to the sink");
        s->down_logged = true;
    }
    arm(s, (uint64_t)s->backoff_ms);
    s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
}

static void on_timer(uv_timer_t *t)
{
    pg_sink *s = t->data;
    switch (s->state) {
    case PS_BACKOFF:
        start_resolving(s);
        break;
    case PS_IDLE:
        start_flush(s);
        break;
    case PS_CONNECTING:
        enter_backoff(s, "timeout expired while connecting");
        break;
    case PS_QUERY:
    case PS_COPY_SEND:
        enter_backoff(s, "no answer from the sink before the deadline");
        break;
    case PS_RESOLVING:
        uv_cancel((uv_req_t *)&s->resolver);
        break;
    case PS_CLOSING:
        break;
    }
}

static void step_io(pg_sink *s)
{
    switch (s->state) {
    case PS_CONNECTING:
        step_connecting(s);
        break;
    case PS_QUERY:
        pump_query(s);
        break;
    case PS_COPY_SEND:
        pump_copy(s);
        break;
    case PS_IDLE:
        if (!PQconsumeInput(s->conn) || PQstatus(s->conn) == CONNECTION_BAD)
            enter_backoff(s, conn_error(s));
        break;
    case PS_BACKOFF:
    case PS_RESOLVING:
    case PS_CLOSING:
        break;
    }
}

/*-------------------------------------------------------------------------
 * Sink interface
 *-------------------------------------------------------------------------
 */

/* The chunks and tables (at exit, rows still buffered are in the spool, if any). */
static void free_buffer(pg_sink *s)
{
    for (chunk *c = s->head; c;) {
        chunk *n = c->next;
        rp_free(c);
        c = n;
    }
    for (ptable *t = s->tables; t;) {
        ptable *n = t->next;
        forget_listing(t);
        rp_free(t->listed);
        rp_free(t->name);
        rp_free(t);
        t = n;
    }
}

static void replayed(void *arg, const rp_spool_chunk *sc)
{
    pg_sink *s = arg;
    enqueue(s, table_for(s, sc->table), sc);
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
    for (chunk *c = s->head; c && st.nunknown; c = c->next) {
        for (size_t i = 0; i < st.nunknown; i++) {
            if (c->id != st.unknown_ids[i])
                continue;
            c->pinned = true;
            rp_grow((void **)&s->copy_chunks, &s->cap_copy, s->ncopy + 1, sizeof(chunk *));
            s->copy_chunks[s->ncopy++] = c;
            s->copy_table = c->t;
        }
    }
    s->resolve_pending = s->ncopy > 0;
    rp_free(st.unknown_ids);
    if (st.chunks)
        rp_log_info("sink %s: %llu rows (%llu chunks) from the spool in \"%s\" are written "
                    "first%s",
                    s->base.uri, (unsigned long long)st.rows, (unsigned long long)st.chunks, dir,
                    s->resolve_pending ? "; one COPY cut off by the stop is looked up" : "");
    return 0;
}

static int pg_open(const char *uri, uv_loop_t *loop, const rp_sink_opts *opts, rp_sink **out,
                   char *err, size_t errlen)
{
    pg_sink *s = rp_calloc(1, sizeof(*s));
    if (rp_pgconn_params_load(&s->params, uri, err, errlen) < 0) {
        rp_pgconn_params_fini(&s->params);
        rp_free(s);
        return -EINVAL;
    }
    rp_buf masked = RP_BUF_INIT;
    rp_connstr_mask(uri, &masked);
    s->base.ops = &rp_sink_postgresql_ops;
    s->base.uri = masked.data;
    s->conninfo = rp_strdup(uri);
    s->loop = loop;
    s->opts = *opts;
    s->opts.metric_tables = opts->metric_tables ? rp_strdup(opts->metric_tables) : NULL;
    s->backoff_ms = BACKOFF_MIN_MS;
    uint64_t w = 0;
    if (getrandom(&w, sizeof(w), 0) != (ssize_t)sizeof(w))
        w = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    s->writer = (int64_t)(w >> 1); /* positive: a bigint */
    if (opts->spool_dir && open_spool(s, opts->spool_dir, err, errlen) < 0) {
        free_buffer(s);
        rp_pgconn_params_fini(&s->params);
        rp_free(s->copy_chunks);
        rp_free(s->conninfo);
        rp_free((char *)s->opts.metric_tables);
        rp_free(s->base.uri);
        rp_free(s);
        return -EIO;
    }
    rp_pgconn_watch_init(&s->watch, loop, on_poll, on_poll_closed, s, &s->pending_closes);
    uv_timer_init(loop, &s->timer);
    uv_timer_init(loop, &s->maint_timer);
    s->timer.data = s->maint_timer.data = s;
    s->maint_due = opts->maintenance_ms > 0;
    if (opts->maintenance_ms > 0)
        uv_timer_start(&s->maint_timer, on_maint_timer, (uint64_t)opts->maintenance_ms,
                       (uint64_t)opts->maintenance_ms);
    start_resolving(s);
    *out = &s->base;
    return 0;
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

static int pg_flush(rp_sink *base)
{
    start_flush((pg_sink *)base);
    return 0;
}

static void free_sink(pg_sink *s)
{
    free_buffer(s);
    if (s->spool)
        rp_spool_close(s->spool); /* syncs what is left: replayed at the next start */
    rp_pgconn_params_fini(&s->params);
    rp_buf_fini(&s->scratch);
    rp_buf_fini(&s->keys);
    rp_free(s->key_off);
    rp_free(s->copy_chunks);
    rp_free(s->listing);
    if (s->closed_cb)
        s->closed_cb(s->closed_arg, &s->base.stats);
    rp_free(s->conninfo);
    rp_task_unregister(&s->base.task);
    rp_free((char *)s->opts.metric_tables);
    rp_free(s->base.uri);
    rp_free(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    pg_sink *s = h->data;
    if (--s->pending_closes == 0)
        free_sink(s);
}

/* Report what could not be written, then close everything; freed in the last callback. */
static void finish_close(pg_sink *s)
{
    if (s->state == PS_CLOSING) {
        if (s->pending_closes == 0)
            free_sink(s);
        return;
    }
    uint64_t unknown = s->copy_unacked || s->resolve_pending ? copy_rows(s) : 0;
    uint64_t dropped = s->buffered_rows - unknown;
    if (s->spool && s->buffered_rows) {
        s->base.stats.rows_spooled_at_exit += s->buffered_rows;
        rp_log_warn("sink %s: %llu rows could not be written before shutdown: kept in the "
                    "spool, written at the next start",
                    s->base.uri, (unsigned long long)s->buffered_rows);
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
    disconnect(s);
    set_state(s, PS_CLOSING);
    s->pending_closes += 2;
    if (s->resolving) {
        s->pending_closes++;
        uv_cancel((uv_req_t *)&s->resolver);
    }
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
    if (s->state == PS_IDLE)
        enter_idle(s); /* writes what waits, or finishes */
    else if (s->state == PS_BACKOFF && !s->head)
        finish_close(s);
    else if (s->state == PS_BACKOFF)
        arm(s, 0); /* try to write what waits now rather than after the backoff */
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
