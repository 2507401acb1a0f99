/* SPDX-License-Identifier: PostgreSQL
 *
 * Sink registry and fan-out: every --sink URI is matched by scheme to its ops.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "sinks/sink.h"

static const rp_sink_ops *const registry[] = {
    &rp_sink_jsonfile_ops,
    &rp_sink_postgres_ops,
    &rp_sink_postgresql_ops,
    &rp_sink_prometheus_ops,
};

/* A libpq key=value connection string ("host=... dbname=..."): a PostgreSQL sink. */
static bool keyword_form(const char *uri)
{
    const char *p = uri + strspn(uri, " \t");
    size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
    return n > 0 && p[n + strspn(p + n, " \t")] == '=';
}

static const rp_sink_ops *lookup(const char *uri)
{
    const char *colon = strchr(uri, ':');
    size_t n = colon ? (size_t)(colon - uri) : 0;
    for (size_t i = 0; colon && i < RP_ARRAY_LEN(registry); i++) {
        if (strlen(registry[i]->scheme) == n && strncmp(uri, registry[i]->scheme, n) == 0)
            return registry[i];
    }
    return keyword_form(uri) ? &rp_sink_postgresql_ops : NULL;
}

int rp_sinks_check_uri(const char *uri, char *err, size_t errlen)
{
    const rp_sink_ops *ops = lookup(uri);
    if (ops)
        return ops->check ? ops->check(uri, err, errlen) : 0;
    const char *colon = strchr(uri, ':');
    if (colon && strncmp(uri, "grpc:", 5) == 0)
        snprintf(err, errlen,
                 "sink \"%.*s\" is not supported by this version of pgreaper "
                 "(supported: postgresql, jsonfile, prometheus)",
                 (int)(colon - uri), uri);
    else if (colon) /* only the scheme: the rest may hold a password */
        snprintf(err, errlen,
                 "unknown sink type \"%.*s\" (expected postgresql://..., a key=value connection "
                 "string such as \"host=... dbname=...\", jsonfile:///path or jsonfile:-)",
                 (int)(colon - uri), uri);
    else /* not shown: it may be a mistyped connection string with a password */
        snprintf(err, errlen,
                 "invalid sink (%zu characters, not shown): expected postgresql://..., a "
                 "key=value connection string such as \"host=... dbname=...\", "
                 "jsonfile:///path or jsonfile:-",
                 strlen(uri));
    return -EINVAL;
}

int rp_sinks_open(rp_sinks *s, const char *const *uris, size_t n, uv_loop_t *loop,
                  const rp_sink_opts *opts, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->v = rp_calloc(n ? n : 1, sizeof(rp_sink *));
    for (size_t i = 0; i < n; i++) {
        int rc = rp_sinks_check_uri(uris[i], err, errlen);
        if (rc == 0)
            rc = lookup(uris[i])->open(uris[i], loop, opts, &s->v[s->n], err, errlen);
        if (rc < 0) {
            for (size_t j = 0; j < s->n; j++)
                s->v[j]->ops->close(s->v[j], NULL, NULL); /* nothing was written yet */
            rp_free(s->v);
            memset(s, 0, sizeof(*s));
            return rc;
        }
        rp_task_register(&s->v[s->n]->task, "sink", s->v[s->n]->uri, NULL);
        s->n++;
    }
    return 0;
}

void rp_sinks_write(rp_sinks *s, const rp_batch *batch)
{
    for (size_t i = 0; i < s->n; i++)
        s->v[i]->ops->write_batch(s->v[i], batch);
}

int rp_sinks_flush(rp_sinks *s)
{
    int first = 0;
    for (size_t i = 0; i < s->n; i++) {
        int rc = s->v[i]->ops->flush(s->v[i]);
        if (rc < 0 && first == 0)
            first = rc;
    }
    return first;
}

_Static_assert(sizeof(rp_sink_stats) % sizeof(uint64_t) == 0, "rp_sink_stats: uint64_t only");

void rp_sink_failed(rp_sink *k, const char *detail, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->last_error, sizeof(k->last_error), fmt, ap);
    va_end(ap);
    if (k->failing)
        return;
    k->failing = true;
    k->dropped_at_failure = k->stats.rows_dropped;
    rp_log_at(RP_LOG_ERROR, NULL, NULL, detail, "%s", k->last_error);
}

void rp_sink_recovered(rp_sink *k, const char *fmt, ...)
{
    if (!k->failing)
        return;
    k->failing = false;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rp_log_info("%s", msg);
}

void rp_sink_note_write(rp_sink *k, uint64_t us)
{
    rp_sink_stats *st = &k->stats;
    st->flushes++;
    st->flush_us_total += us;
    st->flush_us_max = us > st->flush_us_max ? us : st->flush_us_max;
    int b = 0;
    while (b < 15 && us > 1000u * (1u << b))
        b++;
    st->flush_ms_hist[b]++;
}

void rp_sink_stats_add(rp_sink_stats *to, const rp_sink_stats *from)
{
    const uint64_t *in = (const uint64_t *)from;
    uint64_t *out = (uint64_t *)to;
    for (size_t i = 0; i < sizeof(*from) / sizeof(uint64_t); i++)
        out[i] += in[i];
}

static void on_sink_closed(void *arg, const rp_sink_stats *final)
{
    rp_sinks *s = arg;
    if (final)
        rp_sink_stats_add(&s->totals, final);
    if (--s->pending_closes > 0)
        return;
    rp_free(s->v);
    s->v = NULL;
    s->n = 0;
    if (s->closed_cb)
        s->closed_cb(s->closed_arg);
}

void rp_sinks_close(rp_sinks *s, rp_sinks_closed_cb cb, void *arg)
{
    s->closed_cb = cb;
    s->closed_arg = arg;
    if (s->n == 0) {
        rp_free(s->v);
        s->v = NULL;
        if (cb)
            cb(arg);
        return;
    }
    s->pending_closes = (unsigned)s->n + 1;
    for (size_t i = 0; i < s->n; i++)
        s->v[i]->ops->close(s->v[i], on_sink_closed, s);
    on_sink_closed(s, NULL);
}
