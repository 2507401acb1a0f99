/* SPDX-License-Identifier: PostgreSQL
 *
 * The pprof HTTP listener: see http.h. Each connection is a small state machine driven
 * by conn_step(); libuv callbacks only record what happened and call it.
 */
#include "pprof/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/tasks.h"
#include "pprof/contention.h"
#include "pprof/cpu.h"
#include "pprof/goroutine.h"
#include "pprof/heap.h"
#include "pprof/httpreq.h"
#include "pprof/pbuild.h"
#include "pprof/sym.h"
#include "pprof/threads.h"

#define BODY_MAX     65536
#define READ_TIMEOUT 10000 /* ms to receive a request */

typedef enum conn_state { C_READ, C_WORK, C_CPU_WAIT, C_WRITE, C_CLOSING } conn_state;

typedef enum job {
    J_NONE,
    J_HEAP,
    J_ALLOCS,
    J_GOROUTINE,
    J_THREADCREATE,
    J_MUTEX,
    J_BLOCK,
    J_CPU_START,
    J_CPU_FINISH,
    J_SYMBOL,
} job;

typedef struct conn {
    struct conn *prev, *next;
    rp_http *srv;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_work_t work;
    uv_write_t wr;
    conn_state state;
    int open_handles;
    bool timer_fired, work_done, written, eof;
    char in[RP_HTTPREQ_MAX_HEAD + BODY_MAX];
    size_t inlen;
    rp_httpreq req;
    job job;
    int debug, seconds, hz, rc;
    const char *name; /* profile name for Content-Disposition */
    int status;
    const char *ctype;
    rp_buf body, head;
} conn;

struct rp_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    rp_http_opts opts;
    char *token;
    char *cmdline; /* NUL-separated, masked */
    size_t cmdline_len;
    conn conns; /* list head */
    size_t nconns;
    bool closing, listener_closed;
    void (*close_cb)(void *);
    void *close_arg;
    int port;
    rp_task task;
    uint64_t started_ns;
};

static void conn_step(conn *c);
static void maybe_closed(rp_http *h);

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- address ------------------------------------------------------------------------ */

static int split_addr(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon[1] == '\0')
        return -EINVAL;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return -EINVAL;
    size_t n = (size_t)(colon - addr);
    if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']')
        addr++, n -= 2;
    if (n >= hostlen)
        return -EINVAL;
    memcpy(host, addr, n);
    host[n] = '\0';
    *port = (int)p;
    return 0;
}

int rp_http_parse_addr(const char *addr, struct sockaddr_storage *ss, bool *loopback, char *err,
                       size_t errlen)
{
    char host[128];
    int port;
    memset(ss, 0, sizeof(*ss));
    if (split_addr(addr, host, sizeof(host), &port) < 0) {
        snprintf(err, errlen, "invalid pprof address \"%s\": expected HOST:PORT", addr);
        return -EINVAL;
    }
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (host[0] == '\0')
        strcpy(host, "0.0.0.0");
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (uv_ip4_addr(host, port, v4) == 0) {
        *loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    } else if (uv_ip6_addr(host, port, v6) == 0) {
        *loopback = memcmp(&v6->sin6_addr, &in6addr_loopback, sizeof(struct in6_addr)) == 0;
    } else {
        snprintf(err, errlen,
                 "invalid pprof address \"%s\": the host must be an IP address or "
                 "localhost",
                 addr);
        return -EINVAL;
    }
    return 0;
}

/* ---- responses ---------------------------------------------------------------------- */

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

/* Go's pprof errors: text/plain and X-Go-Pprof: 1, so pprof prints the body. */
static void reply_error(conn *c, int status, const char *msg)
{
    c->status = status;
    c->ctype = "text/plain; charset=utf-8";
    c->name = NULL;
    rp_buf_reset(&c->body);
    rp_buf_printf(&c->body, "%s\n", msg);
    c->state = C_WRITE;
}

static void reply(conn *c, const char *ctype)
{
    c->status = 200;
    c->ctype = ctype;
    c->state = C_WRITE;
}

