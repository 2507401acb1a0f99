/* SPDX-License-Identifier: PostgreSQL
 *
 * change_events, the metric pgwatch computes in its own code: each fetch runs the
 * catalogue's five hash metrics (sproc_hashes, table_hashes, index_hashes,
 * configuration_hashes, privilege_changes), compares each object's hash with the one seen
 * at the previous fetch of the same source, and stores what changed as pgwatch does:
 *
 *   sproc_changes, table_changes, index_changes   the hash row + event create/alter, or
 *                                                 epoch_ns + event drop + the object's tags
 *   configuration_changes                         tag_setting, value, event create/alter
 *   privilege_changes                             the privilege row + event GRANT/REVOKE
 *   change_events                                 one row, details "functions: c/a/d
 *                                                 tables: c/a/d indexes: ... settings: ...
 *                                                 privileges: ...", when anything changed
 *
 * The first fetch of each hash metric only learns the state. Owned by one source (or one
 * per-metric worker); not thread-safe.
 */
#ifndef RP_COLLECT_CHANGES_H
#define RP_COLLECT_CHANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/batch.h"

struct pg_result;

#define RP_CHANGES_NINPUTS 5

typedef struct rp_changes rp_changes;

/* Where the changes go: metric is the name to store under (static), b a batch with its
 * rows (borrowed during the call; the caller fills in source, tags and time). */
typedef void (*rp_changes_emit_fn)(void *arg, const char *metric, rp_batch *b);

rp_changes *rp_changes_new(void);
void rp_changes_free(rp_changes *c);

/* The name of the hash metric of input k (0 .. RP_CHANGES_NINPUTS - 1). */
const char *rp_changes_input(int k);

/* The table input k's changes are stored in (sproc_changes, ...; static storage). */
const char *rp_changes_output(int k);

/* Start a fetch: counts back to zero. */
void rp_changes_begin(rp_changes *c);
/* The rows of input k (a PGresult with TUPLES_OK); emits its changes. A result that
 * lacks the columns the comparison needs is ignored and -EINVAL returned. */
int rp_changes_feed(rp_changes *c, int k, const struct pg_result *res, int64_t now_ns,
                    rp_changes_emit_fn emit, void *arg);
/* End a fetch: the change_events row when anything changed; counts back to zero. */
void rp_changes_finish(rp_changes *c, int64_t now_ns, rp_changes_emit_fn emit, void *arg);

#endif /* RP_COLLECT_CHANGES_H */
