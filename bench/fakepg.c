/* SPDX-License-Identifier: PostgreSQL
 *
 * fakepg: a small stand-in for a PostgreSQL server, for fleet benchmarks only. It speaks
 * enough of protocol 3.0 for pgreaper's sources: the startup (SSL and GSS requests
 * refused, trust authentication, the usual ParameterStatus messages), the simple query,
 * and the extended protocol as libpq's pipeline mode sends it (Parse, Bind, Describe,
 * Execute, Close, Flush, Sync). Every query gets canned rows: pgreaper's runtime query
 * and session probe get the answers a PostgreSQL 15 primary would give (a system
 * identifier of its own for each connection, as if each were another server), a DEALLOCATE its
 * tag, and any other query ROWS rows of an epoch_ns column, a tag column and INTS
 * integer columns. One libuv loop serves thousands of connections; nothing is checked,
 * nothing is stored, no error is ever sent.
 *
 *   fakepg SOCKET_DIR PORT [ROWS [INTS]]     listens on SOCKET_DIR/.s.PGSQL.PORT
 */
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include <uv.h>

#define MAX_STMTS 128

typedef enum kind { K_METRIC, K_RUNTIME, K_TIMEOUT, K_PROBE, K_COMMAND } kind;

typedef struct stmt {
    char name[32];
    kind k;
} stmt;

typedef struct conn {
    uv_pipe_t pipe;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_cap;
    int started;
    kind unnamed, portal;
    stmt stmts[MAX_STMTS];
    int nstmts;
    char sysid[24]; /* each connection is an instance of its own (no sharing between them) */
} conn;

static int rows_per_query = 5, int_cols = 4;
static unsigned long nconns, nqueries;

/*-------------------------------------------------------------------------
 * Writing messages
 *-------------------------------------------------------------------------
 */

static void out_reserve(conn *c, size_t n)
{
    if (c->out_len + n <= c->out_cap)
        return;
    while (c->out_cap < c->out_len + n)
        c->out_cap = c->out_cap ? c->out_cap * 2 : 4096;
    c->out = realloc(c->out, c->out_cap);
    if (!c->out)
        abort();
}

