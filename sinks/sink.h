/* SPDX-License-Identifier: PostgreSQL
 *
 * The sink interface. A sink receives batches on the loop thread, buffers them and
 * writes them out on its own schedule (its timers live on the same loop); flush writes
 * everything now. write_batch must copy whatever it keeps: the batch and the PGresult
 * behind it are freed when it returns. Sinks never log; they count (write_errors,
 * rows_dropped), keep last_error, and the reaper reports transitions.
 *
 * rp_sinks is the fan-out over every --sink given.
 */
#ifndef RP_SINKS_SINK_H
#define RP_SINKS_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "reaper/batch.h"
#include "reaper/compiler.h"

typedef struct rp_sink rp_sink;

typedef struct rp_sink_stats {
    uint64_t batches;      /* batches accepted */
    uint64_t rows;         /* rows accepted */
    uint64_t bytes;        /* bytes written out */
    uint64_t rows_written; /* rows written out */
    uint64_t rows_dropped; /* rows that could not be written (counted, never silent) */
    uint64_t write_errors; /* failed write attempts */
} rp_sink_stats;

typedef void (*rp_sink_closed_cb)(void *arg);

typedef struct rp_sink_ops {
    const char *scheme; /* URI scheme without ':' */
    /* Open a sink for uri on loop. 0, or negative errno with a message in err. */
    int (*open)(const char *uri, uv_loop_t *loop, rp_sink **out, char *err, size_t errlen);
    void (*write_batch)(rp_sink *sink, const rp_batch *batch);
    /* Write out everything buffered now. 0 or negative errno (message in last_error). */
    int (*flush)(rp_sink *sink);
    /* Flush, release everything and call cb (possibly before returning). */
    void (*close)(rp_sink *sink, rp_sink_closed_cb cb, void *arg);
} rp_sink_ops;

/* Common head of every sink object. */
struct rp_sink {
    const rp_sink_ops *ops;
    char *uri; /* owned, for messages (never holds a password: see rp_connstr_mask) */
    rp_sink_stats stats;
    char last_error[256];
    bool failing; /* set by the sink: its last write attempt failed */
    /* owned by the reaper, for logging transitions only */
    bool failing_reported;
    uint64_t dropped_at_failure;
};

typedef struct rp_sinks {
    rp_sink **v;
    size_t n;
    unsigned pending_closes;
    rp_sink_closed_cb closed_cb;
    void *closed_arg;
} rp_sinks;

/* Open every uri (e.g. "jsonfile:-", "jsonfile:///var/lib/pgreaper/out.jsonl").
 * 0, or negative errno with the failing URI and reason in err; nothing is left open. */
RP_NODISCARD int rp_sinks_open(rp_sinks *s, const char *const *uris, size_t n, uv_loop_t *loop,
                               char *err, size_t errlen);
/* Check that uri names a known sink without opening it: 0 or -EINVAL with err filled. */
RP_NODISCARD int rp_sinks_check_uri(const char *uri, char *err, size_t errlen);
void rp_sinks_write(rp_sinks *s, const rp_batch *batch);
/* Flush every sink now; returns the first error (all sinks are flushed regardless). */
int rp_sinks_flush(rp_sinks *s);
/* Close all sinks; cb runs when the last one is closed. */
void rp_sinks_close(rp_sinks *s, rp_sink_closed_cb cb, void *arg);

extern const rp_sink_ops rp_sink_jsonfile_ops;

#endif /* RP_SINKS_SINK_H */
