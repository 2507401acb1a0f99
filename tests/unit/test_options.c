/* SPDX-License-Identifier: PostgreSQL
 *
 * Flags and PGREAPER_* environment variables; and the docs-drift check: every flag and
 * its environment variable appear in docs/config.md (path in argv[1]).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "config/options.h"
#include "tests/lib/tap.h"

static void test_parse(void)
{
    rp_options o;
    char err[256];
    rp_options_init(&o);
    setenv("PGREAPER_SINK", "jsonfile:/a jsonfile:-", 1);
    setenv("PGREAPER_REFRESH", "30", 1);
    setenv("PGREAPER_NO_PREPARED", "yes", 1);
    char *argv[] = {"pgreaper", "--sources",   "s.yaml",      "--refresh", "5",
                    "--sink",   "jsonfile:/b", "--log-level", "debug",     NULL};
    ok(rp_options_parse(&o, 9, argv, err, sizeof(err)) == 0, "flags and env parse");
    is_str(o.sources, "s.yaml", "--sources");
    is_int(o.refresh_s, 5, "a flag wins over its environment variable");
    is_int(o.sinks.n, 3, "list env split on whitespace, flag appended");
    is_str(o.sinks.v[2], "jsonfile:/b", "flag sink last");
    ok(o.no_prepared, "boolean env yes");
    is_int(o.log_level, RP_LOG_DEBUG, "--log-level debug");
    is_int(o.statement_timeout_s, 10, "default statement timeout");
    rp_options_fini(&o);
    unsetenv("PGREAPER_SINK");
    unsetenv("PGREAPER_REFRESH");
    unsetenv("PGREAPER_NO_PREPARED");

    rp_options_init(&o);
    char *bad[] = {"pgreaper", "--refresh", "-1", NULL};
    ok(rp_options_parse(&o, 3, bad, err, sizeof(err)) < 0, "negative refresh rejected");
    is_str(err, "invalid value \"-1\" for --refresh: expected an integer from 0 to 86400",
           "range message");
    rp_options_fini(&o);
    rp_options_init(&o);
    setenv("PGREAPER_LOG_FORMAT", "xml", 1);
    char *none[] = {"pgreaper", NULL};
    ok(rp_options_parse(&o, 1, none, err, sizeof(err)) < 0, "bad env value rejected");
    is_str(err,
           "invalid value \"xml\" for environment variable PGREAPER_LOG_FORMAT: expected text "
           "or logfmt",
           "env message names the variable");
    unsetenv("PGREAPER_LOG_FORMAT");
    rp_options_fini(&o);
    rp_options_init(&o);
    char *unk[] = {"pgreaper", "--frobnicate", NULL};
    ok(rp_options_parse(&o, 2, unk, err, sizeof(err)) < 0, "unknown flag rejected");
    is_str(err, "invalid or incomplete option \"--frobnicate\"", "unknown flag message");
    rp_options_fini(&o);
    rp_options_init(&o);
    char *groups[] = {"pgreaper", "--group", "a", "--sink", "jsonfile:-", "--group", "b", NULL};
    ok(rp_options_parse(&o, 7, groups, err, sizeof(err)) == 0 && o.groups.n == 2 &&
           o.sinks.n == 1 && !strcmp(o.groups.v[1], "b"),
       "each list keeps its own values and count");
    rp_options_fini(&o);
    rp_options_init(&o);
    char *scale[] = {"pgreaper", "--interval-scale", "1000", "--interval-scale", "1000.5", NULL};
    ok(rp_options_parse(&o, 3, scale, err, sizeof(err)) == 0 && o.interval_scale == 1000,
       "--interval-scale up to the table's maximum");
    ok(rp_options_parse(&o, 5, scale, err, sizeof(err)) < 0, "above it: refused");
    is_str(err,
           "invalid value \"1000.5\" for --interval-scale: expected a number above 0, up to 1000",
           "the bounds come from the table");
    rp_options_fini(&o);
}

static void test_docs(const char *path)
{
    FILE *f = fopen(path, "r");
    ok(f != NULL, "docs/config.md readable");
    if (!f)
        return;
    rp_buf doc = RP_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rp_buf_append(&doc, chunk, n);
    fclose(f);
    for (size_t i = 0; i < rp_opt_count; i++) {
        char head[96], msg[160];
        snprintf(head, sizeof(head), "\n### --%s\n", rp_opt_table[i].name);
        snprintf(msg, sizeof(msg), "docs/config.md documents --%s and %s", rp_opt_table[i].name,
                 rp_opt_table[i].env);
        ok(strstr(doc.data, head) && strstr(doc.data, rp_opt_table[i].env), msg);
    }
    rp_buf_fini(&doc);
}

int main(int argc, char **argv)
{
    test_parse();
    if (argc > 1)
        test_docs(argv[1]);
    return done_testing();
}
