/* SPDX-License-Identifier: PostgreSQL
 *
 * The Prometheus sink: prometheus://HOST:PORT[/NAMESPACE][?max_series=N&stale=SECONDS].
 * A pull sink, as pgwatch's: it keeps the latest batch of every (source, metric) and a
 * scrape reads them in the text format, named and typed the way pgwatch names them so
 * that its dashboards and alerts keep working:
 *
 *   NAMESPACE_METRIC_COLUMN{dbname="SOURCE",<custom tags>,<tag_ columns without tag_>}
 *
 * (NAMESPACE defaults to pgwatch; instance_up is NAMESPACE_instance_up; a source of kind
 * prometheus keeps its family's own name, untyped). A column is a gauge when the
 * metric lists it in gauges (or gauges is "*"), else a counter; text columns other than
 * tag_ ones and NULLs are left out; samples carry the fetch time. A batch older than
 * stale seconds (default 600) is no longer served, and a source's rows that a later
 * fetch no longer returns disappear with it. The series kept are capped (max_series,
 * default 1,000,000): a batch that would pass the cap is dropped, counted, and said
 * once per metric. The application serves expose() at serve_addr (app/reaper.c).
 *
 * Entries are kept sorted by (metric, source), so a scrape writes each family's samples
 * together with no sorting of its own.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/expo.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/mem.h"
#include "sinks/sink.h"

#define DEFAULT_NAMESPACE  "pgwatch"
#define DEFAULT_MAX_SERIES 1000000
#define DEFAULT_STALE_S    600

/* The latest batch of one (source, metric). */
typedef struct entry {
    char *metric, *source; /* owned */
    rp_batch_copy copy;
    rp_tag *tags; /* the source's custom tags, names made label-safe (owned) */
    size_t ntags;
    char **col_label; /* per column: a tag_ column's label name, else NULL (owned) */
    uint8_t *gauge;   /* per column: 1 when a gauge */
    bool scraped;
    size_t series; /* numeric samples it serves */
} entry;

typedef struct prom_sink {
    rp_sink base;
    char *ns;
    size_t max_series;
    int64_t stale_ns;
    entry **v; /* sorted by (metric, source) */
    size_t n, cap;
    size_t series, bytes;
    char **capped; /* metrics already said to be over the cap (owned) */
    size_t ncapped;
    uint64_t scrapes, dup_errors;
} prom_sink;

/*-------------------------------------------------------------------------
 * URI
 *-------------------------------------------------------------------------
 */

typedef struct prom_uri {
    char addr[256], ns[128];
    long long max_series, stale_s;
} prom_uri;

static bool valid_name(const char *s)
{
    if (!*s || !(isalpha((unsigned char)*s) || *s == '_'))
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_'))
            return false;
    return true;
}

static int parse_query(const char *q, prom_uri *u, char *err, size_t errlen)
{
    while (q && *q) {
        char key[32];
        long long v;
        int used = 0;
        if (sscanf(q, "%31[a-z_]=%lld%n", key, &v, &used) != 2 || v <= 0 ||
            (strcmp(key, "max_series") != 0 && strcmp(key, "stale") != 0) ||
            (q[used] && q[used] != '&')) {
            snprintf(err, errlen,
                     "invalid prometheus sink option (expected max_series=N or "
                     "stale=SECONDS, N and SECONDS above 0)");
            return -EINVAL;
        }
        *(strcmp(key, "stale") == 0 ? &u->stale_s : &u->max_series) = v;
        q += used + (q[used] == '&');
    }
    return 0;
}

