/* SPDX-License-Identifier: PostgreSQL
 *
 * Event-loop task registry: see tasks.h.
 */
#include "pprof/tasks.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reaper/mem.h"

static pthread_mutex_t task_lock = PTHREAD_MUTEX_INITIALIZER;
static rp_task task_head = {.prev = &task_head, .next = &task_head};
static size_t ntasks;
static uint64_t next_id = 1;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void rp_task_register(rp_task *t, const char *role, const char *name, const char *metric)
{
    t->role = role;
    t->name = name ? rp_strdup(name) : NULL;
    t->metric = metric ? rp_strdup(metric) : NULL;
    if (!atomic_load(&t->state))
        atomic_store(&t->state, "idle"); /* keep a state set before registration */
    t->started_ns = now_ns();
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
    uint64_t now = now_ns();
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
