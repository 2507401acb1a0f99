/* SPDX-License-Identifier: PostgreSQL
 *
 * Heap counters, Poisson sampling and the heap/allocs profiles: see heap.h.
 *
 * Nothing reachable from the hooks calls a function that allocates: profiler memory
 * comes from mmap'd arenas, the tables are lock-free for readers, and the only locks
 * are short spinlocks (pointer table stripes, arena) and one mutex for thread exit.
 */
#include "pprof/heap.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/mem.h"
#include "pprof/pbuild.h"
#include "pprof/stack.h"

#define NSLOTS      512
#define BUCKET_HEAD 4096
#define PTR_HEADS   (1u << RP_HEAP_PTR_BITS)
#define PTR_LOCKS   1024
#define EARLY_FRAME "(before main: shared libraries' constructors)"
#define FIX         65536.0 /* weights are fixed point, 16 fraction bits */
#define ARENA_CHUNK (1u << 20)

extern const int rp_malloc_interposed __attribute__((weak));

__thread rp_heap_tls rp_heap_t __attribute__((tls_model("initial-exec")));
_Atomic uint64_t rp_heap_nlive;

static rp_heap_slot slots[NSLOTS];
static rp_heap_slot overflow = {.shared = true};
static rp_heap_slot exited = {.shared = true};
static pthread_mutex_t exit_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t exit_key;
static _Atomic bool key_ready;
/* Sampling starts at the process's first malloc, at rate 1, before anything else ran
 * (see heap_start_early); rp_heap_init() sets the rate main was given. */
static _Atomic long heap_rate = 1;
static _Atomic bool heap_ready = true;
static _Atomic bool stacks_ready; /* libunwind can be called: see heap_start_early */
static _Atomic uint64_t samples_dropped;
static _Atomic int64_t prof_bytes, prof_objects; /* live allocations of profile code */
static _Atomic bool wrappers_work; /* set by rp_heap_init: our malloc is really called */

typedef struct bucket {
    struct bucket *_Atomic next;
    uint64_t hash;
    _Atomic int64_t alloc_w, alloc_bw, inuse_w, inuse_bw; /* unsampled, fixed point */
    _Atomic int64_t raw_alloc_n, raw_alloc_b, raw_inuse_n, raw_inuse_b;
    uint32_t depth;
    uintptr_t pcs[];
} bucket;

typedef struct pnode {
    struct pnode *next;
    uintptr_t ptr;
    bucket *b;     /* NULL: an allocation of profile code (rp_heap_note_own) */
    int64_t w, wb; /* fixed-point weight and weight x size */
    size_t size;
} pnode;

static bucket *_Atomic buckets[BUCKET_HEAD];
static _Atomic size_t nbuckets;
static pthread_mutex_t bucket_lock = PTHREAD_MUTEX_INITIALIZER;
static pnode *ptr_heads[PTR_HEADS]; /* written under the stripe lock, read racily for NULL */
_Atomic uint64_t rp_heap_ptr_bits[PTR_HEADS / 64]; /* ptr_heads[i] != NULL, same lock */
static atomic_flag ptr_locks[PTR_LOCKS];
static atomic_flag arena_lock = ATOMIC_FLAG_INIT;
static char *arena_cur, *arena_end;
static pnode *node_free;

static int64_t next_gap(rp_heap_tls *t, long rate);
static void forget_early(void);

bool rp_heap_available(void)
{
    return &rp_malloc_interposed != NULL && atomic_load(&wrappers_work);
}

/* Valgrind replaces malloc even in the executable: check that one call reaches us. */
static void probe_wrappers(void)
{
    rp_heap_totals a, b;
    rp_heap_totals_get(&a);
    void *volatile p = malloc(16);
    free(p);
    rp_heap_totals_get(&b);
    atomic_store(&wrappers_work, b.mallocs > a.mallocs);
}

static void spin_lock(atomic_flag *f)
{
    while (atomic_flag_test_and_set_explicit(f, memory_order_acquire))
        ;
}

static void spin_unlock(atomic_flag *f)
{
    atomic_flag_clear_explicit(f, memory_order_release);
}

/* ---- per-thread counter slots ------------------------------------------------------ */

