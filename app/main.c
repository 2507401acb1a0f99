/* SPDX-License-Identifier: PostgreSQL
 *
 * pgreaper entry point: flags, --check, --help, --version, then the reaper.
 */
#include "rp_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "app/catcmd.h"
#include "app/compare.h"
#include "app/reaper.h"
#include "common/log.h"
#include "config/config.h"
#include "config/options.h"
#include "pprof/contention.h"
#include "pprof/heap.h"
#include "pprof/http.h"
#include "pprof/threads.h"

static int run_check(const rp_options *o)
{
    rp_diag diag;
    rp_diag_init(&diag);
    rp_catalog *cat;
    rp_source_set *set;
    int rc = rp_reaper_load(o, &cat, &set, &diag);
    if (diag.text.len)
        fputs(diag.text.data, stderr);
    if (rc < 0) {
        fprintf(stderr, "pgreaper: configuration has %d error%s\n", diag.count,
                diag.count == 1 ? "" : "s");
        rp_diag_fini(&diag);
        return 1;
    }
    size_t enabled = 0;
    for (size_t i = 0; set && i < set->nsources; i++)
        enabled += set->sources[i].is_enabled;
    printf("configuration is valid: %zu sources (%zu enabled), %zu metrics, %zu presets\n",
           set ? set->nsources : 0, enabled, cat->nmetrics, cat->npresets);
    rp_catalog_unref(cat);
    rp_source_set_free(set);
    rp_diag_fini(&diag);
    return 0;
}

/* Flag values that the table cannot check on its own: a bad one is a usage error (2). */
static int check_flags(const rp_options *o, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    bool loopback;
    if (o->pprof_addr && rp_http_parse_addr(o->pprof_addr, &ss, &loopback, err, errlen) < 0)
        return -EINVAL;
    if (o->pprof_addr && !loopback && !o->pprof_allow_remote) {
        snprintf(err, errlen,
                 "refusing to serve pprof on non-loopback address \"%s\" without "
                 "--pprof-allow-remote",
                 o->pprof_addr);
        return -EINVAL;
    }
    size_t pg_sinks = 0;
    for (size_t i = 0; i < o->sinks.n; i++)
        pg_sinks += strncmp(o->sinks.v[i], "jsonfile:", 9) != 0;
    if (o->sink_spool && pg_sinks != 1) {
        snprintf(err, errlen, "--sink-spool needs exactly one PostgreSQL sink (%zu given)",
                 pg_sinks);
        return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "compare") == 0)
        return rp_compare_main(argc - 1, argv + 1);
    if (argc > 1 && (strcmp(argv[1], "metric") == 0 || strcmp(argv[1], "preset") == 0))
        return rp_catcmd_main(argc - 1, argv + 1);
    rp_options o;
    rp_options_init(&o);
    char err[512];
    int rc;
    if (rp_options_parse(&o, argc, argv, err, sizeof(err)) < 0 ||
        check_flags(&o, err, sizeof(err)) < 0) {
        fprintf(stderr, "pgreaper: %s\nTry \"pgreaper --help\" for more information.\n", err);
        rp_options_fini(&o);
        return 2;
    }
    rp_log_setup(o.log_level, o.log_format);
    /* Profiling hooks: counters always, samples at --heap-sample-rate, the thread-dump
     * signal; before any thread exists. libuv's pool (DNS lookups, profile building)
     * gets two threads unless the user says otherwise. */
    rp_heap_init((long)o.heap_sample_rate);
    rp_contention_set(o.mutex_profile_fraction, o.block_profile_rate);
    rp_threads_init();
    setenv("UV_THREADPOOL_SIZE", "2", 0);
    if (o.help) {
        rp_options_usage("pgreaper");
        rc = 0;
    } else if (o.version) {
        printf("pgreaper %s\n", RP_VERSION);
        rc = 0;
    } else if (o.check) {
        rc = run_check(&o);
    } else if (!o.sources || o.sinks.n == 0) {
        fprintf(stderr, "pgreaper: %s\nTry \"pgreaper --help\" for more information.\n",
                !o.sources
                    ? "no sources given: use --sources FILE|DIR"
                    : "no sink given: use --sink jsonfile:///path.jsonl or --sink jsonfile:-");
        rc = 2;
    } else {
        rc = rp_reaper_run(&o, argc, argv);
    }
    rp_options_fini(&o);
    return rc;
}
