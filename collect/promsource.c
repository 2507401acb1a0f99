/* SPDX-License-Identifier: PostgreSQL
 *
 * The prometheus source kind. See promsource.h.
 */
#include "collect/promsource.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "collect/httpget.h"
#include "collect/promtext.h"
#include "collect/scheduler.h"
#include "common/clock.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/tasks.h"

#define SCRAPE_ALL_S       60 /* pgwatch's interval when no family is named */
#define MAX_REDIRECTS      3
#define MAX_SAID           256 /* (family, message) pairs remembered as logged */
#define DEFAULT_TIMEOUT_MS 30000

typedef struct family_iv {
    char *name; /* owned */
    int interval_s;
} family_iv;

typedef struct promsrc {
    const rp_source_opts *opts;
    rp_source_def def;
    rp_catalog *cat;
    char *masked_url;
    rp_task task;
    uv_timer_t timer;
    rp_sched sched;
    family_iv *fams; /* the families named, or none: every family */
    size_t nfams;
    size_t *due;
    bool *want; /* per family: due in the scrape in flight */
    rp_httpget_req *req;
    int64_t scrape_ns;
    const char *state;
    uint64_t err_hash;       /* of the last scrape error logged; 0: working */
    uint64_t said[MAX_SAID]; /* family problems logged */
    size_t nsaid;
    rp_source_closed_cb closed_cb;
    void *closed_arg;
    rp_source_stats stats;
} promsrc;

/*-------------------------------------------------------------------------
 * The families and their schedule
 *-------------------------------------------------------------------------
 */

static void free_fams(promsrc *s)
{
    for (size_t i = 0; i < s->nfams; i++)
        rp_free(s->fams[i].name);
    rp_free(s->fams);
    s->fams = NULL;
    s->nfams = 0;
}

/* name at seconds (0: left out), replacing what an earlier list said. */
static void put_family(promsrc *s, const char *name, int seconds, size_t *cap)
{
    size_t i = 0;
    while (i < s->nfams && strcmp(s->fams[i].name, name) != 0)
        i++;
    if (i == s->nfams) {
        rp_grow((void **)&s->fams, cap, s->nfams + 1, sizeof(family_iv));
        s->fams[s->nfams++] = (family_iv){rp_strdup(name), 0};
    }
    double scaled = round(seconds * s->opts->interval_scale);
    s->fams[i].interval_s = seconds <= 0 ? 0 : scaled < 1 ? 1 : (int)scaled;
}

/* The preset's metrics, refined by custom_metrics; families at 0 dropped. */
static void plan_families(promsrc *s)
{
    free_fams(s);
    size_t cap = 0;
    const rp_preset *p =
        s->def.preset_metrics ? rp_catalog_preset(s->cat, s->def.preset_metrics) : NULL;
    for (size_t i = 0; p && i < p->nmetrics; i++)
        put_family(s, p->metrics[i].metric, p->metrics[i].seconds, &cap);
    for (size_t i = 0; i < s->def.ncustom_metrics; i++)
        put_family(s, s->def.custom_metrics[i].metric, s->def.custom_metrics[i].seconds, &cap);
    size_t k = 0;
    for (size_t i = 0; i < s->nfams; i++) {
        if (s->fams[i].interval_s > 0)
            s->fams[k++] = s->fams[i];
        else
            rp_free(s->fams[i].name);
    }
    s->nfams = k;
}

static void schedule(promsrc *s)
{
    size_t n = s->nfams ? s->nfams : 1;
    const char **keys = rp_calloc(n, sizeof(char *));
    int64_t *ivs = rp_calloc(n, sizeof(int64_t));
    for (size_t i = 0; i < s->nfams; i++) {
        keys[i] = s->fams[i].name;
        ivs[i] = (int64_t)s->fams[i].interval_s * 1000;
    }
    if (!s->nfams) {
        keys[0] = "*";
        ivs[0] = (int64_t)SCRAPE_ALL_S * 1000;
    }
    rp_sched_set(&s->sched, (int64_t)uv_now(s->opts->loop),
                 rp_sched_phase_for(s->def.name, s->opts->phase_window_ms), keys, ivs, n);
    rp_free(keys);
    rp_free(ivs);
    rp_free(s->due);
    rp_free(s->want);
    s->due = rp_calloc(n, sizeof(size_t));
    s->want = rp_calloc(n, sizeof(bool));
}

/*-------------------------------------------------------------------------
 * A scrape
 *-------------------------------------------------------------------------
 */

static void arm(promsrc *s);

