/* SPDX-License-Identifier: PostgreSQL
 *
 * Flag and environment parsing from one declarative table. See options.h.
 */
#include "config/options.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

#define OFF(f) offsetof(rp_options, f)

const rp_opt_def rp_opt_table[] = {
    {"sources", "PGREAPER_SOURCES", RP_OPT_STRING, OFF(sources), 0, 0, "FILE|DIR|URI", NULL,
     "sources YAML file or folder (pgwatch format), or postgresql:// of pgwatch's config "
     "database"},
    {"metrics", "PGREAPER_METRICS", RP_OPT_STRING, OFF(metrics), 0, 0, "FILE|DIR|URI", "built-in",
     "metrics and presets YAML file or folder (pgwatch metrics.yaml format), or postgresql:// "
     "of pgwatch's config database"},
    {"sink", "PGREAPER_SINK", RP_OPT_LIST, OFF(sinks), 0, 0, "URI", NULL,
     "where measurements go; repeatable: postgresql://..., jsonfile:///path.jsonl, jsonfile:-"},
    {"group", "PGREAPER_GROUP", RP_OPT_LIST, OFF(groups), 0, 0, "NAME", "all",
     "only run sources of this group; repeatable"},
    {"refresh", "PGREAPER_REFRESH", RP_OPT_INT, OFF(refresh_s), 0, 86400, "SECONDS", "120",
     "re-read sources and metrics every SECONDS when the files changed (0: only on SIGHUP)"},
    {"statement-timeout", "PGREAPER_STATEMENT_TIMEOUT", RP_OPT_INT, OFF(statement_timeout_s), 0,
     86400, "SECONDS", "10",
     "statement_timeout for metrics without statement_timeout_seconds (0: none)"},
    {"result-max-rows", "PGREAPER_RESULT_MAX_ROWS", RP_OPT_INT, OFF(result_max_rows), 1, 100000000,
     "ROWS", "100000",
     "a metric result with more rows is not stored (metric key result_max_rows overrides)"},
    {"result-max-bytes", "PGREAPER_RESULT_MAX_BYTES", RP_OPT_BYTES, OFF(result_max_bytes), 1024,
     2147483647, "BYTES", "16MiB",
     "a metric result with more bytes is not stored (metric key result_max_bytes overrides)"},
    {"connect-timeout", "PGREAPER_CONNECT_TIMEOUT", RP_OPT_INT, OFF(connect_timeout_s), 1, 3600,
     "SECONDS", "10", "give up a connection attempt (DNS included) after SECONDS"},
    {"max-connecting", "PGREAPER_MAX_CONNECTING", RP_OPT_INT, OFF(max_connecting), 0, 100000, "N",
     "16",
     "connection attempts (sources and sinks together) in flight at most; the others wait "
     "their turn, so that a fleet does not storm its servers (0: no bound)"},
    {"connect-spread", "PGREAPER_CONNECT_SPREAD", RP_OPT_DURATION, OFF(connect_spread_ms), 0,
     3600000, "DURATION", "10s",
     "start the first connections of N sources within min(DURATION, N x 10 ms), each at a "
     "stable offset"},
    {"cluster-db", "PGREAPER_CLUSTER_DB", RP_OPT_STRING, OFF(cluster_db), 0, 0, "URI", NULL,
     "share the sources with the other pgreaper instances naming this PostgreSQL database: "
     "membership and a lease per source in its schema pgreaper (batch mode)"},
    {"instance-name", "PGREAPER_INSTANCE_NAME", RP_OPT_STRING, OFF(instance_name), 0, 0, "NAME",
     "HOST-PID", "this instance's name in --cluster-db (unique among the instances)"},
    {"lease-ttl", "PGREAPER_LEASE_TTL", RP_OPT_DURATION, OFF(lease_ttl_ms), 1000, 3600000,
     "DURATION", "30s",
     "--cluster-db: how long a lease and a heartbeat live; a dead instance's sources move "
     "within it"},
    {"shutdown-timeout", "PGREAPER_SHUTDOWN_TIMEOUT", RP_OPT_INT, OFF(shutdown_timeout_s), 0, 3600,
     "SECONDS", "10", "on SIGTERM, wait this long for in-flight batches"},
    {"batching-delay", "PGREAPER_BATCHING_DELAY", RP_OPT_DURATION, OFF(batching_delay_ms), 10,
     3600000, "DURATION", "5s",
     "PostgreSQL sink: how long measurements wait to be written together"},
    {"sink-buffer-bytes", "PGREAPER_SINK_BUFFER_BYTES", RP_OPT_BYTES, OFF(sink_buffer_bytes), 65536,
     0, "BYTES", "64MiB",
     "PostgreSQL sink: memory for measurements waiting to be written; the oldest are dropped "
     "(and counted) beyond it"},
    {"sink-spool", "PGREAPER_SINK_SPOOL", RP_OPT_STRING, OFF(sink_spool), 0, 0, "DIR", NULL,
     "PostgreSQL sink: keep accepted rows in DIR (fsync'd every --batching-delay) until written, "
     "so that they survive a crash or SIGKILL and are written after the next start"},
    {"partition-interval", "PGREAPER_PARTITION_INTERVAL", RP_OPT_DURATION,
     OFF(partition_interval_ms), 3600000, 31LL * 86400000, "DURATION", "1 day",
     "PostgreSQL sink: time span of one partition of a metric table (1 hour to 31 days)"},
    {"retention", "PGREAPER_RETENTION", RP_OPT_DURATION, OFF(retention_ms), 0, 3650LL * 86400000,
     "DURATION", "14 days",
     "PostgreSQL sink: drop partitions older than this (0: keep everything)"},
    {"maintenance-interval", "PGREAPER_MAINTENANCE_INTERVAL", RP_OPT_DURATION,
     OFF(maintenance_interval_ms), 0, 31LL * 86400000, "DURATION", "12 hours",
     "PostgreSQL sink: how often retention and the dbname listing run (0: never)"},
    {"interval-scale", "PGREAPER_INTERVAL_SCALE", RP_OPT_DOUBLE, OFF(interval_scale), 0, 1000,
     "FACTOR", "1", "multiply every metric interval (e.g. 0.05 for tests; at least 1 s)"},
    {"no-prepared", "PGREAPER_NO_PREPARED", RP_OPT_BOOL, OFF(no_prepared), 0, 0, NULL, "off",
     "do not use prepared statements (for poolers in transaction mode)"},
    {"no-write-coalescing", "PGREAPER_NO_WRITE_COALESCING", RP_OPT_BOOL, OFF(no_write_coalescing),
     0, 0, NULL, "off",
     "let libpq write a pipeline at each sync point (one send per metric; for measurements)"},
    {"no-read-coalescing", "PGREAPER_NO_READ_COALESCING", RP_OPT_BOOL, OFF(no_read_coalescing), 0,
     0, NULL, "off",
     "read a pipeline's answers as each arrives, not when all should be there (for "
     "measurements)"},
    {"config-triggers", "PGREAPER_CONFIG_TRIGGERS", RP_OPT_BOOL, OFF(config_triggers), 0, 0, NULL,
     "off", "create triggers in the configuration database that announce its changes"},
    {"no-instance-sharing", "PGREAPER_NO_INSTANCE_SHARING", RP_OPT_BOOL, OFF(no_instance_sharing),
     0, 0, NULL, "off", "fetch instance-level metrics from every source, not once per instance"},
    {"allow-unknown-keys", "PGREAPER_ALLOW_UNKNOWN_KEYS", RP_OPT_BOOL, OFF(allow_unknown_keys), 0,
     0, NULL, "off", "warn about unrecognized YAML keys instead of failing"},
    {"check", "PGREAPER_CHECK", RP_OPT_BOOL, OFF(check), 0, 0, NULL, "off",
     "validate the configuration and exit 0 (valid) or 1 (errors); connects to nothing"},
    {"log-level", "PGREAPER_LOG_LEVEL", RP_OPT_LEVEL, OFF(log_level), 0, 0, "error|warn|info|debug",
     "info", "log verbosity"},
    {"log-format", "PGREAPER_LOG_FORMAT", RP_OPT_FORMAT, OFF(log_format), 0, 0, "text|logfmt",
     "text", "log line format (stderr)"},
    {"libpq-trace", "PGREAPER_LIBPQ_TRACE", RP_OPT_STRING, OFF(libpq_trace), 0, 0, "DIR", NULL,
     "write a libpq protocol trace per source to DIR/<source>.trace (debugging)"},
    {"mode", "PGREAPER_MODE", RP_OPT_STRING, OFF(mode), 0, 0, "batch|per-metric", "batch",
     "batch: one event-loop reaper per source with pipelined batches; per-metric: the classic "
     "design, one thread per metric of each source (for comparisons)"},
    {"max-parallel-connections-per-db", "PGREAPER_MAX_PARALLEL_CONNECTIONS_PER_DB", RP_OPT_INT,
     OFF(max_conns_per_db), 1, 1000, "N", "4",
     "per-metric mode: connections each source's metric threads share (blocking checkout)"},
    {"pprof-addr", "PGREAPER_PPROF_ADDR", RP_OPT_STRING, OFF(pprof_addr), 0, 0, "HOST:PORT", NULL,
     "serve /debug/pprof and /debug/vars on HOST:PORT (off unless given; port 0 picks one)"},
    {"pprof", "PGREAPER_PPROF", RP_OPT_BOOL, OFF(pprof), 0, 0, NULL, "off",
     "serve /debug/pprof on 127.0.0.1:6060 (when --pprof-addr is not given)"},
    {"pprof-allow-remote", "PGREAPER_PPROF_ALLOW_REMOTE", RP_OPT_BOOL, OFF(pprof_allow_remote), 0,
     0, NULL, "off", "allow --pprof-addr to bind an address other than loopback"},
    {"pprof-token", "PGREAPER_PPROF_TOKEN", RP_OPT_STRING, OFF(pprof_token), 0, 0, "TOKEN", NULL,
     "require \"Authorization: Bearer TOKEN\" (or ?token=TOKEN) on every pprof request"},
    {"metrics-addr", "PGREAPER_METRICS_ADDR", RP_OPT_STRING, OFF(metrics_addr), 0, 0, "HOST:PORT",
     NULL, "serve pgreaper's own metrics (/metrics, Prometheus text) alone on HOST:PORT"},
    {"heap-sample-rate", "PGREAPER_HEAP_SAMPLE_RATE", RP_OPT_BYTES, OFF(heap_sample_rate), 0, 0,
     "BYTES", "16KiB",
     "mean bytes between heap profile samples (1: every allocation, 0: counters only)"},
    {"mutex-profile-fraction", "PGREAPER_MUTEX_PROFILE_FRACTION", RP_OPT_INT,
     OFF(mutex_profile_fraction), 0, 1000000000, "N", "0",
     "record 1 in N contended pthread mutex locks for /debug/pprof/mutex (0: off)"},
    {"block-profile-rate", "PGREAPER_BLOCK_PROFILE_RATE", RP_OPT_INT, OFF(block_profile_rate), 0,
     1000000000, "NS", "0",
     "record one blocking event (condition-variable wait, contended lock) per NS nanoseconds "
     "blocked for /debug/pprof/block (1: every event, 0: off)"},
    {"help", "PGREAPER_HELP", RP_OPT_BOOL, OFF(help), 0, 0, NULL, NULL, "show this help"},
    {"version", "PGREAPER_VERSION", RP_OPT_BOOL, OFF(version), 0, 0, NULL, NULL,
     "show the version"},
};
const size_t rp_opt_count = RP_ARRAY_LEN(rp_opt_table);

