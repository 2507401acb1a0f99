/* SPDX-License-Identifier: PostgreSQL
 *
 * pgreaper's own metrics at /metrics, in the Prometheus text format: what the daemon
 * did (ticks, fetches, errors, connections, schedule lateness), per source and in all,
 * what its sinks did (rows accepted, written, dropped, buffered, write time), reloads,
 * the cluster's view, and the standard process_* figures from /proc. Names follow
 * Prometheus' conventions (pgreaper_ prefix, _total counters, _seconds and _bytes units).
 *
 * The caller gathers the figures into an rp_selfmetrics (all borrowed, valid during the
 * call); the writer only formats them. Loop thread.
 */
#ifndef RP_APP_SELFMETRICS_H
#define RP_APP_SELFMETRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "collect/source.h"
#include "common/buf.h"
#include "sinks/sink.h"

typedef struct rp_selfmetrics_source {
    const char *name;
    const char *state; /* "ready", "busy", "offline", ... */
    const rp_source_stats *stats;
    const rp_metric_count *metrics; /* per metric of its plan; NULL when not counted */
    size_t nmetrics;
} rp_selfmetrics_source;

typedef struct rp_selfmetrics {
    const char *mode;            /* "batch" or "per-metric" */
    const rp_source_stats *gone; /* of the sources stopped so far */
    const rp_selfmetrics_source *sources;
    size_t nsources;
    const rp_sink_stats *sinks_gone; /* of the sinks closed so far */
    rp_sink *const *sinks;
    size_t nsinks;
    uint64_t reloads, reload_failures;
    int connecting;       /* connection attempts in flight */
    size_t connect_queue; /* ... and waiting for their turn */
    bool cluster;         /* the cluster figures below are valid */
    size_t cluster_members, cluster_leases;
    uint64_t cluster_rounds, cluster_failed_rounds;
} rp_selfmetrics;

/* Append the exposition of m to out. */
void rp_selfmetrics_write(const rp_selfmetrics *m, rp_buf *out);

#endif /* RP_APP_SELFMETRICS_H */
