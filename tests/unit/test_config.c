/* SPDX-License-Identifier: PostgreSQL
 *
 * Config parse + validate, table-driven: each case is a metrics text and a sources text
 * and the exact diagnostics expected ("" when valid). Plus resolution, version choice,
 * environment expansion, folders and lenient mode.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/mem.h"
#include "config/config.h"
#include "tests/lib/tap.h"

static const char METRICS[] = "metrics:\n"
                              "  m1:\n"
                              "    sqls:\n"
                              "      11: select 1 as v\n"
                              "      14: select 2 as v\n"
                              "  m2:\n"
                              "    sqls: {10: select 1}\n"
                              "    node_status: standby\n"
                              "  m3:\n"
                              "    sqls: {10: select 3}\n"
                              "    node_status: primary\n"
                              "presets:\n"
                              "  p1:\n"
                              "    metrics: {m1: 60, m2: 30, m3: 120}\n"
                              "  p2:\n"
                              "    metrics: {m1: 10}\n";

typedef struct config_case {
    const char *name;
    const char *metrics; /* NULL: METRICS */
    const char *sources; /* NULL: only the catalogue is checked */
    const char *want;    /* exact diagnostics */
} config_case;

static const config_case cases[] = {
    {"valid source with preset", NULL, "- name: db1\n  conn_str: host=/tmp\n  preset_metrics: p1\n",
     ""},
    {"valid pgwatch-style source with every key", NULL,
     "- name: db1\n  group: g_1\n  conn_str: postgresql://u@h/db\n  kind: postgres\n"
     "  preset_metrics: p1\n  preset_metrics_standby: p2\n  custom_metrics: {m1: 5}\n"
     "  custom_metrics_standby: {m2: 5}\n  is_enabled: true\n  only_if_master: false\n"
     "  custom_tags: {env: prod, n: 1}\n  include_pattern: x\n  exclude_pattern: y\n"
     "  no_prepared: true\n",
     ""},
    {"YAML syntax error", NULL, "- name: db1\n  conn_str: [unclosed\n",
     "s.yaml:3:1: invalid YAML: did not find expected ',' or ']' while parsing a flow sequence\n"},
    {"tab indentation", NULL, "- name: db1\n\tconn_str: x\n",
     "s.yaml:2:1: invalid YAML: found a tab character that violates indentation while scanning "
     "a plain scalar\n"},
    {"unknown source key", NULL,
     "- name: db1\n  conn_str: host=/tmp\n  preset_metrics: p1\n  stmt_timeot: 5\n",
     "s.yaml:4:3: unrecognized key \"stmt_timeot\" in source\n"},
    {"unknown preset", NULL, "- name: db1\n  conn_str: host=/tmp\n  preset_metrics: nope\n",
     "s.yaml:3:19: source \"db1\": preset \"nope\" is not defined\n"},
    {"unknown custom metric", NULL,
     "- name: db1\n  conn_str: host=/tmp\n  custom_metrics:\n    m1: 10\n    ghost: 10\n",
     "s.yaml:5:5: source \"db1\": metric \"ghost\" is not defined\n"},
    {"negative interval", NULL, "- name: db1\n  conn_str: host=/tmp\n  custom_metrics: {m1: -5}\n",
     "s.yaml:3:24: interval of metric \"m1\" in custom_metrics must be between 0 and 2678400, "
     "not -5\n"},
    {"absurd interval", NULL,
     "- name: db1\n  conn_str: host=/tmp\n  custom_metrics: {m1: 99999999}\n",
     "s.yaml:3:24: interval of metric \"m1\" in custom_metrics must be between 0 and 2678400, "
     "not 99999999\n"},
    {"interval not a number", NULL,
     "- name: db1\n  conn_str: host=/tmp\n  custom_metrics: {m1: often}\n",
     "s.yaml:3:24: interval of metric \"m1\" in custom_metrics must be an integer, not "
     "\"often\"\n"},
    {"duplicate source name", NULL,
     "- name: db1\n  conn_str: host=/tmp\n  preset_metrics: p1\n"
     "- name: db1\n  conn_str: host=/tmp\n  preset_metrics: p1\n",
     "s.yaml:4:9: duplicate source name \"db1\" (first defined at s.yaml:1:9)\n"},
    {"empty conn_str", NULL, "- name: db1\n  conn_str: ''\n  preset_metrics: p1\n",
     "s.yaml:2:13: source \"db1\" has an empty conn_str\n"},
    {"missing conn_str", NULL, "- name: db1\n  preset_metrics: p1\n",
     "s.yaml:1:3: source \"db1\" has an empty conn_str\n"},
    {"missing name", NULL, "- conn_str: host=/tmp\n  preset_metrics: p1\n",
     "s.yaml:1:3: source has no name\n"},
    {"no metrics", NULL, "- name: db1\n  conn_str: host=/tmp\n",
     "s.yaml:1:3: source \"db1\" has no metrics: set preset_metrics or custom_metrics\n"},
    {"patroni: the DCS is etcd", NULL,
     "- name: db1\n  conn_str: host=/tmp\n  kind: patroni\n  preset_metrics: p1\n",
     "s.yaml:2:13: source \"db1\" of kind patroni: conn_str must be etcd://host:port/namespace/"
     "scope (this version reads Patroni's members from etcd only)\n"},
    {"invalid kind", NULL,
     "- name: db1\n  conn_str: host=/tmp\n  kind: mysql\n  preset_metrics: p1\n",
     "s.yaml:3:9: invalid source kind \"mysql\" (supported: postgres, "
     "postgres-continuous-discovery, patroni, pgbouncer, pgpool, prometheus)\n"},
    {"bad group", NULL, "- name: db1\n  conn_str: host=/tmp\n  group: a-b\n  preset_metrics: p1\n",
     "s.yaml:3:10: group \"a-b\" of source \"db1\" may contain only letters, digits and \"_\"\n"},
    {"bad bool", NULL,
     "- name: db1\n  conn_str: host=/tmp\n  is_enabled: maybe\n  preset_metrics: p1\n",
     "s.yaml:3:15: is_enabled must be true or false, not \"maybe\"\n"},
    {"sources not a list", NULL, "name: db1\n",
     "s.yaml:1:1: a sources file must be a list, not a mapping\n"},
    {"custom_tags not a mapping", NULL,
     "- name: db1\n  conn_str: host=/tmp\n  preset_metrics: p1\n  custom_tags: [a, b]\n",
     "s.yaml:4:16: custom_tags must be a mapping, not a list\n"},
    {"duplicate key", NULL,
     "- name: db1\n  conn_str: host=/tmp\n  name: db2\n  preset_metrics: p1\n",
     "s.yaml:3:3: duplicate key \"name\" in a source (first at line 1)\n"},
    {"unset environment variable", NULL,
     "- name: db1\n  conn_str: $RP_TEST_UNSET_VAR\n  preset_metrics: p1\n",
     "s.yaml:2:13: could not expand conn_str: environment variable \"RP_TEST_UNSET_VAR\" is not "
     "set\n"},
    {"metric: unknown key", "metrics:\n  m1:\n    sqls: {10: select 1}\n    interval: 5\n", NULL,
     "m.yaml:4:5: unrecognized key \"interval\" in metric \"m1\"\n"},
    {"metric: bad version key", "metrics:\n  m1:\n    sqls: {ten: select 1}\n", NULL,
     "m.yaml:3:12: SQL version key \"ten\" of metric \"m1\" must be a PostgreSQL major version "
     "such as 14 or 9.6\n"},
    {"metric: bad node_status", "metrics:\n  m1:\n    sqls: {10: x}\n    node_status: replica\n",
     NULL, "m.yaml:4:18: node_status must be \"primary\" or \"standby\", not \"replica\"\n"},
    {"metric: empty SQL", "metrics:\n  m1:\n    sqls:\n      10: '  '\n", NULL,
     "m.yaml:2:3: metric \"m1\" has an empty SQL text\n"},
    {"metric: name too long",
     "metrics:\n  m1234567890123456789012345678901234567890123456789012345678901234:\n"
     "    sqls: {10: select 1}\n",
     NULL,
     "m.yaml:2:3: metric name \"m1234567890123456789012345678901234567890123456789012345678901234\""
     " is longer than 63 bytes\n"},
    {"preset: zero interval",
     "metrics:\n  m1:\n    sqls: {10: x}\npresets:\n  p:\n    metrics: {m1: 0}\n", NULL,
     "m.yaml:6:19: interval of metric \"m1\" in preset \"p\" must be between 1 and 2678400, not "
     "0\n"},
    {"preset: dangling metric is a warning",
     "metrics:\n  m1:\n    sqls: {10: x}\npresets:\n  p:\n    metrics: {m1: 5, gone: 5}\n", NULL,
     "m.yaml:6:22: warning: preset \"p\" references metric \"gone\", which is not defined\n"},
    {"preset: a source using a preset with a dangling metric runs the others",
     "metrics:\n  m1:\n    sqls: {10: x}\npresets:\n  p:\n    metrics: {m1: 5, gone: 5}\n",
     "- name: db1\n  conn_str: host=/tmp\n  preset_metrics: p\n",
     "m.yaml:6:22: warning: preset \"p\" references metric \"gone\", which is not defined\n"},
    {"metrics: unknown top-level key", "metric:\n  m1: {}\n", NULL,
     "m.yaml:1:1: unrecognized key \"metric\" in a metrics file (expected \"metrics\" and "
     "\"presets\")\n"},
    {"pgwatch sources: disabled dropped before validation, every kind, pgwatch2 keys", NULL,
     "- name: off\n  kind: patroni\n  conn_str: etcd://h:2379/service/x\n  is_enabled: false\n"
     "  custom_metrics: {nope: 60}\n"
     "- name: cluster2\n  kind: patroni\n  conn_str: etcd://h:2379/service/y\n  custom_metrics: "
     "{m1: 10}\n"
     "- name: db1\n  kind: ''\n  conn_str: host=/tmp\n  stmt_timeout: 5\n"
     "  dbname_include_pattern: (a|b)\n  custom_metrics: {m1: 10}\n",
     "s.yaml:13:3: warning: key \"stmt_timeout\" is read by pgwatch2 only; pgwatch and pgreaper "
     "ignore it\n"
     "s.yaml:14:3: warning: key \"dbname_include_pattern\" is read by pgwatch2 only; pgwatch and "
     "pgreaper ignore it\n"
     ""},
    {"prometheus: any family name, no metrics needed, an http URL", NULL,
     "- name: exp\n  kind: prometheus\n  conn_str: http://h:9187/metrics\n"
     "  custom_metrics: {pg_up: 10, whatever_family: 30}\n"
     "- name: all\n  kind: prometheus\n  conn_str: https://h/metrics\n"
     "- name: bad\n  kind: prometheus\n  conn_str: host=/tmp\n",
     "s.yaml:10:13: source \"bad\" of kind prometheus: conn_str must be an http:// or https:// "
     "URL\n"},
    {"sources: an unknown kind is still an error", NULL,
     "- name: db1\n  kind: oracle\n  conn_str: host=/tmp\n  custom_metrics: {m1: 10}\n",
     "s.yaml:2:9: invalid source kind \"oracle\" (supported: postgres, "
     "postgres-continuous-discovery, patroni, pgbouncer, pgpool, prometheus)\n"},
    {"pgwatch legacy keys are accepted",
     "metrics:\n  m1:\n    sqls:\n      11: |-\n        select 1\n    gauges:\n      - '*'\n"
     "    is_instance_level: true\n    is_private: false\n    disabled_days: ''\n"
     "    statement_timeout_seconds: 300\n    storage_name: other\n    init_sql: create x\n"
     "    description: >\n      folded\n      text\n",
     NULL, ""},
};

