/* SPDX-License-Identifier: PostgreSQL
 *
 * The goroutine-equivalent profile: one sample per OS thread (its real stack; labels
 * kind=thread, role, thread name, tid, state, wchan) and one per event-loop task
 * (synthetic frames "state:<state>" -> "task:<role>" -> "event loop"; labels kind=task,
 * role, source/name, metric, state, age_ms). The goroutine count is the number of
 * samples. Same sample and period types as Go's (goroutine/count), so `-diff_base`
 * works between pgreaper runs and modes.
 *
 * Blocks up to the thread-dump deadline: call it from a worker thread.
 */
#ifndef RP_PPROF_GOROUTINE_H
#define RP_PPROF_GOROUTINE_H

#include "common/buf.h"
#include "common/compiler.h"

/* debug 0: gzip'd profile.proto; 1: Go's aggregated text; 2: one stanza per thread/task. */
RP_NODISCARD int rp_goroutine_profile(rp_buf *out, int debug);

#endif /* RP_PPROF_GOROUTINE_H */
