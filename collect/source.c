/* SPDX-License-Identifier: PostgreSQL
 *
 * The source reaper state machine.
 *
 *   IDLE --start--> OFFLINE --client up--> BUSY (runtime info)
 *   BUSY --all results read--> READY --tick due--> BUSY (one pipeline) --> READY ...
 *   any failure --> OFFLINE (the client backs off, resolves, connects: pgio/client.h)
 *   stop: BUSY --> DRAINING --done or deadline--> CLOSING; other states --> CLOSING
 *
 * uv callbacks and the client's callback only translate their event and call step();
 * each state has one handler. Only set_state() writes src->state. The object is freed
 * when its timers and its client are closed.
 */
#include "collect/source.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libpq-fe.h>
#include <uv.h>

#include "collect/changes.h"
#include "collect/diskusage.h"
#include "collect/instcache.h"
#include "collect/logcounts.h"
#include "collect/native.h"
#include "collect/scheduler.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/tasks.h"
#include "model/batch.h"
#include "pgio/client.h"
#include "pgio/connstr.h"
#include "pgio/pgconn.h"
#include "pgio/sendbuf.h"

#define ERROR_RELOG_MS     (10 * 60 * 1000)
#define SKIP_MS            (10 * 60 * 1000) /* a metric the server cannot run */
#define MAX_CANCELS        2 /* cancel requests in flight on the thread pool at most */
#define INSTANCE_UP_METRIC "instance_up"
#define YIELD_NS           (2 * 1000000ULL) /* reading a result yields to the loop this often */
#define GUARD_DIVISOR      16 /* a result above 1/16 of a cap is read row by row next time */

typedef enum rp_source_state {
    RP_SOURCE_IDLE = 0, /* created; waits for rp_source_start() */
    RP_SOURCE_OFFLINE,  /* the client resolves, connects or backs off */
    RP_SOURCE_BUSY,     /* a pipeline is in flight: flush and read results; deadline */
    RP_SOURCE_READY,    /* connected and idle: tick timer armed, socket watched */
    RP_SOURCE_DRAINING, /* stop requested while BUSY: finish the batch, deadline */
    RP_SOURCE_CLOSING,  /* handles closing; freed in the last close callback */
} rp_source_state;

static const char *const state_names[] = {"idle",  "offline",  "busy",
                                          "ready", "draining", "closing"};

typedef enum rp_event {
    EV_UP,       /* the client connected */
    EV_IO,       /* socket readiness in src->io_events */
    EV_IO_ERROR, /* poll reported an error */
    EV_DEADLINE, /* the state's deadline passed (io_timer) */
    EV_RESUME,   /* continue reading after a yield (yield_timer) */
} rp_event;

typedef enum item_kind {
    ITEM_SET_TIMEOUT,
    ITEM_PREPARE,
    ITEM_QUERY,
    ITEM_RUNTIME,
    ITEM_DEALLOCATE,
    ITEM_PROBE,  /* the session check after a metric's first run on a connection */
    ITEM_CHANGE, /* one of change_events' hash metrics (sub: which) */
    ITEM_LOGS,   /* server_log_event_counts' query */
    ITEM_DISK,   /* psutil_disk's paths, when the server is local */
    ITEM_SYNC,
} item_kind;

typedef struct item { /* 8 bytes: a fleet keeps a first pipeline's worth per source */
    int32_t slot;     /* metric slot for PREPARE, QUERY, PROBE and CHANGE; the slots are only
                       * replaced between pipelines (see apply_pending), so the index stays valid */
    uint8_t kind;     /* item_kind */
    uint8_t sub;
} item;

/* What the few metrics that are not one query keep (each pointer owned). */
typedef struct slot_special {
    rp_native_state *native; /* a metric read from /proc: the last counters */
    rp_changes *changes;     /* change_events: the objects seen */
    const char **change_sql; /* ... its RP_CHANGES_NINPUTS hash metrics' SQL (array) */
    rp_logcounts *logs;      /* server_log_event_counts: where it read */
} slot_special;

/* One metric as this connection runs it. */
typedef struct slot {         /* 96 bytes: mind the holes */
    const rp_metric_def *def; /* borrowed from src->cat */
    int interval_s;
    uint32_t shared_gen; /* instance-level: the last result stored (collect/instcache.h) */
    const char *sql;     /* for the server version; NULL: nothing to run */
    uint64_t mkey;       /* rp_instcache_metric_key of name and sql; 0: not computed */
    uint32_t stmt_id;    /* the prepared statement is rp_<stmt_id> */
    bool prepared;
    bool no_sql_logged;
    bool failing;        /* last run failed (for transition logging) */
    bool is_instance_up; /* produced by pgreaper itself, no SQL */
    bool offender;       /* changed the session or is no query: left out until its SQL changes */
    bool probed;         /* the session was checked after a run on this connection */
    bool shape_ok;       /* column names checked for this statement */
    bool sized;          /* a result of this SQL was seen; read whole while it stays small */
    bool disk_local;     /* psutil_disk of a local server: paths from it, usage measured here */
    struct slot_special *special; /* owned; NULL for a metric that is one query */
    uint32_t err_hash;            /* err_key of the last error logged; 1: a duplicate column */
    uint32_t err_logged_s;        /* loop seconds: when it was logged */
    int64_t fetch_time_ns;
    uint64_t skip_until;            /* loop ms: left out until then (see metric_unavailable) */
    uint32_t last_rows, last_bytes; /* of the last complete result, saturated at UINT32_MAX */
    uint32_t fetches, errors;       /* this metric's share of stats.fetches_ok/fetch_errors */
} slot;
_Static_assert(sizeof(slot) <= 96, "slot: a fleet keeps one per metric per source");

/* An error message's hash as a slot keeps it: 32 bits tell repeats apart well enough. */
static uint32_t err_key(uint64_t h)
{
    return (uint32_t)(h ^ (h >> 32));
}

/* Reading: all NULL for a metric that is one query. */
static const slot_special *sp(const slot *sl)
{
    static const slot_special none;
    return sl->special ? sl->special : &none;
}

/* Writing: made when a metric first needs it. */
static slot_special *own_sp(slot *sl)
{
    if (!sl->special)
        sl->special = rp_calloc(1, sizeof(slot_special));
    return sl->special;
}

struct rp_source {
    rp_source_state state;
    rp_task task; /* in the goroutine profile */
    const rp_source_opts *opts;
    rp_source_def def;
    rp_catalog *cat;
    char *masked_conn; /* conn_str with passwords masked, for messages */

    rp_pgclient client; /* resolve, connect, back off; client.conn is the connection */
    rp_sendbuf sendbuf; /* a pipeline's writes, sent with one send() (pgio/sendbuf.h) */
    FILE *trace;
    int io_events;
    bool is_tcp;
    bool is_local;       /* the server runs on this host (see collect/native.h) */
    const char *console; /* a pooler's admin console: its version command (see
                          * send_console); NULL for a PostgreSQL server */
    bool pooled;         /* a pooler in transaction mode on the way: no named statements,
                          * no session settings (see shared_session) */
    uv_timer_t tick_timer;
    uv_timer_t io_timer;
    unsigned pending_closes;

    /* server facts from the runtime query */
    int server_version;
    bool in_recovery;
    bool role_known;
    bool is_superuser;
    char sysid[32];
    char dbname[64];
    uint64_t inst_key;   /* joined in opts->instcache; 0: none */
    int runtime_variant; /* 0: with system identifier; 1: without (no privilege) */
    uint64_t runtime_due;

    /* plan and schedule */
    slot *slots;
    size_t nslots;
    rp_sched sched;
    size_t *due;
    item *items;
    size_t nitems, cap_items, cur_item;
    int cur_timeout_ms; /* statement_timeout on the connection; -1 unknown */
    unsigned stmt_gen;
    char (*stale)[24]; /* prepared statements to DEALLOCATE in the next pipeline */
    size_t nstale, cap_stale;
    int null_streak;
    bool standby_blocked_logged;

    /* changes that wait for the batch boundary (see apply_pending) */
    rp_source_def *next_def; /* owned; with next_cat, a reload waiting */
    rp_catalog *next_cat;    /* non-NULL: next_def and next_cat wait */
    bool plan_dirty;         /* the runtime query changed role or version */
    char *reset_why;         /* owned; non-NULL: reconnect after this batch (see want_reset) */
    bool tainted;            /* a metric of this pipeline changed the session: later results are
                              * discarded (counted), they may carry that change */

    /* the result being read (ITEM_QUERY) */
    bool single_set; /* single-row mode was decided for the current item */
    bool single;     /* ... and is on */
    rp_buf arena;    /* values of the rows kept so far, NUL-terminated */
    rp_cell *cells;  /* one per value kept: where it is in arena */
    size_t ncells, cap_cells;
    size_t nrows;                   /* rows kept */
    uint64_t seen_rows, seen_bytes; /* of the current result, kept or not */
    bool over_cap;
    uv_timer_t yield_timer; /* resumes reading after a yield, or a settle wait */

    /* settling: reading a pipeline's answers when they are expected to be complete */
    bool settling;      /* the socket is not watched; the settle timer reads */
    bool read_full;     /* the last read filled libpq's buffer: more may be waiting */
    int settles;        /* settle waits for the current pipeline */
    uint32_t settle_us; /* learnt: expected answer time per sync segment */
    uint32_t full_us;   /* us after sending, the pipeline's first full read (0: none) */
    uint64_t sent_ns;   /* uv_hrtime() when the pipeline was written */

    /* the batch deadline: silence, not duration (see step_busy) */
    uint64_t last_progress; /* loop ms: the pipeline was sent or bytes came back */
    int quiet_ms;           /* silence allowed before a cancel request */
    bool cancel_sent;       /* ... sent during the current silence */

    bool down_logged;
    bool was_connected;
    int drain_ms;
    rp_source_closed_cb closed_cb;
    void *closed_arg;
    rp_source_stats stats;
};

static void step(rp_source *src, rp_event ev);
static void enter_ready(rp_source *src);
static int settle(rp_source *src);
static void enter_backoff(rp_source *src, const char *why);
static void enter_closing(rp_source *src);
static void send_pipeline(rp_source *src, const size_t *due, size_t ndue, bool runtime);

/*-------------------------------------------------------------------------
 * Small helpers
 *-------------------------------------------------------------------------
 */

static uint64_t now_ms(const rp_source *src)
{
    return uv_now(src->opts->loop);
}

static void set_state(rp_source *src, rp_source_state next)
{
    if (src->state == next)
        return;
    rp_log_at(RP_LOG_DEBUG, src->def.name, NULL, NULL, "state %s -> %s", state_names[src->state],
              state_names[next]);
    rp_assert(src->state != RP_SOURCE_CLOSING);
    src->state = next;
    rp_task_set_state(&src->task, state_names[next]);
    uv_timer_stop(&src->io_timer);
}

static void on_io_timer(uv_timer_t *t);

static void arm_deadline(rp_source *src, uint64_t ms)
{
    uv_timer_start(&src->io_timer, on_io_timer, ms, 0);
}

/* libpq's error text (passwords scrubbed), kept in the client. */
static const char *conn_error(rp_source *src)
{
    return rp_pgclient_conn_error(&src->client);
}

/*-------------------------------------------------------------------------
 * uv callbacks: translate and step
 *-------------------------------------------------------------------------
 */

