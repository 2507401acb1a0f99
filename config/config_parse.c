/* SPDX-License-Identifier: PostgreSQL
 *
 * YAML → config structs, with libyaml's document API so that every node keeps its
 * position for error messages. Only syntax, key names and value types are checked here;
 * cross-references are rp_*_validate()'s job (config.c).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "common/mem.h"
#include "config/config.h"
#include "config/config_int.h"
#include "pgio/connstr.h"

typedef struct walk {
    const char *file;
    yaml_document_t *doc;
    rp_diag *diag;
} walk;

static rp_mark mark_of(const walk *w, const yaml_node_t *n)
{
    rp_mark m = {w->file, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
    return m;
}

static yaml_node_t *node(const walk *w, int id)
{
    return yaml_document_get_node(w->doc, id);
}

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_NO_NODE:
        break;
    }
    return "nothing";
}

static const char *sval(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

bool rp__yaml_is_null(const void *vn)
{
    const yaml_node_t *n = vn;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = sval(n);
    return *s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

static bool expect(const walk *w, const yaml_node_t *n, yaml_node_type_t t, const char *what)
{
    if (n->type == t)
        return true;
    rp_mark m = mark_of(w, n);
    rp_diag_add(w->diag, &m, "%s must be %s, not %s", what,
                t == YAML_SCALAR_NODE     ? "a scalar"
                : t == YAML_SEQUENCE_NODE ? "a list"
                                          : "a mapping",
                node_kind(n));
    return false;
}

static int get_str(const walk *w, const yaml_node_t *n, const char *what, char **out)
{
    if (!expect(w, n, YAML_SCALAR_NODE, what))
        return -EINVAL;
    rp_free(*out);
    *out = rp__yaml_is_null(n) ? NULL : rp_strndup(sval(n), n->data.scalar.length);
    return 0;
}

static int get_int(const walk *w, const yaml_node_t *n, const char *what, long min, long max,
                   int *out)
{
    if (!expect(w, n, YAML_SCALAR_NODE, what))
        return -EINVAL;
    char *end;
    errno = 0;
    long v = strtol(sval(n), &end, 10);
    rp_mark m = mark_of(w, n);
    if (errno || end == sval(n) || *end != '\0') {
        rp_diag_add(w->diag, &m, "%s must be an integer, not \"%s\"", what, sval(n));
        return -EINVAL;
    }
    if (v < min || v > max) {
        rp_diag_add(w->diag, &m, "%s must be between %ld and %ld, not %ld", what, min, max, v);
        return -EINVAL;
    }
    *out = (int)v;
    return 0;
}

static int get_bool(const walk *w, const yaml_node_t *n, const char *what, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "On"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "off", "Off"};
    if (!expect(w, n, YAML_SCALAR_NODE, what))
        return -EINVAL;
    for (size_t i = 0; i < RP_ARRAY_LEN(yes); i++) {
        if (strcmp(sval(n), yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(sval(n), no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    rp_mark m = mark_of(w, n);
    rp_diag_add(w->diag, &m, "%s must be true or false, not \"%s\"", what, sval(n));
    return -EINVAL;
}

static void unknown_key(const walk *w, const yaml_node_t *k, const char *where)
{
    rp_mark m = mark_of(w, k);
    if (w->diag->lenient) {
        rp_buf_printf(&w->diag->text, "%s:%d:%d: warning: ignored unrecognized key \"%s\" in %s\n",
                      m.file, m.line, m.col, sval(k), where);
        return;
    }
    rp_diag_add(w->diag, &m, "unrecognized key \"%s\" in %s", sval(k), where);
}

/* Iterate a mapping; keys must be scalars and unique. cb returns 0 or -EINVAL. */
typedef int (*pair_cb)(const walk *w, const yaml_node_t *key, const yaml_node_t *val, void *arg);

static int each_pair(const walk *w, const yaml_node_t *map, const char *what, pair_cb cb, void *arg)
{
    if (!expect(w, map, YAML_MAPPING_NODE, what))
        return -EINVAL;
    int rc = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(w, p->key), *v = node(w, p->value);
        if (!expect(w, k, YAML_SCALAR_NODE, "a key"))
            return -EINVAL;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            if (strcmp(sval(node(w, q->key)), sval(k)) == 0) {
                rp_mark m = mark_of(w, k), first = mark_of(w, node(w, q->key));
                rp_diag_add(w->diag, &m, "duplicate key \"%s\" in %s (first at line %d)", sval(k),
                            what, first.line);
                rc = -EINVAL;
            }
        }
        if (cb(w, k, v, arg) < 0)
            rc = -EINVAL;
    }
    return rc;
}

