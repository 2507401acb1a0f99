/* SPDX-License-Identifier: PostgreSQL
 *
 * Connection parameters and non-blocking connect for libpq on the loop. See pgconn.h.
 */
#include "pgio/pgconn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <libpq-fe.h>
#include <uv.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mem.h"
#include "pgio/connstr.h"

void rp_pgconn_params_fini(rp_pgconn_params *p)
{
    for (size_t i = 0; i < p->nkw; i++) {
        rp_free(p->kw[i]);
        rp_free(p->val[i]);
    }
    for (size_t i = 0; i < p->nhosts; i++) {
        rp_free(p->hosts[i]);
        rp_free(p->addrs[i]);
    }
    rp_free(p->kw);
    rp_free(p->val);
    rp_free(p->hosts);
    rp_free(p->addrs);
    memset(p, 0, sizeof(*p));
}

const char *rp_pgconn_param(const rp_pgconn_params *p, const char *key)
{
    for (size_t i = 0; i < p->nkw; i++) {
        if (strcmp(p->kw[i], key) == 0)
            return p->val[i];
    }
    return NULL;
}

static void split_hosts(rp_pgconn_params *p, const char *host)
{
    const char *s = host ? host : "";
    size_t cap = 0;
    for (;;) {
        size_t n = strcspn(s, ",");
        rp_grow((void **)&p->hosts, &cap, p->nhosts + 1, sizeof(char *));
        p->addrs = rp_reallocarray(p->addrs, cap, sizeof(char *));
        p->hosts[p->nhosts] = rp_strndup(s, n);
        p->addrs[p->nhosts] = rp_strdup("");
        p->nhosts++;
        if (s[n] == '\0')
            break;
        s += n + 1;
    }
}

int rp_pgconn_params_load(rp_pgconn_params *p, const char *conn_str, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conn_str, &msg);
    if (!opts) {
        rp_buf b = RP_BUF_INIT;
        rp_connstr_scrub(conn_str, msg ? msg : "out of memory", &b);
        size_t n = b.len;
        while (n > 0 && b.data[n - 1] == '\n')
            b.data[--n] = '\0';
        snprintf(err, errlen, "%s", b.data);
        rp_buf_fini(&b);
        PQfreemem(msg);
        return -EINVAL;
    }
    size_t n = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        n++;
    p->kw = rp_calloc(n + 1, sizeof(char *));
    p->val = rp_calloc(n + 1, sizeof(char *));
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        p->kw[p->nkw] = rp_strdup(o->keyword);
        p->val[p->nkw] = rp_strdup(o->val);
        p->nkw++;
    }
    PQconninfoFree(opts);
    if (!rp_pgconn_param(p, "hostaddr"))
        split_hosts(p, rp_pgconn_param(p, "host"));
    return 0;
}

static bool needs_dns(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (host[0] == '\0' || host[0] == '/' || host[0] == '@')
        return false;
    return inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1;
}

size_t rp_pgconn_next_lookup(const rp_pgconn_params *p, size_t from)
{
    while (from < p->nhosts && !needs_dns(p->hosts[from]))
        from++;
    return from;
}

void rp_pgconn_set_addr(rp_pgconn_params *p, size_t idx, const struct addrinfo *res)
{
    char ip[INET6_ADDRSTRLEN] = "";
    if (!res || idx >= p->nhosts)
        return;
    if (res->ai_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)res->ai_addr, ip, sizeof(ip));
    else if (res->ai_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)res->ai_addr, ip, sizeof(ip));
    rp_free(p->addrs[idx]);
    p->addrs[idx] = rp_strdup(ip);
}

/* The resolved addresses as a hostaddr list, or NULL when none was resolved. */
static char *hostaddr_list(const rp_pgconn_params *p)
{
    bool any = false;
    rp_buf b = RP_BUF_INIT;
    for (size_t i = 0; i < p->nhosts; i++) {
        if (i)
            rp_buf_putc(&b, ',');
        rp_buf_puts(&b, p->addrs[i]);
        any = any || p->addrs[i][0];
    }
    if (!any) {
        rp_buf_fini(&b);
        return NULL;
    }
    return b.data;
}