static void went_down(rp_source *src);

static void on_client(void *owner, rp_pgclient_event ev)
{
    rp_source *src = owner;
    if (ev == RP_PGCLIENT_EV_DOWN) {
        went_down(src);
    } else if (ev == RP_PGCLIENT_EV_UP) {
        step(src, EV_UP);
    } else {
        src->io_events = src->client.io_events;
        step(src, src->client.io_error ? EV_IO_ERROR : EV_IO);
    }
}

static void on_io_timer(uv_timer_t *t)
{
    step(t->data, EV_DEADLINE);
}

static void on_yield_timer(uv_timer_t *t)
{
    rp_source *src = t->data;
    src->io_events = 0; /* nothing new to read: libpq holds what is left */
    step(src, EV_RESUME);
}

static void on_tick_timer(uv_timer_t *t);

static int watch(rp_source *src, int events)
{
    return rp_pgclient_watch(&src->client, events);
}

/* Forget the rows kept for the current item; a large arena is given back. */
static void drop_rows(rp_source *src)
{
    src->nrows = src->ncells = 0;
    if (src->arena.cap > (1u << 20)) {
        rp_buf_fini(&src->arena);
        rp_free(src->cells);
        src->cells = NULL;
        src->cap_cells = 0;
    }
    rp_buf_reset(&src->arena);
}

/* Reach instance key (0: none) in the instance cache. */
static void set_instance(rp_source *src, uint64_t key)
{
    if (!src->opts->instcache || key == src->inst_key)
        return;
    if (src->inst_key)
        rp_instcache_leave(src->opts->instcache, src->inst_key);
    if (key)
        rp_instcache_join(src->opts->instcache, key);
    src->inst_key = key;
}

/* Forget what belonged to the connection (the client finishes the PGconn itself, after
 * this, or already did: then client.conn is NULL). */
static void disconnect(rp_source *src)
{
    if (src->client.conn && src->trace)
        PQuntrace(src->client.conn);
    if (src->trace) {
        fclose(src->trace);
        src->trace = NULL;
    }
    for (size_t i = 0; i < src->nslots; i++) {
        src->slots[i].prepared = false;
        src->slots[i].probed = false;
        src->slots[i].shape_ok = false;
    }
    drop_rows(src);
    set_instance(src, 0);
    src->single_set = false;
    uv_timer_stop(&src->yield_timer);
    src->settling = false;
    src->cur_timeout_ms = -1;
    src->nitems = src->cur_item = 0;
    src->nstale = 0; /* the server forgot them with the connection */
    rp_sendbuf_discard(&src->sendbuf);
}

/*-------------------------------------------------------------------------
 * Measurements pgreaper makes itself
 *-------------------------------------------------------------------------
 */

void rp_source_write_up(const rp_source_opts *opts, const rp_source_def *def, bool up, int64_t t)
{
    static const rp_column cols[] = {{"epoch_ns", RP_COL_TIME, RP_VAL_INT},
                                     {"is_up", RP_COL_FIELD, RP_VAL_INT}};
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)t);
    const char *vals[2] = {ts, up ? "1" : "0"};
    rp_batch b;
    rp_batch_init_values(&b, cols, 2, 1, vals);
    b.source = def->name;
    b.metric = b.storage = INSTANCE_UP_METRIC;
    b.fetch_time_ns = t;
    b.custom_tags = def->custom_tags;
    b.ncustom_tags = def->ncustom_tags;
    opts->emit(opts->emit_arg, &b);
    rp_batch_fini(&b);
}

size_t rp_source_write_batch(const rp_source_opts *opts, const rp_source_def *def,
                             const rp_metric_def *metric, rp_batch *b, int64_t t)
{
    b->source = def->name;
    b->metric = metric->name;
    b->storage = metric->storage_name ? metric->storage_name : metric->name;
    b->gauges = metric->gauges;
    b->ngauges = metric->ngauges;
    b->fetch_time_ns = t;
    b->custom_tags = def->custom_tags;
    b->ncustom_tags = def->ncustom_tags;
    if (b->nrows > 0)
        opts->emit(opts->emit_arg, b);
    return b->nrows * b->ncols;
}

size_t rp_source_write_rows(const rp_source_opts *opts, const rp_source_def *def,
                            const rp_metric_def *metric, const struct pg_result *res, int64_t t)
{
    rp_batch b;
    rp_batch_init_result(&b, res);
    size_t values = rp_source_write_batch(opts, def, metric, &b, t);
    rp_batch_fini(&b);
    return values;
}

/* The instance cache's key of the slot's metric (hashing the SQL text once per choice). */
static uint64_t metric_key(slot *sl)
{
    if (!sl->mkey)
        sl->mkey = rp_instcache_metric_key(sl->def->name, sl->sql);
    return sl->mkey;
}

static void emit_instance_up(rp_source *src, bool up)
{
    rp_source_write_up(src->opts, &src->def, up, rp_clock_wall_ns());
}

/*-------------------------------------------------------------------------
 * Plan: which metrics run, with which SQL, on which schedule
 *-------------------------------------------------------------------------
 */

static bool collecting_blocked(const rp_source *src)
{
    return src->def.only_if_master && src->role_known && src->in_recovery;
}

/* change_events runs the catalogue's hash metrics; its own SQL is a placeholder. */
static void choose_change_sql(rp_source *src, slot *sl)
{
    sl->sql = NULL;
    int n = 0;
    if (!sp(sl)->change_sql)
        own_sp(sl)->change_sql = rp_calloc(RP_CHANGES_NINPUTS, sizeof(const char *));
    for (int k = 0; k < RP_CHANGES_NINPUTS; k++) {
        const rp_metric_def *d = rp_catalog_metric(src->cat, rp_changes_input(k));
        sp(sl)->change_sql[k] = d ? rp_metric_sql_for(d, src->server_version) : NULL;
        n += sp(sl)->change_sql[k] != NULL;
    }
    if (n > 0 && !sp(sl)->changes)
        own_sp(sl)->changes = rp_changes_new();
    if (n == 0 && !sl->no_sql_logged)
        rp_log_at(RP_LOG_WARN, src->def.name, sl->def->name, NULL,
                  "change_events compares the catalogue's sproc_hashes, table_hashes, "
                  "index_hashes, configuration_hashes and privilege_changes, none of which "
                  "has SQL for this server: left out");
    sl->no_sql_logged = n == 0;
}

static void choose_sql(rp_source *src, slot *sl)
{
    sl->mkey = 0;
    if (!src->role_known) { /* the server version is not known yet */
        sl->sql = NULL;
        return;
    }
    const char *sql = sl->is_instance_up ? NULL : rp_metric_sql_for(sl->def, src->server_version);
    if (sl->sql && sql && strcmp(sl->sql, sql) == 0) {
        sl->sql = sql; /* same text: keep the prepared statement */
        return;
    }
    sl->sql = sql;
    sl->prepared = sl->probed = sl->shape_ok = sl->sized = sl->offender = false;
    sl->stmt_id = ++src->stmt_gen;
    if (sl->def->code == RP_CODE_CHANGE_EVENTS) {
        choose_change_sql(src, sl);
        return;
    }
    sl->disk_local = sl->def->code == RP_CODE_PSUTIL_DISK && src->is_local;
    if (sl->disk_local) {
        sl->sql = NULL; /* its SQL calls a helper; see collect/diskusage.h */
        return;
    }
    if (sl->def->code == RP_CODE_LOG_EVENT_COUNTS) {
        sl->sql = NULL; /* a placeholder: never sent (see collect/logcounts.h) */
        if (!sp(sl)->logs)
            own_sp(sl)->logs = rp_calloc(1, sizeof(rp_logcounts));
        return;
    }
    if (!sql && !sl->no_sql_logged && !sl->is_instance_up) {
        char v[16];
        rp_log_at(RP_LOG_WARN, src->def.name, sl->def->name, NULL,
                  "metric has no SQL for PostgreSQL %s: skipped",
                  rp_pgconn_version_str(src->server_version, v, sizeof(v)));
        sl->no_sql_logged = true;
    }
}

/* A slot's prepared statement name. */
static const char *stmt_name(const slot *sl, char buf[16])
{
    snprintf(buf, 16, "rp_%u", sl->stmt_id);
    return buf;
}

/* What a slot owns beyond its statement. */
static void free_slot(slot *sl)
{
    if (!sl->special)
        return;
    rp_changes_free(sl->special->changes);
    rp_free(sl->special->change_sql);
    rp_free(sl->special->logs);
    rp_free(sl->special->native);
    rp_free(sl->special);
    sl->special = NULL;
}

static const slot *find_slot(const slot *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].def->name, name) == 0)
            return &v[i];
    }
    return NULL;
}

static void add_stale(rp_source *src, const char *name)
{
    rp_grow((void **)&src->stale, &src->cap_stale, src->nstale + 1, sizeof(*src->stale));
    snprintf(src->stale[src->nstale++], sizeof(*src->stale), "%s", name);
}

/* Prepared statements of the old slots that no new slot uses any more. */
/* What dropped slots owned beyond their statements. */
static void free_dropped(const rp_source *src, slot *old, size_t nold)
{
    for (size_t i = 0; i < nold; i++)
        if (!find_slot(src->slots, src->nslots, old[i].def->name))
            free_slot(&old[i]);
}

static void collect_stale(rp_source *src, const slot *old, size_t nold)
{
    for (size_t i = 0; i < nold; i++) {
        if (!old[i].prepared)
            continue;
        bool used = false;
        for (size_t j = 0; j < src->nslots && !used; j++)
            used = src->slots[j].prepared && src->slots[j].stmt_id == old[i].stmt_id;
        char name[16];
        if (!used)
            add_stale(src, stmt_name(&old[i], name));
    }
}

/* Recompute the slots from def, cat and the server's role; keeps prepared statements
 * whose SQL did not change and the deadlines of metrics whose interval did not change.
 * Returns whether the set of metrics, an interval or an SQL text changed. */
static bool rebuild_plan(rp_source *src)
{
    rp_plan_entry *plan = NULL;
    size_t n = 0;
    if (!collecting_blocked(src))
        n = rp_source_resolve(&src->def, src->cat, src->role_known && src->in_recovery,
                              src->opts->interval_scale, &plan);
    slot *old = src->slots;
    size_t nold = src->nslots;
    src->slots = rp_calloc(n ? n : 1, sizeof(slot));
    src->nslots = n;
    const char **keys = rp_calloc(n ? n : 1, sizeof(char *));
    int64_t *ivs = rp_calloc(n ? n : 1, sizeof(int64_t));
    bool changed = n != nold;
    for (size_t i = 0; i < n; i++) {
        slot *sl = &src->slots[i];
        const slot *o = find_slot(old, nold, plan[i].def->name);
        if (o)
            *sl = *o;
        const char *old_sql = o ? o->sql : NULL;
        changed = changed || !o || o->interval_s != plan[i].interval_s;
        sl->def = plan[i].def;
        sl->interval_s = plan[i].interval_s;
        sl->is_instance_up = strcmp(sl->def->name, INSTANCE_UP_METRIC) == 0;
        choose_sql(src, sl);
        changed = changed || (old_sql && sl->sql && strcmp(old_sql, sl->sql) != 0);
        keys[i] = sl->def->name;
        ivs[i] = (int64_t)sl->interval_s * 1000;
    }
    /* The phase only matters for the first call, which anchors the grid (at create). */
    int64_t phase = rp_sched_phase_for(src->def.name, src->opts->phase_window_ms);
    rp_sched_set(&src->sched, (int64_t)now_ms(src), phase, keys, ivs, n);
    rp_free(keys);
    rp_free(ivs);
    collect_stale(src, old, nold);
    free_dropped(src, old, nold);
    rp_free(old);
    rp_free(plan);
    rp_free(src->due);
    src->due = rp_calloc(n ? n : 1, sizeof(size_t));
    return changed;
}

