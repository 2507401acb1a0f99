/* SPDX-License-Identifier: PostgreSQL
 *
 * CPU profile (/debug/pprof/profile): every thread sampled at 100 Hz of its own CPU time
 * (?hz= up to 1000), each sample a SIGPROF to that thread. The clock is perf's task-clock
 * where the kernel allows it (an hrtimer running while the thread runs), else a POSIX
 * CPU-clock timer per thread as Go uses since 1.18 (the kernel notices its expiry at
 * the scheduler tick only, so threads that run in bursts shorter than a tick, such as
 * per-metric mode's hundreds of mostly idle threads, go largely unsampled). Both start
 * at a random point of the first period. Threads created meanwhile arm themselves from
 * the pthread_create trampoline. The profile's comments say which clock was used and
 * how much of the process's CPU over the window the samples cover. The handler unwinds from the
 * signal context into a lock-free append-only buffer sized for the requested duration on every CPU;
 * a full buffer counts lost samples. Samples: samples/count and cpu/nanoseconds, period 10 ms.
 *
 * One profile at a time. rp_cpu_start() and rp_cpu_finish() allocate and read /proc:
 * call them from a worker thread.
 */
#ifndef RP_PPROF_CPU_H
#define RP_PPROF_CPU_H

#include <stdbool.h>

#include "common/buf.h"
#include "common/compiler.h"

#define RP_CPU_HZ     100  /* Go's rate */
#define RP_CPU_MAX_HZ 1000 /* ?hz= may ask for more samples, up to this */

/* Arm the sampling for a profile of up to seconds at hz samples per CPU-second (out of
 * range: RP_CPU_HZ). 0, -EBUSY (one is running) or -errno. */
RP_NODISCARD int rp_cpu_start(int seconds, int hz);
/* Stop, wait for handlers in flight, and write the gzip'd profile. 0 or -errno. */
RP_NODISCARD int rp_cpu_finish(rp_buf *out);
bool rp_cpu_active(void);

#endif /* RP_PPROF_CPU_H */
