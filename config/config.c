/* SPDX-License-Identifier: PostgreSQL
 *
 * Config validation, lookup, metric resolution and lifetime. See config.h.
 */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/mem.h"
#include "config/config_int.h"

void rp_diag_init(rp_diag *d)
{
    memset(d, 0, sizeof(*d));
}

void rp_diag_fini(rp_diag *d)
{
    rp_buf_fini(&d->text);
}

void rp_diag_add(rp_diag *d, const rp_mark *m, const char *fmt, ...)
{
    if (m && m->line > 0)
        rp_buf_printf(&d->text, "%s:%d:%d: ", m->file, m->line, m->col);
    else if (m && m->file)
        rp_buf_printf(&d->text, "%s: ", m->file);
    va_list ap;
    va_start(ap, fmt);
    rp_buf_vprintf(&d->text, fmt, ap);
    va_end(ap);
    rp_buf_putc(&d->text, '\n');
    d->count++;
}

static void diag_warn(rp_diag *d, const rp_mark *m, const char *fmt, ...) RP_PRINTF(3, 4);

static void diag_warn(rp_diag *d, const rp_mark *m, const char *fmt, ...)
{
    rp_buf_printf(&d->text, "%s:%d:%d: warning: ", m->file, m->line, m->col);
    va_list ap;
    va_start(ap, fmt);
    rp_buf_vprintf(&d->text, fmt, ap);
    va_end(ap);
    rp_buf_putc(&d->text, '\n');
}

/*-------------------------------------------------------------------------
 * Catalogue
 *-------------------------------------------------------------------------
 */

static int cmp_metric(const void *a, const void *b)
{
    return strcmp(((const rp_metric_def *)a)->name, ((const rp_metric_def *)b)->name);
}

static int cmp_preset(const void *a, const void *b)
{
    return strcmp(((const rp_preset *)a)->name, ((const rp_preset *)b)->name);
}

/* Stable on ties so that duplicates keep file order for the error message. */
static void sort_stable(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    char *a = base;
    char *tmp = rp_malloc(size);
    for (size_t i = 1; i < n; i++) {
        size_t j = i;
        memcpy(tmp, a + i * size, size);
        while (j > 0 && cmp(a + (j - 1) * size, tmp) > 0) {
            memcpy(a + j * size, a + (j - 1) * size, size);
            j--;
        }
        memcpy(a + j * size, tmp, size);
    }
    rp_free(tmp);
}

void rp__catalog_sort(rp_catalog *cat)
{
    sort_stable(cat->metrics, cat->nmetrics, sizeof(rp_metric_def), cmp_metric);
    sort_stable(cat->presets, cat->npresets, sizeof(rp_preset), cmp_preset);
}

const rp_metric_def *rp_catalog_metric(const rp_catalog *cat, const char *name)
{
    rp_metric_def key = {.name = (char *)name};
    if (cat->nmetrics == 0)
        return NULL;
    return bsearch(&key, cat->metrics, cat->nmetrics, sizeof(rp_metric_def), cmp_metric);
}

const rp_preset *rp_catalog_preset(const rp_catalog *cat, const char *name)
{
    rp_preset key = {.name = (char *)name};
    if (cat->npresets == 0)
        return NULL;
    return bsearch(&key, cat->presets, cat->npresets, sizeof(rp_preset), cmp_preset);
}

const char *rp_metric_sql_for(const rp_metric_def *def, int server_version_num)
{
    const char *sql = NULL;
    for (size_t i = 0; i < def->nsqls; i++) {
        if (def->sqls[i].min_version <= server_version_num)
            sql = def->sqls[i].sql;
    }
    return sql;
}

/* Names become table names and log fields: printable, 1..63 bytes. */
static const char *bad_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return "must not be empty";
    if (n > 63)
        return "is longer than 63 bytes";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7F)
            return "contains a control character";
    }
    return NULL;
}

