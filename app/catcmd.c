/* SPDX-License-Identifier: PostgreSQL
 *
 * Catalogue commands: see catcmd.h.
 */
#include "app/catcmd.h"

#include <ctype.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/mem.h"
#include "config/config.h"

/*-------------------------------------------------------------------------
 * Column names from the SQL text
 *-------------------------------------------------------------------------
 */

/* Depth (parentheses) of every byte, -1 inside quotes and comments. */
static int *depths(const char *sql, size_t n)
{
    int *d = rp_calloc(n + 1, sizeof(int));
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        char c = sql[i];
        if (c == '\'' || c == '"') {
            size_t j = i + 1;
            while (j < n && !(sql[j] == c && (j + 1 >= n || sql[j + 1] != c)))
                j += sql[j] == c ? 2 : 1; /* a doubled quote stays inside */
            for (size_t k = i; k <= j && k < n; k++)
                d[k] = -1;
            i = j;
        } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
            for (; i < n && sql[i] != '\n'; i++)
                d[i] = -1;
        } else {
            depth += c == '(';
            d[i] = depth;
            depth -= c == ')';
        }
    }
    return d;
}

static bool word_at(const char *sql, size_t n, size_t i, const char *w)
{
    size_t k = strlen(w);
    return i + k <= n && strncasecmp(sql + i, w, k) == 0 &&
           (i == 0 || !(isalnum((unsigned char)sql[i - 1]) || sql[i - 1] == '_')) &&
           (i + k == n || !(isalnum((unsigned char)sql[i + k]) || sql[i + k] == '_'));
}

/* The name of one select-list item s[0, n) at depth base. */
static void item_name(const char *s, size_t n, const int *d, int base, rp_buf *out)
{
    size_t alias = n;
    for (size_t i = 0; i < n; i++)
        if (d[i] == base && word_at(s, n, i, "as"))
            alias = i + 2;
    size_t a = alias < n ? alias : 0, b = n;
    while (a < b && isspace((unsigned char)s[a]))
        a++;
    while (b > a && isspace((unsigned char)s[b - 1]))
        b--;
    if (alias == n) { /* qualified column: the part after the last dot */
        const char *dot = memrchr(s + a, '.', b - a);
        if (dot)
            a = (size_t)(dot + 1 - s);
    }
    bool quoted = b - a > 2 && s[a] == '"' && s[b - 1] == '"' && !memchr(s + a + 1, '"', b - a - 2);
    if (quoted) { /* a quoted identifier: its name is the text inside the quotes */
        a++;
        b--;
    }
    bool plain = b > a;
    for (size_t i = a; i < b && !quoted; i++)
        plain = plain && (isalnum((unsigned char)s[i]) || s[i] == '_');
    if (plain)
        rp_buf_append(out, s + a, b - a);
    else
        rp_buf_putc(out, '?');
}

size_t rp_catcmd_columns(const char *sql, rp_buf *out)
{
    size_t n = strlen(sql), start = n, end = n, count = 0;
    int *d = depths(sql, n);
    for (size_t i = 0; i < n; i++)
        if (d[i] == 0 && word_at(sql, n, i, "select"))
            start = i + 6;
    for (size_t i = start; i < n && end == n; i++)
        if (d[i] == 0 && word_at(sql, n, i, "from"))
            end = i;
    for (size_t i = start, item = start; i <= end && start < n; i++) {
        if (i < end && !(d[i] == 0 && sql[i] == ','))
            continue;
        rp_buf_puts(out, count++ ? ", " : "");
        item_name(sql + item, i - item, d + item, 0, out);
        item = i + 1;
    }
    free(d);
    return count;
}

/*-------------------------------------------------------------------------
 * Commands
 *-------------------------------------------------------------------------
 */

typedef struct cat_args {
    const char *metrics; /* --metrics FILE, NULL: built-in */
    const char *preset;  /* --preset P */
    int version;         /* --pg-version, server_version_num; 0: every version */
    bool columns;        /* print-sql --columns */
    const char *name;    /* positional */
} cat_args;

