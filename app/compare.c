/* SPDX-License-Identifier: PostgreSQL
 *
 * pgreaper compare: see compare.h.
 */
#include "app/compare.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "app/reaper.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/mem.h"
#include "config/config.h"
#include "config/options.h"
#include "pprof/pbuild.h"
#include "pprof/profile.pb-c.h"

extern char **environ;

#define NMODES    2
#define MAX_ROLES 8

static const char *const mode_names[NMODES] = {"batch", "per-metric"};
static const char *const app_names[NMODES] = {"pgreaper", "pgreaper-per-metric"};

typedef struct cmp_opts {
    const char *sources, *metrics, *format, *outdir, *binary;
    int64_t duration_ms, sample_ms, warmup_ms;
    const char *interval_scale;
} cmp_opts;

/* One reading of one child. */
typedef struct sample {
    double t; /* seconds since the window opened */
    double heap_alloc, total_alloc, heap_objects, sys, mallocs;
    double fetches, ticks, pipelines, sink_rows, sink_batches;
    double lateness[16];
    double cpu_s, rss, max_rss;
    int threads, tasks, conns;
    char roles[MAX_ROLES][24];
    int role_threads[MAX_ROLES], role_tasks[MAX_ROLES];
    int nroles;
} sample;

typedef struct child {
    const char *mode;
    pid_t pid;
    int port;
    char log[512];
    sample first, last;
    int max_conns, max_threads;
    double inuse_space; /* from the final heap profile */
    bool ok;
} child;

