/* SPDX-License-Identifier: PostgreSQL
 *
 * The connection client: see client.h. The uv callbacks translate their event and call
 * step(); only set_state() writes c->state.
 */
#include "pgio/client.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/log.h"
#include "common/mem.h"

typedef enum ev {
    EV_RESOLVED, /* the lookup finished (status in resolve_status) */
    EV_SOCKET,   /* socket readiness */
    EV_TIMER,    /* deadline or end of backoff */
} ev;

static const char *const state_names[] = {"idle", "queued",  "resolving", "connecting",
                                          "up",   "backoff", "closed"};

static void step(rp_pgclient *c, ev e, int status);
static void enter_resolving(rp_pgclient *c);

static bool in_attempt(rp_pgclient_state s)
{
    return s == RP_PGCLIENT_RESOLVING || s == RP_PGCLIENT_CONNECTING;
}

/* Also where the admission slot is given back: when an attempt ends, whatever way, or a
 * queued client goes elsewhere (closed). */
static void set_state(rp_pgclient *c, rp_pgclient_state next)
{
    if (c->opts.admit && !in_attempt(next) && next != RP_PGCLIENT_QUEUED)
        rp_admit_release(c->opts.admit, &c->waiter);
    c->state = next;
    uv_timer_stop(&c->timer);
    if (c->opts.task && next != RP_PGCLIENT_UP && next != RP_PGCLIENT_CLOSED)
        rp_task_set_state(c->opts.task, state_names[next]);
}

static void on_timer(uv_timer_t *t);

static void arm(rp_pgclient *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void maybe_closed(rp_pgclient *c)
{
    if (c->state == RP_PGCLIENT_CLOSED && c->pending_closes == 0 && c->closed_cb)
        c->closed_cb(c->owner);
}

/*-------------------------------------------------------------------------
 * uv callbacks: translate and step
 *-------------------------------------------------------------------------
 */

static void on_timer(uv_timer_t *t)
{
    step(t->data, EV_TIMER, 0);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    rp_pgclient *c = h->data;
    c->io_events = events;
    c->io_error = status < 0;
    step(c, EV_SOCKET, status);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    rp_pgclient *c = req->data;
    rp_free(req);
    c->resolver = NULL;
    if (c->state == RP_PGCLIENT_CLOSED) { /* the parameters are gone */
        uv_freeaddrinfo(res);
        c->pending_closes--;
        maybe_closed(c);
        return;
    }
    if (status == 0)
        rp_pgconn_set_addr(&c->params, c->resolve_idx, res);
    uv_freeaddrinfo(res);
    step(c, EV_RESOLVED, status);
}

static void on_handle_closed(uv_handle_t *h)
{
    rp_pgclient *c = h->data;
    if (h != (uv_handle_t *)&c->timer)
        rp_free(h); /* a replaced poll handle */
    c->pending_closes--;
    maybe_closed(c);
}

/*-------------------------------------------------------------------------
 * Transitions
 *-------------------------------------------------------------------------
 */

static void finish_conn(rp_pgclient *c)
{
    rp_pgconn_watch_stop(&c->watch);
    if (c->conn)
        PQfinish(c->conn);
    c->conn = NULL;
}

/* Give the attempt or the connection up: schedule the next try, then tell the owner. */
static void enter_backoff(rp_pgclient *c, const char *why)
{
    if (why != c->error)
        snprintf(c->error, sizeof(c->error), "%s", why ? why : "unknown error");
    finish_conn(c);
    set_state(c, RP_PGCLIENT_BACKOFF);
    c->resolve_idx = 0;
    int b = c->backoff_ms;
    c->retry_in_ms = rp_backoff_jittered(b, c->opts.backoff_min_ms, &c->rng);
    arm(c, (uint64_t)c->retry_in_ms);
    c->backoff_ms = rp_backoff_next(b, c->opts.backoff_max_ms);
    c->cb(c->owner, RP_PGCLIENT_EV_DOWN);
}

static void enter_connecting(rp_pgclient *c)
{
    set_state(c, RP_PGCLIENT_CONNECTING);
    c->conn = rp_pgconn_start(&c->params, c->opts.application_name);
    if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD) {
        enter_backoff(c, c->conn ? rp_pgclient_conn_error(c) : "out of memory");
        return;
    }
    /* libpq: behave as if PQconnectPoll had returned PGRES_POLLING_WRITING. */
    if (rp_pgconn_watch_set(&c->watch, c->conn, UV_WRITABLE) < 0) {
        enter_backoff(c, "could not watch the connection's socket");
        return;
    }
    arm(c, (uint64_t)c->opts.connect_timeout_ms);
}