/*-------------------------------------------------------------------------
 * Metrics files
 *-------------------------------------------------------------------------
 */

typedef struct cat_build {
    rp_catalog *cat;
    size_t mcap, pcap;
} cat_build;

/* "14" -> 140000, "9.6" -> 90600 */
static int parse_version_key(const char *s, int *out)
{
    char *end;
    errno = 0;
    long major = strtol(s, &end, 10);
    if (errno || end == s || major < 0 || major > 1000)
        return -EINVAL;
    long minor = 0;
    if (*end == '.') {
        char *e2;
        minor = strtol(end + 1, &e2, 10);
        if (e2 == end + 1 || *e2 != '\0' || minor < 0 || minor > 99)
            return -EINVAL;
    } else if (*end != '\0') {
        return -EINVAL;
    }
    *out = (int)(major * 10000 + minor * 100);
    return 0;
}

static int sql_pair(const walk *w, const yaml_node_t *k, const yaml_node_t *v, void *arg)
{
    rp_metric_def *d = arg;
    int ver;
    if (parse_version_key(sval(k), &ver) < 0) {
        rp_mark m = mark_of(w, k);
        rp_diag_add(w->diag, &m,
                    "SQL version key \"%s\" of metric \"%s\" must be a PostgreSQL major "
                    "version such as 14 or 9.6",
                    sval(k), d->name);
        return -EINVAL;
    }
    char *sql = NULL;
    if (get_str(w, v, "SQL text", &sql) < 0)
        return -EINVAL;
    d->sqls = rp_reallocarray(d->sqls, d->nsqls + 1, sizeof(*d->sqls));
    d->sqls[d->nsqls].min_version = ver;
    d->sqls[d->nsqls].sql = sql;
    d->nsqls++;
    return 0;
}

static int cmp_sql(const void *a, const void *b)
{
    const rp_metric_sql *x = a, *y = b;
    return (x->min_version > y->min_version) - (x->min_version < y->min_version);
}

static int parse_gauges(const walk *w, const yaml_node_t *v, rp_metric_def *d)
{
    if (!expect(w, v, YAML_SEQUENCE_NODE, "gauges"))
        return -EINVAL;
    for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
        char *g = NULL;
        if (get_str(w, node(w, *i), "a gauge name", &g) < 0)
            return -EINVAL;
        if (!g)
            continue;
        d->gauges = rp_reallocarray(d->gauges, d->ngauges + 1, sizeof(char *));
        d->gauges[d->ngauges++] = g;
    }
    return 0;
}

static int parse_node_status(const walk *w, const yaml_node_t *v, rp_metric_def *d)
{
    if (!expect(w, v, YAML_SCALAR_NODE, "node_status"))
        return -EINVAL;
    if (rp__yaml_is_null(v))
        d->node_status = RP_NODE_ANY;
    else if (strcmp(sval(v), "primary") == 0)
        d->node_status = RP_NODE_PRIMARY;
    else if (strcmp(sval(v), "standby") == 0)
        d->node_status = RP_NODE_STANDBY;
    else {
        rp_mark m = mark_of(w, v);
        rp_diag_add(w->diag, &m, "node_status must be \"primary\" or \"standby\", not \"%s\"",
                    sval(v));
        return -EINVAL;
    }
    return 0;
}

/* pgwatch2 attributes that pgwatch's own code no longer reads: accepted and ignored. */
static bool is_legacy_metric_key(const char *k)
{
    static const char *const legacy[] = {"is_private",     "disabled_days",
                                         "disabled_times", "extension_version_based_overrides",
                                         "metric_attrs",   "column_attrs"};
    for (size_t i = 0; i < RP_ARRAY_LEN(legacy); i++) {
        if (strcmp(k, legacy[i]) == 0)
            return true;
    }
    return false;
}

