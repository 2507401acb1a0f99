/* SPDX-License-Identifier: PostgreSQL
 *
 * postgres-continuous-discovery: a sources entry that stands for every database of a
 * server. Its databases are listed with pgwatch's rule (not a template, connections
 * allowed, CONNECT privilege for the role, include_pattern and exclude_pattern as
 * PostgreSQL regular expressions matched by the server) on libuv's thread pool, over a
 * blocking libpq connection of its own: the loop never waits for a listing. Each database
 * becomes a source named <entry>_<dbname> (pgwatch's naming) with the entry's presets,
 * tags and settings and a conn_str that names that database. When a listing fails, the
 * last good list stays. Loop thread only.
 */
#ifndef RP_COLLECT_DISCOVERY_H
#define RP_COLLECT_DISCOVERY_H

#include <stddef.h>

#include <uv.h>

#include "config/config.h"

typedef struct rp_discovery rp_discovery;

/* Runs on the loop when the discovered sources changed (see rp_discovery_sources). */
typedef void (*rp_discovery_changed_cb)(void *arg);

/* A discovery for loop; each listing connects within connect_timeout_s. */
rp_discovery *rp_discovery_create(uv_loop_t *loop, int connect_timeout_s,
                                  rp_discovery_changed_cb changed, void *arg);

/*
 * The entries to run (copied; each rp_source_def_discovers()). An entry new or whose
 * server or patterns changed is listed at once; one whose other settings changed keeps
 * its databases and its sources take the new settings; an entry no longer given is
 * forgotten with its sources. changed runs (later, on the loop) when sources changed.
 */
void rp_discovery_configure(rp_discovery *d, const rp_source_def *const *entries, size_t n);

/* List every entry again (a --refresh poll, SIGHUP); an entry still being listed is
 * skipped. */
void rp_discovery_refresh(rp_discovery *d);

/* The sources discovered so far, ordered by entry then database; owned by d, valid until
 * the next call of configure or of the changed callback. d may be NULL (none). */
const rp_source_def *rp_discovery_sources(const rp_discovery *d, size_t *n);

/* Entries, listings run and listings failed, for the summary. */
void rp_discovery_stats(const rp_discovery *d, size_t *entries, uint64_t *listings,
                        uint64_t *failures);

/* Forget everything; listings in flight finish on the pool and the last one frees d. No
 * callback runs after this. */
void rp_discovery_close(rp_discovery *d);

#endif /* RP_COLLECT_DISCOVERY_H */