static void drop_params(rp_pgclient *c)
{
    if (c->params_loaded)
        rp_pgconn_params_fini(&c->params);
    c->params_loaded = false;
}

static bool load_params(rp_pgclient *c)
{
    if (c->params_loaded)
        return true;
    char err[200];
    if (rp_pgconn_params_load(&c->params, c->conn_str, err, sizeof(err)) < 0) {
        rp_pgconn_params_fini(&c->params);
        snprintf(c->error, sizeof(c->error), "invalid conn_str: %s", err);
        return false;
    }
    c->params_loaded = true;
    return true;
}

static void enter_resolving(rp_pgclient *c)
{
    set_state(c, RP_PGCLIENT_RESOLVING);
    if (!load_params(c)) {
        enter_backoff(c, c->error);
        return;
    }
    c->resolve_idx = rp_pgconn_next_lookup(&c->params, c->resolve_idx);
    if (c->resolve_idx >= c->params.nhosts) {
        enter_connecting(c);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    c->resolver = rp_malloc(sizeof(*c->resolver));
    c->resolver->data = c;
    const char *host = c->params.hosts[c->resolve_idx];
    int rc = uv_getaddrinfo(c->loop, c->resolver, on_resolved, host, NULL, &hints);
    if (rc < 0) {
        rp_free(c->resolver);
        c->resolver = NULL;
        snprintf(c->error, sizeof(c->error), "could not resolve host \"%s\": %s", host,
                 uv_strerror(rc));
        enter_backoff(c, c->error);
        return;
    }
    arm(c, (uint64_t)c->opts.connect_timeout_ms);
}

static void on_granted(rp_admit_waiter *w)
{
    enter_resolving(rp_container_of(w, rp_pgclient, waiter));
}

/* A new attempt: through the admission gate when there is one. */
static void begin_attempt(rp_pgclient *c)
{
    set_state(c, RP_PGCLIENT_QUEUED);
    if (c->opts.admit)
        rp_admit_release(c->opts.admit, &c->waiter); /* a reset while queued or attempting */
    if (!c->opts.admit || rp_admit_acquire(c->opts.admit, &c->waiter, c->opts.admit_first))
        enter_resolving(c);
}

static void connected(rp_pgclient *c)
{
    if (PQsetnonblocking(c->conn, 1) != 0) {
        enter_backoff(c, rp_pgclient_conn_error(c));
        return;
    }
    set_state(c, RP_PGCLIENT_UP);
    c->ever_up = true;
    c->error[0] = '\0';
    drop_params(c); /* parsed again for the next attempt: a fleet keeps only conn_str */
    c->cb(c->owner, RP_PGCLIENT_EV_UP);
}

/*-------------------------------------------------------------------------
 * One step per state
 *-------------------------------------------------------------------------
 */

static void step_resolving(rp_pgclient *c, ev e, int status)
{
    if (e == EV_TIMER) {
        uv_cancel((uv_req_t *)c->resolver); /* on_resolved runs with UV_EAI_CANCELED */
        return;
    }
    if (e != EV_RESOLVED)
        return;
    if (status < 0) {
        snprintf(c->error, sizeof(c->error), "could not resolve host \"%s\": %s",
                 c->params.hosts[c->resolve_idx], uv_strerror(status));
        enter_backoff(c, c->error);
        return;
    }
    c->resolve_idx++;
    enter_resolving(c);
}

static void step_connecting(rp_pgclient *c, ev e)
{
    if (e == EV_TIMER) {
        snprintf(c->error, sizeof(c->error), "timeout expired after %d ms",
                 c->opts.connect_timeout_ms);
        enter_backoff(c, c->error);
        return;
    }
    int wait = rp_pgconn_poll_wait(PQconnectPoll(c->conn));
    if (wait == 0)
        connected(c);
    else if (wait < 0)
        enter_backoff(c, rp_pgclient_conn_error(c));
    else if (rp_pgconn_watch_set(&c->watch, c->conn, wait) < 0)
        enter_backoff(c, "could not watch the connection's socket");
}

static void step(rp_pgclient *c, ev e, int status)
{
    switch (c->state) {
    case RP_PGCLIENT_RESOLVING:
        step_resolving(c, e, status);
        break;
    case RP_PGCLIENT_CONNECTING:
        if (e != EV_RESOLVED)
            step_connecting(c, e);
        break;
    case RP_PGCLIENT_UP:
        if (e == EV_SOCKET)
            c->cb(c->owner, RP_PGCLIENT_EV_IO);
        break;
    case RP_PGCLIENT_OFF: /* the delay of rp_pgclient_connect_after */
    case RP_PGCLIENT_BACKOFF:
        if (e == EV_TIMER)
            begin_attempt(c);
        break;
    case RP_PGCLIENT_QUEUED:
    case RP_PGCLIENT_CLOSED:
        break;
    }
}

/*-------------------------------------------------------------------------
 * Interface
 *-------------------------------------------------------------------------
 */

void rp_pgclient_init(rp_pgclient *c, uv_loop_t *loop, const char *conn_str,
                      const rp_pgclient_opts *opts, rp_pgclient_cb cb, void *owner)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->opts = *opts;
    c->cb = cb;
    c->owner = owner;
    c->conn_str = rp_strdup(conn_str);
    c->backoff_ms = opts->backoff_min_ms;
    c->rng = opts->jitter_seed | 1;
    c->waiter.granted = on_granted;
    rp_pgconn_watch_init(&c->watch, loop, on_poll, on_handle_closed, c, &c->pending_closes);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
}

