/* SPDX-License-Identifier: PostgreSQL
 *
 * Connection admission: see admit.h. The queue is an intrusive doubly linked list, so
 * cancelling a waiter (a source removed by a reload) is O(1).
 */
#include "pgio/admit.h"

#include "common/compiler.h"

static void unlink_waiter(rp_admit *g, rp_admit_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        g->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        g->tail = w->prev;
    w->prev = w->next = NULL;
    w->queued = false;
    g->nqueued--;
}

static void enqueue(rp_admit *g, rp_admit_waiter *w, bool first)
{
    w->queued = true;
    if (first) {
        w->prev = NULL;
        w->next = g->head;
        if (g->head)
            g->head->prev = w;
        else
            g->tail = w;
        g->head = w;
    } else {
        w->next = NULL;
        w->prev = g->tail;
        if (g->tail)
            g->tail->next = w;
        else
            g->head = w;
        g->tail = w;
    }
    g->nqueued++;
    g->queued_total++;
    if (g->nqueued > g->max_queued)
        g->max_queued = g->nqueued;
}

static bool has_room(const rp_admit *g)
{
    return g->limit <= 0 || g->active < g->limit;
}

static void on_idle(uv_idle_t *h);

static void wake(rp_admit *g)
{
    if (g->head && has_room(g) && !g->closing)
        uv_idle_start(&g->idle, on_idle);
}

/* Grant free slots to the head of the queue. A granted callback may release its slot at
 * once (the attempt failed on the spot) or queue again: the loop re-reads the state. */
static void on_idle(uv_idle_t *h)
{
    rp_admit *g = h->data;
    uv_idle_stop(&g->idle);
    while (g->head && has_room(g)) {
        rp_admit_waiter *w = g->head;
        unlink_waiter(g, w);
        w->holding = true;
        g->active++;
        g->granted_total++;
        w->granted(w);
    }
}

void rp_admit_init(rp_admit *g, uv_loop_t *loop, int limit)
{
    *g = (rp_admit){.limit = limit};
    uv_idle_init(loop, &g->idle);
    g->idle.data = g;
}

void rp_admit_set_limit(rp_admit *g, int limit)
{
    g->limit = limit;
    wake(g);
}

void rp_admit_close(rp_admit *g)
{
    g->closing = true;
    uv_close((uv_handle_t *)&g->idle, NULL);
}

bool rp_admit_acquire(rp_admit *g, rp_admit_waiter *w, bool first)
{
    rp_assert(!w->queued && !w->holding);
    if (has_room(g) && (!g->head || first)) {
        w->holding = true;
        g->active++;
        g->granted_total++;
        return true;
    }
    enqueue(g, w, first);
    return false;
}

void rp_admit_release(rp_admit *g, rp_admit_waiter *w)
{
    if (w->queued) {
        unlink_waiter(g, w);
        return;
    }
    if (!w->holding)
        return;
    w->holding = false;
    g->active--;
    wake(g);
}