static void run_case(const config_case *c)
{
    rp_diag d;
    rp_diag_init(&d);
    rp_catalog *cat = NULL;
    rp_source_set *set = NULL;
    const char *m = c->metrics ? c->metrics : METRICS;
    if (rp_catalog_parse_text("m.yaml", m, strlen(m), &cat, &d) == 0)
        (void)!rp_catalog_validate(cat, &d);
    if (cat && c->sources &&
        rp_sources_parse_text("s.yaml", c->sources, strlen(c->sources), &set, &d) == 0) {
        rp_sources_prune(set, &d); /* as rp_reaper_load does */
        (void)!rp_sources_validate(set, cat, &d);
    }
    is_str(d.text.data ? d.text.data : "", c->want, c->name);
    rp_source_set_free(set);
    rp_catalog_unref(cat);
    rp_diag_fini(&d);
}

static rp_catalog *load_catalog(const char *text)
{
    rp_diag d;
    rp_diag_init(&d);
    rp_catalog *cat = NULL;
    if (rp_catalog_parse_text("m.yaml", text, strlen(text), &cat, &d) < 0)
        printf("# %s", d.text.data);
    rp_diag_fini(&d);
    return cat;
}

static rp_source_set *load_sources(const char *text)
{
    rp_diag d;
    rp_diag_init(&d);
    rp_source_set *set = NULL;
    if (rp_sources_parse_text("s.yaml", text, strlen(text), &set, &d) < 0)
        printf("# %s", d.text.data);
    rp_diag_fini(&d);
    return set;
}

