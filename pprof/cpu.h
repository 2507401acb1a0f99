/* SPDX-License-Identifier: PostgreSQL
 *
 * CPU profile (/debug/pprof/profile): a CPU-clock timer per thread at 100 Hz delivering
 * SIGPROF to that thread (as Go does since 1.18; a process-wide setitimer under-counts
 * on busy multi-core hosts), threads created meanwhile arm their own timer from the
 * pthread_create trampoline. The handler unwinds from the signal context into a
 * lock-free append-only buffer sized for the requested duration on every CPU; a full
 * buffer counts lost samples. Samples: samples/count and cpu/nanoseconds, period 10 ms.
 *
 * One profile at a time. rp_cpu_start() and rp_cpu_finish() allocate and read /proc:
 * call them from a worker thread.
 */
#ifndef RP_PPROF_CPU_H
#define RP_PPROF_CPU_H

#include <stdbool.h>

#include "common/buf.h"
#include "common/compiler.h"

#define RP_CPU_HZ 100

/* Arm the timers for a profile of up to seconds. 0, -EBUSY (one is running) or -errno. */
RP_NODISCARD int rp_cpu_start(int seconds);
/* Stop, wait for handlers in flight, and write the gzip'd profile. 0 or -errno. */
RP_NODISCARD int rp_cpu_finish(rp_buf *out);
bool rp_cpu_active(void);

#endif /* RP_PPROF_CPU_H */