static int metric_field(const walk *w, const yaml_node_t *k, const yaml_node_t *v, void *arg)
{
    rp_metric_def *d = arg;
    const char *key = sval(k);
    if (strcmp(key, "sqls") == 0)
        return each_pair(w, v, "sqls", sql_pair, d);
    if (strcmp(key, "gauges") == 0)
        return parse_gauges(w, v, d);
    if (strcmp(key, "init_sql") == 0)
        return get_str(w, v, "init_sql", &d->init_sql);
    if (strcmp(key, "description") == 0)
        return get_str(w, v, "description", &d->description);
    if (strcmp(key, "storage_name") == 0)
        return get_str(w, v, "storage_name", &d->storage_name);
    if (strcmp(key, "is_instance_level") == 0)
        return get_bool(w, v, "is_instance_level", &d->is_instance_level);
    if (strcmp(key, "node_status") == 0)
        return parse_node_status(w, v, d);
    if (strcmp(key, "statement_timeout_seconds") == 0)
        return get_int(w, v, "statement_timeout_seconds", 0, 86400, &d->statement_timeout_s);
    if (strcmp(key, "result_max_rows") == 0)
        return get_int(w, v, "result_max_rows", 1, 100000000, &d->result_max_rows);
    if (strcmp(key, "result_max_bytes") == 0)
        return get_int(w, v, "result_max_bytes", 1024, 2147483647, &d->result_max_bytes);
    if (is_legacy_metric_key(key))
        return 0;
    char where[160];
    snprintf(where, sizeof(where), "metric \"%s\"", d->name);
    unknown_key(w, k, where);
    return w->diag->lenient ? 0 : -EINVAL;
}

static int metric_pair(const walk *w, const yaml_node_t *k, const yaml_node_t *v, void *arg)
{
    cat_build *b = arg;
    rp_grow((void **)&b->cat->metrics, &b->mcap, b->cat->nmetrics + 1, sizeof(rp_metric_def));
    rp_metric_def *d = &b->cat->metrics[b->cat->nmetrics++];
    memset(d, 0, sizeof(*d));
    d->name = rp_strdup(sval(k));
    d->statement_timeout_s = -1;
    d->code = rp_metric_code_for(d->name);
    d->mark = mark_of(w, k);
    char what[160];
    snprintf(what, sizeof(what), "metric \"%s\"", d->name);
    int rc = each_pair(w, v, what, metric_field, d);
    if (d->nsqls > 1)
        qsort(d->sqls, d->nsqls, sizeof(*d->sqls), cmp_sql);
    return rc;
}

static int interval_pair(const walk *w, const yaml_node_t *k, const yaml_node_t *v,
                         rp_interval **arr, size_t *n, const char *what, int min)
{
    int secs;
    char label[200];
    snprintf(label, sizeof(label), "interval of metric \"%s\" in %s", sval(k), what);
    if (get_int(w, v, label, min, RP_MAX_INTERVAL_S, &secs) < 0)
        return -EINVAL;
    *arr = rp_reallocarray(*arr, *n + 1, sizeof(rp_interval));
    rp_interval *iv = &(*arr)[(*n)++];
    iv->metric = rp_strdup(sval(k));
    iv->seconds = secs;
    iv->mark = mark_of(w, k);
    return 0;
}

static int preset_metric_pair(const walk *w, const yaml_node_t *k, const yaml_node_t *v, void *arg)
{
    rp_preset *p = arg;
    char what[160];
    snprintf(what, sizeof(what), "preset \"%s\"", p->name);
    return interval_pair(w, k, v, &p->metrics, &p->nmetrics, what, 1);
}

static int preset_field(const walk *w, const yaml_node_t *k, const yaml_node_t *v, void *arg)
{
    rp_preset *p = arg;
    if (strcmp(sval(k), "description") == 0)
        return get_str(w, v, "description", &p->description);
    if (strcmp(sval(k), "metrics") == 0) {
        char what[160];
        snprintf(what, sizeof(what), "metrics of preset \"%s\"", p->name);
        return each_pair(w, v, what, preset_metric_pair, p);
    }
    char where[160];
    snprintf(where, sizeof(where), "preset \"%s\"", p->name);
    unknown_key(w, k, where);
    return w->diag->lenient ? 0 : -EINVAL;
}