static const char *plan_str(const rp_plan_entry *p, size_t n, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, len - l, "%s%s=%d", i ? " " : "", p[i].def->name, p[i].interval_s);
    }
    return buf;
}

static void test_resolve(void)
{
    rp_catalog *cat = load_catalog(METRICS);
    rp_source_set *set =
        load_sources("- name: a\n  conn_str: x\n  preset_metrics: p1\n"
                     "  custom_metrics: {m1: 5, m3: 0}\n"
                     "- name: b\n  conn_str: x\n  preset_metrics: p1\n"
                     "  preset_metrics_standby: p2\n"
                     "- name: c\n  conn_str: x\n  custom_metrics: {m1: 7, m2: 9}\n");
    rp_plan_entry *p;
    char buf[256];
    size_t n = rp_source_resolve(&set->sources[0], cat, false, 1.0, &p);
    is_str(plan_str(p, n, buf, sizeof(buf)), "m1=5",
           "custom refines the preset: m1 re-timed, m3 switched off, standby-only m2 filtered");
    rp_free(p);
    n = rp_source_resolve(&set->sources[0], cat, true, 1.0, &p);
    is_str(plan_str(p, n, buf, sizeof(buf)), "m1=5 m2=30",
           "without a standby config the primary set is used on a standby, minus primary-only");
    rp_free(p);
    n = rp_source_resolve(&set->sources[1], cat, true, 1.0, &p);
    is_str(plan_str(p, n, buf, sizeof(buf)), "m1=10", "standby preset used in recovery");
    rp_free(p);
    n = rp_source_resolve(&set->sources[1], cat, false, 0.1, &p);
    is_str(plan_str(p, n, buf, sizeof(buf)), "m1=6 m3=12", "interval scale applies, primary set");
    rp_free(p);
    n = rp_source_resolve(&set->sources[2], cat, false, 0.01, &p);
    is_str(plan_str(p, n, buf, sizeof(buf)), "m1=1", "custom only; scaled intervals floor at 1 s");
    rp_free(p);
    const rp_metric_def *m1 = rp_catalog_metric(cat, "m1");
    is_str(rp_metric_sql_for(m1, 150004), "select 2 as v", "PostgreSQL 15 picks the 14 text");
    is_str(rp_metric_sql_for(m1, 130010), "select 1 as v", "PostgreSQL 13 picks the 11 text");
    is_str(rp_metric_sql_for(m1, 140000), "select 2 as v", "an exact key matches");
    ok(rp_metric_sql_for(m1, 100023) == NULL, "PostgreSQL 10 has no text");
    rp_source_set_free(set);
    rp_catalog_unref(cat);
}