static void build_head(conn *c)
{
    rp_buf *h = &c->head;
    rp_buf_printf(h, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n", c->status,
                  reason(c->status), c->ctype, c->body.len);
    rp_buf_puts(h, "Connection: close\r\nX-Content-Type-Options: nosniff\r\n");
    if (c->status != 200)
        rp_buf_puts(h, "X-Go-Pprof: 1\r\n");
    if (c->status == 401)
        rp_buf_puts(h, "WWW-Authenticate: Bearer realm=\"pgreaper pprof\"\r\n");
    if (c->status == 200 && c->name)
        rp_buf_printf(h, "Content-Disposition: attachment; filename=\"%s\"\r\n", c->name);
    rp_buf_puts(h, "\r\n");
}

/* ---- cheap endpoints, on the loop -------------------------------------------------- */

static const struct {
    const char *name, *desc;
} profiles[] = {
    {"allocs", "A sampling of all past memory allocations (malloc family, whole process)"},
    {"block", "Stack traces that led to blocking on condition variables and contended locks "
              "(--block-profile-rate)"},
    {"cmdline", "The command line invocation of the current program (passwords masked)"},
    {"goroutine", "Stack traces of all OS threads plus one sample per event-loop task. Use "
                  "debug=2 as a query parameter to export in the same format as an unrecovered "
                  "panic."},
    {"heap", "A sampling of memory allocations of live objects."},
    {"mutex", "Stack traces of threads that waited for contended pthread mutexes "
              "(--mutex-profile-fraction)"},
    {"profile", "CPU profile. You can specify the duration in the seconds GET parameter. After "
                "you get the profile file, use the go tool pprof command to investigate it."},
    {"threadcreate", "Stack traces that led to the creation of new OS threads"},
};

static void page_index(conn *c)
{
    rp_buf *b = &c->body;
    rp_buf_puts(b, "<html>\n<head>\n<title>/debug/pprof/</title>\n</head>\n<body>\n"
                   "/debug/pprof/<br>\n<br>\nTypes of profiles available:\n"
                   "<table>\n<thead><td>Count</td><td>Profile</td></thead>\n");
    size_t counts[] = {0, 0, 0, rp_threads_live() + rp_task_count(), 0, 0, 0, rp_threads_created()};
    for (size_t i = 0; i < RP_ARRAY_LEN(profiles); i++)
        rp_buf_printf(b, "<tr><td>%zu</td><td><a href='%s?debug=1'>%s</a></td></tr>\n", counts[i],
                      profiles[i].name, profiles[i].name);
    rp_buf_puts(b, "</table>\n<a href=\"goroutine?debug=2\">full goroutine stack dump</a>\n<br>\n"
                   "<p>\nProfile Descriptions:\n<ul>\n");
    for (size_t i = 0; i < RP_ARRAY_LEN(profiles); i++)
        rp_buf_printf(b, "<li><div class=profile-name>%s: </div> %s</li>\n", profiles[i].name,
                      profiles[i].desc);
    rp_buf_puts(b, "</ul>\n</p>\n</body>\n</html>\n");
    reply(c, "text/html; charset=utf-8");
}

static bool is_secret_flag(const char *a)
{
    return strcmp(a, "--pprof-token") == 0;
}

/* argv joined by NULs with every password and the pprof token masked. */
static void build_cmdline(rp_http *h)
{
    rp_buf b = RP_BUF_INIT;
    for (int i = 0; i < h->opts.argc; i++) {
        const char *a = h->opts.argv[i];
        if (i > 0 && is_secret_flag(h->opts.argv[i - 1]))
            rp_buf_puts(&b, "****");
        else if (strncmp(a, "--pprof-token=", 14) == 0)
            rp_buf_puts(&b, "--pprof-token=****");
        else if (h->opts.mask_arg)
            h->opts.mask_arg(a, &b);
        else
            rp_buf_puts(&b, a);
        if (i + 1 < h->opts.argc)
            rp_buf_putc(&b, '\0');
    }
    h->cmdline_len = b.len;
    h->cmdline = b.data ? b.data : rp_strdup("");
}

