/* SPDX-License-Identifier: PostgreSQL
 *
 * --mode=per-metric: the classic collector design, built faithfully so that it can be
 * compared with the batch reaper on equal terms. Each (source, metric) gets an OS thread
 * that loops "fetch, then sleep until the next deadline" with blocking libpq calls,
 * through a per-source pool of at most opts->max_conns connections (blocking checkout).
 * The SQL selection, role handling, measurement model and sinks are the batch
 * reaper's; results go to the loop (which owns the sinks) through a mutex-protected
 * queue and a uv_async_t, so both modes store the same measurements.
 *
 * The loop-side object behaves like rp_source (see rp_collector_ops in source.h):
 * create/start/update/stop are called on the loop; stop (and update, which restarts
 * the threads) waits for the threads without blocking the loop, cancelling queries still
 * running when the drain time is over.
 */
#ifndef RP_COLLECT_PERMETRIC_H
#define RP_COLLECT_PERMETRIC_H

#include "collect/source.h"

extern const rp_collector_ops rp_permetric_ops;

#endif /* RP_COLLECT_PERMETRIC_H */
