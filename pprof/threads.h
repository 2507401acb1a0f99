/* SPDX-License-Identifier: PostgreSQL
 *
 * Threads of the process: a stack dump of every thread (a real-time signal per thread,
 * whose handler unwinds from the interrupted context; the requester waits with a
 * deadline and reports threads that did not answer as "stack unavailable"), names and
 * states from /proc, per-thread roles, and the threadcreate profile (pthread_create is
 * wrapped in the executable: every creation is counted with the creator's stack, and
 * new threads start inside a trampoline that arms the CPU profiler when it runs).
 *
 * rp_threads_init() installs the signal handler; call it once from main. The dump and
 * the profile functions allocate and block (up to about a second): call them from a
 * worker thread, never from the event loop or a signal handler.
 */
#ifndef RP_PPROF_THREADS_H
#define RP_PPROF_THREADS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"
#include "common/compiler.h"
#include "pprof/stack.h"

typedef struct rp_thread_info {
    pid_t tid;
    char name[16];               /* /proc/self/task/TID/comm */
    char state;                  /* R, S, D, T, Z, ... from /proc/self/task/TID/stat */
    char wchan[48];              /* kernel wait point, "" when running */
    const char *role;            /* set by rp_task_label_thread(), "thread" otherwise */
    char source[64], metric[64]; /* ... with these, "" otherwise */
    bool available;              /* false: the thread did not answer in time */
    bool leaf_exact;             /* pcs[0] is an interrupted PC (signal), not a return address */
    int depth;
    uintptr_t pcs[RP_STACK_MAX];
} rp_thread_info;

void rp_threads_init(void);

/* Every thread of the process, the caller's included. Free *out with free(). */
size_t rp_threads_dump(rp_thread_info **out);

/* Threads created through pthread_create since start, and live threads now. */
uint64_t rp_threads_created(void);
size_t rp_threads_live(void);

/* Gzip'd threadcreate profile; 0 or -errno. debug text when text is true. */
RP_NODISCARD int rp_threads_create_profile(rp_buf *out, bool text);

/* Called by the trampoline of every new thread (set by pprof/cpu.c). */
extern void (*rp_threads_start_hook)(void);

#endif /* RP_PPROF_THREADS_H */