static int parse_uri(const char *uri, prom_uri *u, char *err, size_t errlen)
{
    *u = (prom_uri){
        .ns = DEFAULT_NAMESPACE, .max_series = DEFAULT_MAX_SERIES, .stale_s = DEFAULT_STALE_S};
    const char *p = uri + strlen("prometheus://");
    static const char usage[] = "invalid prometheus sink (not shown: it may hold a "
                                "password): expected prometheus://HOST:PORT[/NAMESPACE]"
                                "[?max_series=N&stale=SECONDS], where pgreaper listens";
    size_t alen = strncmp(uri, "prometheus://", 13) == 0 ? strcspn(p, "/?") : 0;
    const char *q = strchr(p, '?');
    const char *slash = p[alen] == '/' ? p + alen + 1 : NULL;
    size_t nlen = slash ? (q ? (size_t)(q - slash) : strlen(slash)) : 0;
    const char *colon = alen ? memrchr(p, ':', alen) : NULL;
    if (!colon || colon == p + alen - 1 || memchr(p, '@', alen) || alen >= sizeof(u->addr) ||
        nlen >= sizeof(u->ns) ||
        strspn(colon + 1, "0123456789") != (size_t)(p + alen - colon - 1)) {
        snprintf(err, errlen, "%s", usage);
        return -EINVAL;
    }
    snprintf(u->addr, sizeof(u->addr), "%.*s", (int)alen, p);
    if (nlen)
        snprintf(u->ns, sizeof(u->ns), "%.*s", (int)nlen, slash);
    if (!valid_name(u->ns)) {
        snprintf(err, errlen, "invalid prometheus namespace \"%s\" (letters, digits, _)", u->ns);
        return -EINVAL;
    }
    return parse_query(q ? q + 1 : NULL, u, err, errlen);
}

static int prom_check(const char *uri, char *err, size_t errlen)
{
    prom_uri u;
    return parse_uri(uri, &u, err, errlen);
}

/*-------------------------------------------------------------------------
 * Entries
 *-------------------------------------------------------------------------
 */

/* name with every character a label or metric name cannot hold turned into '_'. */
static char *safe_name(const char *name)
{
    size_t n = strlen(name);
    char *out = rp_malloc(n + 2), *o = out;
    if (!*name || isdigit((unsigned char)*name))
        *o++ = '_';
    for (const char *p = name; *p; p++)
        *o++ = isalnum((unsigned char)*p) || *p == '_' ? *p : '_';
    *o = '\0';
    return out;
}

static bool numeric(const rp_column *c)
{
    return c->role == RP_COL_FIELD && (c->kind == RP_VAL_INT || c->kind == RP_VAL_FLOAT ||
                                       c->kind == RP_VAL_NUMERIC || c->kind == RP_VAL_BOOL);
}

/* Whether column c of e's batch is served: numeric and, for a scraped family, the
 * column named after it. */
static bool served(const entry *e, size_t c)
{
    const rp_column *col = &e->copy.b.cols[c];
    return numeric(col) && (!e->scraped || strcmp(col->name, e->metric) == 0);
}

static bool is_gauge(const rp_batch *b, const char *col)
{
    if (strcmp(b->metric, "instance_up") == 0)
        return true;
    for (size_t i = 0; i < b->ngauges; i++)
        if (strcmp(b->gauges[i], "*") == 0 || strcmp(b->gauges[i], col) == 0)
            return true;
    return false;
}

static void free_entry(entry *e)
{
    for (size_t i = 0; i < e->ntags; i++) {
        rp_free(e->tags[i].key);
        rp_free(e->tags[i].value);
    }
    for (size_t c = 0; c < e->copy.b.ncols; c++)
        rp_free(e->col_label[c]);
    rp_free(e->tags);
    rp_free(e->col_label);
    rp_free(e->gauge);
    rp_batch_copy_fini(&e->copy);
    rp_free(e->metric);
    rp_free(e->source);
    rp_free(e);
}

static entry *make_entry(const rp_batch *b)
{
    entry *e = rp_calloc(1, sizeof(*e));
    e->metric = rp_strdup(b->metric);
    e->source = rp_strdup(b->source);
    e->scraped = b->scraped;
    rp_batch_copy_make(&e->copy, b);
    e->tags = rp_calloc(b->ncustom_tags + 1, sizeof(rp_tag));
    for (size_t i = 0; i < b->ncustom_tags; i++) {
        e->tags[i].key = safe_name(b->custom_tags[i].key);
        e->tags[i].value = rp_strdup(b->custom_tags[i].value);
    }
    e->ntags = b->ncustom_tags;
    e->col_label = rp_calloc(b->ncols + 1, sizeof(char *));
    e->gauge = rp_calloc(b->ncols + 1, 1);
    size_t nserved = 0;
    for (size_t c = 0; c < b->ncols; c++) {
        if (b->cols[c].role == RP_COL_TAG)
            e->col_label[c] = safe_name(b->cols[c].name + 4);
        e->gauge[c] = is_gauge(b, b->cols[c].name);
        nserved += served(e, c);
    }
    e->series = nserved * b->nrows;
    return e;
}