/* Sleep until deadline (CLOCK_MONOTONIC ms); signals do not cut it short. */
static void sleep_until(int64_t deadline)
{
    struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/*-------------------------------------------------------------------------
 * Options
 *-------------------------------------------------------------------------
 */

static void usage(void)
{
    fputs("Usage: pgreaper compare --sources FILE [--metrics FILE] [--duration 5m]\n"
          "         [--interval-scale X] [--format markdown|json] [--output DIR]\n"
          "         [--sample-interval 5s] [--warmup 10s]\n\n"
          "Runs --mode=batch and --mode=per-metric side by side against the same sources\n"
          "and prints what each costs. Profiles and logs are kept in DIR.\n",
          stdout);
}

static int parse_duration(const char *flag, const char *v, int64_t *out)
{
    if (rp_parse_duration_ms(v, out) == 0 && *out > 0)
        return 0;
    fprintf(stderr,
            "pgreaper compare: invalid value \"%s\" for %s: expected a duration such "
            "as 30s or 5m\n",
            v, flag);
    return -EINVAL;
}

static int parse_opt(cmp_opts *o, int c, const char *arg)
{
    switch (c) {
    case 's':
        o->sources = arg;
        return 0;
    case 'm':
        o->metrics = arg;
        return 0;
    case 'd':
        return parse_duration("--duration", arg, &o->duration_ms);
    case 'i':
        o->interval_scale = arg;
        return 0;
    case 'f':
        o->format = arg;
        return 0;
    case 'o':
        o->outdir = arg;
        return 0;
    case 'p':
        return parse_duration("--sample-interval", arg, &o->sample_ms);
    case 'w':
        return parse_duration("--warmup", arg, &o->warmup_ms);
    case 'b':
        o->binary = arg;
        return 0;
    default:
        return -EINVAL;
    }
}

static int parse_args(cmp_opts *o, int argc, char **argv)
{
    static const struct option lo[] = {{"sources", 1, NULL, 's'},
                                       {"metrics", 1, NULL, 'm'},
                                       {"duration", 1, NULL, 'd'},
                                       {"interval-scale", 1, NULL, 'i'},
                                       {"format", 1, NULL, 'f'},
                                       {"output", 1, NULL, 'o'},
                                       {"sample-interval", 1, NULL, 'p'},
                                       {"warmup", 1, NULL, 'w'},
                                       {"binary", 1, NULL, 'b'},
                                       {"help", 0, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    *o = (cmp_opts){.format = "markdown",
                    .duration_ms = 300000,
                    .sample_ms = 5000,
                    .warmup_ms = 10000,
                    .interval_scale = "1",
                    .binary = "/proc/self/exe"};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c == 'h') {
            usage();
            exit(0);
        }
        if (c == '?' || parse_opt(o, c, optarg) < 0)
            return -EINVAL;
    }
    if (!o->sources || optind < argc) {
        fprintf(stderr, "pgreaper compare: %s\n",
                !o->sources ? "--sources FILE is required" : "unexpected argument");
        return -EINVAL;
    }
    static char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (strcmp(o->binary, "/proc/self/exe") == 0 && n > 0) {
        self[n] = '\0';
        o->binary = self; /* the real path (also right under valgrind) */
    }
    if (strcmp(o->format, "markdown") != 0 && strcmp(o->format, "json") != 0) {
        fprintf(stderr, "pgreaper compare: --format must be markdown or json\n");
        return -EINVAL;
    }
    return 0;
}

/*-------------------------------------------------------------------------
 * Children
 *-------------------------------------------------------------------------
 */

static int spawn_child(const cmp_opts *o, child *ch, const char *sink)
{
    char *argv[32];
    int n = 0;
    argv[n++] = "pgreaper";
    argv[n++] = "--sources", argv[n++] = (char *)o->sources;
    if (o->metrics)
        argv[n++] = "--metrics", argv[n++] = (char *)o->metrics;
    argv[n++] = "--mode", argv[n++] = (char *)ch->mode;
    argv[n++] = "--interval-scale", argv[n++] = (char *)o->interval_scale;
    argv[n++] = "--pprof-addr", argv[n++] = "127.0.0.1:0";
    argv[n++] = "--sink", argv[n++] = (char *)sink;
    argv[n++] = "--refresh", argv[n++] = "0";
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, ch->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawn(&ch->pid, o->binary, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        fprintf(stderr, "pgreaper compare: cannot start %s: %s\n", o->binary, strerror(rc));
    return rc == 0 ? 0 : -rc;
}

static void print_log_tail(const child *ch)
{
    char buf[2048];
    FILE *f = fopen(ch->log, "r");
    size_t n = 0;
    if (f) {
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    fprintf(stderr, "pgreaper compare: the %s child failed; end of %s:\n%s", ch->mode, ch->log,
            buf);
}

/* Wait up to 30 s for the child's "pprof: serving ... (port N)" log line. */
static int wait_port(child *ch)
{
    for (int64_t deadline = rp_clock_mono_ms() + 30000; rp_clock_mono_ms() < deadline;
         sleep_until(rp_clock_mono_ms() + 100)) {
        int status;
        if (waitpid(ch->pid, &status, WNOHANG) == ch->pid) {
            ch->pid = 0;
            break;
        }
        char buf[8192];
        FILE *f = fopen(ch->log, "r");
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = '\0';
        const char *p = strstr(buf, "pprof: serving");
        if (p && (p = strstr(p, "(port ")) != NULL) {
            ch->port = atoi(p + 6);
            return 0;
        }
    }
    print_log_tail(ch);
    return -EIO;
}

static int stop_child(child *ch)
{
    int status = 0;
    if (ch->pid <= 0)
        return -1;
    kill(ch->pid, SIGTERM);
    while (waitpid(ch->pid, &status, 0) < 0 && errno == EINTR)
        ;
    ch->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*-------------------------------------------------------------------------
 * Reading a child
 *-------------------------------------------------------------------------
 */

/* GET http://127.0.0.1:port/path (the child closes the connection after the reply). */
static int http_get(int port, const char *path, rp_buf *body)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 60};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (fd >= 0)
            close(fd);
        return -ECONNREFUSED;
    }
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    rp_buf raw = RP_BUF_INIT;
    if (write(fd, req, (size_t)n) == n) {
        for (;;) {
            rp_buf_reserve(&raw, 65536);
            ssize_t r = read(fd, raw.data + raw.len, raw.cap - raw.len - 1);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            raw.len += (size_t)r;
        }
    }
    close(fd);
    const char *sep = raw.data ? strstr(raw.data, "\r\n\r\n") : NULL;
    int ok = sep && strncmp(raw.data, "HTTP/1.1 200", 12) == 0;
    if (ok)
        rp_buf_append(body, sep + 4, raw.len - (size_t)(sep + 4 - raw.data));
    rp_buf_fini(&raw);
    return ok ? 0 : -EIO;
}

static double json_num(const char *json, const char *section, const char *key)
{
    char pat[96];
    const char *p = json;
    if (section) {
        snprintf(pat, sizeof(pat), "\"%s\": {", section);
        if (!(p = strstr(json, pat)))
            return NAN;
    }
    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    const char *q = strstr(p, pat);
    return q ? strtod(q + strlen(pat), NULL) : NAN;
}

static void read_vars(const char *j, sample *s)
{
    s->heap_alloc = json_num(j, "memstats", "HeapAlloc");
    s->total_alloc = json_num(j, "memstats", "TotalAlloc");
    s->heap_objects = json_num(j, "memstats", "HeapObjects");
    s->mallocs = json_num(j, "memstats", "Mallocs");
    s->sys = json_num(j, "memstats", "Sys");
    s->max_rss = json_num(j, "process", "MaxRSS");
    s->cpu_s =
        json_num(j, "process", "cpu_user_seconds") + json_num(j, "process", "cpu_system_seconds");
    s->fetches = json_num(j, "reaper", "fetches_ok") + json_num(j, "reaper", "fetch_errors");
    s->ticks = json_num(j, "reaper", "ticks");
    s->pipelines = json_num(j, "reaper", "pipelines");
    s->sink_rows = json_num(j, "sinks", "rows");
    s->sink_batches = json_num(j, "sinks", "batches");
    const char *h = strstr(j, "\"lateness_ms_hist\": [");
    for (int i = 0; h && i < 16; i++) {
        char *end;
        h += i == 0 ? strlen("\"lateness_ms_hist\": [") : 1;
        s->lateness[i] = strtod(h, &end);
        h = end;
    }
}

static void read_proc(pid_t pid, sample *s)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    long rss = 0;
    if (p && sscanf(p + 2,
                    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
                    "%*d %*d %*u %*u %ld",
                    &rss) == 1)
        s->rss = (double)rss * (double)sysconf(_SC_PAGESIZE);
}