void rp_options_init(rp_options *o)
{
    memset(o, 0, sizeof(*o));
    o->refresh_s = 120;
    o->statement_timeout_s = 10;
    o->result_max_rows = 100000;
    o->result_max_bytes = 16LL << 20;
    o->connect_timeout_s = 10;
    o->max_connecting = 16;
    o->lease_ttl_ms = 30000;
    o->connect_spread_ms = 10000;
    o->shutdown_timeout_s = 10;
    o->batching_delay_ms = 5000;
    o->sink_buffer_bytes = 64LL << 20;
    o->partition_interval_ms = 86400000;
    o->retention_ms = 14LL * 86400000;
    o->maintenance_interval_ms = 12LL * 3600000;
    o->interval_scale = 1.0;
    o->heap_sample_rate = 16384; /* RP_HEAP_DEFAULT_RATE (pprof/heap.h) */
    o->max_conns_per_db = 4;
    o->log_level = RP_LOG_INFO;
    o->log_format = RP_LOG_TEXT;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rp_free(v[i]);
    rp_free(v);
}

void rp_options_fini(rp_options *o)
{
    rp_free(o->sources);
    rp_free(o->metrics);
    rp_free(o->libpq_trace);
    rp_free(o->pprof_addr);
    rp_free(o->metrics_addr);
    rp_free(o->cluster_db);
    rp_free(o->instance_name);
    rp_free(o->sink_spool);
    rp_free(o->mode);
    rp_free(o->pprof_token);
    free_list(o->sinks.v, o->sinks.n);
    free_list(o->groups.v, o->groups.n);
    memset(o, 0, sizeof(*o));
}