static int cmp_key(const char *metric, const char *source, const entry *e)
{
    int c = strcmp(metric, e->metric);
    return c ? c : strcmp(source, e->source);
}

/* Where (metric, source) is or would go. */
static size_t lower_bound(const prom_sink *s, const char *metric, const char *source)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_key(metric, source, s->v[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void remove_at(prom_sink *s, size_t i)
{
    s->series -= s->v[i]->series;
    s->bytes -= s->v[i]->copy.bytes;
    free_entry(s->v[i]);
    memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(entry *));
    s->n--;
}

/* Said once per metric: its batches are not served (over the cap, or unsupported). */
static void say_once(prom_sink *s, const char *metric, const char *fmt, ...) RP_PRINTF(3, 4);
static void say_once(prom_sink *s, const char *metric, const char *fmt, ...)
{
    for (size_t i = 0; i < s->ncapped; i++)
        if (strcmp(s->capped[i], metric) == 0)
            return;
    s->capped = rp_realloc(s->capped, (s->ncapped + 1) * sizeof(char *));
    s->capped[s->ncapped++] = rp_strdup(metric);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rp_log_warn("sink %s: %s", s->base.uri, msg);
}

/* pgwatch leaves these out of Prometheus: text columns that no tag_ prefix names. */
static bool unsupported(const rp_batch *b)
{
    static const char *const names[] = {"change_events", "pgbouncer_stats", "pgbouncer_clients",
                                        "pgpool_processes", "pgpool_stats"};
    for (size_t i = 0; !b->scraped && i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(b->metric, names[i]) == 0)
            return true;
    return false;
}

static void prom_write_batch(rp_sink *base, const rp_batch *b)
{
    prom_sink *s = (prom_sink *)base;
    base->stats.batches++;
    base->stats.rows += b->nrows;
    if (unsupported(b)) {
        base->stats.rows_dropped += b->nrows;
        say_once(s, b->metric,
                 "metric %s is not served (its columns are text; pgwatch leaves "
                 "it out of Prometheus too); its rows are counted as dropped",
                 b->metric);
        return;
    }
    size_t i = lower_bound(s, b->metric, b->source);
    bool have = i < s->n && cmp_key(b->metric, b->source, s->v[i]) == 0;
    entry *e = make_entry(b);
    size_t old = have ? s->v[i]->series : 0;
    if (s->series - old + e->series > s->max_series) {
        base->stats.rows_dropped += b->nrows;
        say_once(s, b->metric,
                 "series cap %zu reached: new measurements of metric %s are not "
                 "served and counted as dropped (raise max_series=N in the sink URI)",
                 s->max_series, b->metric);
        free_entry(e);
        return;
    }
    if (have) {
        remove_at(s, i);
    }
    rp_grow((void **)&s->v, &s->cap, s->n + 1, sizeof(entry *));
    memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(entry *));
    s->v[i] = e;
    s->n++;
    s->series += e->series;
    s->bytes += e->copy.bytes;
    base->stats.rows_written += b->nrows;
    base->stats.buffered_bytes = s->bytes;
}

/*-------------------------------------------------------------------------
 * Scrapes
 *-------------------------------------------------------------------------
 */

/* A set of 64-bit hashes (open addressing): the sample identities of one family. */
typedef struct hset {
    uint64_t *v;
    size_t cap, n;
} hset;

/* Add h; false when it was there already. */
static bool hset_add(hset *h, uint64_t x)
{
    x |= 1; /* 0 marks a free slot */
    if (2 * (h->n + 1) > h->cap) {
        hset g = {rp_calloc(h->cap ? 2 * h->cap : 64, sizeof(uint64_t)), h->cap ? 2 * h->cap : 64,
                  0};
        for (size_t i = 0; i < h->cap; i++)
            if (h->v[i])
                (void)hset_add(&g, h->v[i]);
        rp_free(h->v);
        *h = g;
    }
    size_t i = (size_t)(x % h->cap);
    while (h->v[i] && h->v[i] != x)
        i = (i + 1) % h->cap;
    if (h->v[i])
        return false;
    h->v[i] = x;
    h->n++;
    return true;
}