void rp_pgclient_connect(rp_pgclient *c)
{
    if (c->state == RP_PGCLIENT_OFF || c->state == RP_PGCLIENT_BACKOFF)
        begin_attempt(c);
}

void rp_pgclient_connect_after(rp_pgclient *c, uint64_t delay_ms)
{
    if (c->state != RP_PGCLIENT_OFF)
        return;
    if (delay_ms == 0)
        begin_attempt(c);
    else
        arm(c, delay_ms);
}

int rp_pgclient_watch(rp_pgclient *c, int events)
{
    if (c->state != RP_PGCLIENT_UP)
        return -ENOTCONN;
    return rp_pgconn_watch_set(&c->watch, c->conn, events);
}

void rp_pgclient_fail(rp_pgclient *c, const char *why)
{
    if (c->state == RP_PGCLIENT_CLOSED)
        return;
    enter_backoff(c, why ? why : rp_pgclient_conn_error(c));
}

void rp_pgclient_reset(rp_pgclient *c)
{
    if (c->state == RP_PGCLIENT_CLOSED)
        return;
    finish_conn(c);
    c->resolve_idx = 0;
    begin_attempt(c);
}

void rp_pgclient_settled(rp_pgclient *c)
{
    c->backoff_ms = c->opts.backoff_min_ms;
}

const char *rp_pgclient_conn_error(rp_pgclient *c)
{
    if (!c->conn) {
        if (!c->error[0])
            snprintf(c->error, sizeof(c->error), "not connected");
        return c->error;
    }
    return rp_pgconn_error(c->conn, c->conn_str, c->error, sizeof(c->error));
}

const char *rp_pgclient_state_name(const rp_pgclient *c)
{
    return state_names[c->state];
}

void rp_pgclient_close(rp_pgclient *c, void (*closed_cb)(void *owner))
{
    rp_assert(c->state != RP_PGCLIENT_CLOSED);
    finish_conn(c);
    set_state(c, RP_PGCLIENT_CLOSED);
    c->closed_cb = closed_cb;
    c->pending_closes++;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (c->resolver) {
        c->pending_closes++;
        uv_cancel((uv_req_t *)c->resolver);
    }
    drop_params(c);
    rp_free(c->conn_str);
    c->conn_str = NULL;
}