typedef struct unit {
    const char *name;
    int64_t mult;
} unit;

/* A number followed by an optional unit from units (first entry: no unit). */
static int parse_with_units(const char *s, const unit *units, size_t nunits, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -EINVAL;
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < nunits; i++) {
        if (strcmp(end, units[i].name) == 0) {
            double r = v * (double)units[i].mult;
            if (r > 9.2e18)
                return -EINVAL;
            *out = (int64_t)(r + 0.5);
            return 0;
        }
    }
    return -EINVAL;
}

int rp_parse_duration_ms(const char *s, int64_t *out)
{
    static const unit units[] = {
        {"ms", 1},           {"s", 1000},          {"sec", 1000},      {"second", 1000},
        {"seconds", 1000},   {"m", 60000},         {"min", 60000},     {"minute", 60000},
        {"minutes", 60000},  {"h", 3600000},       {"hour", 3600000},  {"hours", 3600000},
        {"d", 86400000},     {"day", 86400000},    {"days", 86400000}, {"w", 604800000},
        {"week", 604800000}, {"weeks", 604800000},
    };
    if (strcmp(s, "0") == 0) {
        *out = 0;
        return 0;
    }
    return parse_with_units(s, units, RP_ARRAY_LEN(units), out);
}

int rp_parse_bytes(const char *s, int64_t *out)
{
    static const unit units[] = {
        {"", 1},         {"B", 1},         {"kB", 1024},      {"KB", 1024},       {"KiB", 1024},
        {"MB", 1 << 20}, {"MiB", 1 << 20}, {"GB", 1LL << 30}, {"GiB", 1LL << 30},
    };
    return parse_with_units(s, units, RP_ARRAY_LEN(units), out);
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
        *out = true;
    else if (!strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off") || !*s)
        *out = false;
    else
        return -EINVAL;
    return 0;
}

static void list_add(rp_options *o, const rp_opt_def *d, const char *v)
{
    rp_opt_list *l = (rp_opt_list *)((char *)o + d->offset);
    l->v = rp_reallocarray(l->v, l->n + 1, sizeof(char *));
    l->v[l->n++] = rp_strdup(v);
}

/* Apply one value; from_env splits lists on whitespace. */
static int apply(rp_options *o, const rp_opt_def *d, const char *v, bool from_env, char *err,
                 size_t errlen, const char *origin)
{
    void *field = (char *)o + d->offset;
    char *end;
    switch (d->type) {
    case RP_OPT_STRING:
        rp_free(*(char **)field);
        *(char **)field = rp_strdup(v);
        return 0;
    case RP_OPT_LIST:
        if (!from_env) {
            list_add(o, d, v);
            return 0;
        }
        for (const char *p = v; *p;) {
            p += strspn(p, " \t\n");
            size_t n = strcspn(p, " \t\n");
            if (n) {
                char *one = rp_strndup(p, n);
                list_add(o, d, one);
                rp_free(one);
            }
            p += n;
        }
        return 0;
    case RP_OPT_INT: {
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < d->min || x > d->max) {
            snprintf(err, errlen,
                     "invalid value \"%s\" for %s: expected an integer from %ld to %ld", v, origin,
                     d->min, d->max);
            return -EINVAL;
        }
        *(int *)field = (int)x;
        return 0;
    }
    case RP_OPT_DOUBLE: {
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end || !(x > (double)d->min) || x > (double)d->max) {
            snprintf(err, errlen,
                     "invalid value \"%s\" for %s: expected a number above %ld, up to %ld", v,
                     origin, d->min, d->max);
            return -EINVAL;
        }
        *(double *)field = x;
        return 0;
    }
    case RP_OPT_BOOL:
        if (parse_bool(v, (bool *)field) < 0) {
            snprintf(err, errlen, "invalid value \"%s\" for %s: expected true or false", v, origin);
            return -EINVAL;
        }
        return 0;
    case RP_OPT_DURATION:
    case RP_OPT_BYTES: {
        int64_t x;
        int rc = d->type == RP_OPT_DURATION ? rp_parse_duration_ms(v, &x) : rp_parse_bytes(v, &x);
        bool too_big = d->max > 0 && x > d->max;
        if (rc < 0 || x < d->min || too_big) {
            snprintf(err, errlen, "invalid value \"%s\" for %s: expected %s", v, origin,
                     d->type == RP_OPT_DURATION ? "a duration such as 500ms, 1s, 12h or 14 days"
                                                : "a size such as 64MiB");
            return -EINVAL;
        }
        *(int64_t *)field = x;
        return 0;
    }
    case RP_OPT_LEVEL:
        if (rp_log_parse_level(v, (rp_log_level *)field) < 0) {
            snprintf(err, errlen,
                     "invalid value \"%s\" for %s: expected error, warn, info or debug", v, origin);
            return -EINVAL;
        }
        return 0;
    case RP_OPT_FORMAT:
        if (rp_log_parse_format(v, (rp_log_format *)field) < 0) {
            snprintf(err, errlen, "invalid value \"%s\" for %s: expected text or logfmt", v,
                     origin);
            return -EINVAL;
        }
        return 0;
    }
    return -EINVAL;
}

