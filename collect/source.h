/* SPDX-License-Identifier: PostgreSQL
 *
 * One monitored database: a state machine on the libuv loop that owns one non-blocking
 * libpq connection in pipeline mode, a poll handle on its socket and two timers (the
 * schedule tick and the current state's deadline). Every tick sends all due metrics as
 * one pipeline with a sync point after each query, so a failing query aborts nothing
 * else. Results are handed to the emit callback as soon as they are read (the application
 * wires it to the sinks; collect/ knows nothing of them). Loop thread only.
 */
#ifndef RP_COLLECT_SOURCE_H
#define RP_COLLECT_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "collect/scheduler.h"
#include "common/compiler.h"
#include "config/config.h"

struct rp_batch;
struct pg_result;

typedef struct rp_source rp_source;

/* Settings shared by all sources; borrowed, must outlive them. */
typedef struct rp_source_opts {
    uv_loop_t *loop;
    rp_batch_emit_fn emit; /* every measurement goes here (loop thread) */
    void *emit_arg;
    int statement_timeout_ms;        /* for metrics without statement_timeout_seconds; 0 = none */
    int connect_timeout_ms;          /* client-side deadline for connecting; also how long a
                                      * batch may stay silent past its statement timeout */
    struct rp_admit *admit;          /* NULL, or the gate every connection attempt passes */
    int connect_spread_ms;           /* first connections start within this window */
    int phase_window_ms;             /* schedules start at a phase within this window (see
                                      * rp_sched_phase_for; 0: the default, 10 s) */
    int max_connecting;              /* per-metric mode's thread gate (0: no bound) */
    const uint64_t *fence;           /* NULL, or a loop-time deadline (ms): no tick runs at or
                                      * after it (a cluster lease, see app/cluster.h) */
    struct rp_instcache *instcache;  /* NULL, or where sources of one instance share the
                                      * results of instance-level metrics */
    struct rp_httpget *http;         /* HTTP on the loop, for sources of kind prometheus */
    int runtime_refresh_ms;          /* how often role and version are re-read */
    double interval_scale;           /* multiplies every metric interval */
    bool no_prepared;                /* global --no-prepared */
    bool coalesce_writes;            /* write a pipeline with one send() (pgio/sendbuf.h) */
    bool coalesce_reads;             /* read a pipeline's answers when they should be complete */
    const char *libpq_trace_dir;     /* NULL, or a folder for one libpq trace file per source */
    struct rp_source_stats *retired; /* NULL, or where a source adds its counters when freed */
    int max_conns;                   /* per-metric mode: connections per source */
    int64_t result_max_rows;         /* for metrics without result_max_rows */
    int64_t result_max_bytes;        /* for metrics without result_max_bytes */
} rp_source_opts;

typedef struct rp_source_stats {
    uint64_t ticks;         /* timer wake-ups that sent a pipeline */
    uint64_t skipped_ticks; /* wake-ups that found the previous batch still running */
    uint64_t pipelines;     /* pipelines sent (one round trip each) */
    uint64_t queries;       /* metric queries sent */
    uint64_t fetches_ok;    /* metric queries that returned rows or no rows */
    uint64_t fetch_errors;  /* metric queries that failed */
    uint64_t rows;          /* result rows handed to the sinks */
    uint64_t values;        /* result values (rows x columns) */
    uint64_t connects;      /* successful connections */
    uint64_t connect_failures;
    uint64_t disconnects;          /* established connections that were lost */
    uint64_t session_resets;       /* reconnects because a metric changed the session */
    uint64_t results_over_cap;     /* results refused for exceeding a row or byte cap */
    uint64_t fetches_discarded;    /* results dropped because an earlier metric of the same
                                    * pipeline changed the session (collected next tick) */
    uint64_t cancels;              /* batches that went quiet past their deadline: the
                                    * running query was cancelled, the connection kept */
    uint64_t shared;               /* instance-level results stored from another source's
                                    * fetch of the same instance instead of a query */
    uint64_t socket_writes;        /* send() calls that wrote coalesced pipelines */
    uint64_t writes_coalesced;     /* libpq's send() calls gathered into them */
    uint64_t socket_reads;         /* reads of a pipeline's answers (PQconsumeInput) */
    uint64_t lateness_ms_hist[16]; /* tick lateness: bucket i counts [2^(i-1), 2^i) ms */
    uint64_t lateness_ms_sum;      /* ... and the sum of what it counted */
} rp_source_stats;

/* Fetches and errors of one metric of a source (their share of fetches_ok/fetch_errors). */
typedef struct rp_metric_count {
    const char *metric; /* borrowed: valid until the collector's next reload or stop */
    uint64_t fetches, errors;
} rp_metric_count;

typedef void (*rp_source_closed_cb)(void *arg);

/*
 * Check that conn_str is a connection string libpq accepts (no connection is made).
 * 0, or -EINVAL with libpq's reason in err.
 */