static void log_blocked(rp_source *src)
{
    if (collecting_blocked(src) && !src->standby_blocked_logged) {
        rp_log_at(RP_LOG_INFO, src->def.name, NULL, NULL,
                  "source is a standby and only_if_master is set: not collecting");
        src->standby_blocked_logged = true;
    } else if (!collecting_blocked(src)) {
        src->standby_blocked_logged = false;
    }
}

/* Apply what waited for the batch boundary: a reload (next_def, next_cat) and a change of
 * role or version seen by the runtime query. Never runs while a pipeline is in flight,
 * because items refer to slots by index. */
static bool str_same(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

static void apply_pending(rp_source *src)
{
    if (src->next_cat) {
        rp_catalog *old_cat = src->cat;
        rp_source_def old_def = src->def;
        src->def = *src->next_def;
        rp_free(src->next_def);
        src->next_def = NULL;
        src->cat = src->next_cat;
        src->next_cat = NULL;
        src->plan_dirty = false;
        if (!str_same(old_def.role_hint, src->def.role_hint))
            src->runtime_due = 0; /* the role may have changed: read it with the next tick */
        bool changed = rebuild_plan(src); /* old slots point into old_cat until here */
        rp_catalog_unref(old_cat);
        rp_source_def_fini(&old_def);
        if (changed)
            rp_log_at(RP_LOG_INFO, src->def.name, NULL, NULL, "metrics updated (%zu metrics)",
                      src->nslots);
    } else if (src->plan_dirty) {
        src->plan_dirty = false;
        (void)rebuild_plan(src);
    } else {
        return;
    }
    log_blocked(src);
}

static void drop_pending(rp_source *src)
{
    if (!src->next_cat)
        return;
    rp_source_def_fini(src->next_def);
    rp_free(src->next_def);
    src->next_def = NULL;
    rp_catalog_unref(src->next_cat);
    src->next_cat = NULL;
}

/*-------------------------------------------------------------------------
 * Connecting
 *-------------------------------------------------------------------------
 */

int rp_source_check_conn_str(const char *conn_str, char *err, size_t errlen)
{
    rp_pgconn_params p;
    int rc = rp_pgconn_params_load(&p, conn_str, err, errlen);
    rp_pgconn_params_fini(&p);
    return rc;
}

static void detect_tcp(rp_source *src)
{
    struct sockaddr_storage ss, peer;
    socklen_t len = sizeof(ss), plen = sizeof(peer);
    src->is_tcp = getsockname(PQsocket(src->client.conn), (struct sockaddr *)&ss, &len) == 0 &&
                  (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
    src->is_local = !src->is_tcp || (getpeername(PQsocket(src->client.conn),
                                                 (struct sockaddr *)&peer, &plen) == 0 &&
                                     rp_native_peer_is_local((struct sockaddr *)&peer));
}

static void start_trace(rp_source *src)
{
    if (!src->opts->libpq_trace_dir)
        return;
    rp_buf path = RP_BUF_INIT;
    rp_buf_printf(&path, "%s/%s.trace", src->opts->libpq_trace_dir, src->def.name);
    src->trace = fopen(path.data, "a");
    if (src->trace) {
        PQtrace(src->client.conn, src->trace);
    } else {
        rp_log_at(RP_LOG_WARN, src->def.name, NULL, NULL, "could not open trace file \"%s\": %m",
                  path.data);
    }
    rp_buf_fini(&path);
}

static void connected(rp_source *src)
{
    if (!src->console && PQenterPipelineMode(src->client.conn) != 1) {
        enter_backoff(src, conn_error(src));
        return;
    }
    detect_tcp(src);
    start_trace(src);
    src->stats.connects++;
    src->cur_timeout_ms = -1;
    send_pipeline(src, NULL, 0, true);
}

static void step_offline(rp_source *src, rp_event ev)
{
    if (ev == EV_UP)
        connected(src);
}

/*-------------------------------------------------------------------------
 * Going down
 *-------------------------------------------------------------------------
 */

/* Give the connection up: the client finishes it, schedules the next attempt and reports
 * EV_DOWN, which went_down() handles (also when an attempt to connect failed). */
static void enter_backoff(rp_source *src, const char *why)
{
    rp_pgclient_fail(&src->client, why);
}

/* Reconnect after this batch, for the first reason given (a fleet keeps no room for one). */
RP_PRINTF(2, 3) static void want_reset(rp_source *src, const char *fmt, ...)
{
    if (src->reset_why)
        return;
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    src->reset_why = rp_strdup(why);
}

static void clear_reset(rp_source *src)
{
    rp_free(src->reset_why);
    src->reset_why = NULL;
}

static void went_down(rp_source *src)
{
    bool was_up = src->was_connected, draining = src->state == RP_SOURCE_DRAINING;
    const char *reason = src->client.error;
    disconnect(src);
    uv_timer_stop(&src->tick_timer);
    set_state(src, RP_SOURCE_OFFLINE);
    clear_reset(src); /* reconnecting resets the session anyway */
    src->tainted = false;
    apply_pending(src);
    if (was_up)
        src->stats.disconnects++;
    else
        src->stats.connect_failures++;
    if (!src->down_logged) {
        if (was_up)
            rp_log_at(RP_LOG_ERROR, src->def.name, NULL, reason, "lost connection to source");
        else
            rp_log_at(RP_LOG_ERROR, src->def.name, NULL, reason,
                      "could not connect to source \"%s\"", src->masked_conn);
        src->down_logged = true;
    } else {
        rp_log_at(RP_LOG_DEBUG, src->def.name, NULL, reason, "reconnect attempt failed");
    }
    src->was_connected = false;
    emit_instance_up(src, false);
    if (draining) /* stopping: no reconnect */
        enter_closing(src);
}

/*-------------------------------------------------------------------------
 * Sending a pipeline
 *-------------------------------------------------------------------------
 */

static void add_item(rp_source *src, item_kind kind, int slot_idx)
{
    rp_grow((void **)&src->items, &src->cap_items, src->nitems + 1, sizeof(item));
    src->items[src->nitems] = (item){.slot = slot_idx, .kind = (uint8_t)kind};
    src->nitems++;
}

static int send_sync(rp_source *src)
{
    add_item(src, ITEM_SYNC, -1);
    return PQpipelineSync(src->client.conn) == 1 ? 0 : -EIO;
}

static const char *runtime_sql(int variant)
{
    if (variant == 0)
        return "select current_setting('server_version_num')::int, pg_is_in_recovery(), "
               "current_database(), current_setting('is_superuser') = 'on', "
               "(select system_identifier::text from pg_control_system()), pg_backend_pid()";
    return "select current_setting('server_version_num')::int, pg_is_in_recovery(), "
           "current_database(), current_setting('is_superuser') = 'on', null::text, "
           "pg_backend_pid()";
}

/* Whether the session may be another client's between two transactions: a pooler in
 * transaction mode, said (--no-prepared, no_prepared) or detected. Then nothing may
 * outlive a sync segment: unnamed statements, and statement_timeout set with is_local in
 * the segment of each query. */
static bool shared_session(const rp_source *src)
{
    return src->pooled || src->opts->no_prepared || src->def.no_prepared;
}

static int metric_timeout_ms(const rp_source *src, const slot *sl)
{
    if (sl->def->statement_timeout_s >= 0)
        return sl->def->statement_timeout_s * 1000;
    return src->opts->statement_timeout_ms;
}

static int send_timeout(rp_source *src, int ms)
{
    char v[24];
    snprintf(v, sizeof(v), "%d", ms);
    const char *params[1] = {v};
    add_item(src, ITEM_SET_TIMEOUT, -1);
    if (!PQsendQueryParams(src->client.conn, "select set_config('statement_timeout', $1, false)", 1,
                           NULL, params, NULL, NULL, 0))
        return -EIO;
    src->cur_timeout_ms = ms;
    return send_sync(src);
}

/* What a metric may have left in the session that rollback does not undo or that
 * survives the implicit transaction: settings (other than our statement_timeout),
 * advisory locks, SQL-level prepared statements, cursors, LISTEN, temporary tables.
 * Empty when the session is as pgreaper left it. */
static const char probe_sql[] =
    "select concat_ws('; ', "
    "(select 'settings: ' || string_agg(name, ', ' order by name) from pg_settings "
    "where source = 'session' and not (name = 'statement_timeout' and setting = $1)), "
    "(select 'advisory locks: ' || count(*) from pg_locks where locktype = 'advisory' "
    "and pid = pg_backend_pid() having count(*) > 0), "
    "(select 'prepared statements: ' || string_agg(name, ', ') from pg_prepared_statements "
    "where from_sql), "
    "(select 'cursors: ' || string_agg(name, ', ') from pg_cursors where is_holdable), "
    "(select 'listening: ' || string_agg(c, ', ') from pg_listening_channels() c), "
    "(select 'temporary tables: ' || count(*) from pg_class where relpersistence = 't' "
    "and relnamespace = pg_my_temp_schema() having count(*) > 0))";

/* The session is checked once after a metric's first run on each connection. Not through
 * a pooler (--no-prepared): there the session is shared with other clients. */
static bool wants_probe(const rp_source *src, const slot *sl)
{
    return !sl->probed && !shared_session(src);
}

static int send_probe(rp_source *src, size_t idx)
{
    char v[24];
    snprintf(v, sizeof(v), "%d", src->cur_timeout_ms);
    const char *params[1] = {v};
    src->slots[idx].probed = true;
    add_item(src, ITEM_PROBE, (int)idx);
    if (!PQsendQueryParams(src->client.conn, probe_sql, 1, NULL, params, NULL, NULL, 0))
        return -EIO;
    return send_sync(src);
}

/* change_events: its hash metrics, each in its own sync segment. */
static int send_changes(rp_source *src, size_t idx)
{
    slot *sl = &src->slots[idx];
    sl->fetch_time_ns = rp_clock_wall_ns();
    rp_changes_begin(sp(sl)->changes);
    for (int k = 0; k < RP_CHANGES_NINPUTS; k++) {
        if (!sp(sl)->change_sql[k])
            continue;
        add_item(src, ITEM_CHANGE, (int)idx);
        src->items[src->nitems - 1].sub = (uint8_t)k;
        if (!PQsendQueryParams(src->client.conn, sp(sl)->change_sql[k], 0, NULL, NULL, NULL, NULL,
                               0) ||
            send_sync(src) < 0)
            return -EIO;
        src->stats.queries++;
    }
    return 0;
}

/* server_log_event_counts: where the log is, and what was added (collect/logcounts.h). */
static int send_logs(rp_source *src, size_t idx)
{
    slot *sl = &src->slots[idx];
    char offset[24];
    const char *vals[3];
    rp_logcounts_params(sp(sl)->logs, offset, vals);
    sl->fetch_time_ns = rp_clock_wall_ns();
    add_item(src, ITEM_LOGS, (int)idx);
    if (!PQsendQueryParams(src->client.conn, rp_logcounts_sql, 3, NULL, vals, NULL, NULL, 0))
        return -EIO;
    src->stats.queries++;
    return send_sync(src);
}

/* psutil_disk of a local server: where its directories are (collect/diskusage.h). */
static int send_disk(rp_source *src, size_t idx)
{
    src->slots[idx].fetch_time_ns = rp_clock_wall_ns();
    add_item(src, ITEM_DISK, (int)idx);
    if (!PQsendQueryParams(src->client.conn, rp_diskusage_sql, 0, NULL, NULL, NULL, NULL, 0))
        return -EIO;
    src->stats.queries++;
    return send_sync(src);
}

/* statement_timeout for the next query only: in its sync segment, so in its transaction. */
static int send_local_timeout(rp_source *src, int ms)
{
    char v[24];
    snprintf(v, sizeof(v), "%d", ms);
    const char *params[1] = {v};
    add_item(src, ITEM_SET_TIMEOUT, -1);
    return PQsendQueryParams(src->client.conn, "select set_config('statement_timeout', $1, true)",
                             1, NULL, params, NULL, NULL, 0)
               ? 0
               : -EIO;
}

static int send_metric(rp_source *src, size_t idx)
{
    slot *sl = &src->slots[idx];
    int ms = metric_timeout_ms(src, sl);
    if (shared_session(src) ? send_local_timeout(src, ms) < 0
                            : ms != src->cur_timeout_ms && send_timeout(src, ms) < 0)
        return -EIO;
    if (sl->def->code == RP_CODE_CHANGE_EVENTS)
        return send_changes(src, idx);
    if (sp(sl)->logs)
        return send_logs(src, idx);
    if (sl->disk_local)
        return send_disk(src, idx);
    bool prepared = !shared_session(src);
    char name[16];
    stmt_name(sl, name);
    if (prepared && !sl->prepared) {
        add_item(src, ITEM_PREPARE, (int)idx);
        if (!PQsendPrepare(src->client.conn, name, sl->sql, 0, NULL))
            return -EIO;
        sl->prepared = true; /* reset if the prepare fails */
    }
    add_item(src, ITEM_QUERY, (int)idx);
    sl->fetch_time_ns = rp_clock_wall_ns();
    int ok = prepared ? PQsendQueryPrepared(src->client.conn, name, 0, NULL, NULL, NULL, 0)
                      : PQsendQueryParams(src->client.conn, sl->sql, 0, NULL, NULL, NULL, NULL, 0);
    if (!ok)
        return -EIO;
    src->stats.queries++;
    if (send_sync(src) < 0)
        return -EIO;
    return wants_probe(src, sl) ? send_probe(src, idx) : 0;
}

static int send_deallocations(rp_source *src)
{
    for (size_t i = 0; i < src->nstale; i++) {
        char sql[48]; /* our own statement names: rp_<number> */
        snprintf(sql, sizeof(sql), "DEALLOCATE %s", src->stale[i]);
        add_item(src, ITEM_DEALLOCATE, -1);
        if (!PQsendQueryParams(src->client.conn, sql, 0, NULL, NULL, NULL, NULL, 0) ||
            send_sync(src) < 0)
            return -EIO;
    }
    src->nstale = 0;
    return 0;
}

/* libpq 15 writes at every sync point: gather a pipeline's writes into one send(). */
static void coalesce(rp_source *src, bool on)
{
    if (!src->opts->coalesce_writes)
        return;
    if (on)
        rp_sendbuf_begin(&src->sendbuf, PQsocket(src->client.conn));
    else
        rp_sendbuf_end(&src->sendbuf);
}

/* Write what the pipeline left pending: our burst first, then libpq's own buffer.
 * Returns 1 when the socket must be watched for writing, 0 when all is out, or < 0. */
static int flush_out(rp_source *src)
{
    int g = rp_sendbuf_flush(&src->sendbuf);
    src->stats.socket_writes = src->sendbuf.sends;
    src->stats.writes_coalesced = src->sendbuf.coalesced;
    if (g != 0)
        return g;
    int f = PQflush(src->client.conn);
    return f < 0 ? -EIO : f;
}

/* Why flush_out failed. */
static const char *flush_error(rp_source *src, int f)
{
    return f == -EIO ? conn_error(src) : strerror(-f);
}

/* The current item of a console batch, with the simple protocol. */
static int send_console_item(rp_source *src)
{
    const item *it = &src->items[src->cur_item];
    const char *sql = src->console;
    if (it->kind == ITEM_QUERY) {
        slot *sl = &src->slots[it->slot];
        sql = sl->sql;
        sl->fetch_time_ns = rp_clock_wall_ns();
        src->stats.queries++;
    }
    src->stats.pipelines++;
    return PQsendQuery(src->client.conn, sql) == 1 ? 0 : -EIO;
}

/* A pooler's admin console (PgBouncer, Pgpool-II) takes neither the extended protocol
 * nor pipelines nor session settings: the batch is the same list of items, sent one
 * command at a time; drain_results sends the next when one is complete. Metrics computed
 * from several queries or from files are not for consoles and are left out. */
static void send_console(rp_source *src, const size_t *due, size_t ndue, bool runtime)
{
    set_state(src, RP_SOURCE_BUSY);
    src->nitems = src->cur_item = 0;
    src->null_streak = 0;
    if (runtime) {
        add_item(src, ITEM_RUNTIME, -1);
        src->runtime_due = now_ms(src) + (uint64_t)src->opts->runtime_refresh_ms;
    }
    for (size_t i = 0; i < ndue; i++) {
        const slot *sl = &src->slots[due[i]];
        if (sl->sql && !sp(sl)->changes && !sp(sl)->logs && !sl->disk_local)
            add_item(src, ITEM_QUERY, (int)due[i]);
    }
    if (src->nitems == 0) {
        enter_ready(src);
        return;
    }
    src->quiet_ms = src->opts->statement_timeout_ms + src->opts->connect_timeout_ms;
    src->last_progress = now_ms(src);
    src->cancel_sent = false;
    arm_deadline(src, (uint64_t)src->quiet_ms);
    int f = send_console_item(src) < 0 ? -1 : PQflush(src->client.conn);
    if (f < 0)
        enter_backoff(src, conn_error(src));
    else if (watch(src, f == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE) < 0)
        enter_backoff(src, "could not watch the connection's socket");
}

/* Queue the runtime query (when asked) and every due metric as one pipeline, flush. */
static void send_pipeline(rp_source *src, const size_t *due, size_t ndue, bool runtime)
{
    if (src->console) {
        send_console(src, due, ndue, runtime);
        return;
    }
    set_state(src, RP_SOURCE_BUSY);
    src->nitems = src->cur_item = 0;
    src->null_streak = 0;
    coalesce(src, true);
    int rc = 0;
    int max_timeout = 0;
    if (runtime) {
        add_item(src, ITEM_RUNTIME, -1);
        if (!PQsendQueryParams(src->client.conn, runtime_sql(src->runtime_variant), 0, NULL, NULL,
                               NULL, NULL, 0) ||
            send_sync(src) < 0)
            rc = -EIO;
        src->runtime_due = now_ms(src) + (uint64_t)src->opts->runtime_refresh_ms;
    }
    rc = rc < 0 ? rc : send_deallocations(src);
    for (size_t i = 0; rc == 0 && i < ndue; i++) {
        rc = send_metric(src, due[i]);
        int t = metric_timeout_ms(src, &src->slots[due[i]]);
        max_timeout = t > max_timeout ? t : max_timeout;
    }
    coalesce(src, false);
    if (rc < 0) {
        enter_backoff(src, conn_error(src));
        return;
    }
    src->stats.pipelines++;
    /* The server enforces statement_timeout; this deadline only catches a silent server. */
    src->quiet_ms = (max_timeout > 0 ? max_timeout : 60000) + src->opts->connect_timeout_ms;
    src->last_progress = now_ms(src);
    src->cancel_sent = false;
    arm_deadline(src, (uint64_t)src->quiet_ms);
    /* Usually everything goes out at once (f == 0): then the answers are read when they
     * should be complete (settling, below), else as the socket allows. */
    int f = flush_out(src);
    if (f < 0) {
        enter_backoff(src, flush_error(src, f));
        return;
    }
    src->settles = 0;
    src->full_us = 0;
    src->read_full = false;
    src->sent_ns = uv_hrtime();
    int w = f == 0 && src->opts->coalesce_reads
                ? settle(src)
                : watch(src, f == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
    if (w < 0)
        enter_backoff(src, "could not watch the connection's socket");
}

/*-------------------------------------------------------------------------
 * Reading results
 *-------------------------------------------------------------------------
 */

bool rp_source_error_unavailable(const char *sqlstate)
{
    static const char *const codes[] = {"42P01", "42883", "55000", "42501", "0A000", "58P01"};
    for (size_t i = 0; sqlstate && i < RP_ARRAY_LEN(codes); i++)
        if (strcmp(sqlstate, codes[i]) == 0)
            return true;
    return false;
}

/* A fetch of sl's metric completed or failed: counted for the source and the metric. */
static void count_fetch(rp_source *src, slot *sl)
{
    src->stats.fetches_ok++;
    sl->fetches++;
}

static void count_error(rp_source *src, slot *sl)
{
    src->stats.fetch_errors++;
    sl->errors++;
}

/* A metric this server cannot run (extension, view or privilege missing): one warning,
 * then it is left out for SKIP_MS and tried again. */
static void metric_unavailable(rp_source *src, slot *sl, const char *msg, const char *state,
                               uint64_t h)
{
    uint64_t now = now_ms(src);
    rp_log_at(err_key(h) == sl->err_hash ? RP_LOG_DEBUG : RP_LOG_WARN, src->def.name, sl->def->name,
              msg,
              "metric skipped: it cannot run on this server (SQLSTATE %s); tried again every "
              "%d minutes",
              state, SKIP_MS / 60000);
    sl->err_hash = err_key(h);
    sl->err_logged_s = (uint32_t)(now / 1000);
    sl->skip_until = now + SKIP_MS;
    sl->failing = true;
}

/* The session may be another client's between transactions: a pooler (PgBouncer,
 * Pgcat, ...) is on the way. Fall back to what works there, and say why once. Whether
 * the session is now taken as shared (so that a failure it causes is explained). */
static bool session_is_shared(rp_source *src, const char *why)
{
    if (src->pooled)
        return true;
    if (shared_session(src))
        return false;
    src->pooled = true;
    rp_log_at(RP_LOG_WARN, src->def.name, NULL, NULL,
              "%s: a pooler is between pgreaper and the server, and its sessions may be other "
              "clients' between transactions; from now on this source sends unnamed statements "
              "and sets statement_timeout within each query's transaction (set no_prepared: "
              "true to start that way)",
              why);
    return true;
}

static void metric_failed(rp_source *src, slot *sl, const PGresult *res)
{
    count_error(src, sl);
    const char *msg = PQresultErrorMessage(res);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    uint64_t h = rp_hash_str(RP_HASH_INIT, msg);
    uint64_t now = now_ms(src);
    if (state && strcmp(state, "26000") == 0) {
        sl->prepared = false; /* gone: prepare it again next time */
        if (session_is_shared(src, "a statement prepared on this connection is gone"))
            return; /* explained once, counted */
    }
    if (state && strcmp(state, "42P05") == 0 && sl->prepared &&
        session_is_shared(src, "a statement name of this connection is taken already"))
        return;
    if (rp_source_error_unavailable(state)) {
        metric_unavailable(src, sl, msg, state, h);
        return;
    }
    if (!sl->failing || err_key(h) != sl->err_hash ||
        now / 1000 - sl->err_logged_s >= ERROR_RELOG_MS / 1000) {
        rp_log_at(RP_LOG_ERROR, src->def.name, sl->def->name, msg,
                  "metric query failed (SQLSTATE %s)", state ? state : "?");
        sl->err_logged_s = (uint32_t)(now / 1000);
        sl->err_hash = err_key(h);
    }
    sl->failing = true;
}

/* Hand the result to the sinks: res itself, or the rows kept in src->arena (res then
 * describes the columns). */
static void metric_rows(rp_source *src, slot *sl, const PGresult *res)
{
    if (sl->failing) {
        rp_log_at(RP_LOG_INFO, src->def.name, sl->def->name, NULL, "metric query succeeded again");
        sl->failing = false;
    }
    rp_batch b;
    if (src->single)
        rp_batch_init_cells(&b, res, src->arena.data, src->cells, src->nrows);
    else
        rp_batch_init_result(&b, res);
    count_fetch(src, sl);
    src->stats.rows += b.nrows;
    src->stats.values +=
        rp_source_write_batch(src->opts, &src->def, sl->def, &b, sl->fetch_time_ns);
    if (sl->def->is_instance_level && src->inst_key)
        (void)rp_instcache_store(src->opts->instcache, src->inst_key, metric_key(sl), &b,
                                 (int64_t)sl->interval_s * 1000000000, &sl->shared_gen);
    rp_batch_fini(&b);
}

/*-------------------------------------------------------------------------
 * Misbehaving metrics: commands, session changes, oversized results
 *-------------------------------------------------------------------------
 */

/* sl did something that must not reach the other metrics: left out until its SQL changes,
 * logged once, and the connection is reset after this batch. */
static void offender(rp_source *src, slot *sl, const char *what)
{
    if (!sl->offender)
        rp_log_at(RP_LOG_ERROR, src->def.name, sl->def->name, NULL,
                  "metric disabled: it %s; a metric must be one query that leaves the session as "
                  "it found it (it runs again once a reload changes its SQL)",
                  what);
    sl->offender = true;
    sl->failing = true;
    src->tainted = true;
    want_reset(src, "metric \"%s\" %s", sl->def->name, what);
}

void rp_source_result_caps(const rp_source_opts *opts, const rp_metric_def *def, uint64_t *rows,
                           uint64_t *bytes)
{
    *rows = (uint64_t)(def->result_max_rows > 0 ? def->result_max_rows : opts->result_max_rows);
    *bytes = (uint64_t)(def->result_max_bytes > 0 ? def->result_max_bytes : opts->result_max_bytes);
}

static void result_caps(const rp_source *src, const slot *sl, uint64_t *rows, uint64_t *bytes)
{
    rp_source_result_caps(src->opts, sl->def, rows, bytes);
}

static bool over_caps(const rp_source *src, const slot *sl, uint64_t rows, uint64_t bytes)
{
    uint64_t max_rows, max_bytes;
    result_caps(src, sl, &max_rows, &max_bytes);
    return rows > max_rows || bytes > max_bytes;
}

uint64_t rp_source_row_bytes(const PGresult *res, int row)
{
    int ncols = PQnfields(res);
    uint64_t n = 8 * (uint64_t)ncols;
    for (int c = 0; c < ncols; c++)
        n += (uint64_t)PQgetlength(res, row, c);
    return n;
}

/* Before libpq parses any of a query's result: read it row by row (single-row mode) when
 * its size is not known yet or was above 1/GUARD_DIVISOR of a cap last time, so that a
 * cap is enforced while reading; small results are read whole (no allocation per row). */
static void begin_item(rp_source *src, const item *it)
{
    src->single_set = true;
    src->single = src->over_cap = false;
    src->seen_rows = src->seen_bytes = 0;
    if (it->kind != ITEM_QUERY)
        return;
    const slot *sl = &src->slots[it->slot];
    uint64_t max_rows, max_bytes;
    result_caps(src, sl, &max_rows, &max_bytes);
    bool guarded = !sl->sized || sl->last_rows == UINT32_MAX || sl->last_bytes == UINT32_MAX ||
                   sl->last_rows > max_rows / GUARD_DIVISOR ||
                   sl->last_bytes > max_bytes / GUARD_DIVISOR;
    src->single = guarded && PQsetSingleRowMode(src->client.conn) == 1;
}

/* One row in single-row mode: its values are copied into the arena while the result
 * stays within its caps (a PGresult per row would cost 2 KiB each); past a cap every
 * row kept is forgotten and the rest is read and discarded. */
static void take_row(rp_source *src, const slot *sl, const PGresult *res)
{
    src->seen_rows++;
    src->seen_bytes += rp_source_row_bytes(res, 0);
    if (!src->over_cap && over_caps(src, sl, src->seen_rows, src->seen_bytes)) {
        src->over_cap = true;
        drop_rows(src);
    }
    if (src->over_cap)
        return;
    int ncols = PQnfields(res);
    rp_grow((void **)&src->cells, &src->cap_cells, src->ncells + (size_t)ncols, sizeof(rp_cell));
    for (int c = 0; c < ncols; c++) {
        rp_cell *cell = &src->cells[src->ncells++];
        cell->len = (uint32_t)PQgetlength(res, 0, c);
        cell->off = PQgetisnull(res, 0, c) ? RP_CELL_NULL : (uint32_t)src->arena.len;
        if (cell->off != RP_CELL_NULL)
            rp_buf_append(&src->arena, PQgetvalue(res, 0, c), (size_t)cell->len + 1);
    }
    src->nrows++;
}

static void result_over_cap(rp_source *src, slot *sl)
{
    uint64_t max_rows, max_bytes, now = now_ms(src);
    result_caps(src, sl, &max_rows, &max_bytes);
    count_error(src, sl);
    src->stats.results_over_cap++;
    rp_log_at(RP_LOG_ERROR, src->def.name, sl->def->name, NULL,
              "metric result too large: %llu rows, %llu bytes (caps: %llu rows, %llu bytes; "
              "raise --result-max-rows/--result-max-bytes or the metric's "
              "result_max_rows/result_max_bytes); nothing stored, tried again in %d minutes",
              (unsigned long long)src->seen_rows, (unsigned long long)src->seen_bytes,
              (unsigned long long)max_rows, (unsigned long long)max_bytes, SKIP_MS / 60000);
    sl->failing = true;
    sl->err_hash = 0;
    sl->err_logged_s = (uint32_t)(now / 1000);
    sl->skip_until = now + SKIP_MS;
    if (src->seen_bytes > max_bytes) /* libpq keeps its grown buffer */
        want_reset(src, "metric \"%s\" returned %llu bytes: releasing the connection's read buffer",
                   sl->def->name, (unsigned long long)src->seen_bytes);
}

/* Two columns of one name would overwrite each other in every sink. */
static bool duplicate_column(rp_source *src, slot *sl, const PGresult *res)
{
    int n = PQnfields(res);
    for (int i = 1; i < n; i++) {
        for (int j = 0; j < i; j++) {
            if (strcmp(PQfname(res, i), PQfname(res, j)) != 0)
                continue;
            count_error(src, sl);
            if (!sl->failing || sl->err_hash != 1)
                rp_log_at(RP_LOG_ERROR, src->def.name, sl->def->name, NULL,
                          "metric returns two columns named \"%s\" (columns %d and %d): "
                          "nothing stored; give each column its own name",
                          PQfname(res, i), j + 1, i + 1);
            sl->failing = true;
            sl->err_hash = 1;
            return true;
        }
    }
    sl->shape_ok = true;
    return false;
}

static void query_result(rp_source *src, slot *sl, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    if (src->tainted) { /* ran after another metric changed the session */
        src->stats.fetches_discarded++;
        sl->probed = false;
    } else if (st == PGRES_COMMAND_OK) {
        char what[96];
        snprintf(what, sizeof(what), "ran %.40s, a command, not a query", PQcmdStatus(res));
        count_error(src, sl);
        offender(src, sl, what);
    } else if (st != PGRES_TUPLES_OK) {
        if (st != PGRES_PIPELINE_ABORTED)
            metric_failed(src, sl, res);
    } else {
        if (!src->single) {
            src->seen_rows = (uint64_t)PQntuples(res);
            for (int r = 0; r < PQntuples(res); r++)
                src->seen_bytes += rp_source_row_bytes(res, r);
            src->over_cap = over_caps(src, sl, src->seen_rows, src->seen_bytes);
        }
        sl->sized = true;
        sl->last_rows = src->seen_rows < UINT32_MAX ? (uint32_t)src->seen_rows : UINT32_MAX;
        sl->last_bytes = src->seen_bytes < UINT32_MAX ? (uint32_t)src->seen_bytes : UINT32_MAX;
        if (src->over_cap)
            result_over_cap(src, sl);
        else if (sl->shape_ok || !duplicate_column(src, sl, res))
            metric_rows(src, sl, res);
    }
    drop_rows(src);
}

static void probe_result(rp_source *src, slot *sl, const PGresult *res)
{
    if (src->tainted) {     /* the session already holds another metric's change */
        sl->probed = false; /* checked again after the reset */
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || !*PQgetvalue(res, 0, 0))
        return;
    char what[200];
    snprintf(what, sizeof(what), "changed the session (%.150s)", PQgetvalue(res, 0, 0));
    offender(src, sl, what);
}

int rp_source_console_version(const char *text)
{
    const char *v = text + strcspn(text, "0123456789");
    int major = 0, minor = 0, patch = 0;
    (void)sscanf(v, "%d.%d.%d", &major, &minor, &patch);
    return major * 10000 + minor * 100 + patch;
}

static void console_runtime_result(rp_source *src, const PGresult *res)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1 || PQnfields(res) < 1)
        return;
    int version = rp_source_console_version(PQgetvalue(res, 0, 0));
    src->plan_dirty = src->plan_dirty || !src->role_known || version != src->server_version;
    src->server_version = version;
    src->in_recovery = false;
    src->role_known = true;
}

static void runtime_result(rp_source *src, const PGresult *res)
{
    if (src->console) {
        console_runtime_result(src, res);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (src->runtime_variant == 0 && state && strcmp(state, "42501") == 0) {
            src->runtime_variant = 1; /* no privilege for pg_control_system() */
            src->runtime_due = 0;
        }
        return;
    }
    int version = atoi(PQgetvalue(res, 0, 0));
    bool recovery = PQgetvalue(res, 0, 1)[0] == 't';
    bool changed =
        !src->role_known || recovery != src->in_recovery || version != src->server_version;
    if (src->role_known && recovery != src->in_recovery)
        rp_log_at(RP_LOG_INFO, src->def.name, NULL, NULL, "source is now a %s",
                  recovery ? "standby" : "primary");
    src->server_version = version;
    src->in_recovery = recovery;
    src->role_known = true;
    snprintf(src->dbname, sizeof(src->dbname), "%s", PQgetvalue(res, 0, 2));
    src->is_superuser = PQgetvalue(res, 0, 3)[0] == 't';
    snprintf(src->sysid, sizeof(src->sysid), "%s", PQgetvalue(res, 0, 4));
    int pid = PQnfields(res) > 5 ? atoi(PQgetvalue(res, 0, 5)) : 0;
    if (pid && PQbackendPID(src->client.conn) && pid != PQbackendPID(src->client.conn))
        (void)session_is_shared(src, "the server process differs from the one the connection "
                                     "announced");
    set_instance(src, src->sysid[0] ? rp_instcache_key(src->sysid, PQhost(src->client.conn),
                                                       PQport(src->client.conn))
                                    : 0);
    src->plan_dirty = src->plan_dirty || changed; /* applied at the batch boundary */
}

static void emit_change(void *arg, const char *metric, rp_batch *b)
{
    rp_source *src = arg;
    const slot *sl = &src->slots[src->items[src->cur_item].slot];
    b->source = src->def.name;
    b->metric = b->storage = metric;
    b->fetch_time_ns = sl->fetch_time_ns;
    b->custom_tags = src->def.custom_tags;
    b->ncustom_tags = src->def.ncustom_tags;
    src->stats.rows += b->nrows;
    src->stats.values += b->nrows * b->ncols;
    src->opts->emit(src->opts->emit_arg, b);
}

/* One hash metric of change_events; after the last, the change_events row. */
static void change_result(rp_source *src, const item *it, const PGresult *res)
{
    slot *sl = &src->slots[it->slot];
    if (src->tainted)
        return;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (PQresultStatus(res) != PGRES_PIPELINE_ABORTED)
            metric_failed(src, sl, res);
    } else if (rp_changes_feed(sp(sl)->changes, it->sub, res, sl->fetch_time_ns, emit_change, src) <
               0) {
        rp_log_at(RP_LOG_WARN, src->def.name, sl->def->name, NULL,
                  "%s lacks the columns change_events compares: ignored",
                  rp_changes_input(it->sub));
    } else {
        count_fetch(src, sl);
    }
    int last = RP_CHANGES_NINPUTS - 1;
    while (last > 0 && !sp(sl)->change_sql[last])
        last--;
    if (it->sub == last)
        rp_changes_finish(sp(sl)->changes, sl->fetch_time_ns, emit_change, src);
}