static int preset_pair(const walk *w, const yaml_node_t *k, const yaml_node_t *v, void *arg)
{
    cat_build *b = arg;
    rp_grow((void **)&b->cat->presets, &b->pcap, b->cat->npresets + 1, sizeof(rp_preset));
    rp_preset *p = &b->cat->presets[b->cat->npresets++];
    memset(p, 0, sizeof(*p));
    p->name = rp_strdup(sval(k));
    p->mark = mark_of(w, k);
    char what[160];
    snprintf(what, sizeof(what), "preset \"%s\"", p->name);
    return each_pair(w, v, what, preset_field, p);
}

static int catalog_top(const walk *w, const yaml_node_t *k, const yaml_node_t *v, void *arg)
{
    if (strcmp(sval(k), "metrics") == 0)
        return rp__yaml_is_null(v) ? 0 : each_pair(w, v, "metrics", metric_pair, arg);
    if (strcmp(sval(k), "presets") == 0)
        return rp__yaml_is_null(v) ? 0 : each_pair(w, v, "presets", preset_pair, arg);
    unknown_key(w, k, "a metrics file (expected \"metrics\" and \"presets\")");
    return w->diag->lenient ? 0 : -EINVAL;
}

/*-------------------------------------------------------------------------
 * Sources files
 *-------------------------------------------------------------------------
 */

typedef struct src_build {
    rp_source_set *set;
    size_t cap;
} src_build;

/* pgwatch expands environment variables only in values that start with '$'. */
static int get_env_str(const walk *w, const yaml_node_t *v, const char *what, char **out,
                       rp_mark *mark)
{
    if (get_str(w, v, what, out) < 0)
        return -EINVAL;
    *mark = mark_of(w, v);
    if (!*out || (*out)[0] != '$')
        return 0;
    char err[256], *exp;
    if (rp_connstr_expand_env(*out, &exp, err, sizeof(err)) < 0) {
        rp_diag_add(w->diag, mark, "could not expand %s: %s", what, err);
        return -EINVAL;
    }
    rp_free(*out);
    *out = exp;
    return 0;
}

static int custom_pair(const walk *w, const yaml_node_t *k, const yaml_node_t *v, void *arg)
{
    rp_source_def *s = arg;
    return interval_pair(w, k, v, &s->custom_metrics, &s->ncustom_metrics, "custom_metrics", 0);
}

static int custom_standby_pair(const walk *w, const yaml_node_t *k, const yaml_node_t *v, void *arg)
{
    rp_source_def *s = arg;
    return interval_pair(w, k, v, &s->custom_metrics_standby, &s->ncustom_metrics_standby,
                         "custom_metrics_standby", 0);
}

static int tag_pair(const walk *w, const yaml_node_t *k, const yaml_node_t *v, void *arg)
{
    rp_source_def *s = arg;
    char *val = NULL;
    char what[160];
    snprintf(what, sizeof(what), "custom tag \"%s\"", sval(k));
    if (get_str(w, v, what, &val) < 0)
        return -EINVAL;
    s->custom_tags = rp_reallocarray(s->custom_tags, s->ncustom_tags + 1, sizeof(rp_tag));
    s->custom_tags[s->ncustom_tags].key = rp_strdup(sval(k));
    s->custom_tags[s->ncustom_tags].value = val ? val : rp_strdup("");
    s->ncustom_tags++;
    return 0;
}

static int source_intervals(const walk *w, const yaml_node_t *v, rp_source_def *s, bool standby)
{
    if (standby)
        s->has_custom_metrics_standby = true;
    else
        s->has_custom_metrics = true;
    if (rp__yaml_is_null(v))
        return 0;
    return each_pair(w, v, standby ? "custom_metrics_standby" : "custom_metrics",
                     standby ? custom_standby_pair : custom_pair, s);
}

/* Keys of pgwatch2's sources that pgwatch 3 and later accept in its files and ignore
 * (stmt_timeout, and the old names of include_pattern/exclude_pattern, whose meaning
 * pgwatch no longer gives them): loaded with a warning. */
static bool is_legacy_source_key(const char *k)
{
    static const char *const legacy[] = {"stmt_timeout", "dbname_include_pattern",
                                         "dbname_exclude_pattern", "is_superuser", "host_config"};
    for (size_t i = 0; i < RP_ARRAY_LEN(legacy); i++) {
        if (strcmp(k, legacy[i]) == 0)
            return true;
    }
    return false;
}

