/* SPDX-License-Identifier: PostgreSQL
 *
 * The scheduler on a fake clock: exact firing ticks, no idle wake-ups for coprime
 * intervals, no drift with slow batches, skipped ticks counted, plan updates.
 */
#include <stdio.h>

#include "collect/scheduler.h"
#include "tests/lib/tap.h"

/* Drive the schedule like the source does: wake at rp_sched_next(), run due metrics. */
typedef struct sim {
    rp_sched s;
    int64_t now;
    unsigned wakeups;
    unsigned fired[8];
    int64_t last_fire[8];
} sim;

static void sim_step(sim *m, int64_t busy_ms)
{
    size_t idx[8];
    m->now = rp_sched_next(&m->s);
    m->wakeups++;
    size_t n = rp_sched_due(&m->s, m->now, false, idx);
    for (size_t i = 0; i < n; i++) {
        m->fired[idx[i]]++;
        m->last_fire[idx[i]] = m->now;
    }
    (void)busy_ms;
}

static void test_intervals_123(void)
{
    sim m = {0};
    const char *keys[] = {"a", "b", "c"};
    int64_t iv[] = {1000, 2000, 3000};
    rp_sched_init(&m.s);
    rp_sched_set(&m.s, 0, 0, keys, iv, 3);
    is_int(m.s.tick_ms, 1000, "GCD of 1, 2 and 3 s is 1 s");
    /* Ticks at t = 0..11 s: a fires 12x, b at even seconds 6x, c at multiples of 3 4x. */
    while (rp_sched_next(&m.s) <= 11000)
        sim_step(&m, 0);
    is_int(m.fired[0], 12, "1 s metric fired at every tick of 12 s");
    is_int(m.fired[1], 6, "2 s metric fired at t = 0, 2, ..., 10");
    is_int(m.fired[2], 4, "3 s metric fired at t = 0, 3, 6, 9");
    is_int(m.last_fire[1], 10000, "2 s metric last fired exactly at 10 s");
    is_int(m.last_fire[2], 9000, "3 s metric last fired exactly at 9 s");
    is_int(m.wakeups, 12, "one wake-up per second, none extra");
    rp_sched_fini(&m.s);
}

static void test_coprime(void)
{
    sim m = {0};
    const char *keys[] = {"seven", "thirteen"};
    int64_t iv[] = {7000, 13000};
    rp_sched_init(&m.s);
    rp_sched_set(&m.s, 0, 0, keys, iv, 2);
    is_int(m.s.tick_ms, 1000, "GCD of 7 and 13 s is 1 s");
    while (rp_sched_next(&m.s) < 91000)
        sim_step(&m, 0);
    /* 0..90 s: 7 s fires 13x (0,7,...,84), 13 s fires 7x (0,...,78); both at 0 → 19 wake-ups. */
    is_int(m.fired[0], 13, "7 s metric fired 13 times in 91 s");
    is_int(m.fired[1], 7, "13 s metric fired 7 times in 91 s");
    is_int(m.wakeups, 19, "only 19 wake-ups in 91 s, not 91");
    rp_sched_fini(&m.s);
}

static void test_no_drift(void)
{
    rp_sched s;
    const char *keys[] = {"m"};
    int64_t iv[] = {1000};
    size_t idx[1];
    rp_sched_init(&s);
    rp_sched_set(&s, 5, 0, keys, iv, 1);
    int64_t now = 0;
    for (int i = 0; i < 1000; i++) {
        now = rp_sched_next(&s) + 3; /* timer fires 3 ms late */
        (void)rp_sched_due(&s, now, false, idx);
        now += 400; /* and the query takes 400 ms */
    }
    is_int(rp_sched_next(&s), 5 + 1000 * 1000, "after 1000 slow ticks the deadline is exact");
    is_int(s.entries[0].fired, 1000, "1000 fetches, none lost");
    is_int(s.entries[0].skipped, 0, "nothing skipped while queries fit the interval");
    rp_sched_fini(&s);
}