/* One row pgreaper computed itself (collect/native.h) as the metric's measurement. */
static void emit_row(rp_source *src, slot *sl, const rp_native_row *row, int64_t t)
{
    rp_batch b;
    rp_native_batch(row, &b);
    count_fetch(src, sl);
    src->stats.rows++;
    src->stats.values += rp_source_write_batch(src->opts, &src->def, sl->def, &b, t);
    rp_batch_fini(&b);
}

static void logs_result(rp_source *src, slot *sl, const PGresult *res)
{
    if (src->tainted)
        return;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (PQresultStatus(res) != PGRES_PIPELINE_ABORTED)
            metric_failed(src, sl, res);
        return;
    }
    rp_native_row row;
    char err[200];
    int rc = rp_logcounts_result(sp(sl)->logs, res, src->is_local, sl->fetch_time_ns, &row, err,
                                 sizeof(err));
    if (rc < 0) {
        metric_unavailable(src, sl, err, "55000", rp_hash_str(RP_HASH_INIT, err));
        return;
    }
    sl->failing = false;
    if (rc > 0)
        count_fetch(src, sl); /* nothing new to store this time */
    else
        emit_row(src, sl, &row, sl->fetch_time_ns);
}

static void disk_result(rp_source *src, slot *sl, const PGresult *res)
{
    if (src->tainted)
        return;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (PQresultStatus(res) != PGRES_PIPELINE_ABORTED)
            metric_failed(src, sl, res);
        return;
    }
    rp_diskusage *d = rp_malloc(sizeof(*d));
    char err[200];
    if (rp_diskusage_read(res, sl->fetch_time_ns, d, err, sizeof(err)) < 0) {
        metric_unavailable(src, sl, err, "58030", rp_hash_str(RP_HASH_INIT, err));
        rp_free(d);
        return;
    }
    sl->failing = false;
    count_fetch(src, sl);
    for (size_t i = 0; i < d->nrows; i++) {
        rp_batch b;
        rp_diskusage_batch(d, i, &b);
        src->stats.rows++;
        src->stats.values +=
            rp_source_write_batch(src->opts, &src->def, sl->def, &b, sl->fetch_time_ns);
        rp_batch_fini(&b);
    }
    rp_free(d);
}