/* Server notices (e.g. "schema ... already exists, skipping", or RAISE NOTICE in a metric's
 * function) go to the debug log, not raw to stderr as libpq would print them. */
static void on_notice(void *arg, const char *message)
{
    rp_log_at(RP_LOG_DEBUG, NULL, NULL, NULL, "%s: server notice: %s", (const char *)arg, message);
}

PGconn *rp_pgconn_start(const rp_pgconn_params *p, const char *application_name)
{
    const char **kw = rp_calloc(p->nkw + 4, sizeof(char *));
    const char **val = rp_calloc(p->nkw + 4, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; i < p->nkw; i++) {
        kw[n] = p->kw[i];
        val[n++] = p->val[i];
    }
    char *ha = hostaddr_list(p);
    if (ha) {
        kw[n] = "hostaddr";
        val[n++] = ha;
    }
    if (!rp_pgconn_param(p, "application_name")) {
        kw[n] = "application_name";
        val[n++] = application_name;
    }
    if (!rp_pgconn_param(p, "client_encoding")) {
        kw[n] = "client_encoding"; /* measurements are stored and written as UTF-8 */
        val[n++] = "UTF8";
    }
    PGconn *conn = PQconnectStartParams(kw, val, 0);
    if (conn)
        PQsetNoticeProcessor(conn, on_notice, (void *)application_name);
    rp_free(ha); /* libpq copied it */
    rp_free(kw);
    rp_free(val);
    return conn;
}

const char *rp_pgconn_error(const PGconn *conn, const char *conn_str, char *out, size_t len)
{
    rp_buf b = RP_BUF_INIT;
    rp_connstr_scrub(conn_str, conn ? PQerrorMessage(conn) : "no connection", &b);
    snprintf(out, len, "%s", b.data ? b.data : "");
    rp_buf_fini(&b);
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    return out;
}

void rp_pgconn_watch_init(rp_pgconn_watch *w, uv_loop_t *loop, uv_poll_cb cb, uv_close_cb closed_cb,
                          void *data, unsigned *pending)
{
    memset(w, 0, sizeof(*w));
    w->loop = loop;
    w->cb = cb;
    w->closed_cb = closed_cb;
    w->data = data;
    w->pending = pending;
    w->fd = -1;
}

void rp_pgconn_watch_stop(rp_pgconn_watch *w)
{
    if (!w->poll)
        return;
    uv_poll_stop(w->poll);
    (*w->pending)++;
    uv_close((uv_handle_t *)w->poll, w->closed_cb);
    w->poll = NULL;
    w->fd = -1;
    w->events = 0;
}

int rp_pgconn_watch_set(rp_pgconn_watch *w, const PGconn *conn, int events)
{
    int fd = PQsocket(conn);
    if (fd < 0)
        return -EBADF;
    if (w->poll && w->fd != fd)
        rp_pgconn_watch_stop(w);
    if (!w->poll) {
        w->poll = rp_malloc(sizeof(uv_poll_t));
        int rc = uv_poll_init(w->loop, w->poll, fd);
        if (rc < 0) {
            rp_free(w->poll);
            w->poll = NULL;
            return rc;
        }
        w->poll->data = w->data;
        w->fd = fd;
        w->events = 0;
    }
    if (events != w->events) {
        int rc = uv_poll_start(w->poll, events, w->cb);
        if (rc < 0)
            return rc;
        w->events = events;
    }
    return 0;
}

const char *rp_pgconn_version_str(int v, char *out, size_t len)
{
    if (v >= 100000)
        snprintf(out, len, "%d.%d", v / 10000, v % 10000);
    else
        snprintf(out, len, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
    return out;
}

int rp_pgconn_poll_wait(int polling_status)
{
    switch ((PostgresPollingStatusType)polling_status) {
    case PGRES_POLLING_READING:
        return UV_READABLE;
    case PGRES_POLLING_WRITING:
        return UV_WRITABLE;
    case PGRES_POLLING_OK:
        return 0;
    case PGRES_POLLING_FAILED:
    case PGRES_POLLING_ACTIVE:
        break;
    }
    return -1;
}
