/* SPDX-License-Identifier: PostgreSQL
 *
 * The malloc family, interposed for the whole process (pgreaper, libpq, libuv, libyaml,
 * glibc itself) by defining it in the executable, forwarding to glibc's __libc_*
 * entry points. Every call is counted; sampling is in pprof/heap.c. Because the memory
 * is glibc's own, a path that escapes the wrappers (reallocarray and strdup call ours
 * anyway) can only miss a count, never corrupt the heap.
 *
 * Compiled into the pgreaper executable only, and not under AddressSanitizer, whose
 * runtime owns malloc in those builds.
 */
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>

#include "pprof/heap.h"

void *__libc_malloc(size_t size);
void __libc_free(void *p);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void *__libc_memalign(size_t align, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);

/* Tells pprof/heap.c that the wrappers are linked in. */
const int rp_malloc_interposed = 1;

#define RP_EXPORT __attribute__((visibility("default")))

static inline void on_alloc(void *p)
{
    if (rp_unlikely(!p))
        return;
    rp_heap_tls *t = &rp_heap_t;
    rp_heap_slot *s = rp_likely(t->slot != NULL) ? t->slot : rp_heap_slot_claim();
    size_t size = malloc_usable_size(p); /* what HeapAlloc counts: samples weigh the same */
    rp_heap_count(&s->mallocs, s->shared, 1);
    rp_heap_count(&s->alloc_bytes, s->shared, size);
    if (rp_unlikely(t->guard > 0))
        rp_heap_note_own(p, size);
    else if (rp_unlikely(size >= RP_HEAP_EXACT_MIN))
        rp_heap_record_exact(p, size);
    else if (rp_unlikely((t->until -= (int64_t)size) < 0))
        rp_heap_sample_slow(p, size);
}

static inline void on_free(void *p)
{
    rp_heap_tls *t = &rp_heap_t;
    rp_heap_slot *s = rp_likely(t->slot != NULL) ? t->slot : rp_heap_slot_claim();
    rp_heap_count(&s->frees, s->shared, 1);
    rp_heap_count(&s->free_bytes, s->shared, malloc_usable_size(p));
    if (rp_heap_maybe_sampled(p))
        rp_heap_forget(p);
}

RP_EXPORT void *malloc(size_t size)
{
    void *p = __libc_malloc(size);
    on_alloc(p);
    return p;
}

RP_EXPORT void free(void *p)
{
    if (!p)
        return;
    int saved = errno;
    on_free(p); /* before the memory can be handed out again */
    __libc_free(p);
    errno = saved;
}

RP_EXPORT void *calloc(size_t n, size_t size)
{
    void *p = __libc_calloc(n, size);
    on_alloc(p);
    return p;
}

RP_EXPORT void *realloc(void *old, size_t size)
{
    if (!old)
        return malloc(size);
    on_free(old);
    void *p = __libc_realloc(old, size);
    if (p)
        on_alloc(p);
    else if (size != 0)
        on_alloc(old); /* failed: old is still live (its sample, if any, is lost) */
    return p;
}

RP_EXPORT void *memalign(size_t align, size_t size)
{
    void *p = __libc_memalign(align, size);
    on_alloc(p);
    return p;
}

RP_EXPORT void *aligned_alloc(size_t align, size_t size)
{
    return memalign(align, size);
}

RP_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    int saved = errno;
    void *p = __libc_memalign(align, size);
    errno = saved;
    if (!p)
        return ENOMEM;
    on_alloc(p);
    *out = p;
    return 0;
}

RP_EXPORT void *valloc(size_t size)
{
    void *p = __libc_valloc(size);
    on_alloc(p);
    return p;
}

RP_EXPORT void *pvalloc(size_t size)
{
    void *p = __libc_pvalloc(size);
    on_alloc(p);
    return p;
}