static int source_field(const walk *w, const yaml_node_t *k, const yaml_node_t *v, void *arg)
{
    rp_source_def *s = arg;
    const char *key = sval(k);
    if (strcmp(key, "name") == 0)
        return get_env_str(w, v, "name", &s->name, &s->name_mark);
    if (strcmp(key, "conn_str") == 0)
        return get_env_str(w, v, "conn_str", &s->conn_str, &s->conn_str_mark);
    if (strcmp(key, "kind") == 0)
        return get_env_str(w, v, "kind", &s->kind, &s->kind_mark);
    if (strcmp(key, "group") == 0)
        return get_env_str(w, v, "group", &s->group, &s->group_mark);
    if (strcmp(key, "preset_metrics") == 0)
        return get_env_str(w, v, "preset_metrics", &s->preset_metrics, &s->preset_mark);
    if (strcmp(key, "preset_metrics_standby") == 0)
        return get_env_str(w, v, "preset_metrics_standby", &s->preset_metrics_standby,
                           &s->preset_standby_mark);
    if (strcmp(key, "custom_metrics") == 0)
        return source_intervals(w, v, s, false);
    if (strcmp(key, "custom_metrics_standby") == 0)
        return source_intervals(w, v, s, true);
    if (strcmp(key, "custom_tags") == 0)
        return rp__yaml_is_null(v) ? 0 : each_pair(w, v, "custom_tags", tag_pair, s);
    if (strcmp(key, "is_enabled") == 0)
        return get_bool(w, v, "is_enabled", &s->is_enabled);
    if (strcmp(key, "only_if_master") == 0)
        return get_bool(w, v, "only_if_master", &s->only_if_master);
    if (strcmp(key, "no_prepared") == 0)
        return get_bool(w, v, "no_prepared", &s->no_prepared);
    if (strcmp(key, "include_pattern") == 0)
        return get_str(w, v, "include_pattern", &s->include_pattern);
    if (strcmp(key, "exclude_pattern") == 0)
        return get_str(w, v, "exclude_pattern", &s->exclude_pattern);
    if (is_legacy_source_key(key)) {
        rp_mark m = mark_of(w, k);
        rp_buf_printf(&w->diag->text,
                      "%s:%d:%d: warning: key \"%s\" is read by pgwatch2 only; pgwatch and "
                      "pgreaper ignore it\n",
                      m.file, m.line, m.col, key);
        return 0;
    }
    unknown_key(w, k, "source");
    return w->diag->lenient ? 0 : -EINVAL;
}

static int sources_top(const walk *w, const yaml_node_t *root, src_build *b)
{
    if (rp__yaml_is_null(root))
        return 0;
    if (!expect(w, root, YAML_SEQUENCE_NODE, "a sources file"))
        return -EINVAL;
    int rc = 0;
    for (yaml_node_item_t *i = root->data.sequence.items.start; i < root->data.sequence.items.top;
         i++) {
        yaml_node_t *n = node(w, *i);
        rp_grow((void **)&b->set->sources, &b->cap, b->set->nsources + 1, sizeof(rp_source_def));
        rp_source_def *s = &b->set->sources[b->set->nsources++];
        memset(s, 0, sizeof(*s));
        s->is_enabled = true;
        s->mark = mark_of(w, n);
        if (each_pair(w, n, "a source", source_field, s) < 0)
            rc = -EINVAL;
    }
    return rc;
}

/*-------------------------------------------------------------------------
 * Files and folders
 *-------------------------------------------------------------------------
 */

typedef int (*doc_cb)(const walk *w, const yaml_node_t *root, void *arg);

static void yaml_error(const char *file, const yaml_parser_t *parser, rp_diag *diag)
{
    rp_mark m = {file, (int)parser->problem_mark.line + 1, (int)parser->problem_mark.column + 1};
    if (parser->context)
        rp_diag_add(diag, &m, "invalid YAML: %s %s", parser->problem, parser->context);
    else
        rp_diag_add(diag, &m, "invalid YAML: %s", parser->problem ? parser->problem : "error");
}

/* A streaming pass before the document is built: nesting deeper than RP_YAML_MAX_DEPTH or
 * more than RP_YAML_MAX_ALIASES aliases is refused at its line and column, in time linear
 * in the text (libyaml's loader is not, for deep nesting). */