static void slot_fold(void *arg)
{
    rp_heap_slot *s = arg;
    pthread_mutex_lock(&exit_lock);
    rp_heap_t.slot = &overflow;
    atomic_fetch_add(&exited.mallocs, atomic_load(&s->mallocs));
    atomic_fetch_add(&exited.frees, atomic_load(&s->frees));
    atomic_fetch_add(&exited.alloc_bytes, atomic_load(&s->alloc_bytes));
    atomic_fetch_add(&exited.free_bytes, atomic_load(&s->free_bytes));
    atomic_store(&s->mallocs, 0);
    atomic_store(&s->frees, 0);
    atomic_store(&s->alloc_bytes, 0);
    atomic_store(&s->free_bytes, 0);
    atomic_store(&s->in_use, 0);
    pthread_mutex_unlock(&exit_lock);
}

rp_heap_slot *rp_heap_slot_claim(void)
{
    rp_heap_slot *s = &overflow;
    for (size_t i = 0; i < NSLOTS; i++) {
        int zero = 0;
        if (atomic_load_explicit(&slots[i].in_use, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&slots[i].in_use, &zero, 1)) {
            s = &slots[i];
            break;
        }
    }
    rp_heap_t.slot = s;
    if (s != &overflow && atomic_load(&key_ready))
        pthread_setspecific(exit_key, s);
    return s;
}

static void add_slot(rp_heap_totals *t, rp_heap_slot *s)
{
    t->mallocs += atomic_load_explicit(&s->mallocs, memory_order_relaxed);
    t->frees += atomic_load_explicit(&s->frees, memory_order_relaxed);
    t->alloc_bytes += atomic_load_explicit(&s->alloc_bytes, memory_order_relaxed);
    t->free_bytes += atomic_load_explicit(&s->free_bytes, memory_order_relaxed);
}

void rp_heap_totals_get(rp_heap_totals *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_lock(&exit_lock);
    for (size_t i = 0; i < NSLOTS; i++)
        if (atomic_load(&slots[i].in_use))
            add_slot(t, &slots[i]);
    add_slot(t, &overflow);
    add_slot(t, &exited);
    pthread_mutex_unlock(&exit_lock);
    t->prof_bytes = (uint64_t)atomic_load(&prof_bytes);
    t->prof_objects = (uint64_t)atomic_load(&prof_objects);
    t->heap_bytes = t->alloc_bytes - t->free_bytes - t->prof_bytes;
    t->heap_objects = t->mallocs - t->frees - t->prof_objects;
    t->samples_live = atomic_load(&rp_heap_nlive) - t->prof_objects;
    t->samples_dropped = atomic_load(&samples_dropped);
}

static void atfork_child(void)
{
    for (size_t i = 0; i < PTR_LOCKS; i++)
        atomic_flag_clear(&ptr_locks[i]);
    atomic_flag_clear(&arena_lock);
    pthread_mutex_init(&exit_lock, NULL);
    pthread_mutex_init(&bucket_lock, NULL);
}

void rp_heap_init(long rate)
{
    if (!atomic_load(&key_ready) && pthread_key_create(&exit_key, slot_fold) == 0) {
        atomic_store(&key_ready, true);
        if (rp_heap_t.slot && rp_heap_t.slot != &overflow)
            pthread_setspecific(exit_key, rp_heap_t.slot);
        pthread_atfork(NULL, NULL, atfork_child);
    }
    if (!atomic_load(&stacks_ready)) {
        rp_stack_init();
        atomic_store(&stacks_ready, true);
    }
    probe_wrappers();
    atomic_store(&heap_rate, rate < 0 ? 0 : rate);
    if (rate <= 0)
        forget_early();
    atomic_store(&heap_ready, true);
    rp_heap_t.until = next_gap(&rp_heap_t, rp_heap_rate());
}

long rp_heap_rate(void)
{
    return atomic_load(&heap_rate);
}

void rp_heap_guard_enter(void)
{
    rp_heap_t.guard++;
}

void rp_heap_guard_leave(void)
{
    rp_heap_t.guard--;
}

/* ---- arena for buckets and pointer nodes (never returned to the OS) ---------------- */