static int load(const cat_args *a, rp_catalog **cat)
{
    rp_diag diag;
    rp_diag_init(&diag);
    int rc = rp_catalog_parse(a->metrics, cat, &diag);
    if (rc == 0)
        rc = rp_catalog_validate(*cat, &diag);
    if (diag.text.len)
        fputs(diag.text.data, stderr);
    rp_diag_fini(&diag);
    return rc;
}

static const char *role_name(rp_node_status s)
{
    return s == RP_NODE_PRIMARY ? "primary" : s == RP_NODE_STANDBY ? "standby" : "any";
}

/* The first sentence of a description, on one line. */
static void summary(const char *desc, rp_buf *out)
{
    if (!desc)
        return;
    for (const char *p = desc; *p; p++) {
        if (*p == '.' && (p[1] == ' ' || p[1] == '\n' || p[1] == '\0')) {
            rp_buf_putc(out, '.');
            return;
        }
        rp_buf_putc(out, *p == '\n' ? ' ' : *p);
    }
}

static int interval_in(const rp_preset *p, const char *metric)
{
    for (size_t i = 0; p && i < p->nmetrics; i++)
        if (strcmp(p->metrics[i].metric, metric) == 0)
            return p->metrics[i].seconds;
    return 0;
}

static int cmd_metric_list(const cat_args *a, rp_catalog *cat)
{
    const rp_preset *p = a->preset ? rp_catalog_preset(cat, a->preset) : NULL;
    if (a->preset && !p) {
        fprintf(stderr, "pgreaper: unknown preset \"%s\" (see pgreaper preset list)\n", a->preset);
        return 1;
    }
    printf("%-20s %9s %-8s %-8s %s\n", "METRIC", "INTERVAL", "INSTANCE", "ROLE", "DESCRIPTION");
    for (size_t i = 0; i < cat->nmetrics; i++) {
        const rp_metric_def *m = &cat->metrics[i];
        int iv = interval_in(p, m->name);
        if (p && iv == 0)
            continue;
        rp_buf d = RP_BUF_INIT;
        summary(m->description, &d);
        char ivs[16] = "-";
        if (iv)
            snprintf(ivs, sizeof(ivs), "%ds", iv);
        printf("%-20s %9s %-8s %-8s %s\n", m->name, ivs, m->is_instance_level ? "yes" : "no",
               role_name(m->node_status), d.data ? d.data : "");
        rp_buf_fini(&d);
    }
    return 0;
}

static void print_one_sql(const rp_metric_sql *s, bool columns, bool header)
{
    if (header)
        printf("-- PostgreSQL %d+\n", s->min_version / 10000);
    if (columns) {
        rp_buf c = RP_BUF_INIT;
        rp_catcmd_columns(s->sql, &c);
        printf("%s\n", c.data ? c.data : "");
        rp_buf_fini(&c);
    } else {
        fputs(s->sql, stdout);
    }
}

static int cmd_print_sql(const cat_args *a, rp_catalog *cat)
{
    const rp_metric_def *m = a->name ? rp_catalog_metric(cat, a->name) : NULL;
    if (!m) {
        fprintf(stderr, "pgreaper: unknown metric \"%s\" (see pgreaper metric list)\n",
                a->name ? a->name : "");
        return 1;
    }
    const rp_metric_sql *pick = NULL;
    for (size_t i = 0; i < m->nsqls; i++) {
        if (a->version == 0)
            print_one_sql(&m->sqls[i], a->columns, true);
        else if (m->sqls[i].min_version <= a->version)
            pick = &m->sqls[i];
    }
    if (a->version && !pick) {
        fprintf(stderr, "pgreaper: metric \"%s\" has no SQL for PostgreSQL %d\n", m->name,
                a->version / 10000);
        return 1;
    }
    if (pick)
        print_one_sql(pick, a->columns, false);
    return 0;
}

