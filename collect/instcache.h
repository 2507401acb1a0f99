/* SPDX-License-Identifier: PostgreSQL
 *
 * Instance-level metrics once per PostgreSQL instance. Sources that reach the same
 * instance (the same system identifier at the same host and port) share the results of
 * metrics marked is_instance_level: the first source whose schedule runs such a metric
 * fetches it, and every other source stores a copy of that result under its own name
 * (with the fetch's time) while it is younger than the source's own interval, instead of
 * sending the query. A source never stores the same fetch twice, so each still gets one
 * measurement per interval, and a fetch that fails is not shared: the next source due
 * fetches for itself. Results are kept only for instances that two or more sources reach,
 * only while they can still be used, and only up to RP_INSTCACHE_MAX_BYTES each.
 * Loop thread only.
 */
#ifndef RP_COLLECT_INSTCACHE_H
#define RP_COLLECT_INSTCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/batch.h"

#define RP_INSTCACHE_MAX_BYTES (1 << 20)

typedef struct rp_instcache rp_instcache;

typedef struct rp_instcache_stats {
    size_t instances; /* instances reached by a source now */
    size_t results;   /* results kept */
    size_t bytes;     /* memory the kept results hold */
    uint64_t stored;  /* results kept so far */
    uint64_t shared;  /* copies handed out instead of a fetch */
} rp_instcache_stats;

rp_instcache *rp_instcache_create(void);
/* Free everything (sources that still joined must not use it afterwards). */
void rp_instcache_free(rp_instcache *c);

/* The key of an instance: its system identifier and the address a source reaches it at. */
uint64_t rp_instcache_key(const char *sysid, const char *host, const char *port);
/* The key of a metric's query: its name and SQL text. */
uint64_t rp_instcache_metric_key(const char *name, const char *sql);

/* A source reaches instance key (non-zero), or no longer does. */
void rp_instcache_join(rp_instcache *c, uint64_t key);
void rp_instcache_leave(rp_instcache *c, uint64_t key);

/*
 * The result of metric to store instead of fetching it: fetched (wall clock, ns) after
 * now_ns - max_age_ns and not of generation *seen, which is then updated. NULL: fetch it.
 * The batch is valid until the next store for this instance.
 */
const rp_batch *rp_instcache_lookup(rp_instcache *c, uint64_t key, uint64_t metric, int64_t now_ns,
                                    int64_t max_age_ns, uint32_t *seen);

/*
 * Keep a copy of b, a result of metric just fetched by a source of instance key, usable
 * for max_age_ns; *seen gets its generation (so that source does not store it again).
 * Not kept (false) when fewer than two sources reach the instance or b is too large.
 */
bool rp_instcache_store(rp_instcache *c, uint64_t key, uint64_t metric, const rp_batch *b,
                        int64_t max_age_ns, uint32_t *seen);

void rp_instcache_get_stats(const rp_instcache *c, rp_instcache_stats *out);

#endif /* RP_COLLECT_INSTCACHE_H */