static void item_result(rp_source *src, const item *it, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    slot *sl = it->slot >= 0 ? &src->slots[it->slot] : NULL;
    switch ((item_kind)it->kind) {
    case ITEM_RUNTIME:
        runtime_result(src, res);
        break;
    case ITEM_SET_TIMEOUT:
        if (st != PGRES_TUPLES_OK)
            src->cur_timeout_ms = -1;
        break;
    case ITEM_PREPARE:
        if (st != PGRES_COMMAND_OK) {
            sl->prepared = false;
            if (!src->tainted) /* else it may have failed by another metric's SET */
                metric_failed(src, sl, res);
        }
        break;
    case ITEM_QUERY:
        query_result(src, sl, res);
        break;
    case ITEM_PROBE:
        probe_result(src, sl, res);
        break;
    case ITEM_CHANGE:
        change_result(src, it, res);
        break;
    case ITEM_LOGS:
        logs_result(src, sl, res);
        break;
    case ITEM_DISK:
        disk_result(src, sl, res);
        break;
    case ITEM_DEALLOCATE: /* nothing to do on failure: the name is never reused */
    case ITEM_SYNC:
        break;
    }
}

static void next_item(rp_source *src)
{
    src->cur_item++;
    src->single_set = false;
}

/* Read every result that is available. 1: batch complete, 0: wait for the socket,
 * 2: yield to the loop (YIELD_NS spent), <0: connection broken. */