static void *arena_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    spin_lock(&arena_lock);
    if ((size_t)(arena_end - arena_cur) < n) {
        size_t len = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            spin_unlock(&arena_lock);
            return NULL;
        }
        arena_cur = p;
        arena_end = arena_cur + len;
    }
    void *r = arena_cur;
    arena_cur += n;
    spin_unlock(&arena_lock);
    return r;
}

static pnode *node_get(void)
{
    spin_lock(&arena_lock);
    pnode *n = node_free;
    if (n)
        node_free = n->next;
    spin_unlock(&arena_lock);
    return n ? n : arena_alloc(sizeof(pnode));
}

static void node_put(pnode *n)
{
    spin_lock(&arena_lock);
    n->next = node_free;
    node_free = n;
    spin_unlock(&arena_lock);
}

/* ---- sampling ------------------------------------------------------------------------ */

static uint64_t next_random(rp_heap_tls *t)
{
    if (t->rng == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)t ^ ((uint64_t)gettid() | 1);
    }
    t->rng ^= t->rng >> 12; /* xorshift64* */
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;
    return t->rng * 0x2545F4914F6CDD1DULL;
}

/* Bytes to the next sample: exponential with mean rate (0 when rate is 1). */
static int64_t next_gap(rp_heap_tls *t, long rate)
{
    if (rate <= 1)
        return 0;
    double u = (double)((next_random(t) >> 11) + 1) * (1.0 / 9007199254740992.0);
    return (int64_t)(-log(u) * (double)rate);
}

static uint64_t hash_stack(const uintptr_t *pcs, int n)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < n; i++)
        h = (h ^ pcs[i]) * 0xff51afd7ed558ccdULL;
    return h ^ (h >> 29);
}

static bucket *bucket_find(bucket *b, uint64_t h, const uintptr_t *pcs, int n)
{
    for (; b; b = atomic_load_explicit(&b->next, memory_order_acquire))
        if (b->hash == h && b->depth == (uint32_t)n && memcmp(b->pcs, pcs, n * sizeof(*pcs)) == 0)
            return b;
    return NULL;
}

static bucket *bucket_get(const uintptr_t *pcs, int n)
{
    uint64_t h = hash_stack(pcs, n);
    bucket *_Atomic *head = &buckets[h % BUCKET_HEAD];
    bucket *b = bucket_find(atomic_load_explicit(head, memory_order_acquire), h, pcs, n);
    if (b)
        return b;
    pthread_mutex_lock(&bucket_lock);
    b = bucket_find(atomic_load(head), h, pcs, n);
    if (!b && (b = arena_alloc(sizeof(bucket) + (size_t)n * sizeof(uintptr_t))) != NULL) {
        memset(b, 0, sizeof(*b));
        b->hash = h;
        b->depth = (uint32_t)n;
        memcpy(b->pcs, pcs, (size_t)n * sizeof(*pcs));
        atomic_store_explicit(&b->next, atomic_load(head), memory_order_relaxed);
        atomic_store_explicit(head, b, memory_order_release);
        atomic_fetch_add(&nbuckets, 1);
    }
    pthread_mutex_unlock(&bucket_lock);
    return b;
}

static void set_head(size_t i, pnode *n) /* under the stripe lock of i */
{
    __atomic_store_n(&ptr_heads[i], n, __ATOMIC_RELEASE);
    if (n)
        atomic_fetch_or_explicit(&rp_heap_ptr_bits[i / 64], 1ULL << (i % 64), memory_order_relaxed);
    else
        atomic_fetch_and_explicit(&rp_heap_ptr_bits[i / 64], ~(1ULL << (i % 64)),
                                  memory_order_relaxed);
}

static void link_node(pnode *n)
{
    size_t i = rp_heap_ptr_slot(n->ptr);
    spin_lock(&ptr_locks[i % PTR_LOCKS]);
    n->next = ptr_heads[i];
    set_head(i, n);
    atomic_fetch_add(&rp_heap_nlive, 1);
    spin_unlock(&ptr_locks[i % PTR_LOCKS]);
}

void rp_heap_note_own(void *p, size_t size)
{
    pnode *n = node_get();
    if (!n)
        return; /* then counted as the program's: the figures stay consistent */
    *n = (pnode){.ptr = (uintptr_t)p, .size = size};
    atomic_fetch_add(&prof_bytes, (int64_t)size);
    atomic_fetch_add(&prof_objects, 1);
    link_node(n);
}