rp_metric_code rp_metric_code_for(const char *name)
{
    static const struct {
        const char *name;
        rp_metric_code code;
    } names[] = {
        {"cpu_load", RP_CODE_CPU_LOAD},
        {"psutil_cpu", RP_CODE_PSUTIL_CPU},
        {"psutil_mem", RP_CODE_PSUTIL_MEM},
        {"psutil_disk_io_total", RP_CODE_PSUTIL_DISK_IO},
        {"psutil_disk", RP_CODE_PSUTIL_DISK},
        {"change_events", RP_CODE_CHANGE_EVENTS},
        {"server_log_event_counts", RP_CODE_LOG_EVENT_COUNTS},
    };
    for (size_t i = 0; name && i < RP_ARRAY_LEN(names); i++) {
        if (strcmp(name, names[i].name) == 0)
            return names[i].code;
    }
    return RP_CODE_NONE;
}

bool rp_metric_code_placeholder(rp_metric_code c)
{
    return c == RP_CODE_CHANGE_EVENTS || c == RP_CODE_LOG_EVENT_COUNTS;
}

static int validate_metric(const rp_metric_def *d, rp_diag *diag)
{
    int rc = 0;
    const char *why = bad_name(d->name);
    if (why) {
        rp_diag_add(diag, &d->mark, "metric name \"%s\" %s", d->name, why);
        rc = -EINVAL;
    }
    if (d->storage_name && (why = bad_name(d->storage_name)) != NULL) {
        rp_diag_add(diag, &d->mark, "storage_name \"%s\" of metric \"%s\" %s", d->storage_name,
                    d->name, why);
        rc = -EINVAL;
    }
    for (size_t i = 1; i < d->nsqls; i++) {
        if (d->sqls[i].min_version == d->sqls[i - 1].min_version) {
            rp_diag_add(diag, &d->mark, "metric \"%s\" has two SQL texts for the same version",
                        d->name);
            rc = -EINVAL;
        }
    }
    for (size_t i = 0; i < d->nsqls; i++) {
        const char *p = d->sqls[i].sql;
        while (p && isspace((unsigned char)*p))
            p++;
        if ((!p || !*p) && !rp_metric_code_placeholder(rp_metric_code_for(d->name))) {
            rp_diag_add(diag, &d->mark, "metric \"%s\" has an empty SQL text", d->name);
            rc = -EINVAL;
        }
    }
    return rc;
}

int rp_catalog_validate(const rp_catalog *cat, rp_diag *diag)
{
    int rc = 0;
    for (size_t i = 0; i < cat->nmetrics; i++) {
        const rp_metric_def *d = &cat->metrics[i];
        if (validate_metric(d, diag) < 0)
            rc = -EINVAL;
        if (i > 0 && strcmp(d->name, cat->metrics[i - 1].name) == 0) {
            const rp_mark *f = &cat->metrics[i - 1].mark;
            rp_diag_add(diag, &d->mark, "metric \"%s\" is already defined at %s:%d:%d", d->name,
                        f->file, f->line, f->col);
            rc = -EINVAL;
        }
    }
    for (size_t i = 0; i < cat->npresets; i++) {
        const rp_preset *p = &cat->presets[i];
        if (i > 0 && strcmp(p->name, cat->presets[i - 1].name) == 0) {
            const rp_mark *f = &cat->presets[i - 1].mark;
            rp_diag_add(diag, &p->mark, "preset \"%s\" is already defined at %s:%d:%d", p->name,
                        f->file, f->line, f->col);
            rc = -EINVAL;
        }
        /* pgwatch's own catalogue has a preset with a dangling entry: a warning here, an
         * error for a source that uses the preset (rp_sources_validate). */
        for (size_t j = 0; j < p->nmetrics; j++) {
            if (!rp_catalog_metric(cat, p->metrics[j].metric))
                diag_warn(diag, &p->metrics[j].mark,
                          "preset \"%s\" references metric \"%s\", which is not defined", p->name,
                          p->metrics[j].metric);
        }
    }
    return rc;
}

