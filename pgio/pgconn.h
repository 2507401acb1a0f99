/* SPDX-License-Identifier: PostgreSQL
 *
 * Connection parameters for non-blocking libpq connections on the loop: the conn_str
 * split by PQconninfoParse, the host list, and the addresses resolved for it with
 * uv_getaddrinfo, so that PQconnectStartParams never resolves a name itself (which would
 * block the loop). Used by the source reaper and the PostgreSQL sink.
 */
#ifndef RP_PGIO_PGCONN_H
#define RP_PGIO_PGCONN_H

#include <stddef.h>

#include <uv.h>

#include "common/compiler.h"

struct addrinfo;
struct pg_conn;

typedef struct rp_pgconn_params {
    char **kw; /* owned keyword/value pairs with non-empty values */
    char **val;
    size_t nkw;
    char **hosts; /* the host list's entries (may be empty strings) */
    char **addrs; /* resolved hostaddr per host; "" = connect by host (socket, IP) */
    size_t nhosts;
} rp_pgconn_params;

/*
 * Parse conn_str. 0, or -EINVAL with libpq's reason in err (passwords scrubbed).
 * Free with rp_pgconn_params_fini (also after a failure).
 */
RP_NODISCARD int rp_pgconn_params_load(rp_pgconn_params *p, const char *conn_str, char *err,
                                       size_t errlen);
void rp_pgconn_params_fini(rp_pgconn_params *p);
const char *rp_pgconn_param(const rp_pgconn_params *p, const char *key);

/* Index of the first host at or after `from` that needs a DNS lookup, or nhosts. */
size_t rp_pgconn_next_lookup(const rp_pgconn_params *p, size_t from);
/* Record the first address of res (IPv4 or IPv6) for host idx. */
void rp_pgconn_set_addr(rp_pgconn_params *p, size_t idx, const struct addrinfo *res);

/*
 * PQconnectStartParams with the resolved addresses as hostaddr, application_name (unless
 * the conn_str sets one) and client_encoding UTF8 (unless set); server notices go to the
 * debug log. application_name must be a string literal (it labels the notices). Returns
 * the new PGconn (check PQstatus), or NULL when out of memory.
 */
struct pg_conn *rp_pgconn_start(const rp_pgconn_params *p, const char *application_name);

/* PQerrorMessage(conn) without its trailing newline and with conn_str's passwords
 * scrubbed, into out. Returns out. */
const char *rp_pgconn_error(const struct pg_conn *conn, const char *conn_str, char *out,
                            size_t len);

/*
 * The poll handle on a libpq connection's socket, for the source reaper and the sink.
 * libpq may switch sockets while connecting (several hosts), so the handle is re-created
 * when the socket changes; uv_poll_start is called only when the events change. A handle
 * that is replaced or stopped is closed asynchronously: *pending is incremented, and the
 * owner's closed_cb must rp_free() the handle (its data is the owner) and decrement it.
 */
typedef struct rp_pgconn_watch {
    uv_loop_t *loop;
    uv_poll_cb cb;
    uv_close_cb closed_cb;
    void *data;        /* each handle's data: the owner */
    unsigned *pending; /* the owner's count of closes in flight */
    uv_poll_t *poll;   /* NULL when not watching */
    int fd;
    int events;
} rp_pgconn_watch;

void rp_pgconn_watch_init(rp_pgconn_watch *w, uv_loop_t *loop, uv_poll_cb cb, uv_close_cb closed_cb,
                          void *data, unsigned *pending);
/* Watch conn's socket for events. 0 or negative errno. */
RP_NODISCARD int rp_pgconn_watch_set(rp_pgconn_watch *w, const struct pg_conn *conn, int events);
/* Stop watching (before PQfinish closes the socket). */
void rp_pgconn_watch_stop(rp_pgconn_watch *w);

/* A server_version_num as people write it: 150004 -> "15.4", 90624 -> "9.6.24". */
const char *rp_pgconn_version_str(int version_num, char *out, size_t len);

/* What a PQconnectPoll status waits for: UV_READABLE or UV_WRITABLE; 0 when connected;
 * -1 when the attempt failed. */
int rp_pgconn_poll_wait(int polling_status);

#endif /* RP_PGIO_PGCONN_H */