static void remember(void *p, size_t size, bucket *b, int64_t w)
{
    pnode *n = node_get();
    if (!n) {
        atomic_fetch_add(&samples_dropped, 1);
        return;
    }
    *n = (pnode){.ptr = (uintptr_t)p, .b = b, .w = w, .wb = w * (int64_t)size, .size = size};
    atomic_fetch_add(&b->alloc_w, w);
    atomic_fetch_add(&b->alloc_bw, n->wb);
    atomic_fetch_add(&b->inuse_w, w);
    atomic_fetch_add(&b->inuse_bw, n->wb);
    atomic_fetch_add(&b->raw_alloc_n, 1);
    atomic_fetch_add(&b->raw_alloc_b, (int64_t)size);
    atomic_fetch_add(&b->raw_inuse_n, 1);
    atomic_fetch_add(&b->raw_inuse_b, (int64_t)size);
    link_node(n);
}

static __attribute__((noinline)) void record(void *p, size_t size, long rate)
{
    uintptr_t pcs[RP_STACK_MAX];
    /* skip this frame and its caller (rp_heap_sample_slow or rp_heap_record_exact): pcs[0]
     * is in the malloc wrapper */
    int n = atomic_load_explicit(&stacks_ready, memory_order_relaxed)
                ? rp_stack_here(pcs, RP_STACK_MAX, 2)
                : 0;          /* a library's constructor: a bucket of depth 0 (EARLY_FRAME) */
    int skip = n > 1 ? 1 : 0; /* drop the wrapper: the leaf is malloc's caller */
    bucket *b = bucket_get(pcs + skip, n - skip);
    if (!b) {
        atomic_fetch_add(&samples_dropped, 1);
        return;
    }
    double w = (rate <= 1 || size == 0) ? 1.0 : 1.0 / (1.0 - exp(-(double)size / (double)rate));
    remember(p, size, b, (int64_t)llround(w * FIX));
}

void rp_heap_record_exact(void *p, size_t size)
{
    rp_heap_tls *t = &rp_heap_t;
    if (!atomic_load_explicit(&heap_ready, memory_order_relaxed) ||
        atomic_load_explicit(&heap_rate, memory_order_relaxed) <= 0 || t->guard)
        return;
    t->guard++;
    record(p, size, 1); /* weight 1: this block is not an estimate */
    t->guard--;
}

void rp_heap_sample_slow(void *p, size_t size)
{
    rp_heap_tls *t = &rp_heap_t;
    long rate = atomic_load_explicit(&heap_rate, memory_order_relaxed);
    if (!atomic_load_explicit(&heap_ready, memory_order_relaxed) || rate <= 0) {
        t->until = INT64_MAX / 2;
        return;
    }
    bool fresh = t->rng == 0; /* a new thread: its countdown starts now, unsampled */
    t->until = next_gap(t, rate);
    if (t->guard || (fresh && rate > 1))
        return;
    t->guard++;
    record(p, size, rate);
    t->guard--;
}

/* Every allocation is recorded from the process's first malloc until rp_heap_init() knows
 * the rate (the shared libraries' constructors, GnuTLS's ASN.1 tables among them, then
 * option parsing), so that a profile at rate 1 holds the whole heap; at other rates these
 * few stay recorded exactly (weight 1). Until this constructor of the executable has run,
 * libunwind may not be ready: those allocations get no stack but a frame that says so. */
__attribute__((constructor(101))) static void heap_start_early(void)
{
    rp_stack_init();
    atomic_store(&stacks_ready, true);
}

