/* SPDX-License-Identifier: PostgreSQL
 *
 * LD_PRELOAD shim for benchmarks: counts malloc/calloc/realloc/posix_memalign calls and
 * bytes into a shared file (RP_MALLOC_COUNT_FILE) so that a benchmark can read the
 * counters at two points in time and compute allocations per fetched value in steady
 * state. Forwards to glibc's own entry points; adds two relaxed atomic increments.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

typedef struct counters {
    uint64_t calls;
    uint64_t bytes;
} counters;

static counters local;
static counters *shared = &local;

__attribute__((constructor)) static void setup(void)
{
    const char *path = getenv("RP_MALLOC_COUNT_FILE");
    if (!path)
        return;
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || ftruncate(fd, sizeof(counters)) < 0)
        return;
    void *p = mmap(NULL, sizeof(counters), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p != MAP_FAILED)
        shared = p;
}

static void count(size_t n)
{
    __atomic_fetch_add(&shared->calls, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&shared->bytes, n, __ATOMIC_RELAXED);
}

void *malloc(size_t n)
{
    count(n);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    count(n * m);
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    count(n);
    return __libc_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    count(n);
    void *p = __libc_memalign(align, n);
    if (!p)
        return 12; /* ENOMEM */
    *out = p;
    return 0;
}