static void vars_process(rp_http *h, rp_buf *b)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    rp_buf_printf(b,
                  "\"process\": {\"threads\": %zu, \"threads_created\": %llu, \"tasks\": %zu, "
                  "\"MaxRSS\": %lld, \"cpu_user_seconds\": %.3f, \"cpu_system_seconds\": %.3f, "
                  "\"uptime_seconds\": %.3f},\n",
                  rp_threads_live(), (unsigned long long)rp_threads_created(), rp_task_count(),
                  (long long)ru.ru_maxrss * 1024,
                  (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
                  (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
                  (double)(mono_ns() - h->started_ns) / 1e9);
}

static void page_vars(conn *c)
{
    rp_buf *b = &c->body;
    rp_heap_totals t;
    rp_heap_totals_get(&t);
    struct mallinfo2 mi = mallinfo2();
    uint64_t live = t.heap_bytes;
    rp_buf_puts(b, "{\n\"cmdline\": [");
    for (size_t off = 0, i = 0; off < c->srv->cmdline_len || i == 0; i++) {
        const char *a = c->srv->cmdline + off;
        rp_buf_puts(b, i ? ", " : "");
        rp_buf_json_str(b, a, strlen(a));
        off += strlen(a) + 1;
    }
    rp_buf_printf(b,
                  "],\n\"memstats\": {\"Alloc\": %llu, \"HeapAlloc\": %llu, \"TotalAlloc\": %llu, "
                  "\"Sys\": %llu, \"Mallocs\": %llu, \"Frees\": %llu, \"HeapObjects\": %llu, "
                  "\"HeapSampleRate\": %ld, \"HeapSamplesLive\": %llu, \"HeapProfiled\": %s, "
                  "\"ProfilerHeap\": %llu, \"ProfilerObjects\": %llu, \"GlibcInUse\": %llu},\n",
                  (unsigned long long)live, (unsigned long long)live,
                  (unsigned long long)t.alloc_bytes, (unsigned long long)(mi.arena + mi.hblkhd),
                  (unsigned long long)t.mallocs, (unsigned long long)t.frees,
                  (unsigned long long)t.heap_objects, rp_heap_rate(),
                  (unsigned long long)t.samples_live, rp_heap_available() ? "true" : "false",
                  (unsigned long long)t.prof_bytes, (unsigned long long)t.prof_objects,
                  (unsigned long long)(mi.uordblks + mi.hblkhd));
    vars_process(c->srv, b);
    if (c->srv->opts.vars)
        c->srv->opts.vars(c->srv->opts.vars_arg, b);
    while (b->len && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == ','))
        b->len--;
    rp_buf_puts(b, "\n}\n");
    reply(c, "application/json; charset=utf-8");
}

/* ---- routing -------------------------------------------------------------------------- */

static bool token_ok(conn *c)
{
    const char *want = c->srv->token;
    if (!want)
        return true;
    char given[512] = "";
    const char *auth = c->req.authorization;
    if (strncasecmp(auth, "Bearer ", 7) == 0)
        snprintf(given, sizeof(given), "%s", auth + 7);
    else if (rp_httpreq_param(&c->req, "token", given, sizeof(given)) < 0)
        return false;
    size_t n = strlen(want), m = strlen(given);
    unsigned diff = (unsigned)(n ^ m);
    for (size_t i = 0; i < n; i++) /* constant time in the token's length */
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < m ? given[i] : 0);
    return diff == 0;
}

/* ?debug=N and ?seconds=N as Go reads them. -1 when absent, -2 when malformed. */
static int int_param(conn *c, const char *name)
{
    char v[32], *end;
    int rc = rp_httpreq_param(&c->req, name, v, sizeof(v));
    if (rc == -ENOENT)
        return -1;
    long x = rc < 0 ? -1 : strtol(v, &end, 10);
    return (rc <= 0 || *end || x < 0 || x > 1000000) ? -2 : (int)x;
}

static void start_job(conn *c, job j, const char *name);

static void route_profile(conn *c, const char *name)
{
    static const struct {
        const char *name;
        job job;
    } jobs[] = {{"heap", J_HEAP},           {"allocs", J_ALLOCS},
                {"goroutine", J_GOROUTINE}, {"threadcreate", J_THREADCREATE},
                {"mutex", J_MUTEX},         {"block", J_BLOCK}};
    c->debug = int_param(c, "debug");
    if (c->debug == -2) {
        reply_error(c, 400, "debug must be a non-negative integer");
        return;
    }
    if (int_param(c, "seconds") != -1) {
        reply_error(c, 400,
                    "the seconds parameter (delta profiles) is only supported by "
                    "/debug/pprof/profile in pgreaper");
        return;
    }
    for (size_t i = 0; i < RP_ARRAY_LEN(jobs); i++)
        if (strcmp(name, jobs[i].name) == 0) {
            start_job(c, jobs[i].job, name);
            return;
        }
    if (strcmp(name, "trace") == 0) {
        reply_error(c, 501,
                    "pgreaper has no execution tracer: Go's trace format records goroutine "
                    "scheduling events that an event loop and its threads do not have; use "
                    "profile, mutex and block instead");
        return;
    }
    reply_error(c, 404, "Unknown profile");
}