/* Sampling off (rate 0): forget what heap_start_early recorded. Single-threaded. */
static void forget_early(void)
{
    for (size_t i = 0; i < PTR_HEADS; i++) {
        for (pnode *n = ptr_heads[i], *next; n; n = next) {
            next = n->next;
            node_put(n);
        }
        ptr_heads[i] = NULL;
    }
    for (size_t i = 0; i < PTR_HEADS / 64; i++)
        atomic_store(&rp_heap_ptr_bits[i], 0);
    atomic_store(&rp_heap_nlive, 0);
    for (size_t h = 0; h < BUCKET_HEAD; h++)
        for (bucket *b = atomic_load(&buckets[h]); b; b = atomic_load(&b->next)) {
            atomic_store(&b->alloc_w, 0);
            atomic_store(&b->alloc_bw, 0);
            atomic_store(&b->inuse_w, 0);
            atomic_store(&b->inuse_bw, 0);
            atomic_store(&b->raw_alloc_n, 0);
            atomic_store(&b->raw_alloc_b, 0);
            atomic_store(&b->raw_inuse_n, 0);
            atomic_store(&b->raw_inuse_b, 0);
        }
}

void rp_heap_forget(void *p)
{
    size_t i = rp_heap_ptr_slot((uintptr_t)p);
    if (!__atomic_load_n(&ptr_heads[i], __ATOMIC_RELAXED))
        return; /* p is ours to free: it cannot be being inserted right now */
    spin_lock(&ptr_locks[i % PTR_LOCKS]);
    pnode **pp = &ptr_heads[i], *n;
    while ((n = *pp) && n->ptr != (uintptr_t)p)
        pp = &n->next;
    if (n) {
        if (pp == &ptr_heads[i])
            set_head(i, n->next);
        else
            __atomic_store_n(pp, n->next, __ATOMIC_RELAXED);
        atomic_fetch_sub(&rp_heap_nlive, 1);
    }
    spin_unlock(&ptr_locks[i % PTR_LOCKS]);
    if (!n)
        return;
    if (!n->b) {
        atomic_fetch_sub(&prof_bytes, (int64_t)n->size);
        atomic_fetch_sub(&prof_objects, 1);
        node_put(n);
        return;
    }
    atomic_fetch_sub(&n->b->inuse_w, n->w);
    atomic_fetch_sub(&n->b->inuse_bw, n->wb);
    atomic_fetch_sub(&n->b->raw_inuse_n, 1);
    atomic_fetch_sub(&n->b->raw_inuse_b, (int64_t)n->size);
    node_put(n);
}

/* ---- profiles ------------------------------------------------------------------------ */

typedef struct heap_row {
    const bucket *b;
    int64_t v[4]; /* alloc_objects, alloc_space, inuse_objects, inuse_space (unsampled) */
    int64_t raw[4];
} heap_row;

static int64_t unfix(int64_t v)
{
    return (v + (int64_t)(FIX / 2)) / (int64_t)FIX;
}

/* Rows for every bucket with something to show; the caller frees *rows. */
static size_t snapshot(heap_row **rows)
{
    size_t cap = atomic_load(&nbuckets) + 1, n = 0;
    *rows = rp_calloc(cap, sizeof(heap_row));
    for (size_t h = 0; h < BUCKET_HEAD; h++) {
        for (bucket *b = atomic_load_explicit(&buckets[h], memory_order_acquire); b && n < cap;
             b = atomic_load_explicit(&b->next, memory_order_acquire)) {
            heap_row *r = &(*rows)[n];
            r->b = b;
            r->v[0] = unfix(atomic_load(&b->alloc_w));
            r->v[1] = unfix(atomic_load(&b->alloc_bw));
            r->v[2] = unfix(atomic_load(&b->inuse_w));
            r->v[3] = unfix(atomic_load(&b->inuse_bw));
            r->raw[0] = atomic_load(&b->raw_alloc_n);
            r->raw[1] = atomic_load(&b->raw_alloc_b);
            r->raw[2] = atomic_load(&b->raw_inuse_n);
            r->raw[3] = atomic_load(&b->raw_inuse_b);
            if (r->raw[0] > 0)
                n++;
        }
    }
    return n;
}

static void heap_comments(rp_pbuild *pb, const rp_heap_totals *t)
{
    char line[256];
    snprintf(line, sizeof(line), "pgreaper heap: sample rate %ld bytes, malloc interposed: %s",
             rp_heap_rate(), rp_heap_available() ? "yes" : "no");
    rp_pbuild_comment(pb, line);
    snprintf(line, sizeof(line),
             "exact: HeapAlloc=%llu HeapObjects=%llu TotalAlloc=%llu Mallocs=%llu Frees=%llu "
             "ProfilerHeap=%llu",
             (unsigned long long)t->heap_bytes, (unsigned long long)t->heap_objects,
             (unsigned long long)t->alloc_bytes, (unsigned long long)t->mallocs,
             (unsigned long long)t->frees, (unsigned long long)t->prof_bytes);
    rp_pbuild_comment(pb, line);
}

