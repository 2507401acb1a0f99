/* SPDX-License-Identifier: PostgreSQL
 *
 * The connection admission gate on a real libuv loop: the bound holds, the queue is
 * first in first out with the sink's waiters ahead, grants come from the loop (never
 * from inside a release), a queued waiter can leave, and the backoff jitter stays in
 * its range and spreads.
 */
#include <stdio.h>
#include <string.h>

#include "pgio/admit.h"
#include "pgio/client.h"
#include "tests/lib/tap.h"

typedef struct owner {
    rp_admit_waiter w;
    int id;
} owner;

static int order[16], norder;
static rp_admit *gate;
static bool in_release;
static bool granted_inside_release;

static void on_granted(rp_admit_waiter *w)
{
    owner *o = rp_container_of(w, owner, w);
    granted_inside_release |= in_release;
    order[norder++] = o->id;
}

static void release(owner *o)
{
    in_release = true;
    rp_admit_release(gate, &o->w);
    in_release = false;
}

static void test_gate(uv_loop_t *loop)
{
    rp_admit g;
    gate = &g;
    rp_admit_init(&g, loop, 2);
    owner o[6];
    memset(o, 0, sizeof(o));
    for (int i = 0; i < 6; i++) {
        o[i].id = i;
        o[i].w.granted = on_granted;
    }
    ok(rp_admit_acquire(&g, &o[0].w, false), "first attempt admitted at once");
    ok(rp_admit_acquire(&g, &o[1].w, false), "second attempt admitted at once");
    ok(!rp_admit_acquire(&g, &o[2].w, false), "third waits: the bound is 2");
    ok(!rp_admit_acquire(&g, &o[3].w, false), "fourth waits");
    ok(!rp_admit_acquire(&g, &o[4].w, true), "the sink waits too, but first in line");
    ok(!rp_admit_acquire(&g, &o[5].w, false), "sixth waits");
    is_int(g.nqueued, 4, "four queued");
    release(&o[3]); /* a queued source removed by a reload */
    is_int(g.nqueued, 3, "a queued waiter can leave");
    release(&o[0]);
    is_int(norder, 0, "no grant inside a release");
    uv_run(loop, UV_RUN_NOWAIT);
    is_int(norder, 1, "one slot freed, one grant on the next loop pass");
    is_int(order[0], 4, "the sink's waiter went first");
    is_int(g.active, 2, "still two in flight");
    release(&o[1]);
    release(&o[4]);
    uv_run(loop, UV_RUN_NOWAIT);
    is_int(norder, 3, "two more granted");
    ok(order[1] == 2 && order[2] == 5, "then first in, first out");
    ok(!granted_inside_release, "grants only from the loop");
    ok(!rp_admit_acquire(&g, &o[0].w, false), "a full gate queues a newcomer");
    rp_admit_set_limit(&g, 3);
    uv_run(loop, UV_RUN_NOWAIT);
    is_int(norder, 4, "raising the bound grants at once");
    for (int i = 0; i < 6; i++)
        release(&o[i]);
    is_int(g.active, 0, "every slot given back");
    is_int((int)g.max_queued, 4, "the deepest queue is kept for the stats");
    rp_admit_close(&g);
    uv_run(loop, UV_RUN_DEFAULT);
}

static void test_unbounded(uv_loop_t *loop)
{
    rp_admit g;
    rp_admit_init(&g, loop, 0);
    owner o[50];
    memset(o, 0, sizeof(o));
    int now = 0;
    for (int i = 0; i < 50; i++)
        now += rp_admit_acquire(&g, &o[i].w, false);
    is_int(now, 50, "limit 0: no bound");
    for (int i = 0; i < 50; i++)
        rp_admit_release(&g, &o[i].w);
    rp_admit_close(&g);
    uv_run(loop, UV_RUN_DEFAULT);
}

static void test_jitter(void)
{
    uint64_t rng = 12345;
    int lo = 1 << 30, hi = 0, buckets[4] = {0};
    for (int i = 0; i < 4000; i++) {
        int d = rp_backoff_jittered(8000, 1000, &rng);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        buckets[(d - 500) * 4 / 7501]++;
    }
    ok(lo >= 500 && hi <= 8000, "waits stay in [min/2, backoff]");
    ok(lo < 700 && hi > 7800, "and cover it");
    ok(buckets[0] > 800 && buckets[3] > 800, "spread evenly, not bunched near the backoff");
    is_int(rp_backoff_jittered(100, 1000, &rng), 100, "a backoff below min/2 is used as is");
}

int main(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    test_gate(&loop);
    test_unbounded(&loop);
    test_jitter();
    uv_loop_close(&loop);
    return done_testing();
}