rp_catalog *rp_catalog_ref(rp_catalog *cat)
{
    cat->refs++;
    return cat;
}

static void metric_fini(rp_metric_def *d)
{
    rp_free(d->name);
    for (size_t i = 0; i < d->nsqls; i++)
        rp_free(d->sqls[i].sql);
    rp_free(d->sqls);
    for (size_t i = 0; i < d->ngauges; i++)
        rp_free(d->gauges[i]);
    rp_free(d->gauges);
    rp_free(d->init_sql);
    rp_free(d->storage_name);
    rp_free(d->description);
}

static void intervals_free(rp_interval *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rp_free(v[i].metric);
    rp_free(v);
}

void rp_catalog_unref(rp_catalog *cat)
{
    if (!cat || --cat->refs > 0)
        return;
    for (size_t i = 0; i < cat->nmetrics; i++)
        metric_fini(&cat->metrics[i]);
    rp_free(cat->metrics);
    for (size_t i = 0; i < cat->npresets; i++) {
        rp_free(cat->presets[i].name);
        rp_free(cat->presets[i].description);
        intervals_free(cat->presets[i].metrics, cat->presets[i].nmetrics);
    }
    rp_free(cat->presets);
    for (size_t i = 0; i < cat->nfiles; i++)
        rp_free(cat->files[i]);
    rp_free(cat->files);
    rp_free(cat);
}

/*-------------------------------------------------------------------------
 * Sources
 *-------------------------------------------------------------------------
 */

static bool is_word(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        if (!isalnum((unsigned char)*s) && *s != '_')
            return false;
    }
    return true;
}

bool rp_source_def_patroni(const rp_source_def *d)
{
    return d->kind && (strcmp(d->kind, "patroni") == 0 ||
                       strcmp(d->kind, "patroni-continuous-discovery") == 0 ||
                       strcmp(d->kind, "patroni-namespace-discovery") == 0);
}

bool rp_source_def_discovers(const rp_source_def *d)
{
    return d->kind && (strcmp(d->kind, RP_KIND_DISCOVERY) == 0 || rp_source_def_patroni(d));
}

const char *rp_source_def_console(const rp_source_def *d)
{
    if (d->kind && strcmp(d->kind, "pgbouncer") == 0)
        return "SHOW VERSION";
    if (d->kind && strcmp(d->kind, "pgpool") == 0)
        return "SHOW POOL_VERSION";
    return NULL;
}

bool rp_source_def_scrapes(const rp_source_def *d)
{
    return d->kind && strcmp(d->kind, "prometheus") == 0;
}

static int check_kind(const rp_source_def *s, rp_diag *diag)
{
    if (rp_source_def_patroni(s)) {
        if (s->conn_str && strncmp(s->conn_str, "etcd://", 7) != 0 &&
            strncmp(s->conn_str, "etcd3://", 8) != 0) {
            rp_diag_add(diag, &s->conn_str_mark,
                        "source \"%s\" of kind %s: conn_str must be etcd://host:port/namespace"
                        "/scope (this version reads Patroni's members from etcd only)",
                        s->name, s->kind);
            return -EINVAL;
        }
        return 0;
    }
    if (!s->kind || !*s->kind || strcmp(s->kind, "postgres") == 0 || rp_source_def_discovers(s) ||
        rp_source_def_console(s))
        return 0; /* pgwatch reads an empty kind as postgres */
    if (rp_source_def_scrapes(s)) {
        if (s->conn_str && strncmp(s->conn_str, "http://", 7) != 0 &&
            strncmp(s->conn_str, "https://", 8) != 0) {
            rp_diag_add(diag, &s->conn_str_mark,
                        "source \"%s\" of kind prometheus: conn_str must be an http:// or "
                        "https:// URL",
                        s->name);
            return -EINVAL;
        }
        return 0;
    }
    rp_diag_add(diag, &s->kind_mark, "invalid source kind \"%s\" (supported: " RP_KINDS ")",
                s->kind);
    return -EINVAL;
}