int rp_heap_profile(rp_buf *out, bool allocs)
{
    rp_heap_totals t; /* the exact figures as the samples are read, before building */
    rp_heap_totals_get(&t);
    heap_row *rows;
    size_t n = snapshot(&rows);
    rp_pbuild *pb = rp_pbuild_new();
    rp_pbuild_sample_type(pb, "alloc_objects", "count");
    rp_pbuild_sample_type(pb, "alloc_space", "bytes");
    rp_pbuild_sample_type(pb, "inuse_objects", "count");
    rp_pbuild_sample_type(pb, "inuse_space", "bytes");
    rp_pbuild_period(pb, "space", "bytes", rp_heap_rate());
    if (allocs)
        rp_pbuild_default_type(pb, "alloc_space");
    rp_pbuild_drop_frames(pb, "malloc|calloc|realloc|free|posix_memalign|aligned_alloc|memalign|"
                              "valloc|pvalloc|rp_malloc|rp_calloc|rp_realloc|rp_try_malloc");
    heap_comments(pb, &t);
    uint64_t locs[RP_STACK_MAX];
    for (size_t i = 0; i < n; i++) {
        const bucket *b = rows[i].b;
        size_t nl = rp_pbuild_stack(pb, b->pcs, b->depth, false, locs);
        if (nl == 0)
            locs[nl++] = rp_pbuild_loc_named(pb, EARLY_FRAME);
        size_t s = rp_pbuild_sample(pb, locs, nl, rows[i].v);
        rp_pbuild_label_num(pb, s, "bytes", rows[i].raw[1] / rows[i].raw[0], NULL);
    }
    free(rows);
    int rc = rp_pbuild_finish(pb, out);
    rp_pbuild_free(pb);
    return rc;
}

static int cmp_inuse(const void *a, const void *b)
{
    const heap_row *x = a, *y = b;
    return x->raw[3] > y->raw[3] ? -1 : x->raw[3] < y->raw[3];
}

static void text_stack(rp_buf *out, const bucket *b)
{
    if (b->depth == 0) {
        rp_buf_puts(out, " 0x0\n#\t0x0\t" EARLY_FRAME "\n\n");
        return;
    }
    rp_pbuild_text_stack(out, b->pcs, b->depth);
}

void rp_heap_text(rp_buf *out)
{
    heap_row *rows;
    size_t n = snapshot(&rows);
    int64_t sum[4] = {0, 0, 0, 0};
    qsort(rows, n, sizeof(*rows), cmp_inuse);
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++)
            sum[k] += rows[i].raw[k];
    rp_buf_printf(out, "heap profile: %lld: %lld [%lld: %lld] @ heap/%ld\n", (long long)sum[2],
                  (long long)sum[3], (long long)sum[0], (long long)sum[1], 2 * rp_heap_rate());
    for (size_t i = 0; i < n; i++) {
        rp_buf_printf(out, "%lld: %lld [%lld: %lld] @", (long long)rows[i].raw[2],
                      (long long)rows[i].raw[3], (long long)rows[i].raw[0],
                      (long long)rows[i].raw[1]);
        text_stack(out, rows[i].b);
    }
    free(rows);
    rp_heap_totals t;
    rp_heap_totals_get(&t);
    rp_buf_printf(out,
                  "\n# pgreaper heap counters\n# HeapAlloc = %llu\n# TotalAlloc = %llu\n"
                  "# Mallocs = %llu\n# Frees = %llu\n# HeapObjects = %llu\n# SampleRate = %ld\n"
                  "# ProfilerHeap = %llu\n",
                  (unsigned long long)t.heap_bytes, (unsigned long long)t.alloc_bytes,
                  (unsigned long long)t.mallocs, (unsigned long long)t.frees,
                  (unsigned long long)t.heap_objects, rp_heap_rate(),
                  (unsigned long long)t.prof_bytes);
}
