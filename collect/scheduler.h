/* SPDX-License-Identifier: PostgreSQL
 *
 * The per-source schedule: pure arithmetic on a monotonic millisecond clock, no libuv.
 * Every metric has an absolute deadline on a grid anchored at the source's start plus a
 * stable phase offset (rp_sched_phase_for): deadline(k) = anchor + k * interval, so query time
 * never shifts the schedule. All deadlines lie on the grid of the GCD of the intervals (the
 * "tick"), and the caller arms its timer for rp_sched_next() only, so coprime intervals such as 7 s
 * and 13 s do not cause a wake-up every second.
 */
#ifndef RP_COLLECT_SCHEDULER_H
#define RP_COLLECT_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RP_SCHED_NEVER INT64_MAX

typedef struct rp_sched_entry {
    const char *key;     /* borrowed; identifies the metric across rp_sched_set() calls */
    int64_t interval_ms; /* > 0 */
    int64_t next_due;    /* absolute, ms */
    uint32_t fired;      /* 32 bits: a fleet keeps one entry per metric per source */
    uint32_t skipped;
} rp_sched_entry;

typedef struct rp_sched {
    rp_sched_entry *entries; /* owned */
    size_t n;
    int64_t anchor; /* grid origin; valid when anchored */
    bool anchored;
    int64_t tick_ms; /* GCD of the intervals (>= 1000), 0 when empty */
    uint64_t due_calls;
    uint64_t skipped_ticks; /* ticks that found the previous batch still running */
} rp_sched;

void rp_sched_init(rp_sched *s);
void rp_sched_fini(rp_sched *s);

/* The phase window of a few sources: their first fetches within 10 s. */
#define RP_SCHED_PHASE_MS 10000

/* A stable phase offset in [0, window_ms) for a source name (window_ms <= 0: the default
 * window), so sources do not fire together; rp_sched_set() reduces it modulo the tick. */
int64_t rp_sched_phase_for(const char *name, int64_t window_ms);

/*
 * Replace the metric set. The first call anchors the grid at now + phase_ms and makes
 * every metric due there. Later calls keep the deadline of each key whose interval did
 * not change; new or changed metrics become due at the next tick-grid point >= now.
 * keys are borrowed and must stay valid until the next rp_sched_set() or rp_sched_fini().
 */
void rp_sched_set(rp_sched *s, int64_t now, int64_t phase_ms, const char *const *keys,
                  const int64_t *intervals_ms, size_t n);

/* Where a schedule taken over from another collector resumes (ms, the same clock): that
 * collector fetched nothing at or after `after`; when has_grid, `grid` is a point of its
 * tick grid. */
typedef struct rp_sched_resume {
    int64_t after;
    int64_t grid;
    bool has_grid;
} rp_sched_resume;

/*
 * Re-anchor a schedule that has not fired yet so that it continues the previous
 * collector's: every metric due at the first grid point at or after r->after (without a
 * grid: half a tick after it), or at `now` when that is past. Either way the first fetch
 * comes at least a tick (half a tick) after the previous collector's last one.
 */
void rp_sched_resume_at(rp_sched *s, int64_t now, const rp_sched_resume *r);

/* Earliest deadline, or RP_SCHED_NEVER when there is nothing to run. */
int64_t rp_sched_next(const rp_sched *s);

/*
 * Collect the metrics due at `now` into out_idx (room for s->n indexes) and advance their
 * deadlines by whole intervals past now. When busy is true (the previous batch of this
 * source still runs), nothing is collected: the due metrics are skipped and counted.
 * Returns the number of indexes written.
 */
size_t rp_sched_due(rp_sched *s, int64_t now, bool busy, size_t *out_idx);

/* GCD of two positive numbers. */
int64_t rp_sched_gcd(int64_t a, int64_t b);

#endif /* RP_COLLECT_SCHEDULER_H */
