/* SPDX-License-Identifier: PostgreSQL
 *
 * HTTP GET on the loop: libcurl's multi interface driven by libuv (curl's sockets watched
 * with uv_poll, its timeouts with one uv_timer), so a scrape never blocks the loop and
 * needs no thread (libcurl resolves names on its own resolver thread). Each request has a
 * total timeout, a connect timeout, a cap on the body (bytes past it abort the transfer)
 * and a bound on redirects; only http and https, also when redirected. One rp_httpget
 * per loop. Loop thread only.
 */
#ifndef RP_COLLECT_HTTPGET_H
#define RP_COLLECT_HTTPGET_H

#include <stddef.h>

#include <uv.h>

typedef struct rp_httpget rp_httpget;
typedef struct rp_httpget_req rp_httpget_req;

typedef struct rp_httpget_opts {
    int timeout_ms;         /* the whole transfer */
    int connect_timeout_ms; /* the connection */
    size_t max_bytes;       /* of the body */
    int max_redirects;      /* followed; more is an error */
    const char *accept;     /* the Accept header, or NULL */
} rp_httpget_opts;

/*
 * How a request ended: err is NULL when the server answered 2xx with a body within the
 * cap (body, len: valid during the call), else why not ("HTTP status 404", "response
 * body over 16777216 bytes", libcurl's message for a timeout or too many redirects).
 */
typedef void (*rp_httpget_done_cb)(void *arg, const char *body, size_t len, const char *err);

rp_httpget *rp_httpget_create(uv_loop_t *loop);
/* Cancel what is still running (no callbacks) and free d once its handles are closed. */
void rp_httpget_close(rp_httpget *h);

/* Start GET url (copied). done(arg, ...) runs once, later, on the loop, unless the
 * request is cancelled. NULL (and err filled) when it cannot start. */
rp_httpget_req *rp_httpget_start(rp_httpget *h, const char *url, const rp_httpget_opts *o,
                                 rp_httpget_done_cb done, void *arg, char *err, size_t errlen);
/* Abort a request that has not called back; no callback after this. */
void rp_httpget_cancel(rp_httpget_req *r);

#endif /* RP_COLLECT_HTTPGET_H */
