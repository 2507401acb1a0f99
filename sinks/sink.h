/* SPDX-License-Identifier: PostgreSQL
 *
 * The sink interface. A sink receives batches on the loop thread, buffers them and
 * writes them out on its own schedule (its timers live on the same loop); flush starts
 * writing what waits now. write_batch must copy whatever it keeps: the batch and the
 * PGresult behind it are freed when it returns. A sink counts (write_errors,
 * rows_dropped), keeps failing and last_error current for /debug/vars, and logs its own
 * transitions once each through rp_sink_failed() and rp_sink_recovered().
 *
 * rp_sinks is the fan-out over every --sink given.
 */
#ifndef RP_SINKS_SINK_H
#define RP_SINKS_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "common/buf.h"
#include "common/compiler.h"
#include "common/tasks.h"
#include "model/batch.h"

typedef struct rp_sink rp_sink;

typedef struct rp_sink_stats {
    uint64_t batches;        /* batches accepted */
    uint64_t rows;           /* rows accepted */
    uint64_t bytes;          /* bytes written out */
    uint64_t rows_written;   /* rows written out */
    uint64_t rows_dropped;   /* rows that could not be written (counted, never silent) */
    uint64_t write_errors;   /* failed write attempts */
    uint64_t flushes;        /* completed writes (a COPY, a write(2) of the buffer) */
    uint64_t flush_us_total; /* time spent in completed writes */
    uint64_t flush_us_max;
    uint64_t flush_ms_hist[16]; /* write time: bucket i counts (2^(i-1), 2^i] ms, i = 0: <= 1 */
    uint64_t buffered_bytes;    /* waiting to be written now */
    uint64_t reconnects;        /* connections made after the first */
    /* A row is buffered, then sent-unacknowledged (its COPY ended, the commit not yet
     * confirmed), then written; or dropped. */
    uint64_t rows_unacked;    /* now sent and not yet acknowledged (or being resolved) */
    uint64_t rows_unknown;    /* at exit: sent, but whether they were committed is unknown */
    uint64_t copies_resolved; /* COPYs cut off by a connection loss whose outcome was looked up */
    uint64_t rows_replayed;   /* rows read back from the spool at start */
    uint64_t rows_spooled_at_exit; /* rows left in the spool at exit, for the next start */
} rp_sink_stats;

/* The sink's writes fail: the message becomes last_error and, when the sink was working
 * until now, is logged as an error with detail (may be NULL). */
void rp_sink_failed(rp_sink *k, const char *detail, const char *fmt, ...) RP_PRINTF(3, 4);
/* A write (a COPY, a write(2) of the buffer) completed in us microseconds: counted. */
void rp_sink_note_write(rp_sink *k, uint64_t us);
/* The sink works again: logged (info) only when it was failing. */
void rp_sink_recovered(rp_sink *k, const char *fmt, ...) RP_PRINTF(2, 3);

/* Add every counter of from to to (gauges such as buffered_bytes add up too). */
void rp_sink_stats_add(rp_sink_stats *to, const rp_sink_stats *from);

/* final: the closing sink's counters, valid during the call only. */
typedef void (*rp_sink_closed_cb)(void *arg, const rp_sink_stats *final);

/* Settings from the command line, shared by all sinks; copied by open. */
typedef struct rp_sink_opts {
    int64_t batching_delay_ms;
    int64_t buffer_bytes;
    int64_t partition_ms;
    int64_t retention_ms;   /* 0: keep everything */
    int64_t maintenance_ms; /* 0: never */
    int64_t shutdown_timeout_ms;
    int64_t connect_timeout_ms;
    /* PostgreSQL sink: storage names (newline-separated) whose tables are created up
     * front, so that dashboards never query a table that does not exist yet; NULL: none.
     * Copied by the sink. */
    const char *metric_tables;
    /* PostgreSQL sink: folder of the crash-safe spool (see sinks/spool.h); NULL: none. */
    const char *spool_dir;
    /* NULL, or the loop's connection admission gate (pgio/admit.h); borrowed. The sink's
     * attempts go ahead of the sources' queue. */
    struct rp_admit *admit;
} rp_sink_opts;

