/* SPDX-License-Identifier: PostgreSQL
 *
 * Mutex and block profiles: see contention.h.
 */
#include "pprof/contention.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/mem.h"
#include "pprof/heap.h"
#include "pprof/pbuild.h"
#include "pprof/stack.h"

#define RP_EXPORT  __attribute__((visibility("default")))
#define NBUCKETS   4096 /* distinct (kind, stack) pairs kept; more are counted as dropped */
#define KIND_MUTEX 0
#define KIND_BLOCK 1

typedef int (*mutex_fn)(pthread_mutex_t *);
typedef int (*cond_wait_fn)(pthread_cond_t *, pthread_mutex_t *);
typedef int (*cond_timedwait_fn)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);

typedef struct ev_bucket {
    _Atomic uint64_t hash; /* 0: free */
    int kind, depth;
    _Atomic int64_t count, delay_ns; /* scaled to estimates of all events */
    uintptr_t pcs[RP_STACK_MAX];
} ev_bucket;

static _Atomic long mutex_fraction, block_rate;
static _Atomic(mutex_fn) real_lock;
static _Atomic(cond_wait_fn) real_wait;
static _Atomic(cond_timedwait_fn) real_timedwait;
static ev_bucket *table; /* NBUCKETS, mmap'd on the first rp_contention_set that turns on */
static atomic_flag table_lock = ATOMIC_FLAG_INIT;
static _Atomic uint64_t dropped;
static __thread int recording; /* the unwinder locks mutexes of its own */
static __thread uint64_t rng;

/* The next definitions (glibc's, or a sanitizer's interceptors). dlsym may allocate, and
 * the heap sampler locks a mutex: until real_lock is known, lock_now() spins on trylock. */
static void resolve(void)
{
    if (!atomic_load(&real_lock))
        atomic_store(&real_lock, (mutex_fn)dlsym(RTLD_NEXT, "pthread_mutex_lock"));
    if (!atomic_load(&real_wait))
        atomic_store(&real_wait, (cond_wait_fn)dlsym(RTLD_NEXT, "pthread_cond_wait"));
    if (!atomic_load(&real_timedwait))
        atomic_store(&real_timedwait,
                     (cond_timedwait_fn)dlsym(RTLD_NEXT, "pthread_cond_timedwait"));
}

__attribute__((constructor(102))) static void contention_init(void)
{
    resolve();
}

void rp_contention_set(long mutex_frac, long block_rate_ns)
{
    if ((mutex_frac > 0 || block_rate_ns > 0) && !table) {
        void *p = mmap(NULL, NBUCKETS * sizeof(ev_bucket), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return;
        table = p;
    }
    atomic_store(&mutex_fraction, mutex_frac > 0 ? mutex_frac : 0);
    atomic_store(&block_rate, block_rate_ns > 0 ? block_rate_ns : 0);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t next_random(void)
{
    if (rng == 0)
        rng = now_ns() ^ ((uint64_t)gettid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    rng ^= rng >> 12; /* xorshift64* */
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}

static uint64_t hash_of(int kind, const uintptr_t *pcs, int n)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)kind;
    for (int i = 0; i < n; i++)
        h = (h ^ pcs[i]) * 0xff51afd7ed558ccdULL;
    return (h ^ (h >> 29)) | 1; /* never 0 */
}

static void add(int kind, const uintptr_t *pcs, int n, int64_t count, int64_t delay)
{
    uint64_t h = hash_of(kind, pcs, n);
    while (atomic_flag_test_and_set_explicit(&table_lock, memory_order_acquire))
        ;
    size_t i = h % NBUCKETS, probes = 0;
    while (table[i].hash && (table[i].hash != h || table[i].kind != kind || table[i].depth != n ||
                             memcmp(table[i].pcs, pcs, (size_t)n * sizeof(*pcs)) != 0)) {
        i = (i + 1) % NBUCKETS;
        if (++probes == NBUCKETS)
            break;
    }
    if (probes < NBUCKETS && !table[i].hash) {
        table[i].kind = kind;
        table[i].depth = n;
        memcpy(table[i].pcs, pcs, (size_t)n * sizeof(*pcs));
        atomic_store(&table[i].hash, h);
    }
    if (probes < NBUCKETS) {
        atomic_fetch_add(&table[i].count, count);
        atomic_fetch_add(&table[i].delay_ns, delay);
    } else {
        atomic_fetch_add(&dropped, 1);
    }
    atomic_flag_clear_explicit(&table_lock, memory_order_release);
}

/* One event that waited d ns: into the mutex profile (when it was a lock) and the block
 * profile, each by its own sampling. Stacks start at the wrapper's caller. */
static __attribute__((noinline)) void note(bool is_mutex, uint64_t d)
{
    long frac = atomic_load_explicit(&mutex_fraction, memory_order_relaxed);
    long rate = atomic_load_explicit(&block_rate, memory_order_relaxed);
    bool in_mutex = is_mutex && frac > 0 && next_random() % (uint64_t)frac == 0;
    bool in_block = rate > 0 && (d >= (uint64_t)rate || next_random() % (uint64_t)rate < d);
    if ((!in_mutex && !in_block) || recording || !table)
        return;
    recording++;
    rp_heap_guard_enter();
    uintptr_t pcs[RP_STACK_MAX];
    int n = rp_stack_here(pcs, RP_STACK_MAX, 2); /* not note() nor the wrapper */
    if (in_mutex)
        add(KIND_MUTEX, pcs, n, frac, (int64_t)d * frac);
    if (in_block) { /* an event shorter than rate stands for rate / d of its kind */
        int64_t w = d >= (uint64_t)rate ? 1 : rate / (int64_t)(d ? d : 1);
        add(KIND_BLOCK, pcs, n, w, d >= (uint64_t)rate ? (int64_t)d : rate);
    }
    rp_heap_guard_leave();
    recording--;
}

static int lock_now(pthread_mutex_t *m)
{
    mutex_fn f = atomic_load_explicit(&real_lock, memory_order_relaxed);
    if (rp_likely(f != NULL))
        return f(m);
    int rc; /* before contention_init: a library's constructor */
    while ((rc = pthread_mutex_trylock(m)) == EBUSY)
        sched_yield();
    return rc;
}

RP_EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
    if (!atomic_load_explicit(&mutex_fraction, memory_order_relaxed) &&
        !atomic_load_explicit(&block_rate, memory_order_relaxed))
        return lock_now(m);
    int rc = pthread_mutex_trylock(m);
    if (rc != EBUSY)
        return rc;
    uint64_t t0 = now_ns();
    rc = lock_now(m);
    note(true, now_ns() - t0);
    return rc;
}