static int drain_results(rp_source *src)
{
    uint64_t start = uv_hrtime();
    while (src->cur_item < src->nitems) {
        const item *it = &src->items[src->cur_item];
        if (!src->single_set)
            begin_item(src, it);
        if (uv_hrtime() - start >= YIELD_NS)
            return 2;
        if (PQisBusy(src->client.conn))
            return 0;
        PGresult *res = PQgetResult(src->client.conn);
        if (!res) {
            if (it->kind != ITEM_SYNC)
                next_item(src);
            else if (++src->null_streak > 2)
                return -EPROTO;
            if (src->console && src->cur_item < src->nitems && send_console_item(src) < 0)
                return -EIO;
            continue;
        }
        src->null_streak = 0;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE && it->kind == ITEM_QUERY) {
            take_row(src, &src->slots[it->slot], res);
            PQclear(res);
            continue;
        }
        if (st == PGRES_PIPELINE_SYNC) {
            if (it->kind != ITEM_SYNC) {
                PQclear(res);
                return -EPROTO;
            }
            next_item(src);
        } else if (it->kind != ITEM_SYNC) {
            item_result(src, it, res);
        }
        PQclear(res);
        if (PQstatus(src->client.conn) == CONNECTION_BAD)
            return -EIO;
    }
    return 1;
}

/* Reconnect at once (not a failure: no backoff, no instance_up 0) because the session
 * may carry a change that the other metrics must not see, or a grown read buffer. */
static void reset_session(rp_source *src)
{
    rp_log_at(RP_LOG_WARN, src->def.name, NULL, NULL, "resetting the connection: %s",
              src->reset_why);
    clear_reset(src);
    src->tainted = false;
    src->stats.session_resets++;
    disconnect(src);
    uv_timer_stop(&src->tick_timer);
    set_state(src, RP_SOURCE_OFFLINE);
    rp_pgclient_reset(&src->client);
}

/* Between pipelines a fleet keeps little per source: the single-row arena and its cells
 * go (they serve a metric's first runs and large results), and an items array grown by a
 * first pipeline (every statement prepared and probed) shrinks to twice the last one. */
static void trim_between_batches(rp_source *src)
{
    enum { MIN_ITEMS = 16 };
    rp_buf_fini(&src->arena);
    rp_free(src->cells);
    src->cells = NULL;
    src->ncells = src->cap_cells = src->nrows = 0;
    if (src->cap_items > MIN_ITEMS * 2 && src->nitems * 4 <= src->cap_items) {
        src->cap_items = src->nitems * 2 > MIN_ITEMS ? src->nitems * 2 : MIN_ITEMS;
        src->items = rp_reallocarray(src->items, src->cap_items, sizeof(item));
    }
}

static void batch_done(rp_source *src)
{
    trim_between_batches(src);
    apply_pending(src);
    if (!src->was_connected) {
        src->was_connected = true;
        rp_pgclient_settled(&src->client);
        char version[16];
        rp_log_at(RP_LOG_INFO, src->def.name, NULL, NULL, "%s to source (%s %s, %s, %zu metrics)",
                  src->down_logged ? "reconnected" : "connected",
                  src->console ? src->def.kind : "PostgreSQL",
                  rp_pgconn_version_str(src->server_version, version, sizeof(version)),
                  src->console       ? "admin console"
                  : src->in_recovery ? "standby"
                                     : "primary",
                  src->nslots);
        src->down_logged = false;
        emit_instance_up(src, true);
    }
    if (src->state == RP_SOURCE_DRAINING) {
        enter_closing(src);
        return;
    }
    if (PQtransactionStatus(src->client.conn) != PQTRANS_IDLE)
        want_reset(src, "a metric left a transaction open (rolled back)");
    if (src->reset_why) {
        reset_session(src);
        return;
    }
    enter_ready(src);
}

/*
 * Settling. The server flushes at every sync point, so the answers to a pipeline arrive
 * one metric at a time, and a reader that watches the socket wakes up and reads once per
 * metric. Instead, once a pipeline is written, its socket is not watched: a timer fires
 * when the answers are expected to be complete and one read takes them all. The
 * expectation is learnt per source, in microseconds per sync segment: lowered slowly
 * while the first read finds everything; after a pipeline that needed more reads, set to
 * the time its last answer was read at (an upper bound, so the next one is likely read
 * at once), but to no more than twice what it was (an outlier teaches little). A pipeline still
 * unfinished is read again when the rest should be there: the later of what the learnt pace and the
 * pace of its answers so far say (the cheap metrics often answer first); the SETTLE_READS-th read
 * hands over to watching the socket.
 *
 * Answers larger than the socket buffers stop the server until they are read: reads go
 * on while they fill libpq's buffer (read_answers), and such a pipeline teaches the time
 * of its first full read, not of its end (which depended on when we read). A metric's time is still
 * the time it was sent; only the reading waits, SETTLE_MAX_MS at most a wait.
 */
#define SETTLE_MAX_MS   250
#define SETTLE_READS    4
#define SETTLE_US_FIRST 200
#define SETTLE_US_MIN   10
#define SETTLE_US_MAX   (SETTLE_MAX_MS * 1000)
#define READS_PER_WAKE  16

static void on_settle_timer(uv_timer_t *t)
{
    rp_source *src = t->data;
    src->io_events = UV_READABLE; /* read what came meanwhile */
    step(src, EV_RESUME);
}

static uint64_t sync_segments(const rp_source *src, uint64_t *done)
{
    uint64_t all = 0;
    *done = 0;
    for (size_t i = 0; i < src->nitems; i++)
        if (src->items[i].kind == ITEM_SYNC) {
            all++;
            *done += i < src->cur_item;
        }
    return all;
}