void rp_sources_prune(rp_source_set *set, rp_diag *diag)
{
    (void)diag;
    size_t kept = 0;
    for (size_t i = 0; i < set->nsources; i++) {
        rp_source_def *s = &set->sources[i];
        if (!s->is_enabled)
            rp_source_def_fini(s);
        else
            set->sources[kept++] = *s;
    }
    set->nsources = kept;
}

static int check_preset(const rp_source_def *s, const char *name, const rp_mark *m,
                        const rp_catalog *cat, rp_diag *diag)
{
    if (!name)
        return 0;
    /* A preset's metrics that the catalogue lacks were reported once, as a warning, with
     * the catalogue; sources run the others, as in pgwatch (whose own file has such
     * presets: aiven, patroni, postgres-exporter-basic). */
    if (!rp_catalog_preset(cat, name)) {
        rp_diag_add(diag, m, "source \"%s\": preset \"%s\" is not defined", s->name, name);
        return -EINVAL;
    }
    return 0;
}

static int check_custom(const rp_source_def *s, const rp_interval *v, size_t n,
                        const rp_catalog *cat, rp_diag *diag)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!rp_catalog_metric(cat, v[i].metric)) {
            rp_diag_add(diag, &v[i].mark, "source \"%s\": metric \"%s\" is not defined", s->name,
                        v[i].metric);
            rc = -EINVAL;
        }
    }
    return rc;
}

static int validate_source(const rp_source_def *s, const rp_catalog *cat, rp_diag *diag)
{
    int rc = 0;
    const char *why;
    if (!s->name) {
        rp_diag_add(diag, &s->mark, "source has no name");
        return -EINVAL;
    }
    if ((why = bad_name(s->name)) != NULL) {
        rp_diag_add(diag, &s->name_mark, "source name \"%s\" %s", s->name, why);
        rc = -EINVAL;
    }
    if (!s->conn_str || !*s->conn_str) {
        rp_diag_add(diag, s->conn_str ? &s->conn_str_mark : &s->mark,
                    "source \"%s\" has an empty conn_str", s->name);
        rc = -EINVAL;
    }
    if (check_kind(s, diag) < 0)
        rc = -EINVAL;
    if (s->group && !is_word(s->group)) {
        rp_diag_add(diag, &s->group_mark,
                    "group \"%s\" of source \"%s\" may contain only letters, digits and \"_\"",
                    s->group, s->name);
        rc = -EINVAL;
    }
    if (check_preset(s, s->preset_metrics, &s->preset_mark, cat, diag) < 0 ||
        check_preset(s, s->preset_metrics_standby, &s->preset_standby_mark, cat, diag) < 0)
        rc = -EINVAL;
    if (rp_source_def_scrapes(s)) /* its metrics are the exporter's families */
        return rc;
    if (check_custom(s, s->custom_metrics, s->ncustom_metrics, cat, diag) < 0 ||
        check_custom(s, s->custom_metrics_standby, s->ncustom_metrics_standby, cat, diag) < 0)
        rc = -EINVAL;
    if (!s->preset_metrics && s->ncustom_metrics == 0) {
        rp_diag_add(diag, &s->mark,
                    "source \"%s\" has no metrics: set preset_metrics or custom_metrics", s->name);
        rc = -EINVAL;
    }
    return rc;
}

int rp_sources_validate(const rp_source_set *set, const rp_catalog *cat, rp_diag *diag)
{
    int rc = 0;
    for (size_t i = 0; i < set->nsources; i++) {
        const rp_source_def *s = &set->sources[i];
        if (validate_source(s, cat, diag) < 0)
            rc = -EINVAL;
        if (!s->name)
            continue;
        for (size_t j = 0; j < i; j++) {
            const rp_source_def *f = &set->sources[j];
            if (f->name && strcmp(f->name, s->name) == 0) {
                rp_diag_add(diag, &s->name_mark,
                            "duplicate source name \"%s\" (first defined at %s:%d:%d)", s->name,
                            f->name_mark.file, f->name_mark.line, f->name_mark.col);
                rc = -EINVAL;
                break;
            }
        }
    }
    return rc;
}