static void test_busy_skips(void)
{
    rp_sched s;
    const char *keys[] = {"m"};
    int64_t iv[] = {1000};
    size_t idx[1];
    rp_sched_init(&s);
    rp_sched_set(&s, 0, 0, keys, iv, 1);
    is_int(rp_sched_due(&s, 0, false, idx), 1, "first tick runs");
    is_int(rp_sched_due(&s, 1000, true, idx), 0, "tick while busy runs nothing");
    is_int(s.skipped_ticks, 1, "the busy tick is counted");
    is_int(rp_sched_next(&s), 2000, "and not queued: next deadline is the following tick");
    is_int(rp_sched_due(&s, 4500, false, idx), 1, "late by 2.5 intervals: runs once");
    is_int(s.entries[0].skipped, 3, "the missed intervals are counted as skipped");
    is_int(rp_sched_next(&s), 5000, "and the grid is kept");
    rp_sched_fini(&s);
}

static void test_phase_and_update(void)
{
    rp_sched s;
    const char *k1[] = {"a", "b"};
    int64_t iv1[] = {10000, 60000};
    rp_sched_init(&s);
    rp_sched_set(&s, 1000, 25000, k1, iv1, 2);
    is_int(s.anchor, 1000 + 5000, "phase is reduced modulo the 10 s tick");
    size_t idx[2];
    (void)rp_sched_due(&s, 6000, false, idx);
    /* keep a (same interval), change b, add c */
    const char *k2[] = {"a", "b", "c"};
    int64_t iv2[] = {10000, 30000, 20000};
    rp_sched_set(&s, 7000, 0, k2, iv2, 3);
    is_int(s.entries[0].next_due, 16000, "unchanged metric keeps its deadline");
    is_int(s.entries[1].next_due, 16000, "changed metric is due at the next tick-grid point");
    is_int(s.entries[2].next_due, 16000, "new metric is due at the next tick-grid point");
    is_int(s.tick_ms, 10000, "tick is the GCD of the new set");
    ok(rp_sched_phase_for("db1", 0) == rp_sched_phase_for("db1", 0), "phase is stable for a name");
    ok(rp_sched_phase_for("db1", 0) != rp_sched_phase_for("db2", 0), "phase differs between names");
    bool within = true, beyond = false;
    for (int i = 0; i < 200; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%d", i);
        within = within && rp_sched_phase_for(name, 0) < RP_SCHED_PHASE_MS;
        beyond = beyond || rp_sched_phase_for(name, 60000) >= RP_SCHED_PHASE_MS;
    }
    ok(within && beyond, "phases within the default window, or over a fleet's wider one");
    rp_sched_set(&s, 8000, 0, NULL, NULL, 0);
    is_int(rp_sched_next(&s), RP_SCHED_NEVER, "empty schedule never wakes");
    rp_sched_fini(&s);
}

/* A schedule taken over from another collector continues its grid, never within a tick
 * of its last fetch. */
static void test_resume(void)
{
    rp_sched s;
    const char *k[] = {"a", "b"};
    int64_t iv[] = {1000, 5000};
    rp_sched_init(&s);
    rp_sched_set(&s, 100000, 300, k, iv, 2);
    rp_sched_resume at = {.after = 103020, .grid = 90250, .has_grid = true};
    rp_sched_resume_at(&s, 100000, &at);
    is_int(rp_sched_next(&s), 103250, "first fetch at the old grid's first point after the lease");
    is_int(s.entries[1].next_due, 103250, "every metric is due there");
    at.grid = 110250; /* a grid point reported ahead of the expiry */
    rp_sched_resume_at(&s, 100000, &at);
    is_int(rp_sched_next(&s), 103250, "a later grid point counts back to the same place");
    at.after = 103250;
    rp_sched_resume_at(&s, 100000, &at);
    is_int(rp_sched_next(&s), 103250, "a grid point on the expiry itself is allowed");
    at.has_grid = false;
    rp_sched_resume_at(&s, 100000, &at);
    is_int(rp_sched_next(&s), 103750, "without a grid: half a tick after the expiry");
    at.after = 90000;
    rp_sched_resume_at(&s, 100000, &at);
    is_int(rp_sched_next(&s), 100000, "a lease that ran out long ago: at once");
    size_t idx[2];
    is_int((int64_t)rp_sched_due(&s, 100000, false, idx), 2, "both fire");
    is_int(rp_sched_next(&s), 101000, "then on the grid from there");
    rp_sched_fini(&s);
}

int main(void)
{
    test_intervals_123();
    test_coprime();
    test_no_drift();
    test_busy_skips();
    test_phase_and_update();
    test_resume();
    return done_testing();
}
