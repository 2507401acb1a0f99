/* SPDX-License-Identifier: PostgreSQL
 *
 * One libpq connection on the loop, from a conn_str to a connected non-blocking PGconn,
 * shared by the source reaper and the PostgreSQL sink:
 *
 *   OFF --connect (after its delay)--> QUEUED --admitted--> RESOLVING
 *   RESOLVING --addresses--> CONNECTING --ok--> UP
 *   RESOLVING/CONNECTING --failure or deadline--> BACKOFF --timer--> QUEUED
 *   UP --rp_pgclient_fail--> BACKOFF;  UP --rp_pgclient_reset--> QUEUED (no backoff)
 *   any --rp_pgclient_close--> CLOSED (handles closing, then the closed callback)
 *
 * An attempt (RESOLVING and CONNECTING) holds a slot of the loop's admission gate
 * (pgio/admit.h) when the owner passes one; QUEUED waits for that slot, and passes
 * straight through without a gate. Host names are resolved with uv_getaddrinfo (libpq
 * would block the loop), the attempt runs PQconnectPoll on socket readiness under
 * connect_timeout_ms (time spent queued does not count), and failures back off with
 * full jitter: the wait is uniform over [backoff_min_ms / 2, b], where b starts at
 * backoff_min_ms and doubles up to backoff_max_ms, so that a fleet that failed together
 * does not come back together (rp_backoff_jittered, shared with the per-metric workers).
 *
 * Everything the owner hears comes through one callback: UP (c->conn is connected and
 * non-blocking: the owner drives it and watches its socket with rp_pgclient_watch), IO
 * (the socket is ready while UP), DOWN (an attempt failed or the owner called
 * rp_pgclient_fail: c->conn is already finished, c->error says why, the next attempt is
 * scheduled). The client never logs: its owner knows what the connection is for.
 * Loop thread only.
 */
#ifndef RP_PGIO_CLIENT_H
#define RP_PGIO_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/compiler.h"
#include "common/tasks.h"
#include "pgio/admit.h"
#include "pgio/pgconn.h"

struct pg_conn;

/* The reconnect policy of every connection pgreaper makes (the client's and the
 * per-metric workers'): 1 s, doubling up to 60 s. The sink passes a lower maximum. */
#define RP_BACKOFF_MIN_MS 1000
#define RP_BACKOFF_MAX_MS 60000

/* The backoff that follows cur: doubled, at most max. */
static inline int rp_backoff_next(int cur, int max)
{
    return cur > max / 2 ? max : cur * 2;
}

/* The next pseudo-random number of *state (xorshift64*; *state must not be 0). */
static inline uint64_t rp_backoff_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ULL;
}

/* How long to wait before the next attempt when the current backoff is b: uniform over
 * [min / 2, b] ("full jitter" with a floor, so no retry comes at once). */
static inline int rp_backoff_jittered(int b, int min, uint64_t *rng)
{
    int lo = min / 2 < b ? min / 2 : b;
    return lo + (int)(rp_backoff_rand(rng) % (uint64_t)(b - lo + 1));
}

typedef enum rp_pgclient_state {
    RP_PGCLIENT_OFF = 0,    /* created; waits for rp_pgclient_connect (and its delay) */
    RP_PGCLIENT_QUEUED,     /* waits for a slot of the admission gate */
    RP_PGCLIENT_RESOLVING,  /* waits for uv_getaddrinfo of hosts[resolve_idx]; deadline */
    RP_PGCLIENT_CONNECTING, /* waits for the socket as PQconnectPoll asks; deadline */
    RP_PGCLIENT_UP,         /* connected: the owner's */
    RP_PGCLIENT_BACKOFF,    /* waits to try again */
    RP_PGCLIENT_CLOSED,     /* rp_pgclient_close was called */
} rp_pgclient_state;