static void route_cpu(conn *c)
{
    int s = int_param(c, "seconds");
    if (s <= 0)
        s = 30; /* Go: default 30 s when missing or invalid */
    if (s > RP_HTTP_MAX_CPU_SECONDS) {
        reply_error(c, 400, "profile duration exceeds the server's limit of 300 seconds");
        return;
    }
    if (int_param(c, "debug") != -1) {
        reply_error(c, 400, "seconds and debug params are incompatible");
        return;
    }
    c->seconds = s;
    c->hz = int_param(c, "hz"); /* pgreaper's: more samples per CPU-second than Go's 100 */
    if (c->hz == -2 || c->hz > RP_CPU_MAX_HZ) {
        reply_error(c, 400, "hz must be a number of samples per CPU-second, 1 to 1000");
        return;
    }
    start_job(c, J_CPU_START, "profile");
}

static void route(conn *c)
{
    const char *p = c->req.path;
    bool get = strcmp(c->req.method, "GET") == 0;
    if (!token_ok(c)) {
        reply_error(c, 401, "missing or wrong pprof token");
        return;
    }
    if (c->srv->opts.metrics_only && strcmp(p, "/metrics") != 0) {
        reply_error(c, 404, "404 page not found (this listener serves /metrics only)");
        return;
    }
    if (strcmp(p, "/debug/pprof/symbol") == 0 && (get || strcmp(c->req.method, "POST") == 0)) {
        start_job(c, J_SYMBOL, NULL);
        return;
    }
    if (!get) {
        reply_error(c, 405, "method not allowed");
        return;
    }
    if (strcmp(p, "/metrics") == 0 && c->srv->opts.metrics) {
        c->srv->opts.metrics(c->srv->opts.metrics_arg, &c->body);
        return reply(c, "text/plain; version=0.0.4; charset=utf-8");
    }
    if (strcmp(p, "/debug/vars") == 0) {
        page_vars(c);
        return;
    }
    if (strcmp(p, "/debug/pprof/") == 0 || strcmp(p, "/debug/pprof") == 0) {
        page_index(c);
        return;
    }
    if (strcmp(p, "/debug/pprof/cmdline") == 0) {
        rp_buf_append(&c->body, c->srv->cmdline, c->srv->cmdline_len);
        return reply(c, "text/plain; charset=utf-8");
    }
    if (strcmp(p, "/debug/pprof/profile") == 0) {
        route_cpu(c);
        return;
    }
    if (strncmp(p, "/debug/pprof/", 13) == 0) {
        route_profile(c, p + 13);
        return;
    }
    reply_error(c, 404, "404 page not found");
}

/* ---- worker jobs (libuv thread pool) ---------------------------------------------------- */

static void job_symbol(conn *c)
{
    const char *in = c->in + c->req.head_len;
    size_t n = c->req.content_length;
    if (n == 0) {
        in = c->req.query;
        n = strlen(in);
    }
    rp_buf_puts(&c->body, "num_symbols: 1\n");
    for (size_t i = 0; i < n;) {
        char *end;
        unsigned long long a = strtoull(in + i, &end, 16);
        if (end == in + i)
            break;
        rp_sym *sym = rp_sym_acquire();
        rp_sym_result r;
        bool found = rp_sym_lookup(sym, (uintptr_t)a, &r) == 0;
        if (found)
            rp_buf_printf(&c->body, "%#llx %s\n", a, r.name);
        rp_sym_release(sym);
        i = (size_t)(end - in);
        while (i < n && (in[i] == '+' || in[i] == ' ' || in[i] == '\n'))
            i++;
    }
}