void rp_source_def_fini(rp_source_def *d)
{
    rp_free(d->name);
    rp_free(d->conn_str);
    rp_free(d->kind);
    rp_free(d->role_hint);
    rp_free(d->group);
    rp_free(d->preset_metrics);
    rp_free(d->preset_metrics_standby);
    rp_free(d->include_pattern);
    rp_free(d->exclude_pattern);
    intervals_free(d->custom_metrics, d->ncustom_metrics);
    intervals_free(d->custom_metrics_standby, d->ncustom_metrics_standby);
    for (size_t i = 0; i < d->ncustom_tags; i++) {
        rp_free(d->custom_tags[i].key);
        rp_free(d->custom_tags[i].value);
    }
    rp_free(d->custom_tags);
    memset(d, 0, sizeof(*d));
}

void rp_source_set_free(rp_source_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->nsources; i++)
        rp_source_def_fini(&set->sources[i]);
    rp_free(set->sources);
    for (size_t i = 0; i < set->nfiles; i++)
        rp_free(set->files[i]);
    rp_free(set->files);
    rp_free(set);
}

static char *dup_or_null(const char *s)
{
    return s ? rp_strdup(s) : NULL;
}

static rp_interval *copy_intervals(const rp_interval *v, size_t n)
{
    if (n == 0)
        return NULL;
    rp_interval *c = rp_calloc(n, sizeof(rp_interval));
    for (size_t i = 0; i < n; i++) {
        c[i].metric = rp_strdup(v[i].metric);
        c[i].seconds = v[i].seconds;
    }
    return c;
}

void rp_source_def_copy(rp_source_def *dst, const rp_source_def *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->name = dup_or_null(src->name);
    dst->conn_str = dup_or_null(src->conn_str);
    dst->kind = dup_or_null(src->kind);
    dst->group = dup_or_null(src->group);
    dst->preset_metrics = dup_or_null(src->preset_metrics);
    dst->preset_metrics_standby = dup_or_null(src->preset_metrics_standby);
    dst->include_pattern = dup_or_null(src->include_pattern);
    dst->exclude_pattern = dup_or_null(src->exclude_pattern);
    dst->custom_metrics = copy_intervals(src->custom_metrics, src->ncustom_metrics);
    dst->ncustom_metrics = src->ncustom_metrics;
    dst->custom_metrics_standby =
        copy_intervals(src->custom_metrics_standby, src->ncustom_metrics_standby);
    dst->ncustom_metrics_standby = src->ncustom_metrics_standby;
    if (src->ncustom_tags) {
        dst->custom_tags = rp_calloc(src->ncustom_tags, sizeof(rp_tag));
        for (size_t i = 0; i < src->ncustom_tags; i++) {
            dst->custom_tags[i].key = rp_strdup(src->custom_tags[i].key);
            dst->custom_tags[i].value = rp_strdup(src->custom_tags[i].value);
        }
    }
    dst->ncustom_tags = src->ncustom_tags;
    dst->is_enabled = src->is_enabled;
    dst->only_if_master = src->only_if_master;
    dst->no_prepared = src->no_prepared;
    dst->has_custom_metrics = src->has_custom_metrics;
    dst->has_custom_metrics_standby = src->has_custom_metrics_standby;
    dst->role_hint = dup_or_null(src->role_hint);
}

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool intervals_eq(const rp_interval *a, size_t na, const rp_interval *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        if (!str_eq(a[i].metric, b[i].metric) || a[i].seconds != b[i].seconds)
            return false;
    }
    return true;
}