static void drop_stale(prom_sink *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    for (size_t i = s->n; i-- > 0;)
        if (s->v[i]->copy.b.fetch_time_ns < now - s->stale_ns)
            remove_at(s, i);
    s->base.stats.buffered_bytes = s->bytes;
}

/* The labels of row r of e: custom tags, dbname, tag_ columns; sorted by name, a later
 * one winning over an earlier one of the same name (as pgwatch's map does). */
static size_t row_labels(const entry *e, size_t r, rp_expo_label *out)
{
    size_t n = 0;
    for (size_t i = 0; i < e->ntags; i++)
        out[n++] = (rp_expo_label){e->tags[i].key, e->tags[i].value};
    out[n++] = (rp_expo_label){"dbname", e->source};
    for (size_t c = 0; c < e->copy.b.ncols; c++) {
        size_t len;
        const char *v = e->col_label[c] ? rp_batch_value(&e->copy.b, r, c, &len) : NULL;
        if (v && len)
            out[n++] = (rp_expo_label){e->col_label[c], v};
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: stable, and n is small */
        for (size_t j = i; j > 0 && strcmp(out[j - 1].name, out[j].name) > 0; j--) {
            rp_expo_label t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k && strcmp(out[k - 1].name, out[i].name) == 0)
            out[k - 1] = out[i];
        else
            out[k++] = out[i];
    }
    return k;
}

static bool value_of(const entry *e, size_t r, size_t c, double *out)
{
    size_t len;
    const char *v = rp_batch_value(&e->copy.b, r, c, &len);
    if (!v || !len)
        return false;
    if (e->copy.b.cols[c].kind == RP_VAL_BOOL) {
        *out = v[0] == 't' ? 1 : 0;
        return true;
    }
    char *end;
    *out = strtod(v, &end);
    return end != v;
}

static ssize_t column_of(const entry *e, const char *name)
{
    for (size_t c = 0; c < e->copy.b.ncols; c++)
        if (served(e, c) && strcmp(e->copy.b.cols[c].name, name) == 0)
            return (ssize_t)c;
    return -1;
}

/* One family: column col of the entries [from, to) of one metric. */
static void write_family(prom_sink *s, size_t from, size_t to, const char *col, rp_buf *out)
{
    const entry *first = s->v[from];
    char fam[512];
    if (first->scraped)
        snprintf(fam, sizeof(fam), "%s", first->metric);
    else if (strcmp(first->metric, "instance_up") == 0)
        snprintf(fam, sizeof(fam), "%s_instance_up", s->ns);
    else
        snprintf(fam, sizeof(fam), "%s_%s_%s", s->ns, first->metric, col);
    char *name = safe_name(fam);
    ssize_t c0 = column_of(first, col);
    rp_expo_type type = first->scraped                ? RP_EXPO_UNTYPED
                        : c0 >= 0 && first->gauge[c0] ? RP_EXPO_GAUGE
                                                      : RP_EXPO_COUNTER;
    bool headed = false; /* the HELP and TYPE lines come with the first sample */
    hset seen = {0};
    for (size_t k = from; k < to; k++) {
        const entry *e = s->v[k];
        ssize_t c = column_of(e, col);
        rp_expo_label *labels = rp_calloc(e->ntags + e->copy.b.ncols + 2, sizeof(rp_expo_label));
        for (size_t r = 0; c >= 0 && r < e->copy.b.nrows; r++) {
            double v;
            if (!value_of(e, r, (size_t)c, &v))
                continue;
            size_t nl = row_labels(e, r, labels);
            uint64_t h = RP_HASH_INIT;
            for (size_t i = 0; i < nl; i++)
                h = rp_hash_str(rp_hash_str(h, labels[i].name), labels[i].value);
            if (!hset_add(&seen, h)) {
                s->dup_errors++;
                continue;
            }
            if (!headed)
                rp_expo_family(out, name, type, first->metric);
            headed = true;
            rp_expo_f64_at(out, name, labels, nl, v, rp_batch_row_time(&e->copy.b, 0) / 1000000);
        }
        rp_free(labels);
    }
    rp_free(seen.v);
    rp_free(name);
}