static int cmd_print_init(const cat_args *a, rp_catalog *cat)
{
    const rp_metric_def *m = a->name ? rp_catalog_metric(cat, a->name) : NULL;
    const rp_preset *p = a->name ? rp_catalog_preset(cat, a->name) : NULL;
    if (!m && !p) {
        fprintf(stderr, "pgreaper: \"%s\" is neither a metric nor a preset\n",
                a->name ? a->name : "");
        return 1;
    }
    size_t printed = 0;
    for (size_t i = 0; i < cat->nmetrics; i++) {
        const rp_metric_def *x = &cat->metrics[i];
        if (!x->init_sql || (m && x != m) || (p && interval_in(p, x->name) == 0))
            continue;
        printf("-- %s (run once per database, as a superuser)\n%s%s", x->name, x->init_sql,
               x->init_sql[strlen(x->init_sql) - 1] == '\n' ? "" : ";\n");
        printed++;
    }
    if (printed == 0)
        fprintf(stderr, "pgreaper: %s needs no init_sql\n", a->name);
    return 0;
}

static int cmd_preset_list(rp_catalog *cat)
{
    printf("%-20s %7s %s\n", "PRESET", "METRICS", "DESCRIPTION");
    for (size_t i = 0; i < cat->npresets; i++) {
        rp_buf d = RP_BUF_INIT;
        summary(cat->presets[i].description, &d);
        printf("%-20s %7zu %s\n", cat->presets[i].name, cat->presets[i].nmetrics,
               d.data ? d.data : "");
        rp_buf_fini(&d);
    }
    return 0;
}

static void doc_presets(const rp_catalog *cat, const char *metric, rp_buf *out)
{
    const char *sep = "";
    for (size_t i = 0; i < cat->npresets; i++) {
        int iv = interval_in(&cat->presets[i], metric);
        if (iv == 0)
            continue;
        rp_buf_printf(out, "%s%s (%d s)", sep, cat->presets[i].name, iv);
        sep = ", ";
    }
    if (!*sep)
        rp_buf_puts(out, "none");
}

static void doc_metric(const rp_catalog *cat, const rp_metric_def *m, rp_buf *out)
{
    rp_buf_printf(out, "\n## %s\n\n", m->name);
    for (const char *p = m->description ? m->description : ""; *p; p++)
        rp_buf_putc(out, *p == '\n' ? ' ' : *p);
    while (out->len && out->data[out->len - 1] == ' ')
        out->data[--out->len] = '\0';
    rp_buf_puts(out, m->description ? "\n\n" : "");
    bool console = m->nsqls && strncasecmp(m->sqls[0].sql, "show ", 5) == 0; /* a pooler's */
    if (console)
        rp_buf_printf(out,
                      "- Console command: `%.*s` (sources of kind pgbouncer or pgpool)\n"
                      "- Columns: the command's own",
                      (int)strcspn(m->sqls[0].sql, "\n"), m->sqls[0].sql);
    else
        rp_buf_puts(out, "- PostgreSQL:");
    for (size_t i = 0; i < m->nsqls && !console; i++)
        rp_buf_printf(out, "%s %d+", i ? "," : "", m->sqls[i].min_version / 10000);
    if (m->nsqls && !console) {
        rp_buf_printf(out, "\n- Columns (%d+): ", m->sqls[m->nsqls - 1].min_version / 10000);
        rp_catcmd_columns(m->sqls[m->nsqls - 1].sql, out);
    }
    rp_buf_puts(out, "\n- Gauges: ");
    for (size_t i = 0; i < m->ngauges; i++)
        rp_buf_printf(out, "%s%s", i ? ", " : "", strcmp(m->gauges[i], "*") ? m->gauges[i] : "all");
    rp_buf_puts(out, m->ngauges ? "" : "none (all counters)");
    rp_buf_printf(out, "\n- Instance-level: %s; role: %s\n- Presets: ",
                  m->is_instance_level ? "yes" : "no", role_name(m->node_status));
    doc_presets(cat, m->name, out);
    if (m->init_sql)
        rp_buf_printf(out, "\n- init_sql: `%.*s`", (int)strcspn(m->init_sql, "\n"), m->init_sql);
    rp_buf_putc(out, '\n');
}

