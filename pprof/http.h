/* SPDX-License-Identifier: PostgreSQL
 *
 * The /debug/pprof listener: its own TCP listener on the reaper's loop, off unless
 * configured, loopback unless allowed, optional bearer token. Cheap replies (index,
 * cmdline, /debug/vars) are built on the loop; profiles are built and gzip'd on a libuv
 * worker thread and written back from the loop. One request per connection.
 *
 * Endpoints: /debug/pprof/ (index), heap, allocs, goroutine, threadcreate (each with
 * ?debug=1|2 text), profile?seconds=N (CPU), symbol, cmdline; /debug/vars (JSON);
 * /metrics (Prometheus text) when the application gives a writer. A listener can serve
 * /metrics alone (metrics_only).
 */
#ifndef RP_PPROF_HTTP_H
#define RP_PPROF_HTTP_H

#include <stdbool.h>
#include <sys/socket.h>

#include <uv.h>

#include "common/buf.h"
#include "common/compiler.h"

#define RP_HTTP_MAX_CPU_SECONDS 300

/* Append JSON members ("key": value, each followed by ",") describing the daemon. */
typedef void (*rp_http_vars_fn)(void *arg, rp_buf *out);

typedef struct rp_http_opts {
    const char *addr; /* HOST:PORT, [V6]:PORT or :PORT (all interfaces) */
    bool allow_remote;
    const char *token; /* NULL: no token */
    int argc;
    char **argv; /* for /debug/pprof/cmdline; passwords and the token are masked */
    /* Appends arg to out with whatever secrets it holds masked (the application passes
     * its connection-string masker; pprof knows no formats). NULL: argv after a secret
     * flag and the token are masked, the rest shown as is. */
    void (*mask_arg)(const char *arg, rp_buf *out);
    rp_http_vars_fn vars;
    void *vars_arg;
    rp_http_vars_fn metrics; /* appends the Prometheus exposition; NULL: no /metrics */
    void *metrics_arg;
    bool metrics_only; /* serve /metrics and nothing else */
} rp_http_opts;

typedef struct rp_http rp_http;

/*
 * Parse addr into ss; *loopback tells whether it is a loopback address. Hosts must be
 * numeric or "localhost". 0, or -EINVAL with a message in err.
 */
RP_NODISCARD int rp_http_parse_addr(const char *addr, struct sockaddr_storage *ss, bool *loopback,
                                    char *err, size_t errlen);

/* Bind and listen. 0, or -errno with a message in err (nothing is left open). */
RP_NODISCARD int rp_http_start(uv_loop_t *loop, const rp_http_opts *o, rp_http **out, char *err,
                               size_t errlen);
/* The bound port (useful with port 0). */
int rp_http_port(const rp_http *h);
/* Stop listening, drop the connections (waiting for profiles being built), then cb(arg). */
void rp_http_close(rp_http *h, void (*cb)(void *arg), void *arg);

#endif /* RP_PPROF_HTTP_H */
