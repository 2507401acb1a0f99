/* SPDX-License-Identifier: PostgreSQL
 *
 * Heap accounting and sampling for /debug/pprof/heap and /debug/vars.
 *
 * pprof/malloc.c, compiled into the pgreaper executable (not into builds with
 * AddressSanitizer, which owns malloc there), interposes the malloc family for the whole
 * process and calls the hooks below. Every call is counted exactly (per-thread counter
 * slots, folded into a process total when a thread exits); allocations are sampled
 * with a Poisson process of mean rate bytes (Go's MemProfileRate; 1 = every
 * allocation, 0 = counters only), each sample keeping its stack and its unsampling
 * weight 1 / (1 - exp(-size / rate)) until it is freed.
 *
 * Profile code (builders, HTTP replies, symbol caches) runs inside
 * rp_heap_guard_enter()/leave(): its own allocations are never sampled, so a profile does
 * not profile itself and the hooks never re-enter the sampler, and while they live they
 * are kept out of HeapAlloc/HeapObjects (reported as ProfilerHeap), as Go keeps its
 * profiler's memory out of the heap figures.
 *
 * Sampling starts before main (a constructor, at rate 1): what libraries and option
 * parsing allocate is recorded exactly, whatever rate rp_heap_init() then sets (rate 0
 * forgets it). With every allocation sampled at the usable size that HeapAlloc counts,
 * a profile at rate 1 holds the heap as HeapAlloc says it is.
 */
#ifndef RP_PPROF_HEAP_H
#define RP_PPROF_HEAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/compiler.h"

/* Go's 512 KiB is for heaps of gigabytes; pgreaper's are megabytes, and comparing two of
 * them (per-metric vs batch) needs more samples: at 16 KiB -diff_base between the modes
 * was within 3 % of the exact difference (64 KiB: -32 % to +26 %), for 1.9 % more
 * instructions than counters alone (bench/heap_rate.py, bench/heap_cost.py). */
#define RP_HEAP_DEFAULT_RATE 16384

typedef struct rp_heap_totals {
    uint64_t mallocs, frees;           /* calls (realloc counts as one of each) */
    uint64_t alloc_bytes, free_bytes;  /* usable sizes */
    uint64_t prof_bytes, prof_objects; /* live allocations made by profile code */
    uint64_t heap_bytes, heap_objects; /* live, without those: Go's HeapAlloc/HeapObjects */
    uint64_t samples_live, samples_dropped;
} rp_heap_totals;

/* True when the malloc family is interposed in this executable. */
bool rp_heap_available(void);

/* Start sampling at rate bytes (0 = off). Call once from main, before other threads. */
void rp_heap_init(long rate);
long rp_heap_rate(void);

void rp_heap_totals_get(rp_heap_totals *t);

void rp_heap_guard_enter(void);
void rp_heap_guard_leave(void);

/* Gzip'd heap profile (allocs: default sample type alloc_space). 0 or -errno. */
RP_NODISCARD int rp_heap_profile(rp_buf *out, bool allocs);
/* The legacy text (?debug=1): raw sampled counts, "heap/<2*rate>", then counters. */
void rp_heap_text(rp_buf *out);

/* ---- for pprof/malloc.c only ---------------------------------------------------- */

typedef struct rp_heap_slot {
    _Atomic uint64_t mallocs, frees, alloc_bytes, free_bytes;
    _Atomic int in_use;
    bool shared; /* the overflow slot: several threads, atomic adds */
} __attribute__((aligned(64))) rp_heap_slot;

typedef struct rp_heap_tls {
    rp_heap_slot *slot;
    int64_t until; /* bytes left before the next sample */
    uint64_t rng;
    int guard;
} rp_heap_tls;

extern __thread rp_heap_tls rp_heap_t __attribute__((tls_model("initial-exec")));
extern _Atomic uint64_t rp_heap_nlive; /* sampled pointers not yet freed */

rp_heap_slot *rp_heap_slot_claim(void);
/* An allocation made under the guard: kept apart from the program's heap figures until
 * it is freed, as Go keeps its profiler's memory out of HeapAlloc. */
void rp_heap_note_own(void *p, size_t size);
void rp_heap_sample_slow(void *p, size_t size);
/* Blocks of at least this many bytes are few and hold most of a small heap: each is
 * recorded (weight 1) whatever the rate, so that two profiles of small heaps compare by
 * their large blocks exactly and only the small ones are estimates. */
#define RP_HEAP_EXACT_MIN 8192
void rp_heap_record_exact(void *p, size_t size);
void rp_heap_forget(void *p);

/* Sampled pointers are kept in 2^16 buckets by a hash of the address; this bitmap says
 * which buckets hold any (8 KiB: a free() tests one bit in cache instead of reading the
 * 512 KiB of bucket heads, which cost pgreaper 10 % of its CPU at any sampling rate). */
#define RP_HEAP_PTR_BITS 16
extern _Atomic uint64_t rp_heap_ptr_bits[(1u << RP_HEAP_PTR_BITS) / 64];

static inline size_t rp_heap_ptr_slot(uintptr_t p)
{
    return (size_t)((p * 0x9E3779B97F4A7C15ULL) >> (64 - RP_HEAP_PTR_BITS));
}

/* Whether p may be a sampled (or profiler-owned) pointer: then rp_heap_forget(p). */
static inline bool rp_heap_maybe_sampled(const void *p)
{
    size_t i = rp_heap_ptr_slot((uintptr_t)p);
    return (atomic_load_explicit(&rp_heap_ptr_bits[i / 64], memory_order_relaxed) >> (i % 64)) & 1;
}

static inline void rp_heap_count(_Atomic uint64_t *c, bool shared, uint64_t n)
{
    if (rp_unlikely(shared))
        atomic_fetch_add_explicit(c, n, memory_order_relaxed);
    else
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                              memory_order_relaxed);
}

#endif /* RP_PPROF_HEAP_H */
