/* SPDX-License-Identifier: PostgreSQL
 *
 * Drift-free absolute-deadline scheduling on a GCD grid. See scheduler.h.
 */
#include "collect/scheduler.h"

#include <string.h>

#include "common/hash.h"
#include "common/mem.h"

void rp_sched_init(rp_sched *s)
{
    memset(s, 0, sizeof(*s));
}

void rp_sched_fini(rp_sched *s)
{
    rp_free(s->entries);
    memset(s, 0, sizeof(*s));
}

int64_t rp_sched_gcd(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

int64_t rp_sched_phase_for(const char *name, int64_t window_ms)
{
    uint64_t w = window_ms > 0 ? (uint64_t)window_ms : RP_SCHED_PHASE_MS;
    return (int64_t)(rp_hash_str(RP_HASH_INIT, name) % w); /* stable across runs */
}

/* First point of the grid (anchor + k * step, k >= 0) that is >= t. */
static int64_t grid_ceil(int64_t anchor, int64_t step, int64_t t)
{
    if (t <= anchor)
        return anchor;
    int64_t k = (t - anchor + step - 1) / step;
    return anchor + k * step;
}

static const rp_sched_entry *find_old(const rp_sched_entry *old, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(old[i].key, key) == 0)
            return &old[i];
    }
    return NULL;
}

void rp_sched_set(rp_sched *s, int64_t now, int64_t phase_ms, const char *const *keys,
                  const int64_t *intervals_ms, size_t n)
{
    rp_sched_entry *old = s->entries;
    size_t nold = s->n;
    s->entries = n ? rp_calloc(n, sizeof(rp_sched_entry)) : NULL;
    s->n = n;
    int64_t tick = 0;
    for (size_t i = 0; i < n; i++)
        tick = tick ? rp_sched_gcd(tick, intervals_ms[i]) : intervals_ms[i];
    if (tick > 0 && tick < 1000)
        tick = 1000;
    s->tick_ms = tick;
    if (!s->anchored) {
        s->anchor = now + (tick > 0 ? phase_ms % tick : phase_ms);
        s->anchored = true;
    }
    int64_t first_new = tick ? grid_ceil(s->anchor, tick, now) : now;
    for (size_t i = 0; i < n; i++) {
        rp_sched_entry *e = &s->entries[i];
        const rp_sched_entry *o = find_old(old, nold, keys[i]);
        e->key = keys[i];
        e->interval_ms = intervals_ms[i];
        if (o && o->interval_ms == intervals_ms[i]) {
            e->next_due = o->next_due;
            e->fired = o->fired;
            e->skipped = o->skipped;
        } else {
            e->next_due = first_new;
        }
    }
    rp_free(old);
}

void rp_sched_resume_at(rp_sched *s, int64_t now, const rp_sched_resume *r)
{
    int64_t tick = s->tick_ms;
    if (tick <= 0)
        return;
    int64_t first = r->after + tick / 2;
    if (r->has_grid) { /* the smallest grid + k * tick >= after, k of either sign */
        int64_t d = r->after - r->grid;
        int64_t k = d >= 0 ? (d + tick - 1) / tick : -(-d / tick);
        first = r->grid + k * tick;
    }
    if (first < now)
        first = now;
    s->anchor = first;
    s->anchored = true;
    for (size_t i = 0; i < s->n; i++)
        s->entries[i].next_due = first;
}

int64_t rp_sched_next(const rp_sched *s)
{
    int64_t next = RP_SCHED_NEVER;
    for (size_t i = 0; i < s->n; i++) {
        if (s->entries[i].next_due < next)
            next = s->entries[i].next_due;
    }
    return next;
}

size_t rp_sched_due(rp_sched *s, int64_t now, bool busy, size_t *out_idx)
{
    size_t k = 0;
    bool any = false;
    s->due_calls++;
    for (size_t i = 0; i < s->n; i++) {
        rp_sched_entry *e = &s->entries[i];
        if (e->next_due > now)
            continue;
        any = true;
        if (busy)
            e->skipped++;
        else {
            e->fired++;
            out_idx[k++] = i;
        }
        /* Advance on the grid; whole intervals missed while late are skipped, not queued. */
        int64_t missed = (now - e->next_due) / e->interval_ms;
        e->skipped += (uint32_t)missed;
        e->next_due += (missed + 1) * e->interval_ms;
    }
    if (busy && any)
        s->skipped_ticks++;
    return k;
}