/* Whether (family, what) is new to the log; remembered up to MAX_SAID. */
static bool first_time(promsrc *s, const char *family, const char *what)
{
    uint64_t h = rp_hash_str(rp_hash_str(RP_HASH_INIT, family), what);
    for (size_t i = 0; i < s->nsaid; i++)
        if (s->said[i] == h)
            return false;
    if (s->nsaid < MAX_SAID)
        s->said[s->nsaid++] = h;
    return true;
}

static bool wanted(const promsrc *s, const char *family)
{
    if (!s->nfams)
        return true;
    for (size_t i = 0; i < s->nfams; i++)
        if (s->want[i] && strcmp(s->fams[i].name, family) == 0)
            return true;
    return false;
}

static void on_family(void *arg, const char *family, const rp_batch *b)
{
    promsrc *s = arg;
    if (!wanted(s, family))
        return;
    if (s->opts->result_max_rows > 0 && b->nrows > (size_t)s->opts->result_max_rows) {
        s->stats.results_over_cap++;
        rp_log_level level = first_time(s, family, "rows") ? RP_LOG_WARN : RP_LOG_DEBUG;
        rp_log_at(level, s->def.name, family, NULL,
                  "family left out of this scrape: %zu samples, over %lld", b->nrows,
                  (long long)s->opts->result_max_rows);
        return;
    }
    rp_batch v = *b;
    v.source = s->def.name;
    v.metric = v.storage = family;
    v.scraped = true;
    v.fetch_time_ns = s->scrape_ns;
    v.custom_tags = s->def.custom_tags;
    v.ncustom_tags = s->def.ncustom_tags;
    s->stats.fetches_ok++;
    s->stats.rows += v.nrows;
    s->stats.values += v.nrows * v.ncols;
    s->opts->emit(s->opts->emit_arg, &v);
}

static void on_parse_error(void *arg, const char *family, const char *msg)
{
    promsrc *s = arg;
    if (family && !wanted(s, family))
        return;
    s->stats.fetch_errors++;
    rp_log_level level = first_time(s, family ? family : "", msg) ? RP_LOG_WARN : RP_LOG_DEBUG;
    rp_log_at(level, s->def.name, family, msg, "%s: the exposition text does not parse",
              family ? "family left out of this scrape" : "line skipped");
}

/* An error's identity for "said once": its text without digits (a timeout after 2000 or
 * 2001 ms is the same news). */
static uint64_t error_key(const char *err)
{
    uint64_t h = RP_HASH_INIT;
    for (; *err; err++)
        if (*err < '0' || *err > '9')
            h = rp_hash_bytes(h, err, 1);
    return h ? h : 1;
}

static void scrape_failed(promsrc *s, const char *err)
{
    s->stats.fetch_errors++;
    uint64_t h = error_key(err);
    if (h != s->err_hash)
        rp_log_at(RP_LOG_ERROR, s->def.name, NULL, err, "scrape of %s failed", s->masked_url);
    s->err_hash = h;
}

static void on_scraped(void *arg, const char *body, size_t len, const char *err)
{
    promsrc *s = arg;
    s->req = NULL;
    s->state = "ready";
    rp_task_set_state(&s->task, s->state);
    if (err) {
        scrape_failed(s, err);
        return;
    }
    if (s->err_hash)
        rp_log_at(RP_LOG_INFO, s->def.name, NULL, NULL, "scrape works again");
    s->err_hash = 0;
    rp_promtext_counts n;
    rp_promtext_parse(body, len, s->scrape_ns, on_family, on_parse_error, s, &n);
}

static void scrape(promsrc *s, size_t ndue)
{
    memset(s->want, 0, (s->nfams ? s->nfams : 1) * sizeof(bool));
    for (size_t i = 0; i < ndue; i++)
        s->want[s->due[i]] = true;
    int timeout =
        s->opts->statement_timeout_ms > 0 ? s->opts->statement_timeout_ms : DEFAULT_TIMEOUT_MS;
    rp_httpget_opts ho = {.timeout_ms = timeout,
                          .connect_timeout_ms = s->opts->connect_timeout_ms,
                          .max_bytes = (size_t)s->opts->result_max_bytes,
                          .max_redirects = MAX_REDIRECTS,
                          .accept = "text/plain;version=0.0.4"};
    char err[256];
    s->scrape_ns = rp_clock_wall_ns();
    s->req = rp_httpget_start(s->opts->http, s->def.conn_str, &ho, on_scraped, s, err, sizeof(err));
    if (!s->req) {
        scrape_failed(s, err);
        return;
    }
    s->stats.ticks++;
    s->state = "busy";
    rp_task_set_state(&s->task, s->state);
}