typedef struct rp_sink_ops {
    const char *scheme; /* URI scheme without ':' */
    /* Open a sink for uri on loop. 0, or negative errno with a message in err. */
    int (*open)(const char *uri, uv_loop_t *loop, const rp_sink_opts *opts, rp_sink **out,
                char *err, size_t errlen);
    /* Validate uri with the parser open uses, opening nothing; NULL: nothing to check.
     * 0, or -EINVAL with a message (passwords masked) in err. */
    int (*check)(const char *uri, char *err, size_t errlen);
    void (*write_batch)(rp_sink *sink, const rp_batch *batch);
    /* Start writing what is buffered now: the JSON file sink writes it all before
     * returning; the PostgreSQL sink starts a COPY of the oldest table's rows when none is
     * in flight and goes on until the buffer is empty. 0 or negative errno (message in
     * last_error). */
    int (*flush)(rp_sink *sink);
    /* Write what is buffered (waiting at most opts->shutdown_timeout_ms), report what
     * could not be written in last_error and stats, release everything, then call cb
     * (possibly before returning). */
    void (*close)(rp_sink *sink, rp_sink_closed_cb cb, void *arg);
    /* A pull sink: append what a scrape reads (the Prometheus text format) to out; the
     * application serves it over HTTP at the sink's serve_addr. NULL for push sinks. */
    void (*expose)(rp_sink *sink, rp_buf *out);
} rp_sink_ops;

/* Common head of every sink object. */
struct rp_sink {
    const rp_sink_ops *ops;
    char *uri;        /* owned, for messages (never holds a password: see rp_connstr_mask) */
    char *serve_addr; /* owned; a pull sink's HOST:PORT (see expose), else NULL */
    rp_sink_stats stats;
    char last_error[256];
    bool failing;                /* its last write attempt failed (rp_sink_failed) */
    uint64_t dropped_at_failure; /* rows_dropped when it started failing */
    rp_task task;                /* in the goroutine profile; registered by rp_sinks_open, the sink
                                  * updates its state and unregisters it before freeing itself */
};

typedef void (*rp_sinks_closed_cb)(void *arg);

typedef struct rp_sinks {
    rp_sink **v;
    size_t n;
    unsigned pending_closes;
    rp_sinks_closed_cb closed_cb;
    void *closed_arg;
    rp_sink_stats totals; /* of the sinks closed so far */
} rp_sinks;

/* Open every uri (e.g. "jsonfile:-", "jsonfile:///var/lib/pgreaper/out.jsonl",
 * "postgresql://...", or a key=value connection string, which is a PostgreSQL sink).
 * 0, or negative errno with the failing URI and reason in err; nothing is left open. */
RP_NODISCARD int rp_sinks_open(rp_sinks *s, const char *const *uris, size_t n, uv_loop_t *loop,
                               const rp_sink_opts *opts, char *err, size_t errlen);
/* Check that uri names a known sink and that the sink accepts it, without opening it:
 * 0 or -EINVAL with err filled (passwords masked). */
RP_NODISCARD int rp_sinks_check_uri(const char *uri, char *err, size_t errlen);
void rp_sinks_write(rp_sinks *s, const rp_batch *batch);
/* Flush every sink now; returns the first error (all sinks are flushed regardless). */
int rp_sinks_flush(rp_sinks *s);
/* Close all sinks; cb runs when the last one is closed (s->totals then holds the sum of
 * their final counters). Each sink frees itself when it is done, so the caller must not
 * touch s->v after this call. */
void rp_sinks_close(rp_sinks *s, rp_sinks_closed_cb cb, void *arg);

extern const rp_sink_ops rp_sink_jsonfile_ops;
extern const rp_sink_ops rp_sink_postgres_ops;
extern const rp_sink_ops rp_sink_prometheus_ops;
extern const rp_sink_ops rp_sink_postgresql_ops;

#endif /* RP_SINKS_SINK_H */