/* How long until the pipeline's last answer should be there, in ms (1..SETTLE_MAX_MS). */
static uint64_t settle_wait_ms(const rp_source *src)
{
    if (src->read_full)
        return 1;
    uint64_t done, all = sync_segments(src, &done);
    uint64_t elapsed_us = (uv_hrtime() - src->sent_ns) / 1000;
    uint64_t learnt_us = all * src->settle_us;
    uint64_t rest_us = learnt_us > elapsed_us ? learnt_us - elapsed_us : 0;
    if (done > 0 && (all - done) * (elapsed_us / done) > rest_us)
        rest_us = (all - done) * (elapsed_us / done);
    else if (done == 0 && src->settles > 0 && elapsed_us > rest_us)
        rest_us = elapsed_us; /* nothing yet: as long again as so far */
    uint64_t ms = (rest_us + 999) / 1000;
    return ms < 1 ? 1 : ms > SETTLE_MAX_MS ? SETTLE_MAX_MS : ms;
}

/* Stop watching the socket and read when the answers should be there. 0, or < 0. */
static int settle(rp_source *src)
{
    int rc = watch(src, 0);
    if (rc < 0)
        return rc;
    src->settling = true;
    src->settles++;
    uv_update_time(src->opts->loop); /* the wait starts now, not when this loop turn began */
    uv_timer_start(&src->yield_timer, on_settle_timer, settle_wait_ms(src), 0);
    return 0;
}

/* After a settle read that left the pipeline unfinished: wait again (0), or watch. */
static int settle_again(rp_source *src)
{
    if (src->settles < SETTLE_READS)
        return settle(src);
    src->settling = false;
    return watch(src, UV_READABLE);
}

/* The pipeline is complete: learn from how many reads it took. */
static void settle_done(rp_source *src)
{
    if (src->settles == 1 && src->settle_us > SETTLE_US_MIN) {
        src->settle_us -= src->settle_us / 64 + 1;
    } else if (src->settles > 1) {
        uint64_t done, all = sync_segments(src, &done);
        uint64_t us = src->full_us ? src->full_us : (uv_hrtime() - src->sent_ns) / 1000;
        us /= all ? all : 1;
        if (us > 2 * (uint64_t)src->settle_us) /* one slow pipeline does not teach much */
            us = 2 * (uint64_t)src->settle_us;
        src->settle_us = us < SETTLE_US_MIN   ? SETTLE_US_MIN
                         : us > SETTLE_US_MAX ? SETTLE_US_MAX
                                              : (uint32_t)us;
    }
    src->settling = false;
    src->settles = 0;
}

/* Read (when the socket is readable) and parse the answers, as drain_results returns.
 * libpq reads at most what its input buffer has room for (16 kB at first): while a read
 * fills it, the socket may hold more and the server may be waiting for room, so read
 * again at once, up to READS_PER_WAKE times (then settling reads again in 1 ms). */
static int read_answers(rp_source *src, bool readable)
{
    for (int n = 1;; n++) {
        if (readable) {
            src->stats.socket_reads++;
            if (!PQconsumeInput(src->client.conn))
                return -EIO;
            src->read_full = rp_sendbuf_recv_filled();
            if (src->read_full && src->full_us == 0) {
                uint64_t us = (uv_hrtime() - src->sent_ns) / 1000;
                src->full_us = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
            }
        }
        int rc = drain_results(src);
        if (rc != 0 || !readable || !src->read_full || n == READS_PER_WAKE)
            return rc;
    }
}