bool rp_source_def_same_connection(const rp_source_def *a, const rp_source_def *b)
{
    return str_eq(a->name, b->name) && str_eq(a->conn_str, b->conn_str) &&
           str_eq(a->kind, b->kind) && a->no_prepared == b->no_prepared;
}

bool rp_source_def_equal(const rp_source_def *a, const rp_source_def *b)
{
    if (!rp_source_def_same_connection(a, b) || !str_eq(a->group, b->group) ||
        !str_eq(a->preset_metrics, b->preset_metrics) ||
        !str_eq(a->preset_metrics_standby, b->preset_metrics_standby) ||
        a->is_enabled != b->is_enabled || a->only_if_master != b->only_if_master ||
        a->ncustom_tags != b->ncustom_tags || !str_eq(a->role_hint, b->role_hint))
        return false;
    if (!intervals_eq(a->custom_metrics, a->ncustom_metrics, b->custom_metrics,
                      b->ncustom_metrics) ||
        !intervals_eq(a->custom_metrics_standby, a->ncustom_metrics_standby,
                      b->custom_metrics_standby, b->ncustom_metrics_standby))
        return false;
    for (size_t i = 0; i < a->ncustom_tags; i++) {
        if (!str_eq(a->custom_tags[i].key, b->custom_tags[i].key) ||
            !str_eq(a->custom_tags[i].value, b->custom_tags[i].value))
            return false;
    }
    return true;
}

/*-------------------------------------------------------------------------
 * Resolution
 *-------------------------------------------------------------------------
 */

typedef struct plan_build {
    rp_plan_entry *v;
    size_t n, cap;
} plan_build;

static void plan_set(plan_build *b, const rp_metric_def *def, int secs)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i].def == def) {
            if (secs == 0) {
                memmove(&b->v[i], &b->v[i + 1], (b->n - i - 1) * sizeof(rp_plan_entry));
                b->n--;
            } else {
                b->v[i].interval_s = secs;
            }
            return;
        }
    }
    if (secs == 0)
        return;
    rp_grow((void **)&b->v, &b->cap, b->n + 1, sizeof(rp_plan_entry));
    b->v[b->n].def = def;
    b->v[b->n].interval_s = secs;
    b->n++;
}

size_t rp_source_resolve(const rp_source_def *src, const rp_catalog *cat, bool standby,
                         double interval_scale, rp_plan_entry **out)
{
    bool use_standby = standby && (src->preset_metrics_standby || src->ncustom_metrics_standby);
    const char *preset = use_standby ? src->preset_metrics_standby : src->preset_metrics;
    const rp_interval *custom = use_standby ? src->custom_metrics_standby : src->custom_metrics;
    size_t ncustom = use_standby ? src->ncustom_metrics_standby : src->ncustom_metrics;
    plan_build b = {NULL, 0, 0};
    const rp_preset *p = preset ? rp_catalog_preset(cat, preset) : NULL;
    for (size_t i = 0; p && i < p->nmetrics; i++) {
        const rp_metric_def *d = rp_catalog_metric(cat, p->metrics[i].metric);
        if (d)
            plan_set(&b, d, p->metrics[i].seconds);
    }
    for (size_t i = 0; i < ncustom; i++) {
        const rp_metric_def *d = rp_catalog_metric(cat, custom[i].metric);
        if (d)
            plan_set(&b, d, custom[i].seconds);
    }
    size_t n = 0;
    for (size_t i = 0; i < b.n; i++) {
        rp_node_status ns = b.v[i].def->node_status;
        if ((standby && ns == RP_NODE_PRIMARY) || (!standby && ns == RP_NODE_STANDBY))
            continue;
        b.v[n] = b.v[i];
        double s = b.v[n].interval_s * (interval_scale > 0 ? interval_scale : 1.0);
        b.v[n].interval_s = s < 1.0 ? 1 : (int)(s + 0.5);
        n++;
    }
    if (n == 0) {
        rp_free(b.v);
        b.v = NULL;
    }
    *out = b.v;
    return n;
}