static void put(conn *c, const void *p, size_t n)
{
    out_reserve(c, n);
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void put32(conn *c, uint32_t v)
{
    v = htonl(v);
    put(c, &v, 4);
}

static void put16(conn *c, uint16_t v)
{
    v = htons(v);
    put(c, &v, 2);
}

static size_t msg_begin(conn *c, char type)
{
    put(c, &type, 1);
    size_t at = c->out_len;
    put32(c, 0);
    return at;
}

static void msg_end(conn *c, size_t at)
{
    uint32_t len = htonl((uint32_t)(c->out_len - at));
    memcpy(c->out + at, &len, 4);
}

static void msg_empty(conn *c, char type)
{
    msg_end(c, msg_begin(c, type));
}

static void param_status(conn *c, const char *k, const char *v)
{
    size_t at = msg_begin(c, 'S');
    put(c, k, strlen(k) + 1);
    put(c, v, strlen(v) + 1);
    msg_end(c, at);
}

static void ready(conn *c)
{
    size_t at = msg_begin(c, 'Z');
    put(c, "I", 1);
    msg_end(c, at);
}

static void row_description(conn *c, int n, const char *const *names, const uint32_t *types)
{
    size_t at = msg_begin(c, 'T');
    put16(c, (uint16_t)n);
    for (int i = 0; i < n; i++) {
        put(c, names[i], strlen(names[i]) + 1);
        put32(c, 0);
        put16(c, 0);
        put32(c, types[i]);
        put16(c, types[i] == 16 ? 1 : types[i] == 25 ? 0xffff : 8);
        put32(c, 0xffffffff);
        put16(c, 0);
    }
    msg_end(c, at);
}

static void data_row(conn *c, int n, const char *const *vals)
{
    size_t at = msg_begin(c, 'D');
    put16(c, (uint16_t)n);
    for (int i = 0; i < n; i++) {
        put32(c, (uint32_t)strlen(vals[i]));
        put(c, vals[i], strlen(vals[i]));
    }
    msg_end(c, at);
}

static void command_complete(conn *c, const char *tag)
{
    size_t at = msg_begin(c, 'C');
    put(c, tag, strlen(tag) + 1);
    msg_end(c, at);
}

/*-------------------------------------------------------------------------
 * Canned answers
 *-------------------------------------------------------------------------
 */

static kind classify(const char *sql)
{
    if (strstr(sql, "server_version_num')::int, pg_is_in_recovery()"))
        return K_RUNTIME;
    if (strstr(sql, "set_config('statement_timeout'"))
        return K_TIMEOUT;
    if (strstr(sql, "concat_ws('; ',"))
        return K_PROBE;
    if (strncasecmp(sql, "deallocate", 10) == 0)
        return K_COMMAND;
    return K_METRIC;
}

static void describe(conn *c, kind k)
{
    static const char *const rt[] = {"server_version_num", "pg_is_in_recovery", "current_database",
                                     "is_superuser", "system_identifier"};
    static const uint32_t rt_types[] = {23, 16, 25, 16, 25};
    static const char *const one[] = {"v"};
    static const uint32_t one_type[] = {25};
    if (k == K_RUNTIME) {
        row_description(c, 5, rt, rt_types);
    } else if (k == K_TIMEOUT || k == K_PROBE) {
        row_description(c, 1, one, one_type);
    } else if (k == K_COMMAND) {
        msg_empty(c, 'n');
    } else {
        const char *names[2 + 16] = {"epoch_ns", "tag_object"};
        uint32_t types[2 + 16] = {20, 25};
        static char colname[16][16];
        for (int i = 0; i < int_cols; i++) {
            snprintf(colname[i], sizeof(colname[i]), "v%d", i);
            names[2 + i] = colname[i];
            types[2 + i] = 20;
        }
        row_description(c, 2 + int_cols, names, types);
    }
}

static void metric_rows(conn *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char epoch[24], tag[16], ints[16][24];
    const char *vals[2 + 16];
    snprintf(epoch, sizeof(epoch), "%lld", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    vals[0] = epoch;
    vals[1] = tag;
    for (int r = 0; r < rows_per_query; r++) {
        snprintf(tag, sizeof(tag), "obj%d", r);
        for (int i = 0; i < int_cols; i++) {
            snprintf(ints[i], sizeof(ints[i]), "%ld", (long)(ts.tv_sec % 100000) * (i + 1) + r);
            vals[2 + i] = ints[i];
        }
        data_row(c, 2 + int_cols, vals);
    }
    char t[32];
    snprintf(t, sizeof(t), "SELECT %d", rows_per_query);
    command_complete(c, t);
}

static void execute(conn *c, kind k)
{
    const char *const rt[] = {"150000", "f", "fake", "f", c->sysid};
    static const char *const zero[] = {"0"};
    static const char *const empty[] = {""};
    nqueries++;
    if (k == K_RUNTIME) {
        data_row(c, 5, rt);
        command_complete(c, "SELECT 1");
    } else if (k == K_TIMEOUT) {
        data_row(c, 1, zero);
        command_complete(c, "SELECT 1");
    } else if (k == K_PROBE) {
        data_row(c, 1, empty);
        command_complete(c, "SELECT 1");
    } else if (k == K_COMMAND) {
        command_complete(c, "DEALLOCATE");
    } else {
        metric_rows(c);
    }
}

/*-------------------------------------------------------------------------
 * Reading messages
 *-------------------------------------------------------------------------
 */

static kind stmt_kind(conn *c, const char *name)
{
    if (!*name)
        return c->unnamed;
    for (int i = 0; i < c->nstmts; i++)
        if (strcmp(c->stmts[i].name, name) == 0)
            return c->stmts[i].k;
    return K_METRIC;
}

static void on_parse(conn *c, const char *body)
{
    const char *name = body, *sql = body + strlen(body) + 1;
    kind k = classify(sql);
    if (!*name) {
        c->unnamed = k;
    } else if (c->nstmts < MAX_STMTS) {
        snprintf(c->stmts[c->nstmts].name, sizeof(c->stmts[0].name), "%s", name);
        c->stmts[c->nstmts++].k = k;
    }
    msg_empty(c, '1');
}

static void on_message(conn *c, char type, const char *body)
{
    switch (type) {
    case 'Q': {
        kind k = classify(body);
        describe(c, k);
        execute(c, k);
        ready(c);
        break;
    }
    case 'P':
        on_parse(c, body);
        break;
    case 'B':
        c->portal = stmt_kind(c, body + strlen(body) + 1);
        msg_empty(c, '2');
        break;
    case 'D':
        if (body[0] == 'S') {
            size_t at = msg_begin(c, 't');
            put16(c, 0);
            msg_end(c, at);
            describe(c, stmt_kind(c, body + 1));
        } else {
            describe(c, c->portal);
        }
        break;
    case 'E':
        execute(c, c->portal);
        break;
    case 'C':
        msg_empty(c, '3');
        break;
    case 'S':
        ready(c);
        break;
    default: /* 'H' flush and anything else: nothing to say */
        break;
    }
}

static void greet(conn *c)
{
    size_t at = msg_begin(c, 'R');
    put32(c, 0);
    msg_end(c, at);
    param_status(c, "server_version", "15.0 (fakepg)");
    param_status(c, "server_encoding", "UTF8");
    param_status(c, "client_encoding", "UTF8");
    param_status(c, "DateStyle", "ISO, MDY");
    param_status(c, "integer_datetimes", "on");
    param_status(c, "standard_conforming_strings", "on");
    param_status(c, "TimeZone", "UTC");
    at = msg_begin(c, 'K');
    put32(c, (uint32_t)nconns);
    put32(c, 12345);
    msg_end(c, at);
    ready(c);
}

/* A startup-phase packet (no type byte). Returns 0 to go on, -1 to close. */
static int on_startup(conn *c, uint32_t code)
{
    if (code == 80877103 || code == 80877104) { /* SSLRequest, GSSENCRequest: no */
        put(c, "N", 1);
        return 0;
    }
    if (code == 80877102) /* CancelRequest: nothing runs long enough to cancel */
        return -1;
    c->started = 1;
    greet(c);
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    conn *c = h->data;
    free(c->in);
    free(c->out);
    free(c);
}

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static void flush_out(conn *c)
{
    if (!c->out_len)
        return;
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init(c->out, (unsigned)c->out_len);
    w->data = c->out;
    c->out = NULL;
    c->out_len = c->out_cap = 0;
    if (uv_write(w, (uv_stream_t *)&c->pipe, &b, 1, on_written) < 0) {
        free(w->data);
        free(w);
    }
}

/* Handle every whole packet in c->in. Returns -1 to close. */
static int consume(conn *c)
{
    size_t pos = 0;
    for (;;) {
        size_t hdr = c->started ? 5 : 4;
        if (c->in_len - pos < hdr)
            break;
        uint32_t len;
        memcpy(&len, c->in + pos + hdr - 4, 4);
        len = ntohl(len);
        if (len < 4 || c->in_len - pos < hdr - 4 + len)
            break;
        if (!c->started) {
            uint32_t code;
            memcpy(&code, c->in + pos + 4, 4);
            if (on_startup(c, ntohl(code)) < 0)
                return -1;
        } else if (c->in[pos] == 'X') {
            return -1;
        } else {
            on_message(c, c->in[pos], c->in + pos + 5);
        }
        pos += hdr - 4 + len;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    (void)suggested;
    if (c->in_cap - c->in_len < 16384) {
        c->in_cap = c->in_cap ? c->in_cap * 2 : 16384;
        c->in = realloc(c->in, c->in_cap + 1);
        if (!c->in)
            abort();
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn *c = s->data;
    (void)buf;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_closed);
        return;
    }
    c->in_len += (size_t)n;
    if (consume(c) < 0) {
        flush_out(c);
        uv_close((uv_handle_t *)s, on_closed);
        return;
    }
    flush_out(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    conn *c = calloc(1, sizeof(*c));
    uv_pipe_init(server->loop, &c->pipe, 0);
    c->pipe.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0) {
        uv_close((uv_handle_t *)&c->pipe, on_closed);
        return;
    }
    nconns++;
    snprintf(c->sysid, sizeof(c->sysid), "73%017lu", nconns);
    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

static void on_report(uv_signal_t *h, int sig)
{
    (void)h;
    (void)sig;
    fprintf(stderr, "fakepg: %lu connections accepted, %lu queries answered\n", nconns, nqueries);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: fakepg SOCKET_DIR PORT [ROWS [INTS]]\n");
        return 2;
    }
    if (argc > 3)
        rows_per_query = atoi(argv[3]);
    if (argc > 4)
        int_cols = atoi(argv[4]) > 16 ? 16 : atoi(argv[4]);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    char path[512];
    snprintf(path, sizeof(path), "%s/.s.PGSQL.%s", argv[1], argv[2]);
    uv_loop_t *loop = uv_default_loop();
    uv_pipe_t server;
    uv_pipe_init(loop, &server, 0);
    int rc = uv_pipe_bind(&server, path);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 4096, on_connection);
    if (rc < 0) {
        fprintf(stderr, "fakepg: %s: %s\n", path, uv_strerror(rc));
        return 1;
    }
    uv_signal_t usr1;
    uv_signal_init(loop, &usr1);
    uv_signal_start(&usr1, on_report, SIGUSR1);
    fprintf(stderr, "fakepg: listening on %s\n", path);
    return uv_run(loop, UV_RUN_DEFAULT);
}
