/* SPDX-License-Identifier: PostgreSQL
 *
 * Configuration: the metric catalogue (metrics + presets, pgwatch's metrics.yaml format)
 * and the source list (pgwatch's sources.yaml format). Loading is in three steps:
 *   parse    - YAML into plain structs; YAML syntax, unknown keys and wrong types are errors
 *   validate - rules that span fields and files (names, references, intervals, duplicates)
 *   apply    - done by reaper.c, which diffs the new config against the running one
 * Parse and validate are pure: they never log and never touch the network. Every error
 * is one line "FILE:LINE:COL: message" appended to an rp_diag.
 */
#ifndef RP_CONFIG_CONFIG_H
#define RP_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/compiler.h"
#include "model/batch.h"

/* Longest accepted metric interval: 31 days (pgwatch's own presets stay under 2 days). */
#define RP_MAX_INTERVAL_S (31 * 86400)
/* Limits on configuration files, checked before a YAML document is built. */
#define RP_YAML_MAX_BYTES   (16 << 20)
#define RP_YAML_MAX_DEPTH   64
#define RP_YAML_MAX_ALIASES 10000

/* Collected error lines; count is the number of errors. */
typedef struct rp_diag {
    rp_buf text;
    int count;
    bool lenient; /* unknown keys are warnings (in text, not counted) instead of errors */
} rp_diag;

void rp_diag_init(rp_diag *d);
void rp_diag_fini(rp_diag *d);

typedef struct rp_mark {
    const char *file; /* borrowed from the owning catalogue/source set */
    int line;         /* 1-based */
    int col;          /* 1-based */
} rp_mark;

void rp_diag_add(rp_diag *d, const rp_mark *m, const char *fmt, ...) RP_PRINTF(3, 4);

typedef enum rp_node_status {
    RP_NODE_ANY = 0,
    RP_NODE_PRIMARY,
    RP_NODE_STANDBY,
} rp_node_status;

typedef struct rp_metric_sql {
    int min_version; /* in server_version_num units: key 14 -> 140000, key 9.6 -> 90600 */
    char *sql;
} rp_metric_sql;

/* Metrics that pgwatch computes in its own code, recognised by name (collect/native.h
 * implements them). The last two have only a placeholder for SQL in pgwatch's file. */
typedef enum rp_metric_code {
    RP_CODE_NONE = 0,
    RP_CODE_CPU_LOAD,
    RP_CODE_PSUTIL_CPU,
    RP_CODE_PSUTIL_MEM,
    RP_CODE_PSUTIL_DISK_IO,
    RP_CODE_CHANGE_EVENTS,
    RP_CODE_LOG_EVENT_COUNTS,
    RP_CODE_PSUTIL_DISK, /* local: paths from the server, usage from statvfs (collect/diskusage.h)
                          */
} rp_metric_code;

rp_metric_code rp_metric_code_for(const char *name);
/* Whether pgwatch's file holds no real SQL for it (an empty text is then accepted). */
bool rp_metric_code_placeholder(rp_metric_code c);

typedef struct rp_metric_def {
    char *name;
    rp_metric_sql *sqls; /* sorted by min_version, ascending */
    size_t nsqls;
    char **gauges;
    size_t ngauges;
    char *init_sql;          /* may be NULL */
    char *storage_name;      /* may be NULL: stored under name */
    char *description;       /* may be NULL */
    int statement_timeout_s; /* -1: use --statement-timeout */
    int result_max_rows;     /* 0: use --result-max-rows */
    int result_max_bytes;    /* 0: use --result-max-bytes */
    rp_node_status node_status;
    bool is_instance_level;
    rp_metric_code code; /* computed in code (by name), or RP_CODE_NONE */
    rp_mark mark;
} rp_metric_def;

typedef struct rp_interval {
    char *metric;
    int seconds; /* in a preset: > 0; in custom_metrics: 0 switches the metric off */
    rp_mark mark;
} rp_interval;

typedef struct rp_preset {
    char *name;
    char *description;
    rp_interval *metrics;
    size_t nmetrics;
    rp_mark mark;
} rp_preset;

/* An immutable, reference-counted catalogue: sources keep one reference while they
 * point into it, so a reload can swap catalogues without copying definitions. */
typedef struct rp_catalog {
    int refs;
    rp_metric_def *metrics; /* sorted by name */
    size_t nmetrics;
    rp_preset *presets; /* sorted by name */
    size_t npresets;
    char **files;
    size_t nfiles;
} rp_catalog;

typedef struct rp_source_def {
    char *name;
    char *conn_str; /* after $VAR expansion; never logged unmasked */
    char *kind;
    char *group;
    char *preset_metrics;
    char *preset_metrics_standby;
    char *include_pattern;
    char *exclude_pattern;
    rp_interval *custom_metrics;
    size_t ncustom_metrics;
    rp_interval *custom_metrics_standby;
    size_t ncustom_metrics_standby;
    rp_tag *custom_tags;
    size_t ncustom_tags;
    bool is_enabled;
    bool only_if_master;
    bool no_prepared;
    bool has_custom_metrics;         /* key present (possibly empty) */
    bool has_custom_metrics_standby; /* key present (possibly empty) */
    char *role_hint;                 /* not from a file: the role a discovery saw for the
                                      * server ("primary", "replica"); when it changes the
                                      * source re-reads the server's role at once */
    rp_mark mark;
    rp_mark name_mark, conn_str_mark, kind_mark, group_mark;
    rp_mark preset_mark, preset_standby_mark;
} rp_source_def;