static void test_env_and_equality(void)
{
    setenv("RP_TEST_DSN", "host=/tmp dbname=x", 1);
    rp_source_set *set = load_sources("- name: a\n  conn_str: ${RP_TEST_DSN}\n  preset_metrics: p\n"
                                      "- name: b\n  conn_str: host=$NOT_EXPANDED\n"
                                      "  preset_metrics: p\n");
    is_str(set->sources[0].conn_str, "host=/tmp dbname=x", "conn_str starting with $ is expanded");
    is_str(set->sources[1].conn_str, "host=$NOT_EXPANDED",
           "only values that start with $ are expanded (pgwatch's rule)");
    rp_source_def copy;
    rp_source_def_copy(&copy, &set->sources[0]);
    ok(rp_source_def_equal(&copy, &set->sources[0]), "a copy is equal");
    rp_free(copy.preset_metrics);
    copy.preset_metrics = rp_strdup("other");
    ok(!rp_source_def_equal(&copy, &set->sources[0]), "a changed preset is not equal");
    ok(rp_source_def_same_connection(&copy, &set->sources[0]), "but connects the same way");
    rp_source_def_fini(&copy);
    rp_source_def_copy(&copy, &set->sources[0]);
    copy.role_hint = rp_strdup("replica");
    rp_source_def two;
    rp_source_def_copy(&two, &copy);
    is_str(two.role_hint, "replica", "a discovery's role hint is copied");
    ok(!rp_source_def_equal(&copy, &set->sources[0]) &&
           rp_source_def_same_connection(&copy, &set->sources[0]),
       "a changed role hint: not equal, same connection (the source is updated, not restarted)");
    rp_source_def_fini(&two);
    rp_source_def_fini(&copy);
    rp_source_set_free(set);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_folder_and_lenient(void)
{
    char dir[] = "/tmp/rp_test_config_XXXXXX";
    if (!mkdtemp(dir)) {
        ok(0, "mkdtemp");
        return;
    }
    char a[300], b[300], c[300];
    snprintf(a, sizeof(a), "%s/a.yaml", dir);
    snprintf(b, sizeof(b), "%s/b.yml", dir);
    snprintf(c, sizeof(c), "%s/notes.txt", dir);
    write_file(a, "metrics:\n  x:\n    sqls: {10: select 1}\n");
    write_file(b, "metrics:\n  x:\n    sqls: {10: select 2}\n    future_key: 1\n");
    write_file(c, "not yaml: [");
    rp_diag d;
    rp_diag_init(&d);
    rp_catalog *cat = NULL;
    ok(rp_catalog_parse(dir, &cat, &d) < 0, "unknown key in a folder file fails by default");
    rp_diag_fini(&d);
    rp_diag_init(&d);
    d.lenient = true;
    ok(rp_catalog_parse(dir, &cat, &d) == 0, "lenient mode parses the folder");
    ok(rp_catalog_validate(cat, &d) < 0, "a metric defined in two files is an error");
    char want[1024];
    snprintf(want, sizeof(want),
             "%s/b.yml:4:5: warning: ignored unrecognized key \"future_key\" in metric \"x\"\n"
             "%s/b.yml:2:3: metric \"x\" is already defined at %s/a.yaml:2:3\n",
             dir, dir, dir);
    is_str(d.text.data, want, "folder: only *.yaml and *.yml, both files named in messages");
    rp_catalog_unref(cat);
    rp_diag_fini(&d);
    rp_diag_init(&d);
    snprintf(want, sizeof(want), "%s/missing.yaml", dir);
    ok(rp_sources_parse(want, &(rp_source_set *){NULL}, &d) < 0, "missing file fails");
    char want2[1200];
    snprintf(want2, sizeof(want2), "%s: could not open file: No such file or directory\n", want);
    is_str(d.text.data, want2, "missing file message");
    rp_diag_fini(&d);
    unlink(a);
    unlink(b);
    unlink(c);
    rmdir(dir);
}

static void test_builtin(void)
{
    rp_diag d;
    rp_diag_init(&d);
    rp_catalog *cat = NULL;
    ok(rp_catalog_parse(NULL, &cat, &d) == 0 && rp_catalog_validate(cat, &d) == 0,
       "built-in catalogue is valid");
    is_str(d.text.data ? d.text.data : "", "", "built-in catalogue has no warnings");
    const char *presets[] = {"minimal", "basic",   "standard",           "exhaustive", "full",
                             "debug",   "standby", "exhaustive_standby", "pgbouncer",  "pgpool"};
    for (size_t i = 0; i < RP_ARRAY_LEN(presets); i++) {
        const rp_preset *p = rp_catalog_preset(cat, presets[i]);
        ok(p && p->nmetrics > 0, presets[i]);
    }
    for (size_t i = 0; cat && i < cat->nmetrics; i++) {
        const rp_metric_def *m = &cat->metrics[i];
        bool all = m->nsqls > 0;
        for (size_t k = 0; k < m->nsqls; k++)
            all = all && (strstr(m->sqls[k].sql, "epoch_ns") != NULL ||
                          (!*m->sqls[k].sql && rp_metric_code_placeholder(m->code)) ||
                          strncmp(m->sqls[k].sql, "show ", 5) == 0);
        /* every SQL text returns the row time, is a placeholder or a pooler console's
         * command (its rows take the fetch's time) */
        ok(all, m->name);
    }
    rp_catalog_unref(cat);
    rp_diag_fini(&d);
}

int main(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_case(&cases[i]);
    test_resolve();
    test_env_and_equality();
    test_folder_and_lenient();
    test_builtin();
    return done_testing();
}