static int cmd_doc(rp_catalog *cat)
{
    rp_buf out = RP_BUF_INIT;
    rp_buf_puts(&out, "# Metrics\n\nThe built-in catalogue (`presets/metrics.yaml`). Generated "
                      "by `pgreaper metric doc`;\na test checks that this file matches its "
                      "output.\n\n| preset | metrics | description |\n|---|---|---|\n");
    for (size_t i = 0; i < cat->npresets; i++) {
        rp_buf_printf(&out, "| %s | %zu | ", cat->presets[i].name, cat->presets[i].nmetrics);
        summary(cat->presets[i].description, &out);
        rp_buf_puts(&out, " |\n");
    }
    rp_buf_puts(&out, "\nEvery row has `epoch_ns` (its time); `tag_*` columns are dimensions; "
                      "columns that are not\ngauges are cumulative counters (graph their "
                      "rate). A metric the server cannot run (a missing\nextension or view, "
                      "no privilege) is logged once and tried again every 10 minutes; one\n"
                      "without SQL for the server's version is skipped with one warning.\n");
    for (size_t i = 0; i < cat->nmetrics; i++)
        doc_metric(cat, &cat->metrics[i], &out);
    fputs(out.data, stdout);
    rp_buf_fini(&out);
    return 0;
}

/*-------------------------------------------------------------------------
 * Dispatch
 *-------------------------------------------------------------------------
 */

static void usage(void)
{
    fputs("Usage:\n"
          "  pgreaper metric list [--preset P] [--metrics FILE]\n"
          "  pgreaper metric print-sql NAME [--pg-version N] [--columns] [--metrics FILE]\n"
          "  pgreaper metric print-init NAME|PRESET [--metrics FILE]\n"
          "  pgreaper metric doc [--metrics FILE]      (docs/metrics.md)\n"
          "  pgreaper preset list [--metrics FILE]\n",
          stderr);
}

static int parse(int argc, char **argv, cat_args *a)
{
    static const struct option lo[] = {{"metrics", 1, NULL, 'm'},
                                       {"preset", 1, NULL, 'p'},
                                       {"pg-version", 1, NULL, 'v'},
                                       {"columns", 0, NULL, 'c'},
                                       {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'm')
            a->metrics = optarg;
        else if (c == 'p')
            a->preset = optarg;
        else if (c == 'c')
            a->columns = true;
        else if (c == 'v' && atoi(optarg) > 0)
            a->version = atoi(optarg) < 1000 ? atoi(optarg) * 10000 : atoi(optarg);
        else
            return -1;
    }
    if (optind < argc)
        a->name = argv[optind++];
    return optind == argc ? 0 : -1;
}

static int dispatch(const char *group, const char *verb, cat_args *a, rp_catalog *cat)
{
    bool metric = strcmp(group, "metric") == 0;
    if (metric && strcmp(verb, "list") == 0)
        return cmd_metric_list(a, cat);
    if (metric && strcmp(verb, "print-sql") == 0)
        return cmd_print_sql(a, cat);
    if (metric && strcmp(verb, "print-init") == 0)
        return cmd_print_init(a, cat);
    if (metric && strcmp(verb, "doc") == 0)
        return cmd_doc(cat);
    if (!metric && strcmp(verb, "list") == 0)
        return cmd_preset_list(cat);
    usage();
    return 2;
}

int rp_catcmd_main(int argc, char **argv)
{
    cat_args a = {0};
    if (argc < 2 || parse(argc - 1, argv + 1, &a) < 0) {
        usage();
        return 2;
    }
    rp_catalog *cat = NULL;
    if (load(&a, &cat) < 0)
        return 1;
    int rc = dispatch(argv[0], argv[1], &a, cat);
    rp_catalog_unref(cat);
    return rc;
}