RP_NODISCARD int rp_source_check_conn_str(const char *conn_str, char *err, size_t errlen);

/*
 * Create a source for def (copied) running metrics from cat (a reference is taken).
 * It does nothing until rp_source_start(). Free it with rp_source_stop().
 */
rp_source *rp_source_create(const rp_source_opts *opts, const rp_source_def *def, rp_catalog *cat);
void rp_source_start(rp_source *src);
/* Before start: continue the schedule of another instance that collected this source
 * (rp_sched_resume_at) instead of starting at the source's own phase. */
void rp_source_resume(rp_source *src, const rp_sched_resume *at);
/* Loop time (ms) of the next fetch, or -1 when none is scheduled. */
int64_t rp_source_next_fetch(const rp_source *src);

/*
 * Apply a new definition that connects the same way (rp_source_def_same_connection) and/or
 * a new catalogue: the connection and the deadlines of unchanged metrics are kept.
 */
void rp_source_update(rp_source *src, const rp_source_def *def, rp_catalog *cat);

/*
 * Stop: no new ticks; an in-flight batch may finish until drain_ms has passed, then the
 * connection and handles are closed and the source is freed; then cb(arg) runs. A second
 * call while stopping is ignored.
 */
void rp_source_stop(rp_source *src, int drain_ms, rp_source_closed_cb cb, void *arg);

const char *rp_source_name(const rp_source *src);
const rp_source_def *rp_source_def_of(const rp_source *src);
const rp_source_stats *rp_source_get_stats(const rp_source *src);
/* Per-metric counts of the metrics in the current plan: see rp_collector_ops.metric_counts. */
size_t rp_source_metric_counts(const rp_source *src, rp_metric_count *out, size_t cap);
/* Short name of the current state ("ready", "busy", ...). */
const char *rp_source_state_name(const rp_source *src);

/* Add every counter (and the lateness histogram) of from to to. */
void rp_source_stats_add(rp_source_stats *to, const rp_source_stats *from);

/* Whether a metric's error means "cannot run on this server" (missing relation, function
 * or extension library, extension not preloaded, no privilege, not supported): such a
 * metric is logged once and left out for a while instead of failing every interval. */
bool rp_source_error_unavailable(const char *sqlstate);

/* A pooler console's version text ("PgBouncer 1.18.0 ...", "4.3.5 (tamahomeboshi)") in
 * server_version_num units (1.18.0 -> 11800), by which metrics choose their SQL. */
int rp_source_console_version(const char *text);

/* The caps on a result of metric def (its own keys, else the flags' values). */
void rp_source_result_caps(const rp_source_opts *opts, const rp_metric_def *def, uint64_t *rows,
                           uint64_t *bytes);
/* Bytes of one row as counted against a byte cap: its values plus 8 per column. */
uint64_t rp_source_row_bytes(const struct pg_result *res, int row);

/* Emit an instance_up measurement (1 or 0 at time t, ns) for def through opts->emit. */
void rp_source_write_up(const rp_source_opts *opts, const rp_source_def *def, bool up, int64_t t);
/* Fill in b's source, metric and tags from def and metric, fetched at t (ns), and emit it
 * when it has rows; returns rows x columns. */
size_t rp_source_write_batch(const rp_source_opts *opts, const rp_source_def *def,
                             const rp_metric_def *metric, struct rp_batch *b, int64_t t);
/* Emit the rows of a metric's result (fetched at t, ns) for def; returns rows x columns. */
size_t rp_source_write_rows(const rp_source_opts *opts, const rp_source_def *def,
                            const rp_metric_def *metric, const struct pg_result *res, int64_t t);

/*
 * What the reaper needs from a collector of one source, whatever its design: the batch
 * reaper above (rp_source_ops) or one thread per metric (rp_permetric_ops in
 * collect/permetric.h). The functions behave as the rp_source_* ones documented above.
 */
typedef struct rp_collector_ops {
    const char *mode; /* "batch", "per-metric" */
    void *(*create)(const rp_source_opts *opts, const rp_source_def *def, rp_catalog *cat);
    void (*start)(void *c);
    void (*update)(void *c, const rp_source_def *def, rp_catalog *cat);
    void (*stop)(void *c, int drain_ms, rp_source_closed_cb cb, void *arg);
    const char *(*name)(const void *c);
    const rp_source_def *(*def_of)(const void *c);
    const rp_source_stats *(*stats)(const void *c);
    const char *(*state)(const void *c);
    void (*resume)(void *c, const rp_sched_resume *at); /* NULL: not supported */
    int64_t (*next_fetch)(const void *c);               /* NULL: not supported */
    /* The counts of up to cap of the metrics the collector runs, into out; returns how
     * many it runs (call with cap 0 to size out). NULL: no per-metric counts. */
    size_t (*metric_counts)(const void *c, rp_metric_count *out, size_t cap);
} rp_collector_ops;

extern const rp_collector_ops rp_source_ops;

#endif /* RP_COLLECT_SOURCE_H */