static int prescan(const char *file, const char *text, size_t len, rp_diag *diag)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        rp_panic("could not initialise YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int depth = 0, aliases = 0, rc = 0;
    for (bool done = false; !done && rc == 0;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            yaml_error(file, &parser, diag);
            rc = -EINVAL;
            break;
        }
        rp_mark m = {file, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1};
        if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT)
            depth++;
        else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT)
            depth--;
        else if (ev.type == YAML_ALIAS_EVENT)
            aliases++;
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (depth > RP_YAML_MAX_DEPTH) {
            rp_diag_add(diag, &m, "YAML nested deeper than %d levels", RP_YAML_MAX_DEPTH);
            rc = -EINVAL;
        } else if (aliases > RP_YAML_MAX_ALIASES) {
            rp_diag_add(diag, &m, "more than %d YAML aliases", RP_YAML_MAX_ALIASES);
            rc = -EINVAL;
        }
    }
    yaml_parser_delete(&parser);
    return rc;
}

static int parse_text(const char *file, const char *text, size_t len, rp_diag *diag, doc_cb cb,
                      void *arg)
{
    if (prescan(file, text, len, diag) < 0)
        return -EINVAL;
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        rp_panic("could not initialise YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_error(file, &parser, diag);
        yaml_parser_delete(&parser);
        return -EINVAL;
    }
    walk w = {file, &doc, diag};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root)
        rc = cb(&w, root, arg);
    yaml_document_delete(&doc);
    /* A second document in the same stream is not supported: say so. */
    if (rc == 0 && yaml_parser_load(&parser, &doc)) {
        yaml_node_t *r2 = yaml_document_get_root_node(&doc);
        if (r2) {
            rp_mark m = {file, (int)r2->start_mark.line + 1, (int)r2->start_mark.column + 1};
            rp_diag_add(diag, &m, "a file may hold only one YAML document");
            rc = -EINVAL;
        }
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return rc;
}

static int read_file(const char *path, char **text, size_t *len, rp_diag *diag)
{
    FILE *f = fopen(path, "rb");
    rp_mark m = {path, 0, 0};
    if (!f) {
        rp_diag_add(diag, &m, "could not open file: %s", strerror(errno));
        return -errno;
    }
    rp_buf b = RP_BUF_INIT;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len <= RP_YAML_MAX_BYTES)
        rp_buf_append(&b, chunk, n);
    int err = ferror(f);
    fclose(f);
    if (b.len > RP_YAML_MAX_BYTES) {
        rp_diag_add(diag, &m, "file is larger than %d MiB", RP_YAML_MAX_BYTES >> 20);
        rp_buf_fini(&b);
        return -EFBIG;
    }
    if (err) {
        rp_diag_add(diag, &m, "could not read file");
        rp_buf_fini(&b);
        return -EIO;
    }
    *len = b.len;
    *text = b.data ? b.data : rp_strdup("");
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Files to load for path: itself, or the sorted *.yaml / *.yml files of a folder. */
static int list_files(const char *path, char ***out, size_t *n, rp_diag *diag)
{
    struct stat st;
    rp_mark m = {path, 0, 0};
    if (stat(path, &st) < 0) {
        rp_diag_add(diag, &m, "could not open file: %s", strerror(errno));
        return -ENOENT;
    }
    *n = 0;
    *out = NULL;
    if (!S_ISDIR(st.st_mode)) {
        *out = rp_malloc(sizeof(char *));
        (*out)[(*n)++] = rp_strdup(path);
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) {
        rp_diag_add(diag, &m, "could not open directory: %s", strerror(errno));
        return -errno;
    }
    struct dirent *e;
    size_t cap = 0;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        bool yaml = (l > 5 && strcmp(e->d_name + l - 5, ".yaml") == 0) ||
                    (l > 4 && strcmp(e->d_name + l - 4, ".yml") == 0);
        if (!yaml || e->d_name[0] == '.')
            continue;
        rp_grow((void **)out, &cap, *n + 1, sizeof(char *));
        rp_buf p = RP_BUF_INIT;
        rp_buf_printf(&p, "%s/%s", path, e->d_name);
        (*out)[(*n)++] = p.data;
    }
    closedir(d);
    if (*n > 1)
        qsort(*out, *n, sizeof(char *), cmp_str);
    return 0;
}