/* The metric's served columns, in the order its entries first show them. */
static void write_metric(prom_sink *s, size_t from, size_t to, rp_buf *out)
{
    const char **cols = NULL;
    size_t n = 0, cap = 0;
    for (size_t k = from; k < to; k++) {
        const entry *e = s->v[k];
        for (size_t c = 0; c < e->copy.b.ncols; c++) {
            size_t i = 0;
            while (i < n && strcmp(cols[i], e->copy.b.cols[c].name) != 0)
                i++;
            if (i == n && served(e, c)) {
                rp_grow((void **)&cols, &cap, n + 1, sizeof(char *));
                cols[n++] = e->copy.b.cols[c].name;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        write_family(s, from, to, cols[i], out);
    rp_free(cols);
}

static void prom_expose(rp_sink *base, rp_buf *out)
{
    prom_sink *s = (prom_sink *)base;
    drop_stale(s);
    s->scrapes++;
    uint64_t dups = s->dup_errors;
    for (size_t i = 0, j; i < s->n; i = j) {
        for (j = i + 1; j < s->n && strcmp(s->v[j]->metric, s->v[i]->metric) == 0; j++)
            ;
        write_metric(s, i, j, out);
    }
    char name[256];
    snprintf(name, sizeof(name), "%s_exporter_total_scrapes", s->ns);
    rp_expo_family(out, name, RP_EXPO_COUNTER, "Total scrape attempts.");
    rp_expo_u64(out, name, NULL, 0, s->scrapes);
    snprintf(name, sizeof(name), "%s_exporter_last_scrape_errors", s->ns);
    rp_expo_family(out, name, RP_EXPO_GAUGE,
                   "Samples left out of the last scrape: their series was there already "
                   "(prefix text columns that tell rows apart with tag_).");
    rp_expo_u64(out, name, NULL, 0, s->dup_errors - dups);
}

/*-------------------------------------------------------------------------
 * Open and close
 *-------------------------------------------------------------------------
 */

static int prom_open(const char *uri, uv_loop_t *loop, const rp_sink_opts *opts, rp_sink **out,
                     char *err, size_t errlen)
{
    (void)loop;
    (void)opts;
    prom_uri u;
    int rc = parse_uri(uri, &u, err, errlen);
    if (rc < 0)
        return rc;
    prom_sink *s = rp_calloc(1, sizeof(*s));
    s->base.ops = &rp_sink_prometheus_ops;
    s->base.uri = rp_strdup(uri);
    s->base.serve_addr = rp_strdup(u.addr);
    s->ns = rp_strdup(u.ns);
    s->max_series = (size_t)u.max_series;
    s->stale_ns = (int64_t)u.stale_s * 1000000000;
    *out = &s->base;
    return 0;
}

static int prom_flush(rp_sink *base)
{
    (void)base;
    return 0; /* nothing to push: scrapes pull */
}

static void prom_close(rp_sink *base, rp_sink_closed_cb cb, void *arg)
{
    prom_sink *s = (prom_sink *)base;
    base->stats.buffered_bytes = 0;
    if (cb)
        cb(arg, &base->stats);
    while (s->n)
        remove_at(s, s->n - 1);
    for (size_t i = 0; i < s->ncapped; i++)
        rp_free(s->capped[i]);
    rp_free(s->capped);
    rp_free(s->v);
    rp_free(s->ns);
    rp_task_unregister(&base->task);
    rp_free(base->serve_addr);
    rp_free(base->uri);
    rp_free(s);
}

const rp_sink_ops rp_sink_prometheus_ops = {
    .scheme = "prometheus",
    .open = prom_open,
    .check = prom_check,
    .write_batch = prom_write_batch,
    .flush = prom_flush,
    .close = prom_close,
    .expose = prom_expose,
};
