/* SPDX-License-Identifier: PostgreSQL
 *
 * Several pgreaper instances sharing the sources through a PostgreSQL database
 * (--cluster-db): membership with heartbeats, ownership by rendezvous hashing over the
 * live members, and a lease per source, all in schema "pgreaper" of that database
 * (created when missing: tables member and lease).
 *
 * Every round (lease TTL / 6, between 250 ms and 5 s) the instance renews its member
 * row and reads the live members; it owns a source when its name scores highest for
 * the source among them; it stops the sources it no longer owns, then in one statement
 * releases their leases and takes or renews the leases of the sources it owns, which
 * succeeds only for a lease that is free, expired or its own. An instance collects a
 * source only while it holds the lease: the lease's local deadline is the time the
 * statement was sent plus the TTL (the database's own expiry is later), so a frozen or
 * cut-off instance stops collecting before another may start. A lease also records the
 * holder's tick grid and, when it changes hands, when the previous holder's ran out, so
 * that the new holder resumes on that grid, never within a tick of the last fetch. When
 * a member or a lease it waits for is about to expire, the next round comes right after.
 * See docs/cluster.md.
 *
 * One rp_pgclient connection on the loop; the callbacks feed one step function.
 * Loop thread only.
 */
#ifndef RP_APP_CLUSTER_H
#define RP_APP_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "collect/scheduler.h"
#include "common/compiler.h"
#include "pgio/admit.h"

typedef struct rp_cluster rp_cluster;

/* Fill next[i] with the loop time (ms) of the next fetch of source names[i] here, or -1
 * when it has none; names are sorted, next holds -1s on entry. */
typedef void (*rp_cluster_next_fetch_cb)(void *arg, char *const *names, size_t n, int64_t *next);

typedef struct rp_cluster_opts {
    const char *uri;                     /* the shared database (copied) */
    const char *instance;                /* this instance's name (copied) */
    int64_t ttl_ms;                      /* lease and heartbeat time to live */
    int connect_timeout_ms;              /* for the connection and as a round's deadline */
    rp_admit *admit;                     /* the loop's admission gate, or NULL */
    rp_cluster_next_fetch_cb next_fetch; /* or NULL; called with the arg of rp_cluster_open */
} rp_cluster_opts;

/* The set of sources this instance may collect changed (or its leases expired): the
 * owner calls rp_cluster_holds() for each source and converges. */
typedef void (*rp_cluster_changed_cb)(void *arg);

/* Start: connect, create the schema when missing, run rounds. 0 or -errno. */
RP_NODISCARD int rp_cluster_open(uv_loop_t *loop, const rp_cluster_opts *opts,
                                 rp_cluster_changed_cb cb, void *arg, rp_cluster **out);
/* The candidate sources (enabled, in the selected groups), copied; used from the next
 * round on. */
void rp_cluster_set_sources(rp_cluster *c, const char *const *names, size_t n);
/* Whether this instance holds the lease of source name now (its deadline not passed). */
bool rp_cluster_holds(const rp_cluster *c, const char *name);
/* Where source name, taken from another holder in the last round, resumes (loop ms; see
 * rp_sched_resume_at); false when it was not taken over then or nothing is known. */
bool rp_cluster_resume_of(const rp_cluster *c, const char *name, rp_sched_resume *out);
/* Where the loop-time deadline (ms) of every lease held lives: no collection at or after
 * it. The address stays valid until the cluster is closed. */
const uint64_t *rp_cluster_fence(const rp_cluster *c);
/* Counters for the stats line. */
void rp_cluster_stats(const rp_cluster *c, size_t *members, size_t *held, uint64_t *rounds,
                      uint64_t *failed_rounds);
/* Release the leases and the member row (best effort, within the connect timeout), then
 * close; cb(arg) runs when all is closed. */
void rp_cluster_close(rp_cluster *c, void (*cb)(void *arg), void *arg);

#endif /* RP_APP_CLUSTER_H */