/* Parse every file of path; the file names are kept in files/nfiles for the marks. */
static int parse_path(const char *path, char ***files, size_t *nfiles, rp_diag *diag, doc_cb cb,
                      void *arg)
{
    int rc = list_files(path, files, nfiles, diag);
    if (rc < 0)
        return -EINVAL;
    rc = 0;
    for (size_t i = 0; i < *nfiles; i++) {
        char *text;
        size_t len;
        if (read_file((*files)[i], &text, &len, diag) < 0) {
            rc = -EINVAL;
            continue;
        }
        if (parse_text((*files)[i], text, len, diag, cb, arg) < 0)
            rc = -EINVAL;
        rp_free(text);
    }
    return rc;
}

static int catalog_doc(const walk *w, const yaml_node_t *root, void *arg)
{
    if (rp__yaml_is_null(root))
        return 0;
    return each_pair(w, root, "a metrics file", catalog_top, arg);
}

static void catalog_finish(rp_catalog *cat)
{
    rp__catalog_sort(cat);
}

int rp_catalog_parse_text(const char *name, const char *text, size_t len, rp_catalog **out,
                          rp_diag *diag)
{
    cat_build b = {rp_calloc(1, sizeof(rp_catalog)), 0, 0};
    b.cat->refs = 1;
    b.cat->files = rp_malloc(sizeof(char *));
    b.cat->files[b.cat->nfiles++] = rp_strdup(name);
    if (parse_text(b.cat->files[0], text, len, diag, catalog_doc, &b) < 0) {
        rp_catalog_unref(b.cat);
        return -EINVAL;
    }
    catalog_finish(b.cat);
    *out = b.cat;
    return 0;
}

static int catalog_builtin(rp_catalog **out, rp_diag *diag)
{
    cat_build b = {rp_calloc(1, sizeof(rp_catalog)), 0, 0};
    b.cat->refs = 1;
    b.cat->files = rp_calloc(rp_builtin_presets_count + 1, sizeof(char *));
    int rc = 0;
    for (size_t i = 0; i < rp_builtin_presets_count; i++) {
        rp_buf name = RP_BUF_INIT;
        rp_buf_printf(&name, "builtin:%s", rp_builtin_presets[i].name);
        b.cat->files[b.cat->nfiles++] = name.data;
        if (parse_text(name.data, rp_builtin_presets[i].text, rp_builtin_presets[i].len, diag,
                       catalog_doc, &b) < 0)
            rc = -EINVAL;
    }
    if (rc < 0) {
        rp_catalog_unref(b.cat);
        return rc;
    }
    catalog_finish(b.cat);
    *out = b.cat;
    return 0;
}

int rp_catalog_parse(const char *path, rp_catalog **out, rp_diag *diag)
{
    if (!path)
        return catalog_builtin(out, diag);
    cat_build b = {rp_calloc(1, sizeof(rp_catalog)), 0, 0};
    b.cat->refs = 1;
    if (parse_path(path, &b.cat->files, &b.cat->nfiles, diag, catalog_doc, &b) < 0) {
        rp_catalog_unref(b.cat);
        return -EINVAL;
    }
    catalog_finish(b.cat);
    *out = b.cat;
    return 0;
}

static int sources_doc(const walk *w, const yaml_node_t *root, void *arg)
{
    return sources_top(w, root, arg);
}

int rp_sources_parse_text(const char *name, const char *text, size_t len, rp_source_set **out,
                          rp_diag *diag)
{
    src_build b = {rp_calloc(1, sizeof(rp_source_set)), 0};
    b.set->files = rp_malloc(sizeof(char *));
    b.set->files[b.set->nfiles++] = rp_strdup(name);
    if (parse_text(b.set->files[0], text, len, diag, sources_doc, &b) < 0) {
        rp_source_set_free(b.set);
        return -EINVAL;
    }
    *out = b.set;
    return 0;
}

int rp_sources_parse(const char *path, rp_source_set **out, rp_diag *diag)
{
    src_build b = {rp_calloc(1, sizeof(rp_source_set)), 0};
    if (parse_path(path, &b.set->files, &b.set->nfiles, diag, sources_doc, &b) < 0) {
        rp_source_set_free(b.set);
        return -EINVAL;
    }
    *out = b.set;
    return 0;
}
