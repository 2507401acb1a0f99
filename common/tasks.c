/* SPDX-License-Identifier: PostgreSQL
 *
 * Event-loop task registry: see tasks.h.
 */
#include "common/tasks.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/mem.h"

static pthread_mutex_t task_lock = PTHREAD_MUTEX_INITIALIZER;
static rp_task task_head = {.prev = &task_head, .next = &task_head};
static size_t ntasks;
static uint64_t next_id = 1;

#define MAX_LABELLED 4096

/* A fixed table: written by each thread for itself, read by the profiler (lock-free). */
typedef struct thread_labels {
    _Atomic pid_t tid; /* 0: never used, -1: free again */
    const char *role;
    char source[64], metric[64];
} thread_labels;

static thread_labels labelled[MAX_LABELLED];

void rp_task_register(rp_task *t, const char *role, const char *name, const char *metric)
{
    t->role = role;
    t->name = name ? rp_strdup(name) : NULL;
    t->metric = metric ? rp_strdup(metric) : NULL;
    if (!atomic_load(&t->state))
        atomic_store(&t->state, "idle"); /* keep a state set before registration */
    t->started_ns = rp_clock_mono_ns();
    pthread_mutex_lock(&task_lock);
    t->id = next_id++;
    t->prev = task_head.prev;
    t->next = &task_head;
    task_head.prev->next = t;
    task_head.prev = t;
    ntasks++;
    pthread_mutex_unlock(&task_lock);
}

void rp_task_set_state(rp_task *t, const char *state)
{
    atomic_store_explicit(&t->state, state, memory_order_relaxed);
}

void rp_task_unregister(rp_task *t)
{
    if (!t->next)
        return;
    pthread_mutex_lock(&task_lock);
    t->prev->next = t->next;
    t->next->prev = t->prev;
    ntasks--;
    pthread_mutex_unlock(&task_lock);
    t->next = t->prev = NULL;
    free(t->name);
    free(t->metric);
    t->name = t->metric = NULL;
}

size_t rp_task_snapshot(rp_task_info **out)
{
    uint64_t now = rp_clock_mono_ns();
    pthread_mutex_lock(&task_lock);
    size_t n = 0;
    rp_task_info *v = rp_calloc(ntasks + 1, sizeof(*v));
    for (rp_task *t = task_head.next; t != &task_head; t = t->next, n++) {
        v[n] = (rp_task_info){.id = t->id, .role = t->role, .state = atomic_load(&t->state)};
        v[n].name = t->name ? rp_strdup(t->name) : NULL;
        v[n].metric = t->metric ? rp_strdup(t->metric) : NULL;
        v[n].age_ms = (now - t->started_ns) / 1000000u;
    }
    pthread_mutex_unlock(&task_lock);
    *out = v;
    return n;
}

void rp_task_snapshot_free(rp_task_info *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].metric);
    }
    free(v);
}

size_t rp_task_count(void)
{
    pthread_mutex_lock(&task_lock);
    size_t n = ntasks;
    pthread_mutex_unlock(&task_lock);
    return n;
}

void rp_task_label_thread(const char *role, const char *name, const char *source,
                          const char *metric)
{
    pid_t tid = gettid();
    if (name) {
        char n[16];
        snprintf(n, sizeof(n), "%s", name);
        pthread_setname_np(pthread_self(), n);
    }
    for (size_t i = 0; i < MAX_LABELLED; i++) {
        thread_labels *l = &labelled[i];
        pid_t cur = atomic_load(&l->tid), seen = cur;
        if (cur == tid || (cur <= 0 && atomic_compare_exchange_strong(&l->tid, &seen, tid))) {
            l->role = role;
            snprintf(l->source, sizeof(l->source), "%s", source ? source : "");
            snprintf(l->metric, sizeof(l->metric), "%s", metric ? metric : "");
            return;
        }
    }
}

const char *rp_task_thread_labels(pid_t tid, char *source, size_t slen, char *metric, size_t mlen)
{
    for (size_t i = 0; i < MAX_LABELLED; i++) {
        pid_t cur = atomic_load(&labelled[i].tid);
        if (cur == 0)
            break;
        if (cur == tid) {
            snprintf(source, slen, "%s", labelled[i].source);
            snprintf(metric, mlen, "%s", labelled[i].metric);
            return labelled[i].role;
        }
    }
    source[0] = metric[0] = '\0';
    return NULL;
}

void rp_task_forget_thread(void)
{
    pid_t tid = gettid();
    for (size_t i = 0; i < MAX_LABELLED; i++)
        if (atomic_load(&labelled[i].tid) == tid)
            atomic_store(&labelled[i].tid, -1);
}
