/* SPDX-License-Identifier: PostgreSQL
 *
 * Metrics that pgwatch computes in its own code rather than with the SQL in its metrics
 * file, recognised by name (rp_metric_def.code, config/config.h):
 *
 * - cpu_load, psutil_cpu, psutil_mem, psutil_disk_io_total: when the source runs on this
 *   host (a unix socket, or a TCP peer that is this host), read from /proc with pgwatch's
 *   column names and meanings (psutil's on Linux); otherwise the metric's SQL runs as
 *   written (pgwatch's PL/Python helpers), and a server without them reports the metric
 *   unavailable once.
 * - psutil_disk (collect/diskusage.h): when local, the paths come from the server and
 *   their usage from statvfs(2).
 * - change_events (collect/changes.h) and server_log_event_counts (collect/logcounts.h):
 *   pgwatch's file holds only a placeholder for them, never sent to the server.
 *
 * Reading /proc takes microseconds and does not block: it runs on the loop (batch mode)
 * or on the metric's thread (per-metric mode).
 */
#ifndef RP_COLLECT_NATIVE_H
#define RP_COLLECT_NATIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "model/batch.h"

struct sockaddr;

#define RP_NATIVE_MAX_COLS 20

/* One measurement read from the OS: a single row. */
typedef struct rp_native_row {
    rp_column cols[RP_NATIVE_MAX_COLS];
    const char *vals[RP_NATIVE_MAX_COLS];
    char text[RP_NATIVE_MAX_COLS][32];
    size_t ncols;
} rp_native_row;

/* What the previous reading of a counter-based metric saw (psutil_cpu's percentages are
 * over the time since the last fetch; the first fetch covers the time since boot). */
typedef struct rp_native_state {
    uint64_t cpu[10]; /* /proc/stat's cpu line */
    bool have_cpu;
} rp_native_state;

/* Whether the metric is read from the OS when the source is local. */
bool rp_native_from_os(rp_metric_code c);

/* Whether a connection with this peer address (from getpeername; NULL for a unix
 * socket) reaches a server on this host: a unix socket, loopback, or an address of one of
 * this host's interfaces. */
bool rp_native_peer_is_local(const struct sockaddr *peer);

/* Read metric k from the OS at time now_ns into row. 0, or -errno (a file is missing or
 * unreadable). */
int rp_native_read(rp_metric_code c, rp_native_state *st, int64_t now_ns, rp_native_row *row);

/* Describe row as a batch (b borrows row; rp_batch_fini(b) after use). */
void rp_native_batch(const rp_native_row *row, rp_batch *b);

#endif /* RP_COLLECT_NATIVE_H */