static int parse_env(rp_options *o, char *err, size_t errlen)
{
    for (size_t i = 0; i < rp_opt_count; i++) {
        const rp_opt_def *d = &rp_opt_table[i];
        const char *v = getenv(d->env);
        if (!v)
            continue;
        char origin[96];
        snprintf(origin, sizeof(origin), "environment variable %s", d->env);
        if (apply(o, d, v, true, err, errlen, origin) < 0)
            return -EINVAL;
    }
    return 0;
}

int rp_options_parse(rp_options *o, int argc, char **argv, char *err, size_t errlen)
{
    if (parse_env(o, err, errlen) < 0)
        return -EINVAL;
    struct option *lo = rp_calloc(rp_opt_count + 1, sizeof(struct option));
    for (size_t i = 0; i < rp_opt_count; i++) {
        lo[i].name = rp_opt_table[i].name;
        lo[i].has_arg = rp_opt_table[i].type == RP_OPT_BOOL ? no_argument : required_argument;
        lo[i].val = 1000 + (int)i;
    }
    int rc = 0, c, idx;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+hV", lo, &idx)) != -1) {
        if (c == 'h' || c == 'V') {
            *(c == 'h' ? &o->help : &o->version) = true;
            continue;
        }
        if (c < 1000) {
            snprintf(err, errlen, "invalid or incomplete option \"%s\"", argv[optind - 1]);
            rc = -EINVAL;
            break;
        }
        const rp_opt_def *d = &rp_opt_table[c - 1000];
        char origin[64];
        snprintf(origin, sizeof(origin), "--%s", d->name);
        if (apply(o, d, d->type == RP_OPT_BOOL ? "true" : optarg, false, err, errlen, origin) < 0) {
            rc = -EINVAL;
            break;
        }
    }
    if (rc == 0 && optind < argc) {
        snprintf(err, errlen, "unexpected argument \"%s\"", argv[optind]);
        rc = -EINVAL;
    }
    if (rc == 0 && o->mode && strcmp(o->mode, "batch") != 0 && strcmp(o->mode, "per-metric") != 0) {
        snprintf(err, errlen, "invalid value \"%s\" for --mode: expected batch or per-metric",
                 o->mode);
        rc = -EINVAL;
    }
    o->per_metric = o->mode && strcmp(o->mode, "per-metric") == 0;
    if (rc == 0 && o->cluster_db && o->per_metric) {
        snprintf(err, errlen, "--cluster-db needs --mode=batch (its leases fence each tick)");
        rc = -EINVAL;
    }
    rp_free(lo);
    return rc;
}

void rp_options_usage(const char *argv0)
{
    printf("pgreaper collects PostgreSQL metrics with one event-loop reaper per database.\n\n"
           "Usage:\n  %s --sources FILE|DIR --sink URI [OPTION]...\n  %s --check --sources "
           "FILE|DIR [--metrics FILE|DIR]\n\nOptions:\n",
           argv0, argv0);
    for (size_t i = 0; i < rp_opt_count; i++) {
        const rp_opt_def *d = &rp_opt_table[i];
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s%s%s", d->name, d->arg ? " " : "", d->arg ? d->arg : "");
        printf("  %-34s %s\n", flag, d->help);
        printf("  %-34s env %s%s%s\n", "", d->env, d->dflt ? ", default " : "",
               d->dflt ? d->dflt : "");
    }
    printf("\nSignals: SIGHUP reloads the configuration; SIGTERM and SIGINT stop gracefully.\n");
}