static void run_job(conn *c)
{
    switch (c->job) {
    case J_HEAP:
    case J_ALLOCS:
        if (c->debug > 0)
            rp_heap_text(&c->body);
        else
            c->rc = rp_heap_profile(&c->body, c->job == J_ALLOCS);
        break;
    case J_GOROUTINE:
        c->rc = rp_goroutine_profile(&c->body, c->debug > 0 ? c->debug : 0);
        break;
    case J_THREADCREATE:
        c->rc = rp_threads_create_profile(&c->body, c->debug > 0);
        break;
    case J_MUTEX:
    case J_BLOCK:
        c->rc = rp_contention_profile(&c->body, c->job == J_BLOCK, c->debug);
        break;
    case J_CPU_START:
        c->rc = rp_cpu_start(c->seconds, c->hz);
        break;
    case J_CPU_FINISH:
        c->rc = rp_cpu_finish(&c->body);
        break;
    case J_SYMBOL:
        job_symbol(c);
        break;
    case J_NONE:
        break;
    }
}

static void on_work(uv_work_t *w)
{
    conn *c = rp_container_of(w, conn, work);
    rp_task_label_thread("worker", "pgreaper-work", NULL, NULL);
    rp_heap_guard_enter(); /* the profiler does not profile itself */
    run_job(c);
    rp_heap_guard_leave();
}

static void on_work_done(uv_work_t *w, int status)
{
    conn *c = rp_container_of(w, conn, work);
    c->work_done = true;
    conn_step(c);
}

static void start_job(conn *c, job j, const char *name)
{
    c->job = j;
    c->name = name;
    c->rc = 0;
    c->work_done = false;
    c->state = C_WORK;
    uv_queue_work(c->srv->loop, &c->work, on_work, on_work_done);
}

/* ---- connections ------------------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *hd)
{
    conn *c = hd->data;
    if (--c->open_handles > 0)
        return;
    rp_http *h = c->srv;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    h->nconns--;
    rp_buf_fini(&c->body);
    rp_buf_fini(&c->head);
    free(c);
    maybe_closed(h);
}

static void conn_close(conn *c)
{
    if (c->state == C_CLOSING)
        return;
    c->state = C_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_written(uv_write_t *wr, int status)
{
    conn *c = rp_container_of(wr, conn, wr);
    c->written = true;
    conn_step(c);
}

static void send_reply(conn *c)
{
    uv_timer_stop(&c->timer);
    uv_read_stop((uv_stream_t *)&c->tcp);
    build_head(c);
    uv_buf_t bufs[2] = {uv_buf_init(c->head.data, (unsigned)c->head.len),
                        uv_buf_init(c->body.data ? c->body.data : "", (unsigned)c->body.len)};
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, bufs, 2, on_written) < 0)
        conn_close(c);
}

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    c->timer_fired = true;
    conn_step(c);
}

static void step_read(conn *c)
{
    int rc = rp_httpreq_parse(c->in, c->inlen, &c->req);
    if (rc == 0 && (c->eof || c->timer_fired)) {
        conn_close(c); /* nothing usable arrived */
        return;
    }
    if (rc == 0)
        return;
    if (rc < 0) {
        reply_error(c, rc == -ENOTSUP ? 505 : rc == -E2BIG ? 413 : 400, "malformed request");
        return;
    }
    if (c->req.content_length > BODY_MAX) {
        reply_error(c, 413, "request body too large");
        return;
    }
    if (c->inlen < c->req.head_len + c->req.content_length) {
        if (c->eof || c->timer_fired)
            conn_close(c);
        return;
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    route(c);
}

static void step_work_done(conn *c)
{
    c->work_done = false;
    if (c->rc == -EBUSY)
        reply_error(c, 500, "Could not enable CPU profiling: cpu profiling already in use");
    else if (c->rc < 0)
        reply_error(c, 500, "could not build the profile");
    else if (c->job == J_CPU_START) {
        c->state = C_CPU_WAIT;
        c->timer_fired = false;
        uv_timer_start(&c->timer, on_timer, (uint64_t)c->seconds * 1000, 0);
    } else if (c->debug > 0 || c->job == J_SYMBOL)
        reply(c, "text/plain; charset=utf-8");
    else
        reply(c, "application/octet-stream");
}

/* A CPU profile cut short by shutdown: disarm the timers, drop the samples. */
static void abandon_cpu(conn *c)
{
    rp_buf scratch = RP_BUF_INIT;
    rp_heap_guard_enter();
    int rc = rp_cpu_finish(&scratch); /* the samples are dropped either way */
    (void)rc;
    rp_heap_guard_leave();
    rp_buf_fini(&scratch);
    conn_close(c);
}