static const char *label_of(const Perftools__Profiles__Profile *p,
                            const Perftools__Profiles__Sample *s, const char *key)
{
    for (size_t i = 0; i < s->n_label; i++) {
        const Perftools__Profiles__Label *l = s->label[i];
        if ((size_t)l->key < p->n_string_table && strcmp(p->string_table[l->key], key) == 0 &&
            (size_t)l->str < p->n_string_table)
            return p->string_table[l->str];
    }
    return "";
}

static int role_index(sample *s, const char *role)
{
    for (int i = 0; i < s->nroles; i++)
        if (strcmp(s->roles[i], role) == 0)
            return i;
    if (s->nroles == MAX_ROLES)
        return MAX_ROLES - 1;
    snprintf(s->roles[s->nroles], sizeof(s->roles[0]), "%s", role);
    return s->nroles++;
}

/* Threads and tasks by role, from the goroutine profile. */
static int read_goroutines(const rp_buf *gz, sample *s)
{
    Perftools__Profiles__Profile *p = rp_pbuild_decode(gz->data, gz->len);
    if (!p)
        return -EIO;
    s->threads = s->tasks = s->nroles = 0;
    memset(s->role_threads, 0, sizeof(s->role_threads));
    memset(s->role_tasks, 0, sizeof(s->role_tasks));
    for (size_t i = 0; i < p->n_sample; i++) {
        const Perftools__Profiles__Sample *smp = p->sample[i];
        int v = smp->n_value ? (int)smp->value[0] : 0;
        bool task = strcmp(label_of(p, smp, "kind"), "task") == 0;
        int r = role_index(s, label_of(p, smp, "role"));
        *(task ? &s->tasks : &s->threads) += v;
        *(task ? &s->role_tasks[r] : &s->role_threads[r]) += v;
    }
    perftools__profiles__profile__free_unpacked(p, NULL);
    return 0;
}

static double heap_inuse(const rp_buf *gz)
{
    Perftools__Profiles__Profile *p = rp_pbuild_decode(gz->data, gz->len);
    double sum = 0;
    for (size_t i = 0; p && i < p->n_sample; i++)
        if (p->sample[i]->n_value == 4)
            sum += (double)p->sample[i]->value[3];
    if (p)
        perftools__profiles__profile__free_unpacked(p, NULL);
    return p ? sum : NAN;
}

