/* SPDX-License-Identifier: PostgreSQL
 *
 * Connection admission: at most `limit` connection attempts (resolve + connect +
 * authenticate) in flight on one loop, whoever makes them. A thousand sources started
 * together would otherwise fork a thousand backends at the same instant, time out in
 * the server's queue and retry in a storm; through the gate they connect `limit` at a
 * time, each attempt on its own full connect timeout. The sink asks with `first` set so
 * that a queue of sources never delays the writes.
 *
 * A waiter is embedded in its owner (a pgio client). rp_admit_acquire either grants a
 * slot at once or queues the waiter; a queued waiter's grant callback runs later from the
 * gate's own idle pass (never from within acquire or release, so that a chain of
 * attempts failing at once does not recurse). Release a granted slot when the attempt
 * ends, whatever way; cancel a queued one by releasing it too. Loop thread only.
 */
#ifndef RP_PGIO_ADMIT_H
#define RP_PGIO_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

typedef struct rp_admit_waiter rp_admit_waiter;
typedef void (*rp_admit_cb)(rp_admit_waiter *w);

struct rp_admit_waiter {
    rp_admit_waiter *prev, *next; /* in the queue while queued */
    rp_admit_cb granted;          /* runs once the slot is the waiter's */
    bool queued;
    bool holding;
};

typedef struct rp_admit {
    int limit;  /* attempts in flight at most; <= 0: no bound */
    int active; /* slots granted and not released */
    rp_admit_waiter *head, *tail;
    size_t nqueued;
    uint64_t granted_total; /* counters for the stats line */
    uint64_t queued_total;
    size_t max_queued;
    uv_idle_t idle; /* grants queued waiters while slots are free */
    bool closing;
} rp_admit;

/* limit <= 0: every attempt is admitted at once (the queue is never used). */
void rp_admit_init(rp_admit *g, uv_loop_t *loop, int limit);
/* Change the bound (a reload): more slots are granted on the next idle pass. */
void rp_admit_set_limit(rp_admit *g, int limit);
/* Close the idle handle: nothing is granted after this (releases are still accepted). */
void rp_admit_close(rp_admit *g);

/* A slot for w: true if granted now (w->granted is not called), false if queued (it will
 * be). first: queue ahead of the others. w must be neither queued nor holding. */
bool rp_admit_acquire(rp_admit *g, rp_admit_waiter *w, bool first);
/* Give w's slot back, or take w out of the queue; nothing if it has neither. */
void rp_admit_release(rp_admit *g, rp_admit_waiter *w);

#endif /* RP_PGIO_ADMIT_H */
