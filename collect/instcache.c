/* SPDX-License-Identifier: PostgreSQL
 *
 * Results of instance-level metrics shared between the sources of one instance. See
 * instcache.h.
 */
#include "collect/instcache.h"

#include <string.h>

#include "common/hash.h"
#include "common/mem.h"

typedef struct result {
    uint64_t metric;
    uint32_t gen;
    int64_t expires_ns; /* fetch time + the storing source's interval */
    rp_batch_copy copy;
} result;

typedef struct instance {
    uint64_t key;
    size_t refs; /* sources that reach it */
    result *results;
    size_t nresults, cap;
    struct instance *next; /* in its bucket */
} instance;

struct rp_instcache {
    instance **buckets;
    size_t nbuckets; /* a power of two */
    size_t n;
    uint32_t last_gen;
    size_t results, bytes;
    uint64_t stored, shared;
};

rp_instcache *rp_instcache_create(void)
{
    rp_instcache *c = rp_calloc(1, sizeof(*c));
    c->nbuckets = 64;
    c->buckets = rp_calloc(c->nbuckets, sizeof(instance *));
    return c;
}

static void drop_result(rp_instcache *c, instance *in, size_t i)
{
    c->results--;
    c->bytes -= in->results[i].copy.bytes;
    rp_batch_copy_fini(&in->results[i].copy);
    in->results[i] = in->results[--in->nresults];
}

static void free_instance(rp_instcache *c, instance *in)
{
    while (in->nresults)
        drop_result(c, in, in->nresults - 1);
    rp_free(in->results);
    rp_free(in);
}

void rp_instcache_free(rp_instcache *c)
{
    if (!c)
        return;
    for (size_t b = 0; b < c->nbuckets; b++) {
        for (instance *in = c->buckets[b], *next; in; in = next) {
            next = in->next;
            free_instance(c, in);
        }
    }
    rp_free(c->buckets);
    rp_free(c);
}

uint64_t rp_instcache_key(const char *sysid, const char *host, const char *port)
{
    uint64_t h = rp_hash_str(RP_HASH_INIT, sysid);
    h = rp_hash_str(rp_hash_u64(h, '@'), host ? host : "");
    h = rp_hash_str(rp_hash_u64(h, ':'), port ? port : "");
    return h ? h : 1; /* 0 means "none" to the sources */
}

uint64_t rp_instcache_metric_key(const char *name, const char *sql)
{
    return rp_hash_str(rp_hash_u64(rp_hash_str(RP_HASH_INIT, name), 0), sql);
}

static instance **slot_of(const rp_instcache *c, uint64_t key)
{
    instance **p = &c->buckets[key & (c->nbuckets - 1)];
    while (*p && (*p)->key != key)
        p = &(*p)->next;
    return p;
}

static void grow(rp_instcache *c)
{
    size_t n = c->nbuckets * 2;
    instance **b = rp_calloc(n, sizeof(instance *));
    for (size_t i = 0; i < c->nbuckets; i++) {
        for (instance *in = c->buckets[i], *next; in; in = next) {
            next = in->next;
            in->next = b[in->key & (n - 1)];
            b[in->key & (n - 1)] = in;
        }
    }
    rp_free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

void rp_instcache_join(rp_instcache *c, uint64_t key)
{
    instance **p = slot_of(c, key);
    if (*p) {
        (*p)->refs++;
        return;
    }
    instance *in = rp_calloc(1, sizeof(*in));
    in->key = key;
    in->refs = 1;
    *p = in;
    if (++c->n > c->nbuckets)
        grow(c);
}

void rp_instcache_leave(rp_instcache *c, uint64_t key)
{
    instance **p = slot_of(c, key);
    instance *in = *p;
    if (!in || --in->refs > 0)
        return;
    *p = in->next;
    c->n--;
    free_instance(c, in);
}

const rp_batch *rp_instcache_lookup(rp_instcache *c, uint64_t key, uint64_t metric, int64_t now_ns,
                                    int64_t max_age_ns, uint32_t *seen)
{
    const instance *in = *slot_of(c, key);
    if (!in || in->refs < 2)
        return NULL;
    for (size_t i = 0; i < in->nresults; i++) {
        const result *r = &in->results[i];
        if (r->metric != metric)
            continue;
        if (r->gen == *seen || r->copy.b.fetch_time_ns <= now_ns - max_age_ns)
            return NULL;
        *seen = r->gen;
        c->shared++;
        return &r->copy.b;
    }
    return NULL;
}

bool rp_instcache_store(rp_instcache *c, uint64_t key, uint64_t metric, const rp_batch *b,
                        int64_t max_age_ns, uint32_t *seen)
{
    instance *in = *slot_of(c, key);
    if (!in || in->refs < 2 || rp_batch_copy_size(b) > RP_INSTCACHE_MAX_BYTES)
        return false;
    for (size_t i = in->nresults; i-- > 0;) { /* this metric's last, and what expired */
        if (in->results[i].metric == metric || in->results[i].expires_ns <= b->fetch_time_ns)
            drop_result(c, in, i);
    }
    rp_grow((void **)&in->results, &in->cap, in->nresults + 1, sizeof(result));
    result *r = &in->results[in->nresults++];
    memset(r, 0, sizeof(*r));
    r->metric = metric;
    r->gen = ++c->last_gen ? c->last_gen : ++c->last_gen; /* 0 is "none seen" */
    r->expires_ns = b->fetch_time_ns + max_age_ns;
    rp_batch_copy_make(&r->copy, b);
    c->results++;
    c->bytes += r->copy.bytes;
    c->stored++;
    *seen = r->gen;
    return true;
}

void rp_instcache_get_stats(const rp_instcache *c, rp_instcache_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!c)
        return;
    out->instances = c->n;
    out->results = c->results;
    out->bytes = c->bytes;
    out->stored = c->stored;
    out->shared = c->shared;
}
