/* SPDX-License-Identifier: PostgreSQL
 *
 * The heap profiler with the real malloc wrappers linked in (pprof/malloc.c): exact
 * counters across threads, errno kept by free, known allocations attributed to their
 * function in inuse_space and alloc_space at rate 1 (exact) and at the default rate
 * (unsampled estimate within 25 %), frees taken out of inuse. With a file argument it
 * also writes a heap profile there for the go tool pprof checks in integration/pprof.py.
 * Skipped in sanitizer builds, where the sanitizer owns malloc.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "pprof/heap.h"
#include "pprof/pbuild.h"
#include "pprof/profile.pb-c.h"
#include "tests/lib/tap.h"

typedef Perftools__Profiles__Profile Prof;

#define BLOCK 4096

static void *kept[30000];

static __attribute__((noinline)) void *alloc_known(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" ::"r"(p) : "memory"); /* keep the call and its frame */
    return p;
}

static Prof *current_profile(rp_buf *gz)
{
    rp_buf_reset(gz);
    rp_heap_guard_enter();
    int rc = rp_heap_profile(gz, false);
    rp_heap_guard_leave();
    return rc < 0 ? NULL : rp_pbuild_decode(gz->data, gz->len);
}

static bool sample_has(const Prof *p, const Perftools__Profiles__Sample *s, const char *fn)
{
    for (size_t i = 0; i < s->n_location_id; i++) {
        const Perftools__Profiles__Location *l = p->location[s->location_id[i] - 1];
        const Perftools__Profiles__Function *f = p->function[l->line[0]->function_id - 1];
        if (strcmp(p->string_table[f->name], fn) == 0)
            return true;
    }
    return false;
}

/* Sum of value[idx] (0 alloc_objects, 1 alloc_space, 2 inuse_objects, 3 inuse_space). */
static int64_t attributed(const char *fn, int idx)
{
    rp_buf gz = RP_BUF_INIT;
    Prof *p = current_profile(&gz);
    int64_t sum = -1;
    if (p) {
        sum = 0;
        for (size_t i = 0; i < p->n_sample; i++)
            if (sample_has(p, p->sample[i], fn))
                sum += p->sample[i]->value[idx];
        perftools__profiles__profile__free_unpacked(p, NULL);
    }
    rp_buf_fini(&gz);
    return sum;
}

static void *thread_churn(void *arg)
{
    for (int i = 0; i < 1000; i++)
        free(alloc_known(64));
    return arg;
}

static void test_counters(void)
{
    rp_heap_totals a, b;
    rp_heap_totals_get(&a);
    for (int i = 0; i < 1000; i++)
        kept[i] = alloc_known(BLOCK);
    rp_heap_totals_get(&b);
    ok(b.mallocs - a.mallocs >= 1000 && b.mallocs - a.mallocs < 1010, "1000 mallocs counted");
    uint64_t live = (b.alloc_bytes - b.free_bytes) - (a.alloc_bytes - a.free_bytes);
    ok(live >= 1000 * BLOCK && live < 1000 * (BLOCK + 64), "live bytes grew by 1000 blocks");
    for (int i = 0; i < 1000; i++)
        free(kept[i]);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, thread_churn, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    rp_heap_totals_get(&b);
    ok(b.mallocs - a.mallocs >= 5000 && b.frees - a.frees >= 5000,
       "mallocs and frees of exited threads are kept");
    int64_t drift = (int64_t)((b.alloc_bytes - b.free_bytes) - (a.alloc_bytes - a.free_bytes));
    ok(drift < 64 * 1024, "live bytes are back where they were after the threads exited");
    errno = 1234;
    free(malloc(10));
    ok(errno == 1234, "free keeps errno");
}

static void test_rate1(void)
{
    rp_heap_init(1);
    for (int i = 0; i < 1000; i++)
        kept[i] = alloc_known(BLOCK);
    int64_t inuse = attributed("alloc_known", 3);
    ok(inuse >= 1000 * BLOCK * 3 / 4 && inuse <= 1000 * BLOCK * 5 / 4,
       "rate 1: 1000 x 4 KiB in inuse_space of alloc_known within 25 %");
    ok(attributed("alloc_known", 2) == 1000, "rate 1: exactly 1000 inuse objects");
    for (int i = 0; i < 500; i++)
        free(kept[i]);
    ok(attributed("alloc_known", 3) == inuse / 2,
       "freeing half halves inuse_space (usable sizes, as HeapAlloc counts)");
    for (int i = 500; i < 1000; i++)
        free(kept[i]);
    ok(attributed("alloc_known", 2) == 0, "all freed: nothing in use");
}

static void test_default_rate(void)
{
    rp_heap_init(RP_HEAP_DEFAULT_RATE);
    int64_t before = attributed("alloc_known", 1);
    /* 8 rounds of 30000 x 4 KiB = 938 MiB allocated (117 MiB at a time): about 1,880
     * samples, so 25 % is about 11 standard deviations of the Poisson estimate. With one
     * round (about 230 samples, 25 % = 3.8 sigma) the check failed once in CI. */
    size_t n = RP_ARRAY_LEN(kept), rounds = 8;
    for (size_t r = 0; r < rounds; r++) {
        for (size_t i = 0; i < n; i++)
            kept[i] = alloc_known(BLOCK);
        for (size_t i = 0; i < n; i++)
            free(kept[i]);
    }
    int64_t got = attributed("alloc_known", 1) - before, want = (int64_t)(n * rounds) * BLOCK;
    char name[128];
    snprintf(name, sizeof(name), "default rate: alloc_space estimate %lld of %lld within 25 %%",
             (long long)got, (long long)want);
    ok(got >= want * 3 / 4 && got <= want * 5 / 4, name);
}

static int write_profile(const char *path)
{
    rp_heap_init(1);
    for (int i = 0; i < 1000; i++)
        kept[i] = alloc_known(BLOCK);
    rp_buf gz = RP_BUF_INIT;
    int rc = rp_heap_profile(&gz, false);
    FILE *f = fopen(path, "wb");
    if (rc < 0 || !f || fwrite(gz.data, 1, gz.len, f) != gz.len)
        return 1;
    fclose(f);
    rp_buf_fini(&gz);
    return 0;
}

int main(int argc, char **argv)
{
    rp_heap_init(0);
    if (!rp_heap_available()) {
        printf("1..0 # SKIP malloc is not interposed in this process (sanitizer or valgrind)\n");
        return argc > 1 ? 1 : 0;
    }
    if (argc > 1)
        return write_profile(argv[1]);
    test_counters();
    test_rate1();
    test_default_rate();
    return done_testing();
}