typedef enum rp_pgclient_event {
    RP_PGCLIENT_EV_UP,   /* connected */
    RP_PGCLIENT_EV_IO,   /* socket ready while UP: io_events, io_error */
    RP_PGCLIENT_EV_DOWN, /* attempt failed or connection given up: error; backing off */
} rp_pgclient_event;

typedef void (*rp_pgclient_cb)(void *owner, rp_pgclient_event ev);

typedef struct rp_pgclient_opts {
    const char *application_name; /* a string literal, unless the conn_str sets one */
    int connect_timeout_ms;       /* for resolving and for connecting */
    int backoff_min_ms;
    int backoff_max_ms;
    uint64_t jitter_seed; /* e.g. a hash of the owner's name */
    rp_task *task;        /* NULL, or a task whose state follows the client's until UP */
    rp_admit *admit;      /* NULL, or the gate every attempt passes (borrowed) */
    bool admit_first;     /* jump the gate's queue (the sink) */
} rp_pgclient_opts;

typedef struct rp_pgclient {
    rp_pgclient_state state;
    struct pg_conn *conn; /* non-NULL in CONNECTING and UP */
    int io_events;        /* of the last EV_IO: UV_READABLE | UV_WRITABLE */
    bool io_error;        /* ... and whether the poll reported an error */
    char error[256];      /* why the last attempt failed or the connection was given up */
    bool ever_up;         /* connected at least once */
    int retry_in_ms;      /* the backoff scheduled by the last DOWN */

    /* private */
    uv_loop_t *loop;
    rp_pgclient_opts opts;
    rp_pgclient_cb cb;
    void *owner;
    char *conn_str; /* owned; holds the password: used to connect, never shown */
    rp_pgconn_params params;
    bool params_loaded;
    size_t resolve_idx;
    uv_getaddrinfo_t *resolver; /* owned while a lookup runs (on_resolved frees it) */
    rp_pgconn_watch watch;
    uv_timer_t timer; /* resolve and connect deadline, backoff */
    int backoff_ms;
    uint64_t rng;
    rp_admit_waiter waiter;
    unsigned pending_closes;
    void (*closed_cb)(void *owner);
} rp_pgclient;

/* Set up c (its memory is the owner's and must stay put). conn_str is copied. Nothing
 * happens until rp_pgclient_connect. */
void rp_pgclient_init(rp_pgclient *c, uv_loop_t *loop, const char *conn_str,
                      const rp_pgclient_opts *opts, rp_pgclient_cb cb, void *owner);
/* Start connecting now (from OFF, or cutting a BACKOFF short). */
void rp_pgclient_connect(rp_pgclient *c);
/* From OFF: start connecting after delay_ms (a fleet spreads its first attempts). */
void rp_pgclient_connect_after(rp_pgclient *c, uint64_t delay_ms);
/* Watch the socket while UP: events are UV_READABLE and/or UV_WRITABLE. 0 or -errno. */
RP_NODISCARD int rp_pgclient_watch(rp_pgclient *c, int events);
/* The owner gives the connection up (lost, broken, timed out): why (NULL: libpq's error)
 * goes to c->error, the connection is finished, a retry is scheduled, and EV_DOWN is
 * delivered before this returns. */
void rp_pgclient_fail(rp_pgclient *c, const char *why);
/* Finish the connection and connect again at once, without a DOWN event or a backoff. */
void rp_pgclient_reset(rp_pgclient *c);
/* The connection proved usable: the next backoff starts from the minimum again. */
void rp_pgclient_settled(rp_pgclient *c);
/* libpq's current error (passwords scrubbed, no trailing newline) into c->error. */
const char *rp_pgclient_conn_error(rp_pgclient *c);
/* "queued", "resolving", "connecting", "up", "backoff", ... */
const char *rp_pgclient_state_name(const rp_pgclient *c);
/* Finish the connection, cancel the lookup, close the handles; closed_cb(owner) runs
 * when all are closed (never from within this call). No more events after this. */
void rp_pgclient_close(rp_pgclient *c, void (*closed_cb)(void *owner));

#endif /* RP_PGIO_CLIENT_H */
