/* SPDX-License-Identifier: PostgreSQL
 *
 * Command-line flags and their PGREAPER_* environment variables. One table drives
 * parsing, --help and the docs-drift test: every flag has an environment variable, and
 * a flag on the command line wins over the environment.
 */
#ifndef RP_CONFIG_OPTIONS_H
#define RP_CONFIG_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"
#include "common/log.h"

/* A repeatable option's values, in the order given. */
typedef struct rp_opt_list {
    char **v; /* owned */
    size_t n;
} rp_opt_list;

typedef struct rp_options {
    char *sources; /* file or folder */
    char *metrics; /* file or folder; NULL = built-in catalogue */
    rp_opt_list sinks;
    rp_opt_list groups;
    int refresh_s;           /* 0 = only on SIGHUP */
    int statement_timeout_s; /* default for metrics without statement_timeout_seconds */
    int connect_timeout_s;
    int max_connecting;        /* connection attempts in flight at most (0: no bound) */
    char *cluster_db;          /* NULL, or the database instances share sources through */
    char *instance_name;       /* this instance's name in it (NULL: host-pid) */
    int64_t lease_ttl_ms;      /* membership and lease time to live */
    int64_t connect_spread_ms; /* a fleet's first connections start within this window */
    int result_max_rows;       /* default cap on a metric result's rows */
    int64_t result_max_bytes;  /* default cap on a metric result's bytes */
    int shutdown_timeout_s;
    int64_t batching_delay_ms;       /* PostgreSQL sink */
    int64_t sink_buffer_bytes;       /* PostgreSQL sink */
    char *sink_spool;                /* PostgreSQL sink: spool folder, or NULL */
    int64_t partition_interval_ms;   /* PostgreSQL sink */
    int64_t retention_ms;            /* PostgreSQL sink; 0 = keep everything */
    int64_t maintenance_interval_ms; /* PostgreSQL sink; 0 = never */
    double interval_scale;
    bool no_prepared;
    bool no_write_coalescing;
    bool no_read_coalescing;
    bool no_instance_sharing;
    bool config_triggers;
    bool allow_unknown_keys;
    bool check;
    bool help;
    bool version;
    rp_log_level log_level;
    rp_log_format log_format;
    char *libpq_trace;
    char *mode;           /* "batch" (NULL) or "per-metric" */
    bool per_metric;      /* mode is per-metric */
    int max_conns_per_db; /* per-metric mode's pool size per source */
    char *pprof_addr;     /* NULL = no pprof listener (unless pprof) */
    bool pprof;           /* PGREAPER_PPROF=1: 127.0.0.1:6060 */
    bool pprof_allow_remote;
    char *pprof_token;
    char *metrics_addr;         /* NULL = /metrics on the pprof listener only */
    int64_t heap_sample_rate;   /* bytes; 0 = counters only */
    int mutex_profile_fraction; /* 1 in N contended locks recorded; 0 = off */
    int block_profile_rate;     /* ns: see pprof/contention.h; 0 = off */
} rp_options;

typedef enum rp_opt_type {
    RP_OPT_STRING,
    RP_OPT_LIST, /* repeatable; the environment variable holds a whitespace-separated list */
    RP_OPT_INT,
    RP_OPT_DOUBLE,
    RP_OPT_BOOL,
    RP_OPT_LEVEL,
    RP_OPT_FORMAT,
    RP_OPT_DURATION, /* int64 milliseconds: "950ms", "1s", "12h", "14 days" */
    RP_OPT_BYTES,    /* int64 bytes: "64MiB", "512kB", "1048576" */
} rp_opt_type;

typedef struct rp_opt_def {
    const char *name; /* long flag without "--" */
    const char *env;
    rp_opt_type type;
    size_t offset;    /* into rp_options */
    long min, max;    /* RP_OPT_INT: min <= x <= max; RP_OPT_DOUBLE: min < x <= max */
    const char *arg;  /* argument name for --help, NULL for booleans */
    const char *dflt; /* default as text, for --help and docs */
    const char *help;
} rp_opt_def;

extern const rp_opt_def rp_opt_table[];
extern const size_t rp_opt_count;

void rp_options_init(rp_options *o);
void rp_options_fini(rp_options *o);

/*
 * Fill o from the environment (envp-style lookups through getenv) and then argv.
 * Returns 0, or -EINVAL with a one-line message in err (usage error: exit code 2).
 */
RP_NODISCARD int rp_options_parse(rp_options *o, int argc, char **argv, char *err, size_t errlen);

/* "950ms", "1s", "1.5 min", "12h", "14 days", "2w" → ms. 0 or -EINVAL. */
RP_NODISCARD int rp_parse_duration_ms(const char *s, int64_t *out);
/* "64MiB", "64MB", "512kB", "1048576" → bytes (binary multiples). 0 or -EINVAL. */
RP_NODISCARD int rp_parse_bytes(const char *s, int64_t *out);

/* Print --help text to stdout. */
void rp_options_usage(const char *argv0);

#endif /* RP_CONFIG_OPTIONS_H */