typedef struct rp_source_set {
    rp_source_def *sources;
    size_t nsources;
    char **files;
    size_t nfiles;
} rp_source_set;

/* One metric as a source runs it: its definition and its interval. */
typedef struct rp_plan_entry {
    const rp_metric_def *def; /* borrowed from the catalogue */
    int interval_s;           /* > 0 */
} rp_plan_entry;

/*
 * Parse a metrics file or a folder of *.yaml or *.yml files (path NULL: the built-in
 * catalogue compiled from presets/). On success *out is a new catalogue with one
 * reference; release with rp_catalog_unref(). Returns 0, or -EINVAL with diag filled
 * (and *out untouched).
 */
RP_NODISCARD int rp_catalog_parse(const char *path, rp_catalog **out, rp_diag *diag);
/* Parse one in-memory YAML text named `name` (used for the built-in files and tests). */
RP_NODISCARD int rp_catalog_parse_text(const char *name, const char *text, size_t len,
                                       rp_catalog **out, rp_diag *diag);
RP_NODISCARD int rp_catalog_validate(const rp_catalog *cat, rp_diag *diag);
rp_catalog *rp_catalog_ref(rp_catalog *cat);
void rp_catalog_unref(rp_catalog *cat);
const rp_metric_def *rp_catalog_metric(const rp_catalog *cat, const char *name);
const rp_preset *rp_catalog_preset(const rp_catalog *cat, const char *name);

/* The SQL for a server version (server_version_num): the greatest key <= version, or NULL. */
const char *rp_metric_sql_for(const rp_metric_def *def, int server_version_num);

/*
 * Parse a sources file or a folder of *.yaml or *.yml files. $VAR references are expanded
 * in values that start with '$' (pgwatch's rule) for name, group, kind, conn_str and the
 * preset names. Returns 0 or -EINVAL with diag filled. Free with rp_source_set_free().
 */
RP_NODISCARD int rp_sources_parse(const char *path, rp_source_set **out, rp_diag *diag);
RP_NODISCARD int rp_sources_parse_text(const char *name, const char *text, size_t len,
                                       rp_source_set **out, rp_diag *diag);
/* Drop what pgreaper does not run before it is validated: disabled sources, as pgwatch
 * does (diag is kept for warnings of this step). */
void rp_sources_prune(rp_source_set *set, rp_diag *diag);
/* Check sources against each other and the catalogue. Returns 0 or -EINVAL. */
RP_NODISCARD int rp_sources_validate(const rp_source_set *set, const rp_catalog *cat,
                                     rp_diag *diag);
void rp_source_set_free(rp_source_set *set);

/* pgwatch's kind for an entry that stands for every database of a server
 * (collect/discovery.h turns it into one source per database). */
#define RP_KIND_DISCOVERY "postgres-continuous-discovery"
#define RP_KINDS          "postgres, " RP_KIND_DISCOVERY ", patroni, pgbouncer, pgpool, prometheus"
bool rp_source_def_discovers(const rp_source_def *d);
/* Kind patroni (and pgwatch's old names for it): conn_str names a Patroni cluster in
 * etcd; discovery turns it into a source per member and database. */
bool rp_source_def_patroni(const rp_source_def *d);
/* For a pooler's admin console (kinds pgbouncer and pgpool): the command that tells its
 * version (the console takes the simple protocol only, one command at a time); NULL for
 * a PostgreSQL server. */
const char *rp_source_def_console(const rp_source_def *d);
/* Kind prometheus: conn_str is the URL of a Prometheus text endpoint, and the metrics
 * named by custom_metrics and the preset are its families (collect/promsource.h). */
bool rp_source_def_scrapes(const rp_source_def *d);

/* Deep equality of everything that needs a reconnect when it changes. */
bool rp_source_def_same_connection(const rp_source_def *a, const rp_source_def *b);
/* Deep equality of the whole definition (tags and metric selection included). */
bool rp_source_def_equal(const rp_source_def *a, const rp_source_def *b);
/* Deep copy (marks point to the files of the set that owns the copy; here: none). */
void rp_source_def_copy(rp_source_def *dst, const rp_source_def *src);
void rp_source_def_fini(rp_source_def *d);

/*
 * The metrics a (validated) source runs in one role, after node_status filtering.
 * Custom metrics refine the preset: a custom interval replaces the preset's for that
 * metric, 0 removes it, and metrics not in the preset are added. The standby set is the
 * *_standby pair when either is given, else the primary set. interval_scale (> 0)
 * multiplies every interval (rounded, at least 1 s). Returns the number of entries;
 * *out is a new array (free with rp_free) or NULL when empty.
 */
size_t rp_source_resolve(const rp_source_def *src, const rp_catalog *cat, bool standby,
                         double interval_scale, rp_plan_entry **out);

/* The built-in YAML files, generated from presets/ at build time. */
typedef struct rp_builtin_file {
    const char *name;
    const char *text;
    size_t len;
} rp_builtin_file;
extern const rp_builtin_file rp_builtin_presets[];
extern const size_t rp_builtin_presets_count;

#endif /* RP_CONFIG_CONFIG_H */
