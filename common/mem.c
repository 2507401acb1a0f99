/* SPDX-License-Identifier: PostgreSQL
 *
 * The allocation seam: every allocation pgreaper makes for itself goes through here.
 */
#include "common/mem.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static RP_NORETURN void out_of_memory(size_t size)
{
    char msg[96];
    int n =
        snprintf(msg, sizeof(msg), "pgreaper: FATAL: out of memory (requested %zu bytes)\n", size);
    if (n > 0 && write(STDERR_FILENO, msg, (size_t)n) < 0)
        abort();
    abort();
}

void rp_panic_at(const char *file, int line, const char *msg)
{
    fprintf(stderr, "pgreaper: PANIC: %s at %s:%d\n", msg, file, line);
    abort();
}

void *rp_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (rp_unlikely(p == NULL))
        out_of_memory(size);
    return p;
}

void *rp_calloc(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        out_of_memory(SIZE_MAX);
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (rp_unlikely(p == NULL))
        out_of_memory(n * size);
    return p;
}

void *rp_realloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (rp_unlikely(q == NULL))
        out_of_memory(size);
    return q;
}

void *rp_reallocarray(void *p, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        out_of_memory(SIZE_MAX);
    return rp_realloc(p, n * size);
}

char *rp_strdup(const char *s)
{
    return rp_strndup(s, strlen(s));
}

char *rp_strndup(const char *s, size_t n)
{
    char *d = rp_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void *rp_try_malloc(size_t size)
{
    return malloc(size ? size : 1);
}

void rp_free(void *p)
{
    int saved = errno;
    free(p);
    errno = saved;
}

void rp_grow(void **arr, size_t *cap, size_t need, size_t elsize)
{
    if (need <= *cap)
        return;
    size_t ncap = *cap ? *cap : 4;
    while (ncap < need)
        ncap *= 2;
    *arr = rp_reallocarray(*arr, ncap, elsize);
    *cap = ncap;
}
