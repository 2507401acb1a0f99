/* SPDX-License-Identifier: PostgreSQL
 *
 * Event-loop task registry for the goroutine-equivalent profile. Every long-lived unit
 * of work on the loop (a source reaper, a sink writer, the HTTP listener, the
 * supervisor) registers an rp_task it owns and updates its state as it goes; the
 * profiler thread snapshots the registry. Registration takes a mutex; state updates are
 * one atomic store of a pointer to a static string.
 *
 * Threads are labelled here too (role, and the source and metric a per-metric worker
 * serves), for the profiles' labels. The registry lives low so that every layer can
 * register without knowing the profiler; pprof/ reads it.
 */
#ifndef RP_COMMON_TASKS_H
#define RP_COMMON_TASKS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct rp_task {
    struct rp_task *prev, *next;
    const char *role;            /* static: "source", "sink", "http", "supervisor", ... */
    char *name;                  /* owned copy: source name, sink URI scheme, ... */
    char *metric;                /* owned copy or NULL */
    _Atomic(const char *) state; /* static string */
    uint64_t started_ns;         /* CLOCK_MONOTONIC at registration */
    uint64_t id;
} rp_task;

typedef struct rp_task_info {
    uint64_t id;
    const char *role, *state;
    char *name, *metric; /* owned by the snapshot */
    uint64_t age_ms;
} rp_task_info;

/* Register t (caller-owned storage). name and metric are copied; either may be NULL. */
void rp_task_register(rp_task *t, const char *role, const char *name, const char *metric);
void rp_task_set_state(rp_task *t, const char *state);
/* Unregister t (no-op if it is not registered) and free its copies. */
void rp_task_unregister(rp_task *t);

/* Copy of every registered task, oldest first; free with rp_task_snapshot_free(). */
size_t rp_task_snapshot(rp_task_info **out);
void rp_task_snapshot_free(rp_task_info *v, size_t n);
size_t rp_task_count(void);

/* Label the calling thread: role (a static string), the thread's name (set when not NULL,
 * cut to 15 bytes), and the source and metric it works for (copied, up to 63 bytes; the
 * profiles' labels show them where the thread name cannot). Async-signal-unsafe. */
void rp_task_label_thread(const char *role, const char *name, const char *source,
                          const char *metric);
/* Thread tid's role (NULL when unlabelled), with its source and metric copied out. */
const char *rp_task_thread_labels(pid_t tid, char *source, size_t slen, char *metric, size_t mlen);
/* Forget the calling thread's labels (when it exits). */
void rp_task_forget_thread(void);

#endif /* RP_COMMON_TASKS_H */