static void conn_step(conn *c)
{
    for (;;) {
        conn_state before = c->state;
        switch (c->state) {
        case C_READ:
            if (c->srv->closing)
                conn_close(c);
            else
                step_read(c);
            break;
        case C_WORK:
            if (!c->work_done)
                return;
            step_work_done(c);
            break;
        case C_CPU_WAIT:
            if (c->srv->closing)
                abandon_cpu(c);
            else if (c->timer_fired)
                start_job(c, J_CPU_FINISH, "profile");
            return;
        case C_WRITE:
            if (c->written)
                conn_close(c);
            else if (c->head.len == 0)
                send_reply(c);
            return;
        case C_CLOSING:
            return;
        }
        if (c->state == before)
            return;
    }
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    conn *c = hd->data;
    size_t room = sizeof(c->in) - c->inlen;
    *buf = uv_buf_init(c->in + c->inlen, (unsigned)room);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn *c = s->data;
    if (n > 0)
        c->inlen += (size_t)n;
    else if (n < 0)
        c->eof = true;
    if (c->inlen == sizeof(c->in) && c->state == C_READ &&
        rp_httpreq_parse(c->in, c->inlen, &c->req) == 0)
        c->eof = true; /* full buffer without a complete head */
    if (c->eof)
        uv_read_stop(s);
    conn_step(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    rp_http *h = server->data;
    if (status < 0 || h->closing)
        return;
    conn *c = rp_calloc(1, sizeof(*c));
    c->srv = h;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    c->next = &h->conns;
    c->prev = h->conns.prev;
    h->conns.prev->next = c;
    h->conns.prev = c;
    h->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timer, READ_TIMEOUT, 0);
}

static int bind_listener(rp_http *h, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    bool loopback;
    int rc = rp_http_parse_addr(h->opts.addr, &ss, &loopback, err, errlen);
    if (rc < 0)
        return rc;
    if (!loopback && !h->opts.allow_remote) {
        snprintf(err, errlen,
                 "refusing to serve pprof on non-loopback address \"%s\" without "
                 "--pprof-allow-remote",
                 h->opts.addr);
        return -EPERM;
    }
    uv_tcp_init(h->loop, &h->listener);
    h->listener.data = h;
    rc = uv_tcp_bind(&h->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, 64, on_connection);
    if (rc < 0) {
        snprintf(err, errlen, "cannot listen on %s for pprof: %s", h->opts.addr, uv_strerror(rc));
        return rc;
    }
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &len);
    h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

static void free_server(rp_http *h)
{
    rp_task_unregister(&h->task);
    free(h->token);
    free(h->cmdline);
    free(h);
}

static void on_listener_closed_early(uv_handle_t *hd)
{
    free_server(hd->data);
}

int rp_http_start(uv_loop_t *loop, const rp_http_opts *o, rp_http **out, char *err, size_t errlen)
{
    rp_http *h = rp_calloc(1, sizeof(*h));
    h->loop = loop;
    h->opts = *o;
    h->token = o->token && *o->token ? rp_strdup(o->token) : NULL;
    h->conns.next = h->conns.prev = &h->conns;
    h->started_ns = mono_ns();
    build_cmdline(h);
    int rc = bind_listener(h, err, errlen);
    if (rc < 0) {
        if (uv_is_active((uv_handle_t *)&h->listener) || h->listener.loop)
            uv_close((uv_handle_t *)&h->listener, on_listener_closed_early);
        else
            free_server(h);
        return rc;
    }
    rp_task_register(&h->task, "http", "pprof", NULL);
    rp_task_set_state(&h->task, "listening");
    *out = h;
    return 0;
}

int rp_http_port(const rp_http *h)
{
    return h->port;
}

static void maybe_closed(rp_http *h)
{
    if (!h->closing || !h->listener_closed || h->nconns > 0)
        return;
    void (*cb)(void *) = h->close_cb;
    void *arg = h->close_arg;
    free_server(h);
    if (cb)
        cb(arg);
}

static void on_listener_closed(uv_handle_t *hd)
{
    rp_http *h = hd->data;
    h->listener_closed = true;
    maybe_closed(h);
}

void rp_http_close(rp_http *h, void (*cb)(void *arg), void *arg)
{
    h->closing = true;
    h->close_cb = cb;
    h->close_arg = arg;
    rp_task_set_state(&h->task, "closing");
    uv_close((uv_handle_t *)&h->listener, on_listener_closed);
    for (conn *c = h->conns.next, *next; c != &h->conns; c = next) {
        next = c->next;
        conn_step(c);
    }
}