static void on_timer(uv_timer_t *t)
{
    promsrc *s = t->data;
    int64_t now = (int64_t)uv_now(s->opts->loop);
    bool busy = s->req != NULL;
    size_t ndue = rp_sched_due(&s->sched, now, busy, s->due);
    if (busy)
        s->stats.skipped_ticks++;
    else if (ndue)
        scrape(s, ndue);
    arm(s);
}

static void arm(promsrc *s)
{
    int64_t next = rp_sched_next(&s->sched);
    int64_t now = (int64_t)uv_now(s->opts->loop);
    if (next != RP_SCHED_NEVER)
        uv_timer_start(&s->timer, on_timer, (uint64_t)(next > now ? next - now : 0), 0);
}

/*-------------------------------------------------------------------------
 * The collector
 *-------------------------------------------------------------------------
 */

/* The URL without a password ("http://user:****@host/..."). */
static char *mask_url(const char *url)
{
    rp_buf b = RP_BUF_INIT;
    const char *auth = strstr(url, "://");
    const char *at = auth ? strchr(auth + 3, '@') : NULL;
    const char *slash = auth ? strchr(auth + 3, '/') : NULL;
    const char *colon = auth ? strchr(auth + 3, ':') : NULL;
    if (at && (!slash || at < slash) && colon && colon < at) {
        rp_buf_append(&b, url, (size_t)(colon + 1 - url));
        rp_buf_puts(&b, "****");
        rp_buf_puts(&b, at);
    } else {
        rp_buf_puts(&b, url);
    }
    return b.data;
}

static void *ps_create(const rp_source_opts *opts, const rp_source_def *def, rp_catalog *cat)
{
    promsrc *s = rp_calloc(1, sizeof(*s));
    s->opts = opts;
    rp_source_def_copy(&s->def, def);
    s->cat = rp_catalog_ref(cat);
    s->masked_url = mask_url(def->conn_str);
    s->state = "idle";
    rp_task_register(&s->task, "source", def->name, NULL);
    rp_task_set_state(&s->task, s->state);
    rp_sched_init(&s->sched);
    uv_timer_init(opts->loop, &s->timer);
    s->timer.data = s;
    plan_families(s);
    schedule(s);
    return s;
}

static void ps_start(void *c)
{
    promsrc *s = c;
    if (!s->nfams)
        rp_log_at(RP_LOG_INFO, s->def.name, NULL, NULL,
                  "no families named: every family of %s is stored every %d s", s->masked_url,
                  SCRAPE_ALL_S);
    s->state = "ready";
    rp_task_set_state(&s->task, s->state);
    arm(s);
}

static void ps_update(void *c, const rp_source_def *def, rp_catalog *cat)
{
    promsrc *s = c;
    rp_source_def_fini(&s->def);
    rp_source_def_copy(&s->def, def);
    rp_catalog_unref(s->cat);
    s->cat = rp_catalog_ref(cat);
    plan_families(s); /* the schedule keeps the deadlines of unchanged families */
    schedule(s);
    if (!s->req)
        arm(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    promsrc *s = h->data;
    if (s->opts->retired)
        rp_source_stats_add(s->opts->retired, &s->stats);
    rp_source_closed_cb cb = s->closed_cb;
    void *arg = s->closed_arg;
    rp_sched_fini(&s->sched);
    free_fams(s);
    rp_free(s->due);
    rp_free(s->want);
    rp_free(s->masked_url);
    rp_catalog_unref(s->cat);
    rp_source_def_fini(&s->def);
    rp_task_unregister(&s->task);
    rp_free(s);
    if (cb)
        cb(arg);
}

static void ps_stop(void *c, int drain_ms, rp_source_closed_cb cb, void *arg)
{
    promsrc *s = c;
    if (!strcmp(s->state, "closing"))
        return;
    s->closed_cb = cb;
    s->closed_arg = arg;
    s->state = "closing";
    rp_httpget_cancel(s->req); /* a scrape is not worth waiting for: the next owner scrapes */
    s->req = NULL;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static const char *ps_name(const void *c)
{
    return ((const promsrc *)c)->def.name;
}

static const rp_source_def *ps_def_of(const void *c)
{
    return &((const promsrc *)c)->def;
}

static const rp_source_stats *ps_stats(const void *c)
{
    return &((const promsrc *)c)->stats;
}

static const char *ps_state(const void *c)
{
    return ((const promsrc *)c)->state;
}

const rp_collector_ops rp_promsource_ops = {
    .mode = "prometheus",
    .create = ps_create,
    .start = ps_start,
    .update = ps_update,
    .stop = ps_stop,
    .name = ps_name,
    .def_of = ps_def_of,
    .stats = ps_stats,
    .state = ps_state,
};