RP_EXPORT int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    if (!atomic_load(&real_wait))
        resolve();
    cond_wait_fn f = atomic_load_explicit(&real_wait, memory_order_relaxed);
    if (!atomic_load_explicit(&block_rate, memory_order_relaxed))
        return f(c, m);
    uint64_t t0 = now_ns();
    int rc = f(c, m);
    note(false, now_ns() - t0);
    return rc;
}

RP_EXPORT int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                     const struct timespec *abstime)
{
    if (!atomic_load(&real_timedwait))
        resolve();
    cond_timedwait_fn f = atomic_load_explicit(&real_timedwait, memory_order_relaxed);
    if (!atomic_load_explicit(&block_rate, memory_order_relaxed))
        return f(c, m, abstime);
    uint64_t t0 = now_ns();
    int rc = f(c, m, abstime);
    note(false, now_ns() - t0);
    return rc;
}

/* ---- profiles ------------------------------------------------------------------------ */

static int build_proto(rp_buf *out, int kind, long period)
{
    rp_pbuild *pb = rp_pbuild_new();
    uint64_t locs[RP_STACK_MAX];
    rp_pbuild_sample_type(pb, "contentions", "count");
    rp_pbuild_sample_type(pb, "delay", "nanoseconds");
    rp_pbuild_period(pb, "contentions", "count", period);
    rp_pbuild_comment(pb, kind == KIND_MUTEX
                              ? "pgreaper mutex: stacks of the threads that waited for a lock"
                              : "pgreaper block: condition-variable waits and contended locks");
    for (size_t i = 0; table && i < NBUCKETS; i++) {
        const ev_bucket *b = &table[i];
        if (!atomic_load(&b->hash) || b->kind != kind)
            continue;
        int64_t v[2] = {atomic_load(&b->count), atomic_load(&b->delay_ns)};
        size_t nl = rp_pbuild_stack(pb, b->pcs, (size_t)b->depth, false, locs);
        rp_pbuild_sample(pb, locs, nl, v);
    }
    int rc = rp_pbuild_finish(pb, out);
    rp_pbuild_free(pb);
    return rc;
}

/* Go's legacy text: "--- mutex:"/"--- contention:", cycles/second, then records. */
static void build_text(rp_buf *out, int kind, long period)
{
    rp_buf_printf(out, "--- %s:\ncycles/second=1000000000\nsampling period=%ld\n",
                  kind == KIND_MUTEX ? "mutex" : "contention", period);
    for (size_t i = 0; table && i < NBUCKETS; i++) {
        const ev_bucket *b = &table[i];
        if (!atomic_load(&b->hash) || b->kind != kind)
            continue;
        rp_buf_printf(out, "%lld %lld @", (long long)atomic_load(&b->delay_ns),
                      (long long)atomic_load(&b->count));
        rp_pbuild_text_stack(out, b->pcs, (size_t)b->depth);
    }
}

int rp_contention_profile(rp_buf *out, bool block, int debug)
{
    int kind = block ? KIND_BLOCK : KIND_MUTEX;
    long period = block ? atomic_load(&block_rate) : atomic_load(&mutex_fraction);
    if (debug > 0) {
        build_text(out, kind, period);
        return 0;
    }
    return build_proto(out, kind, period);
}