/* Socket activity (or a resumed read) while a pipeline is in flight (BUSY or DRAINING). */
static void pump(rp_source *src)
{
    if (src->io_events & UV_READABLE) {
        src->last_progress = now_ms(src);
        src->cancel_sent = false;
    }
    int f = flush_out(src);
    if (f < 0) {
        enter_backoff(src, flush_error(src, f));
        return;
    }
    int rc = read_answers(src, src->io_events & UV_READABLE);
    if (rc < 0) {
        enter_backoff(src, rc == -EPROTO ? "unexpected result order in pipeline" : conn_error(src));
        return;
    }
    if (src->console && rc != 1 && (f = PQflush(src->client.conn)) < 0) { /* the next command */
        enter_backoff(src, conn_error(src));
        return;
    }
    if (rc == 1) {
        settle_done(src);
        batch_done(src);
        return;
    }
    if (rc == 2) { /* more is buffered: let other sources run, then go on */
        uv_timer_start(&src->yield_timer, on_yield_timer, 0, 0);
        if (src->settling)
            return;
    }
    int w;
    if (src->settling && f == 0) {
        w = settle_again(src);
    } else {
        src->settling = false;
        w = watch(src, f == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
    }
    if (w < 0)
        enter_backoff(src, "could not watch the connection's socket");
}

/*-------------------------------------------------------------------------
 * A silent batch: cancel, keep the connection
 *-------------------------------------------------------------------------
 */

static int cancels_in_flight;

typedef struct cancel_req {
    uv_work_t work;
    PGcancel *cancel;
    bool ok;
    char err[256];
    char source[64];
} cancel_req;

static void cancel_work(uv_work_t *w) /* a thread-pool thread: PQcancel blocks */
{
    cancel_req *c = rp_container_of(w, cancel_req, work);
    c->ok = PQcancel(c->cancel, c->err, (int)sizeof(c->err)) == 1;
}

static void cancel_done(uv_work_t *w, int status)
{
    cancel_req *c = rp_container_of(w, cancel_req, work);
    cancels_in_flight--;
    if (status == 0 && !c->ok)
        rp_log_at(RP_LOG_WARN, c->source, NULL, c->err, "the cancel request failed");
    PQfreeCancel(c->cancel);
    rp_free(c);
}

/* Ask the server to cancel the running query, on the thread pool (PQcancel connects and
 * blocks). The request outlives the source if need be: it only knows the name. */
static void request_cancel(rp_source *src)
{
    src->cancel_sent = true;
    src->stats.cancels++;
    PGcancel *pc = cancels_in_flight < MAX_CANCELS ? PQgetCancel(src->client.conn) : NULL;
    rp_log_at(RP_LOG_WARN, src->def.name, NULL, NULL,
              "no answer from the server for %d ms: %s (the connection is kept; ticks are "
              "skipped while the batch runs)",
              src->quiet_ms, pc ? "cancelling the running query" : "too many cancels in flight");
    if (!pc)
        return;
    cancel_req *c = rp_calloc(1, sizeof(*c));
    c->cancel = pc;
    snprintf(c->source, sizeof(c->source), "%s", src->def.name);
    if (uv_queue_work(src->opts->loop, &c->work, cancel_work, cancel_done) < 0) {
        PQfreeCancel(pc);
        rp_free(c);
        return;
    }
    cancels_in_flight++;
}

/* The batch deadline is about silence: a pipeline of slow queries that keeps answering
 * may run past its statement timeouts' sum. Silent for quiet_ms: cancel the running
 * query (the cancelled query fails, the rest of the batch runs, the connection stays).
 * Silent for connect_timeout_ms more after that: the peer is gone, reconnect. */
static void batch_silent(rp_source *src)
{
    uint64_t quiet = now_ms(src) - src->last_progress;
    uint64_t allowed =
        src->cancel_sent ? (uint64_t)src->opts->connect_timeout_ms : (uint64_t)src->quiet_ms;
    if (quiet < allowed) {
        arm_deadline(src, allowed - quiet);
        return;
    }
    if (!src->cancel_sent) {
        request_cancel(src);
        src->last_progress = now_ms(src);
        arm_deadline(src, (uint64_t)src->opts->connect_timeout_ms);
        return;
    }
    enter_backoff(src, "no answer from the server, not even to a cancel request");
}

static void step_busy(rp_source *src, rp_event ev)
{
    if (ev == EV_DEADLINE) {
        if (src->state == RP_SOURCE_DRAINING) {
            rp_log_at(RP_LOG_WARN, src->def.name, NULL, NULL,
                      "in-flight batch did not finish before shutdown: abandoned");
            enter_closing(src);
            return;
        }
        batch_silent(src);
        return;
    }
    if (ev == EV_IO_ERROR) {
        enter_backoff(src, "socket error");
        return;
    }
    if (ev == EV_IO || ev == EV_RESUME)
        pump(src);
}

/*-------------------------------------------------------------------------
 * Ready: ticks
 *-------------------------------------------------------------------------
 */

static void record_lateness(rp_source *src, int64_t late)
{
    int b = 0;
    while (b < 15 && (1LL << b) <= late)
        b++;
    src->stats.lateness_ms_hist[b]++;
    src->stats.lateness_ms_sum += late > 0 ? (uint64_t)late : 0;
}

static void arm_tick(rp_source *src)
{
    int64_t next = rp_sched_next(&src->sched);
    if (next == RP_SCHED_NEVER) {
        uv_timer_stop(&src->tick_timer);
        return;
    }
    int64_t now = (int64_t)now_ms(src);
    uv_timer_start(&src->tick_timer, on_tick_timer, (uint64_t)(next > now ? next - now : 0), 0);
}

static void enter_ready(rp_source *src)
{
    set_state(src, RP_SOURCE_READY);
    if (watch(src, UV_READABLE) < 0) {
        enter_backoff(src, "could not watch the connection's socket");
        return;
    }
    arm_tick(src);
}

/* Emit instance_up for due slots of that special metric; returns how many remain to send. */
/* A metric pgwatch reads from the OS, read here from /proc (the server is local). */
static void emit_native(rp_source *src, slot *sl)
{
    rp_native_row row;
    int64_t now = rp_clock_wall_ns();
    if (!sp(sl)->native)
        own_sp(sl)->native = rp_calloc(1, sizeof(rp_native_state));
    int rc = rp_native_read(sl->def->code, sp(sl)->native, now, &row);
    if (rc < 0) {
        count_error(src, sl);
        if (!sl->failing)
            rp_log_at(RP_LOG_ERROR, src->def.name, sl->def->name, NULL,
                      "could not read the metric from this host's /proc: %s", strerror(-rc));
        sl->failing = true;
        return;
    }
    sl->failing = false;
    emit_row(src, sl, &row, now);
}

/* An instance-level metric that another source of the same instance fetched within this
 * slot's interval: store that result under this source's name instead of querying. */
static bool take_shared(rp_source *src, slot *sl)
{
    if (!sl->def->is_instance_level || !src->inst_key || !sl->sql || sp(sl)->changes ||
        sp(sl)->logs || sl->disk_local)
        return false;
    const rp_batch *b =
        rp_instcache_lookup(src->opts->instcache, src->inst_key, metric_key(sl), rp_clock_wall_ns(),
                            (int64_t)sl->interval_s * 1000000000, &sl->shared_gen);
    if (!b)
        return false;
    rp_batch v = *b; /* a view: the columns stay the cache's */
    src->stats.shared++;
    src->stats.rows += v.nrows;
    src->stats.values += rp_source_write_batch(src->opts, &src->def, sl->def, &v, b->fetch_time_ns);
    return true;
}

static size_t filter_due(rp_source *src, size_t ndue)
{
    size_t k = 0;
    for (size_t i = 0; i < ndue; i++) {
        slot *sl = &src->slots[src->due[i]];
        if (sl->is_instance_up)
            emit_instance_up(src, true);
        else if (src->is_local && rp_native_from_os(sl->def->code))
            emit_native(src, sl);
        else if ((sl->sql || sp(sl)->changes || sp(sl)->logs || sl->disk_local) && !sl->offender &&
                 sl->skip_until <= now_ms(src) && !take_shared(src, sl))
            src->due[k++] = src->due[i];
    }
    return k;
}

static void on_tick_timer(uv_timer_t *t)
{
    rp_source *src = t->data;
    int64_t now = (int64_t)now_ms(src);
    int64_t deadline = rp_sched_next(&src->sched);
    bool busy = src->state != RP_SOURCE_READY ||
                (src->opts->fence && (uint64_t)now >= *src->opts->fence); /* lease expired */
    size_t ndue = rp_sched_due(&src->sched, now, busy, src->due);
    if (busy) {
        src->stats.skipped_ticks++;
        arm_tick(src);
        return;
    }
    record_lateness(src, now - deadline);
    ndue = filter_due(src, ndue);
    bool runtime = now_ms(src) >= src->runtime_due;
    arm_tick(src);
    if (ndue == 0 && !runtime)
        return;
    src->stats.ticks++;
    send_pipeline(src, src->due, ndue, runtime);
}

static void step_ready(rp_source *src, rp_event ev)
{
    if (ev == EV_IO_ERROR) {
        enter_backoff(src, "socket error");
        return;
    }
    if (ev != EV_IO)
        return;
    /* Idle connection became readable: a notice, or the server closing it. */
    if (!PQconsumeInput(src->client.conn) || PQstatus(src->client.conn) == CONNECTION_BAD) {
        enter_backoff(src, conn_error(src));
        return;
    }
    while (!PQisBusy(src->client.conn)) {
        PGresult *res = PQgetResult(src->client.conn);
        if (!res)
            break;
        PQclear(res);
    }
    if (PQstatus(src->client.conn) == CONNECTION_BAD)
        enter_backoff(src, conn_error(src));
}

/*-------------------------------------------------------------------------
 * Dispatch
 *-------------------------------------------------------------------------
 */

static void step(rp_source *src, rp_event ev)
{
    switch (src->state) {
    case RP_SOURCE_OFFLINE:
        step_offline(src, ev);
        break;
    case RP_SOURCE_BUSY:
    case RP_SOURCE_DRAINING:
        step_busy(src, ev);
        break;
    case RP_SOURCE_READY:
        step_ready(src, ev);
        break;
    case RP_SOURCE_IDLE:
    case RP_SOURCE_CLOSING:
        break;
    }
}

/*-------------------------------------------------------------------------
 * Lifetime
 *-------------------------------------------------------------------------
 */

rp_source *rp_source_create(const rp_source_opts *opts, const rp_source_def *def, rp_catalog *cat)
{
    rp_source *src = rp_calloc(1, sizeof(*src));
    src->opts = opts;
    rp_source_def_copy(&src->def, def);
    src->cat = rp_catalog_ref(cat);
    rp_buf m = RP_BUF_INIT;
    rp_connstr_mask(def->conn_str, &m);
    src->masked_conn = m.data ? m.data : rp_strdup("");
    src->cur_timeout_ms = -1;
    src->console = rp_source_def_console(&src->def);
    rp_task_register(&src->task, "source", def->name, NULL);
    rp_task_set_state(&src->task, state_names[src->state]);
    rp_sched_init(&src->sched);
    rp_pgclient_opts co = {.application_name = "pgreaper",
                           .connect_timeout_ms = opts->connect_timeout_ms,
                           .backoff_min_ms = RP_BACKOFF_MIN_MS,
                           .backoff_max_ms = RP_BACKOFF_MAX_MS,
                           .jitter_seed = rp_hash_str(RP_HASH_INIT, def->name),
                           .task = &src->task,
                           .admit = opts->admit};
    rp_pgclient_init(&src->client, opts->loop, def->conn_str, &co, on_client, src);
    uv_timer_init(opts->loop, &src->tick_timer);
    uv_timer_init(opts->loop, &src->io_timer);
    uv_timer_init(opts->loop, &src->yield_timer);
    src->settle_us = SETTLE_US_FIRST;
    src->tick_timer.data = src->io_timer.data = src->yield_timer.data = src;
    (void)rebuild_plan(src);
    return src;
}

void rp_source_start(rp_source *src)
{
    if (src->state != RP_SOURCE_IDLE)
        return;
    set_state(src, RP_SOURCE_OFFLINE);
    /* A fleet started at once spreads its first attempts (stable per name). */
    uint64_t spread =
        (uint64_t)(src->opts->connect_spread_ms > 0 ? src->opts->connect_spread_ms : 0);
    uint64_t delay = spread ? rp_hash_str(RP_HASH_INIT ^ 0x5eed, src->def.name) % spread : 0;
    rp_pgclient_connect_after(&src->client, delay);
}

void rp_source_resume(rp_source *src, const rp_sched_resume *at)
{
    if (src->state != RP_SOURCE_IDLE)
        return;
    int64_t now = (int64_t)now_ms(src);
    rp_sched_resume_at(&src->sched, now, at);
    rp_log_debug("source %s: taken over, first fetch in %lld ms (%s grid)", src->def.name,
                 (long long)(rp_sched_next(&src->sched) - now),
                 at->has_grid ? "on the previous" : "no");
}

int64_t rp_source_next_fetch(const rp_source *src)
{
    int64_t next = rp_sched_next(&src->sched);
    return next == RP_SCHED_NEVER ? -1 : next;
}

void rp_source_update(rp_source *src, const rp_source_def *def, rp_catalog *cat)
{
    if (src->state == RP_SOURCE_CLOSING)
        return;
    drop_pending(src); /* a newer one wins */
    src->next_def = rp_calloc(1, sizeof(*src->next_def));
    rp_source_def_copy(src->next_def, def);
    src->next_cat = rp_catalog_ref(cat);
    if (src->state == RP_SOURCE_BUSY || src->state == RP_SOURCE_DRAINING)
        return; /* applied when the batch is done */
    apply_pending(src);
    if (src->state == RP_SOURCE_READY)
        arm_tick(src);
}

_Static_assert(sizeof(rp_source_stats) % sizeof(uint64_t) == 0, "rp_source_stats: uint64_t only");

void rp_source_stats_add(rp_source_stats *to, const rp_source_stats *from)
{
    const uint64_t *in = (const uint64_t *)from;
    uint64_t *out = (uint64_t *)to;
    for (size_t i = 0; i < sizeof(*from) / sizeof(uint64_t); i++)
        out[i] += in[i];
}

static void free_source(rp_source *src)
{
    if (src->opts->retired)
        rp_source_stats_add(src->opts->retired, &src->stats);
    rp_source_closed_cb cb = src->closed_cb;
    void *arg = src->closed_arg;
    set_instance(src, 0);
    rp_sched_fini(&src->sched);
    for (size_t i = 0; i < src->nslots; i++)
        free_slot(&src->slots[i]);
    rp_free(src->slots);
    rp_free(src->due);
    rp_free(src->items);
    rp_free(src->stale);
    rp_buf_fini(&src->arena);
    rp_sendbuf_fini(&src->sendbuf);
    rp_free(src->cells);
    rp_free(src->reset_why);
    drop_pending(src);
    rp_free(src->masked_conn);
    rp_catalog_unref(src->cat);
    rp_source_def_fini(&src->def);
    rp_task_unregister(&src->task);
    rp_free(src);
    if (cb)
        cb(arg);
}

static void on_part_closed(void *owner)
{
    rp_source *src = owner;
    if (--src->pending_closes == 0)
        free_source(src);
}

static void on_timer_closed(uv_handle_t *h)
{
    on_part_closed(h->data);
}

static void enter_closing(rp_source *src)
{
    set_state(src, RP_SOURCE_CLOSING);
    disconnect(src);
    src->pending_closes += 4;
    rp_pgclient_close(&src->client, on_part_closed);
    uv_close((uv_handle_t *)&src->tick_timer, on_timer_closed);
    uv_close((uv_handle_t *)&src->io_timer, on_timer_closed);
    uv_close((uv_handle_t *)&src->yield_timer, on_timer_closed);
}

void rp_source_stop(rp_source *src, int drain_ms, rp_source_closed_cb cb, void *arg)
{
    if (src->state == RP_SOURCE_CLOSING || src->state == RP_SOURCE_DRAINING)
        return;
    src->closed_cb = cb;
    src->closed_arg = arg;
    uv_timer_stop(&src->tick_timer);
    if (src->state == RP_SOURCE_BUSY && drain_ms > 0) {
        set_state(src, RP_SOURCE_DRAINING);
        arm_deadline(src, (uint64_t)drain_ms);
        return;
    }
    enter_closing(src);
}

const char *rp_source_name(const rp_source *src)
{
    return src->def.name;
}

const rp_source_def *rp_source_def_of(const rp_source *src)
{
    return &src->def;
}

const rp_source_stats *rp_source_get_stats(const rp_source *src)
{
    return &src->stats;
}

const char *rp_source_state_name(const rp_source *src)
{
    if (src->state == RP_SOURCE_OFFLINE)
        return rp_pgclient_state_name(&src->client); /* resolving, connecting, backoff */
    return state_names[src->state];
}

/*-------------------------------------------------------------------------
 * As a collector for the reaper
 *-------------------------------------------------------------------------
 */

static void *ops_create(const rp_source_opts *opts, const rp_source_def *def, rp_catalog *cat)
{
    return rp_source_create(opts, def, cat);
}

static void ops_start(void *c)
{
    rp_source_start(c);
}

static void ops_update(void *c, const rp_source_def *def, rp_catalog *cat)
{
    rp_source_update(c, def, cat);
}

static void ops_stop(void *c, int drain_ms, rp_source_closed_cb cb, void *arg)
{
    rp_source_stop(c, drain_ms, cb, arg);
}

static const char *ops_name(const void *c)
{
    return rp_source_name(c);
}

static const rp_source_def *ops_def_of(const void *c)
{
    return rp_source_def_of(c);
}

static const rp_source_stats *ops_stats(const void *c)
{
    return rp_source_get_stats(c);
}

size_t rp_source_metric_counts(const rp_source *src, rp_metric_count *out, size_t cap)
{
    for (size_t i = 0; i < src->nslots && i < cap; i++)
        out[i] =
            (rp_metric_count){src->slots[i].def->name, src->slots[i].fetches, src->slots[i].errors};
    return src->nslots;
}

static size_t ops_metric_counts(const void *c, rp_metric_count *out, size_t cap)
{
    return rp_source_metric_counts(c, out, cap);
}

static const char *ops_state(const void *c)
{
    return rp_source_state_name(c);
}

static void ops_resume(void *c, const rp_sched_resume *at)
{
    rp_source_resume(c, at);
}

static int64_t ops_next_fetch(const void *c)
{
    return rp_source_next_fetch(c);
}

const rp_collector_ops rp_source_ops = {
    .mode = "batch",
    .create = ops_create,
    .start = ops_start,
    .update = ops_update,
    .stop = ops_stop,
    .name = ops_name,
    .def_of = ops_def_of,
    .stats = ops_stats,
    .state = ops_state,
    .resume = ops_resume,
    .next_fetch = ops_next_fetch,
    .metric_counts = ops_metric_counts,
};
