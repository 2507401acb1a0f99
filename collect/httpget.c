/* SPDX-License-Identifier: PostgreSQL
 *
 * libcurl multi on libuv. See httpget.h.
 */
#include "collect/httpget.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "common/mem.h"

struct rp_httpget {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    int running;
    rp_httpget_req *reqs; /* in flight, a list for close */
};

typedef struct sockctx {
    uv_poll_t poll;
    curl_socket_t fd;
    rp_httpget *h;
} sockctx;

struct rp_httpget_req {
    rp_httpget *h;
    CURL *easy;
    struct curl_slist *headers;
    rp_buf body;
    size_t max;
    bool over;
    rp_httpget_done_cb done;
    void *arg;
    rp_httpget_req *prev, *next;
    char errbuf[CURL_ERROR_SIZE];
};

static void free_req(rp_httpget_req *r)
{
    rp_httpget *h = r->h;
    if (r->prev)
        r->prev->next = r->next;
    else
        h->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    curl_multi_remove_handle(h->multi, r->easy);
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    rp_buf_fini(&r->body);
    rp_free(r);
}

static void finish(rp_httpget_req *r, CURLcode res)
{
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    char err[CURL_ERROR_SIZE + 64];
    const char *why = NULL;
    if (r->over || res == CURLE_FILESIZE_EXCEEDED) {
        snprintf(err, sizeof(err), "response body over %zu bytes", r->max);
        why = err;
    } else if (res != CURLE_OK) {
        snprintf(err, sizeof(err), "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(res));
        why = err;
    } else if (status < 200 || status >= 300) {
        snprintf(err, sizeof(err), "HTTP status %ld", status);
        why = err;
    }
    rp_httpget_done_cb done = r->done;
    void *arg = r->arg;
    rp_buf body = r->body;
    r->body = (rp_buf)RP_BUF_INIT;
    free_req(r);
    done(arg, body.data ? body.data : "", body.len, why);
    rp_buf_fini(&body);
}

static void check_done(rp_httpget *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        rp_httpget_req *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        finish(r, msg->data.result);
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sockctx *sc = p->data;
    rp_httpget *h = sc->h; /* sc may be gone after the action */
    int flags = status < 0 ? CURL_CSELECT_ERR : 0;
    flags |= (events & UV_READABLE ? CURL_CSELECT_IN : 0) |
             (events & UV_WRITABLE ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(h->multi, sc->fd, flags, &h->running);
    check_done(h);
}

static void on_timer(uv_timer_t *t)
{
    rp_httpget *h = t->data;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &h->running);
    check_done(h);
}

static void free_sockctx(uv_handle_t *handle)
{
    rp_free(handle->data);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    rp_httpget *h = userp;
    sockctx *sc = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            uv_poll_stop(&sc->poll);
            uv_close((uv_handle_t *)&sc->poll, free_sockctx);
            curl_multi_assign(h->multi, s, NULL);
        }
        return 0;
    }
    if (!sc) {
        sc = rp_calloc(1, sizeof(*sc));
        sc->h = h;
        sc->fd = s;
        if (uv_poll_init_socket(h->loop, &sc->poll, s) < 0) {
            rp_free(sc);
            return -1;
        }
        sc->poll.data = sc;
        curl_multi_assign(h->multi, s, sc);
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    return uv_poll_start(&sc->poll, ev, on_poll) < 0 ? -1 : 0;
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    rp_httpget *h = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else /* 0 too goes through the loop: never act from inside libcurl */
        uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    rp_httpget_req *r = userdata;
    size_t n = size * nmemb;
    if (r->body.len + n > r->max) {
        r->over = true;
        return 0; /* aborts the transfer */
    }
    rp_buf_append(&r->body, ptr, n);
    return n;
}

rp_httpget *rp_httpget_create(uv_loop_t *loop)
{
    static bool inited;
    if (!inited) /* before any request, on the loop thread, once */
        curl_global_init(CURL_GLOBAL_DEFAULT);
    inited = true;
    rp_httpget *h = rp_calloc(1, sizeof(*h));
    h->loop = loop;
    h->multi = curl_multi_init();
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return h;
}

static void set_options(rp_httpget_req *r, const char *url, const rp_httpget_opts *o)
{
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)o->max_redirects);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* what libcurl can decode */
    curl_easy_setopt(e, CURLOPT_USERAGENT, "pgreaper");
    if (o->accept) {
        char hdr[256];
        snprintf(hdr, sizeof(hdr), "Accept: %s", o->accept);
        r->headers = curl_slist_append(NULL, hdr);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    }
}

rp_httpget_req *rp_httpget_start(rp_httpget *h, const char *url, const rp_httpget_opts *o,
                                 rp_httpget_done_cb done, void *arg, char *err, size_t errlen)
{
    rp_httpget_req *r = rp_calloc(1, sizeof(*r));
    r->h = h;
    r->max = o->max_bytes;
    r->done = done;
    r->arg = arg;
    r->easy = curl_easy_init();
    r->next = h->reqs;
    if (h->reqs)
        h->reqs->prev = r;
    h->reqs = r;
    set_options(r, url, o);
    CURLMcode mc = curl_multi_add_handle(h->multi, r->easy);
    if (mc != CURLM_OK) {
        snprintf(err, errlen, "%s", curl_multi_strerror(mc));
        free_req(r);
        return NULL;
    }
    return r;
}

void rp_httpget_cancel(rp_httpget_req *r)
{
    if (r)
        free_req(r);
}

static void on_closed(uv_handle_t *t)
{
    rp_free(t->data);
}

void rp_httpget_close(rp_httpget *h)
{
    if (!h)
        return;
    while (h->reqs)
        free_req(h->reqs);
    curl_multi_cleanup(h->multi);
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_closed);
}
