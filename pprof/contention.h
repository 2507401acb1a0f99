/* SPDX-License-Identifier: PostgreSQL
 *
 * Mutex and block profiles (/debug/pprof/mutex, /debug/pprof/block) in Go's format:
 * sample types contentions/count and delay/nanoseconds, one sample per stack.
 *
 * pthread_mutex_lock, pthread_cond_wait and pthread_cond_timedwait are wrapped in the
 * executable (for every library's calls, like pthread_create in pprof/threads.c):
 * - mutex: a lock that could not be taken at once (trylock failed) is a contention
 *   event, with the time the thread waited for it; recorded with the waiter's stack
 *   (Go records the goroutine that unlocked instead: here it is who waited, where).
 *   Sampled like runtime.SetMutexProfileFraction(rate): 1 in rate events on average.
 * - block: a wait on a condition variable, and a contended mutex lock, with the time
 *   blocked; sampled like runtime.SetBlockProfileRate(rate): an event of d ns is
 *   recorded with probability min(1, d / rate), 1 = every event.
 * Both are off (0) until rp_contention_set() turns them on. Recorded values are scaled
 * back to estimates of all events, as Go's profiles are.
 *
 * The wrappers take no lock and allocate nothing unless an event is recorded; recording
 * is guarded against re-entry (the unwinder takes locks of its own).
 */
#ifndef RP_PPROF_CONTENTION_H
#define RP_PPROF_CONTENTION_H

#include <stdbool.h>

#include "common/buf.h"
#include "common/compiler.h"

/* mutex_fraction: 1 in N contention events (0 off); block_rate_ns: see above (0 off). */
void rp_contention_set(long mutex_fraction, long block_rate_ns);

/* Gzip'd profile (debug 0) or Go's legacy text (debug 1) of the mutex or the block
 * events recorded so far. 0 or -errno. */
RP_NODISCARD int rp_contention_profile(rp_buf *out, bool block, int debug);

#endif /* RP_PPROF_CONTENTION_H */