/*-------------------------------------------------------------------------
 * Connections held on the sources
 *-------------------------------------------------------------------------
 */

typedef struct watcher {
    PGconn **conns;
    size_t n;
} watcher;

static void watcher_open(watcher *w, const rp_source_set *set)
{
    w->conns = rp_calloc(set->nsources + 1, sizeof(PGconn *));
    for (size_t i = 0; i < set->nsources; i++) {
        const rp_source_def *d = &set->sources[i];
        bool dup = false;
        for (size_t k = 0; k < i && !dup; k++)
            dup = strcmp(set->sources[k].conn_str, d->conn_str) == 0;
        if (!d->is_enabled || dup)
            continue;
        const char *kw[] = {"dbname", "application_name", NULL};
        const char *val[] = {d->conn_str, "pgreaper-compare", NULL};
        PGconn *c = PQconnectdbParams(kw, val, 1);
        if (PQstatus(c) == CONNECTION_OK)
            w->conns[w->n++] = c;
        else
            PQfinish(c);
    }
}

/* Backends of each mode on the sources' databases (counted once per distinct conn_str). */
static void watcher_count(watcher *w, int counts[NMODES])
{
    counts[0] = counts[1] = 0;
    for (size_t i = 0; i < w->n; i++) {
        const char *params[2] = {app_names[0], app_names[1]};
        PGresult *r = PQexecParams(w->conns[i],
                                   "select count(*) filter (where application_name = $1), "
                                   "count(*) filter (where application_name = $2) "
                                   "from pg_stat_activity where datname = current_database()",
                                   2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            for (int m = 0; m < NMODES; m++)
                counts[m] += atoi(PQgetvalue(r, 0, m));
        PQclear(r);
    }
}

static void watcher_close(watcher *w)
{
    for (size_t i = 0; i < w->n; i++)
        PQfinish(w->conns[i]);
    free(w->conns);
}

/*-------------------------------------------------------------------------
 * The run
 *-------------------------------------------------------------------------
 */

static int take_sample(child *ch, sample *s, double t)
{
    rp_buf vars = RP_BUF_INIT, gr = RP_BUF_INIT;
    memset(s, 0, sizeof(*s));
    s->t = t;
    int rc = http_get(ch->port, "/debug/vars", &vars);
    if (rc == 0)
        rc = http_get(ch->port, "/debug/pprof/goroutine", &gr);
    if (rc == 0) {
        read_vars(vars.data, s);
        rc = read_goroutines(&gr, s);
        read_proc(ch->pid, s);
    }
    rp_buf_fini(&vars);
    rp_buf_fini(&gr);
    return rc;
}

static int save_profile(const cmp_opts *o, child *ch, const char *name)
{
    rp_buf b = RP_BUF_INIT;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.%s.pb.gz", o->outdir, ch->mode, name);
    int rc = http_get(
        ch->port, strcmp(name, "heap") == 0 ? "/debug/pprof/heap" : "/debug/pprof/goroutine", &b);
    FILE *f = rc == 0 ? fopen(path, "wb") : NULL;
    if (f) {
        fwrite(b.data, 1, b.len, f);
        fclose(f);
    }
    if (rc == 0 && strcmp(name, "heap") == 0)
        ch->inuse_space = heap_inuse(&b);
    rp_buf_fini(&b);
    return f ? 0 : -EIO;
}

/* Sample both children every sample_ms for duration_ms; keep the first and last. */
static int sample_window(const cmp_opts *o, child *ch, watcher *w)
{
    int64_t start = rp_clock_mono_ms(), next = start;
    for (int k = 0;; k++) {
        int conns[NMODES];
        watcher_count(w, conns);
        for (int m = 0; m < NMODES; m++) {
            sample s;
            double t = (double)(rp_clock_mono_ms() - start) / 1000.0;
            if (take_sample(&ch[m], &s, t) < 0) {
                print_log_tail(&ch[m]);
                return -EIO;
            }
            s.conns = conns[m];
            if (k == 0)
                ch[m].first = s;
            ch[m].last = s;
            ch[m].max_conns = conns[m] > ch[m].max_conns ? conns[m] : ch[m].max_conns;
            ch[m].max_threads = s.threads > ch[m].max_threads ? s.threads : ch[m].max_threads;
        }
        if (next - start >= o->duration_ms)
            return 0;
        next += o->sample_ms;
        if (next - start > o->duration_ms)
            next = start + o->duration_ms;
        sleep_until(next);
    }
}

static int start_children(const cmp_opts *o, child *ch)
{
    for (int m = 0; m < NMODES; m++) {
        char sink[600];
        ch[m].mode = mode_names[m];
        snprintf(ch[m].log, sizeof(ch[m].log), "%s/%s.log", o->outdir, ch[m].mode);
        snprintf(sink, sizeof(sink), "jsonfile://%s/%s.jsonl", o->outdir, ch[m].mode);
        if (spawn_child(o, &ch[m], sink) < 0)
            return -EIO;
    }
    for (int m = 0; m < NMODES; m++)
        if (wait_port(&ch[m]) < 0)
            return -EIO;
    return 0;
}

/*-------------------------------------------------------------------------
 * The table
 *-------------------------------------------------------------------------
 */

typedef struct figures {
    double window_s, cpu_pct, cpu_per_1k_ms, alloc_rate_mib, fetches, rt_per_tick, rt_per_1k;
    double stored_batches, stored_rows;
    int late_p50, late_p99;
} figures;

static int late_pct(const double *h, double q)
{
    double total = 0, acc = 0;
    for (int i = 0; i < 16; i++)
        total += h[i];
    for (int i = 0; i < 16 && total > 0; i++) {
        acc += h[i];
        if (acc >= q * total)
            return i == 0 ? 0 : 1 << i; /* bucket i holds [2^(i-1), 2^i) ms */
    }
    return 0;
}

static figures compute(const child *ch)
{
    const sample *a = &ch->first, *b = &ch->last;
    figures f = {.window_s = b->t - a->t};
    double win = f.window_s > 0 ? f.window_s : 1;
    double hist[16];
    f.fetches = b->fetches - a->fetches;
    f.cpu_pct = 100.0 * (b->cpu_s - a->cpu_s) / win;
    f.cpu_per_1k_ms = f.fetches > 0 ? 1e6 * (b->cpu_s - a->cpu_s) / f.fetches : NAN;
    f.alloc_rate_mib = (b->total_alloc - a->total_alloc) / win * 60 / 1048576.0;
    double ticks = b->ticks - a->ticks, rts = b->pipelines - a->pipelines;
    f.rt_per_tick = ticks > 0 ? rts / ticks : NAN;
    f.rt_per_1k = f.fetches > 0 ? 1000 * rts / f.fetches : NAN;
    for (int i = 0; i < 16; i++)
        hist[i] = b->lateness[i] - a->lateness[i];
    f.late_p50 = late_pct(hist, 0.5);
    f.late_p99 = late_pct(hist, 0.99);
    f.stored_batches = b->sink_batches;
    f.stored_rows = b->sink_rows;
    return f;
}

enum { COUNT_THREADS = 1, COUNT_TASKS = 2 };

/* Threads, tasks or both (what counts): the total, then the count of each role. */
static void by_role(rp_buf *out, const sample *s, int what)
{
    const char *sep = " (";
    rp_buf_printf(out, "%d",
                  (what & COUNT_THREADS ? s->threads : 0) + (what & COUNT_TASKS ? s->tasks : 0));
    for (int i = 0; i < s->nroles; i++) {
        int n = (what & COUNT_THREADS ? s->role_threads[i] : 0) +
                (what & COUNT_TASKS ? s->role_tasks[i] : 0);
        if (n == 0)
            continue;
        rp_buf_printf(out, "%s%s %d", sep, s->roles[i], n);
        sep = ", ";
    }
    if (strcmp(sep, ", ") == 0)
        rp_buf_putc(out, ')');
}

#define MIB(x) ((x) / 1048576.0)

/* Cell text of row r for child ch; returns false past the last row. */
static bool cell(int r, const child *ch, const figures *f, const char **label, rp_buf *out)
{
    const sample *s = &ch->last;
    switch (r) {
    case 0:
        *label = "goroutine-equivalents: threads + event-loop tasks (by role)";
        by_role(out, s, COUNT_THREADS | COUNT_TASKS);
        break;
    case 1:
        *label = "OS threads (by role)";
        by_role(out, s, COUNT_THREADS);
        break;
    case 2:
        *label = "live heap: HeapAlloc / inuse_space";
        rp_buf_printf(out, "%.2f MiB / %.2f MiB", MIB(s->heap_alloc), MIB(ch->inuse_space));
        break;
    case 3:
        *label = "heap objects";
        rp_buf_printf(out, "%.0f", s->heap_objects);
        break;
    case 4:
        *label = "allocated: total / per minute";
        rp_buf_printf(out, "%.1f MiB / %.2f MiB", MIB(s->total_alloc), f->alloc_rate_mib);
        break;
    case 5:
        *label = "Sys / RSS / MaxRSS";
        rp_buf_printf(out, "%.1f / %.1f / %.1f MiB", MIB(s->sys), MIB(s->rss), MIB(s->max_rss));
        break;
    case 6:
        *label = "CPU (% of one core)";
        rp_buf_printf(out, "%.2f %%", f->cpu_pct);
        break;
    case 7:
        *label = "CPU per 1,000 fetches";
        rp_buf_printf(out, "%.1f ms", f->cpu_per_1k_ms);
        break;
    case 8:
        *label = "connections held on the sources (max)";
        rp_buf_printf(out, "%d", ch->max_conns);
        break;
    case 9:
        *label = "round trips per tick / per 1,000 fetches";
        rp_buf_printf(out, "%.2f / %.0f", f->rt_per_tick, f->rt_per_1k);
        break;
    case 10:
        *label = "schedule lateness p50 / p99";
        rp_buf_printf(out, "%s%d ms / %s%d ms", f->late_p50 ? "< " : "", f->late_p50,
                      f->late_p99 ? "< " : "", f->late_p99);
        break;
    case 11:
        *label = "fetches in the window";
        rp_buf_printf(out, "%.0f", f->fetches);
        break;
    case 12:
        *label = "measurements stored (batches / rows)";
        rp_buf_printf(out, "%.0f / %.0f", f->stored_batches, f->stored_rows);
        break;
    default:
        return false;
    }
    return true;
}

static void print_markdown(const cmp_opts *o, const child *ch, const figures *f)
{
    printf("pgreaper compare: %s, %.0f s window, intervals x%s\n\n", o->sources, f[0].window_s,
           o->interval_scale);
    printf("| | batch | per-metric |\n|---|---|---|\n");
    const char *label;
    rp_buf a = RP_BUF_INIT, b = RP_BUF_INIT;
    for (int r = 0; cell(r, &ch[0], &f[0], &label, &a) && cell(r, &ch[1], &f[1], &label, &b); r++) {
        printf("| %s | %s | %s |\n", label, a.data, b.data);
        rp_buf_reset(&a);
        rp_buf_reset(&b);
    }
    rp_buf_fini(&a);
    rp_buf_fini(&b);
    printf("\nProfiles: %s/{batch,per-metric}.{heap,goroutine}.pb.gz, e.g.\n"
           "  go tool pprof -top -diff_base %s/batch.heap.pb.gz %s/per-metric.heap.pb.gz\n",
           o->outdir, o->outdir, o->outdir);
}

static void print_json(const cmp_opts *o, const child *ch, const figures *f)
{
    printf("{\"sources\": \"%s\", \"window_seconds\": %.1f, \"modes\": {", o->sources,
           f[0].window_s);
    for (int m = 0; m < NMODES; m++) {
        const sample *s = &ch[m].last;
        printf("%s\"%s\": {\"tasks\": %d, \"threads\": %d, \"heap_alloc\": %.0f, "
               "\"inuse_space\": %.0f, \"heap_objects\": %.0f, \"total_alloc\": %.0f, "
               "\"alloc_bytes_per_minute\": %.0f, \"sys\": %.0f, \"rss\": %.0f, \"max_rss\": %.0f, "
               "\"cpu_percent\": %.3f, \"cpu_ms_per_1000_fetches\": %.3f, \"connections_max\": %d, "
               "\"round_trips_per_tick\": %.3f, \"lateness_p50_ms\": %d, \"lateness_p99_ms\": %d, "
               "\"fetches\": %.0f, \"stored_batches\": %.0f, \"stored_rows\": %.0f}",
               m ? ", " : "", ch[m].mode, s->tasks, s->threads, s->heap_alloc, ch[m].inuse_space,
               s->heap_objects, s->total_alloc, f[m].alloc_rate_mib * 1048576.0, s->sys, s->rss,
               s->max_rss, f[m].cpu_pct, f[m].cpu_per_1k_ms, ch[m].max_conns, f[m].rt_per_tick,
               f[m].late_p50, f[m].late_p99, f[m].fetches, f[m].stored_batches, f[m].stored_rows);
    }
    printf("}, \"profiles\": \"%s\"}\n", o->outdir);
}

/*-------------------------------------------------------------------------
 * Entry point
 *-------------------------------------------------------------------------
 */

/* Validate the configuration as the children will read it (file:line:col errors). */
static int load_sources(const cmp_opts *o, rp_source_set **set)
{
    rp_options ro;
    rp_options_init(&ro);
    ro.sources = rp_strdup(o->sources);
    ro.metrics = o->metrics ? rp_strdup(o->metrics) : NULL;
    rp_diag diag;
    rp_diag_init(&diag);
    rp_catalog *cat = NULL;
    int rc = rp_reaper_load(&ro, &cat, set, &diag);
    if (diag.text.len)
        fputs(diag.text.data, stderr);
    rp_diag_fini(&diag);
    rp_catalog_unref(cat);
    rp_options_fini(&ro);
    return rc;
}

static int make_outdir(cmp_opts *o, char *buf, size_t len)
{
    if (!o->outdir) {
        char name[64];
        time_t now = time(NULL);
        strftime(name, sizeof(name), "pgreaper-compare-%Y%m%d-%H%M%S", localtime(&now));
        o->outdir = name;
        if (mkdir(name, 0755) < 0 && errno != EEXIST)
            goto fail;
        o->outdir = realpath(name, buf) ? buf : NULL;
    } else {
        if (mkdir(o->outdir, 0755) < 0 && errno != EEXIST)
            goto fail;
        o->outdir = realpath(o->outdir, buf) ? buf : NULL;
    }
    if (o->outdir && strlen(o->outdir) < len)
        return 0;
fail:
    fprintf(stderr, "pgreaper compare: cannot create the output folder: %s\n", strerror(errno));
    return -EIO;
}

static int run(cmp_opts *o, rp_source_set *set)
{
    child ch[NMODES];
    watcher w = {0};
    memset(ch, 0, sizeof(ch));
    int rc = start_children(o, ch);
    if (rc == 0) {
        watcher_open(&w, set);
        fprintf(stderr,
                "pgreaper compare: both modes running; warm-up %.0f s, then %.0f s "
                "measured\n",
                (double)o->warmup_ms / 1000, (double)o->duration_ms / 1000);
        sleep_until(rp_clock_mono_ms() + o->warmup_ms);
        rc = sample_window(o, ch, &w);
    }
    for (int m = 0; rc == 0 && m < NMODES; m++)
        rc = save_profile(o, &ch[m], "heap") < 0 || save_profile(o, &ch[m], "goroutine") < 0 ? -EIO
                                                                                             : 0;
    for (int m = 0; m < NMODES; m++)
        if (stop_child(&ch[m]) > 0 && rc == 0)
            print_log_tail(&ch[m]);
    watcher_close(&w);
    if (rc < 0)
        return 1;
    figures f[NMODES] = {compute(&ch[0]), compute(&ch[1])};
    if (strcmp(o->format, "json") == 0)
        print_json(o, ch, f);
    else
        print_markdown(o, ch, f);
    return 0;
}

int rp_compare_main(int argc, char **argv)
{
    cmp_opts o;
    char outdir[4096];
    rp_source_set *set = NULL;
    if (parse_args(&o, argc, argv) < 0) {
        fputs("Try \"pgreaper compare --help\" for more information.\n", stderr);
        return 2;
    }
    if (load_sources(&o, &set) < 0 || make_outdir(&o, outdir, sizeof(outdir)) < 0) {
        rp_source_set_free(set);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    int rc = run(&o, set);
    rp_source_set_free(set);
    return rc;
}
