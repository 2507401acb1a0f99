/* SPDX-License-Identifier: PostgreSQL
 *
 * Orchestration on the loop thread: config load/apply, sources, sinks, signals.
 * This is the only module besides source.c that logs.
 */
#include "app/reaper.h"

#include "rp_config.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "app/cluster.h"
#include "app/confwatch.h"
#include "app/selfmetrics.h"
#include "app/service.h"
#include "collect/changes.h"
#include "collect/discovery.h"
#include "collect/httpget.h"
#include "collect/instcache.h"
#include "collect/permetric.h"
#include "collect/promsource.h"
#include "collect/scheduler.h"
#include "collect/source.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/tasks.h"
#include "config/configdb.h"
#include "pgio/admit.h"
#include "pgio/connstr.h"
#include "pprof/http.h"
#include "sinks/sink.h"

typedef struct running {
    void *src;                   /* created by ops */
    const rp_collector_ops *ops; /* the reaper's (batch or per-metric), or the kind's */
    struct rp_reaper *owner;
    bool stopping;
    bool in_use;
} running;

typedef struct rp_reaper {
    const rp_options *opts;
    uv_loop_t loop;
    rp_source_opts sopts;
    rp_sinks sinks;
    rp_catalog *cat;
    rp_source_set *set;
    uint64_t fingerprint;
    running **srcs; /* heap cells, so a cell address stays valid as the array grows */
    size_t nsrcs, cap;
    size_t live;
    uv_signal_t sig_hup, sig_term, sig_int;
    uv_timer_t refresh;
    bool shutting_down;
    rp_source_stats totals;      /* of sources that were stopped */
    const rp_collector_ops *ops; /* batch or per-metric collectors */
    rp_http *http;               /* /debug/pprof, NULL when off */
    rp_http *metrics_http;       /* --metrics-addr: /metrics alone, NULL when off */
    rp_http **sink_http;         /* per sink: the listener of a pull sink, or NULL */
    size_t nsink_http;
    rp_service service; /* systemd's notify protocol and watchdog */
    uint64_t reloads, reload_failures;
    rp_task task; /* the supervisor in the goroutine profile */
    int argc;
    char **argv;
    rp_buf metric_tables;    /* the catalogue's storage names, for the PostgreSQL sink */
    rp_admit admit;          /* connection attempts in flight, sources and sinks together */
    uint64_t fd_warned;      /* the (needed, limit) last warned about, so it is said once */
    uint64_t db_hash;        /* of the configuration database's text last applied */
    uint64_t db_error;       /* hash of the last configuration-database error logged */
    bool loading;            /* a load from the configuration database runs on a worker */
    bool load_again;         /* ... and a change was announced meanwhile */
    rp_confwatch *watch[2];  /* LISTEN for changes of the configuration database(s) */
    rp_cluster *cluster;     /* --cluster-db: the sources this instance holds leases for */
    rp_discovery *disc;      /* the databases of postgres-continuous-discovery entries */
    rp_httpget *scraper;     /* HTTP for sources of kind prometheus */
    rp_instcache *instcache; /* instance-level results shared by sources of one instance */
    uint64_t cluster_rounds, cluster_failed_rounds; /* kept at close for the summary */
    size_t disc_entries;                            /* ... and discovery's figures */
    uint64_t disc_listings, disc_failures;
} rp_reaper;

/*-------------------------------------------------------------------------
 * Loading
 *-------------------------------------------------------------------------
 */

static void check_conn_strs(const rp_source_set *set, rp_diag *diag)
{
    for (size_t i = 0; i < set->nsources; i++) {
        const rp_source_def *s = &set->sources[i];
        char err[512];
        if (s->conn_str && *s->conn_str && !rp_source_def_scrapes(s) && !rp_source_def_patroni(s) &&
            rp_source_check_conn_str(s->conn_str, err, sizeof(err)) < 0)
            rp_diag_add(diag, &s->conn_str_mark, "source \"%s\": invalid conn_str: %s", s->name,
                        err);
    }
}

typedef int (*db_reader)(const char *uri, int timeout_s, rp_buf *out, char *err, size_t errlen);

/* Read a configuration database's table as configuration text into text, its name for
 * messages into label, and fold the text into *hash (when given). 0 or -EIO. */
static int read_db(const rp_options *o, const char *uri, const char *table, db_reader rd,
                   rp_buf *text, rp_buf *label, uint64_t *hash, rp_diag *diag)
{
    char err[512];
    rp_configdb_label(uri, table, label);
    if (rd(uri, o->connect_timeout_s, text, err, sizeof(err)) < 0) {
        rp_diag_add(diag, NULL, "%s: %s", label->data, err);
        return -EIO;
    }
    if (hash)
        *hash = rp_hash_bytes(*hash, text->data, text->len);
    return 0;
}

static int parse_metrics(const rp_options *o, rp_catalog **cat, uint64_t *hash, rp_diag *diag)
{
    if (!rp_configdb_is_uri(o->metrics))
        return rp_catalog_parse(o->metrics, cat, diag);
    rp_buf text = RP_BUF_INIT, label = RP_BUF_INIT;
    int rc = read_db(o, o->metrics, "pgwatch.metric, pgwatch.preset", rp_configdb_read_metrics,
                     &text, &label, hash, diag);
    if (rc == 0)
        rc = rp_catalog_parse_text(label.data, text.data ? text.data : "", text.len, cat, diag);
    rp_buf_fini(&text);
    rp_buf_fini(&label);
    return rc;
}

static int parse_sources(const rp_options *o, rp_source_set **set, uint64_t *hash, rp_diag *diag)
{
    if (!rp_configdb_is_uri(o->sources))
        return rp_sources_parse(o->sources, set, diag);
    rp_buf text = RP_BUF_INIT, label = RP_BUF_INIT;
    int rc = read_db(o, o->sources, "pgwatch.source", rp_configdb_read_sources, &text, &label, hash,
                     diag);
    if (rc == 0)
        rc = rp_sources_parse_text(label.data, text.data ? text.data : "", text.len, set, diag);
    rp_buf_fini(&text);
    rp_buf_fini(&label);
    return rc;
}

/* rp_reaper_load, also giving the hash of what configuration databases returned. */
static int load_config(const rp_options *o, rp_catalog **cat_out, rp_source_set **set_out,
                       uint64_t *hash, rp_diag *diag)
{
    rp_catalog *cat = NULL;
    rp_source_set *set = NULL;
    diag->lenient = o->allow_unknown_keys;
    int before = diag->count;
    /* Keep going after an error so that one run reports every problem. */
    if (parse_metrics(o, &cat, hash, diag) == 0 && rp_catalog_validate(cat, diag) < 0)
        rp_log_debug("metric catalogue is invalid");
    if (o->sources && parse_sources(o, &set, hash, diag) == 0 && cat) {
        rp_sources_prune(set, diag);
        if (rp_sources_validate(set, cat, diag) < 0)
            rp_log_debug("sources are invalid");
        check_conn_strs(set, diag);
    }
    for (size_t i = 0; i < o->sinks.n; i++) {
        char err[256];
        if (rp_sinks_check_uri(o->sinks.v[i], err, sizeof(err)) < 0)
            rp_diag_add(diag, NULL, "%s", err);
    }
    if (diag->count > before) {
        rp_catalog_unref(cat);
        rp_source_set_free(set);
        return -EINVAL;
    }
    *cat_out = cat;
    *set_out = set;
    return 0;
}

int rp_reaper_load(const rp_options *o, rp_catalog **cat_out, rp_source_set **set_out,
                   rp_diag *diag)
{
    return load_config(o, cat_out, set_out, NULL, diag);
}

static bool uses_configdb(const rp_options *o)
{
    return rp_configdb_is_uri(o->sources) || rp_configdb_is_uri(o->metrics);
}

/* Cheap change detector for --refresh: names, sizes and mtimes of the config files. */
static uint64_t fingerprint_files(char **files, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        memset(&st, 0, sizeof(st));
        (void)stat(files[i], &st);
        uint64_t parts[4] = {(uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec,
                             (uint64_t)st.st_mtim.tv_nsec, (uint64_t)st.st_ino};
        h = rp_hash_str(h, files[i]);
        for (int k = 0; k < 4; k++)
            h = rp_hash_u64(h, parts[k]);
    }
    return h;
}

static uint64_t fingerprint(const rp_catalog *cat, const rp_source_set *set)
{
    uint64_t h = RP_HASH_INIT;
    if (cat->nfiles && strncmp(cat->files[0], "builtin:", 8) != 0)
        h = fingerprint_files(cat->files, cat->nfiles, h);
    return fingerprint_files(set->files, set->nfiles, h);
}

/* Files of a folder can appear or disappear: include the folder listing's mtime. */
static uint64_t current_fingerprint(const rp_reaper *r)
{
    uint64_t h = fingerprint(r->cat, r->set);
    const char *paths[2] = {r->opts->sources, r->opts->metrics};
    for (int i = 0; i < 2; i++) {
        struct stat st;
        if (paths[i] && stat(paths[i], &st) == 0 && S_ISDIR(st.st_mode))
            h = rp_hash_u64(h, (uint64_t)st.st_mtim.tv_nsec ^ (uint64_t)st.st_mtim.tv_sec);
    }
    return h;
}

/*-------------------------------------------------------------------------
 * Sources
 *-------------------------------------------------------------------------
 */

static bool group_selected(const rp_options *o, const rp_source_def *d)
{
    if (o->groups.n == 0)
        return true;
    const char *g = d->group ? d->group : "default";
    for (size_t i = 0; i < o->groups.n; i++) {
        if (strcmp(o->groups.v[i], g) == 0)
            return true;
    }
    return false;
}

static void shutdown_finish(rp_reaper *r);

static void on_source_closed(void *arg)
{
    running *cell = arg;
    rp_reaper *r = cell->owner;
    cell->in_use = false;
    cell->src = NULL;
    r->live--;
    if (r->shutting_down && r->live == 0)
        shutdown_finish(r);
}

static void stop_source(rp_reaper *r, running *cell, int drain_ms)
{
    if (cell->stopping)
        return;
    cell->stopping = true;
    cell->ops->stop(cell->src, drain_ms, on_source_closed, cell);
}

static void start_source(rp_reaper *r, const rp_source_def *def)
{
    running *cell = NULL;
    for (size_t i = 0; i < r->nsrcs && !cell; i++) {
        if (!r->srcs[i]->in_use)
            cell = r->srcs[i];
    }
    if (!cell) {
        rp_grow((void **)&r->srcs, &r->cap, r->nsrcs + 1, sizeof(running *));
        cell = r->srcs[r->nsrcs++] = rp_calloc(1, sizeof(running));
    }
    cell->owner = r;
    cell->in_use = true;
    cell->stopping = false;
    cell->ops = rp_source_def_scrapes(def) ? &rp_promsource_ops : r->ops;
    cell->src = cell->ops->create(&r->sopts, def, r->cat);
    r->live++;
    rp_sched_resume at;
    if (r->cluster && cell->ops->resume && rp_cluster_resume_of(r->cluster, def->name, &at))
        cell->ops->resume(cell->src, &at); /* taken over: continue the previous holder's grid */
    cell->ops->start(cell->src);
}

static running *find_running(rp_reaper *r, const char *name)
{
    for (size_t i = 0; i < r->nsrcs; i++) {
        running *c = r->srcs[i];
        if (c->in_use && !c->stopping && strcmp(c->ops->name(c->src), name) == 0)
            return c;
    }
    return NULL;
}

/* The sources to run: the set's own, then those discovered for its discovery entries
 * (a name defined in the set wins over a discovered one). */
static size_t ndefs(const rp_reaper *r)
{
    size_t n = 0;
    (void)rp_discovery_sources(r->disc, &n);
    return r->set->nsources + n;
}

static const rp_source_def *def_at(const rp_reaper *r, size_t i)
{
    size_t n;
    const rp_source_def *found = rp_discovery_sources(r->disc, &n);
    return i < r->set->nsources ? &r->set->sources[i] : &found[i - r->set->nsources];
}

/* Whether source d may run here: enabled, no discovery entry, in a selected group. */
static bool runnable(const rp_options *o, const rp_source_def *d)
{
    return d->is_enabled && !rp_source_def_discovers(d) && group_selected(o, d);
}

/* Whether this instance runs source d: runnable and, in a cluster, leased to it. */
static bool wanted(const rp_reaper *r, const rp_source_def *d)
{
    return runnable(r->opts, d) && (!r->cluster || rp_cluster_holds(r->cluster, d->name));
}

static const rp_source_def *find_def(const rp_reaper *r, const char *name)
{
    for (size_t i = 0, n = ndefs(r); i < n; i++) {
        const rp_source_def *d = def_at(r, i);
        if (wanted(r, d) && strcmp(d->name, name) == 0)
            return d;
    }
    return NULL;
}

/*-------------------------------------------------------------------------
 * A fleet: file descriptors and the spread of first connections
 *-------------------------------------------------------------------------
 */

/* Raise the soft open-files limit to the hard one: a descriptor per source connection
 * is the design, and the usual soft limit (1024) is below a fleet's needs. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        rp_log_warn("could not raise the open files limit from %llu to %llu: %m",
                    (unsigned long long)old, (unsigned long long)rl.rlim_max);
        return;
    }
    rp_log_debug("open files limit raised from %llu to %llu", (unsigned long long)old,
                 (unsigned long long)rl.rlim_max);
}

static size_t sources_selected(const rp_reaper *r)
{
    size_t n = 0;
    for (size_t i = 0, total = ndefs(r); i < total; i++)
        n += runnable(r->opts, def_at(r, i));
    return n;
}

/* Say once (per figures) when the sources' connections cannot fit in the descriptors. */
static void check_fd_budget(rp_reaper *r, size_t nsources)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return;
    size_t per_source = r->opts->per_metric ? (size_t)r->opts->max_conns_per_db : 1;
    size_t reserve = 64 + 2 * r->opts->sinks.n; /* sinks, spool, listener, logs, libuv */
    size_t needed = nsources * per_source + reserve;
    uint64_t key = ((uint64_t)needed << 32) ^ (uint64_t)rl.rlim_cur;
    if (needed <= rl.rlim_cur || key == r->fd_warned)
        return;
    r->fd_warned = key;
    rp_log_warn("%zu sources x %zu connections + %zu reserved = %zu file descriptors needed, but "
                "the open files limit is %llu (hard limit %llu): some connections will fail; "
                "raise it (ulimit -n, LimitNOFILE=) or split the sources with --group",
                nsources, per_source, reserve, needed, (unsigned long long)rl.rlim_cur,
                (unsigned long long)rl.rlim_max);
}

/* New sources' first attempts spread over min(--connect-spread, N x 10 ms), and their
 * schedules' phases over max(10 s, N x 60 ms): a fleet's first fetches (every metric at
 * once) would otherwise all land on its servers within 10 s. */
static void set_connect_spread(rp_reaper *r, size_t nsources)
{
    int64_t w = (int64_t)nsources * 10;
    r->sopts.connect_spread_ms =
        (int)(w < r->opts->connect_spread_ms ? w : r->opts->connect_spread_ms);
    int64_t p = (int64_t)nsources * 60;
    r->sopts.phase_window_ms = (int)(p > RP_SCHED_PHASE_MS ? (p < 3600000 ? p : 3600000) : 0);
}

typedef struct converged {
    size_t added, removed, restarted;
} converged;

/* Diff the running sources against r->set and r->cat and converge. */
static converged converge(rp_reaper *r)
{
    converged n = {0, 0, 0};
    int drain = r->opts->shutdown_timeout_s * 1000;
    for (size_t i = 0; i < r->nsrcs; i++) {
        running *c = r->srcs[i];
        if (!c->in_use || c->stopping)
            continue;
        const rp_source_def *d = find_def(r, c->ops->name(c->src));
        if (!d) {
            stop_source(r, c, drain);
            n.removed++;
        } else if (!rp_source_def_same_connection(c->ops->def_of(c->src), d)) {
            stop_source(r, c, drain);
            n.restarted++;
        } else {
            c->ops->update(c->src, d, r->cat);
        }
    }
    for (size_t i = 0, total = ndefs(r); i < total; i++) {
        const rp_source_def *d = def_at(r, i);
        if (!wanted(r, d) || find_running(r, d->name))
            continue;
        start_source(r, d);
        n.added++;
    }
    n.added -= n.restarted < n.added ? n.restarted : n.added;
    return n;
}

/* The cluster's candidates: every source this instance could run. */
static void offer_sources(rp_reaper *r)
{
    if (!r->cluster)
        return;
    size_t total = ndefs(r);
    const char **names = rp_calloc(total + 1, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; i < total; i++) {
        const rp_source_def *d = def_at(r, i);
        if (runnable(r->opts, d))
            names[n++] = d->name;
    }
    rp_cluster_set_sources(r->cluster, names, n);
    rp_free(names);
}

static int cmp_name(const void *key, const void *elem)
{
    return strcmp(key, *(char *const *)elem);
}

/* For the cluster's leases: when each of its sources (sorted names) fetches next here. */
static void cluster_next_fetch(void *arg, char *const *names, size_t n, int64_t *next)
{
    rp_reaper *r = arg;
    for (size_t i = 0; i < r->nsrcs; i++) {
        running *c = r->srcs[i];
        if (!c->in_use || c->stopping || !c->ops->next_fetch)
            continue;
        char *const *at = bsearch(c->ops->name(c->src), names, n, sizeof(char *), cmp_name);
        if (at)
            next[at - names] = c->ops->next_fetch(c->src);
    }
}

/* The leases this instance holds changed. */
static void on_cluster_changed(void *arg)
{
    rp_reaper *r = arg;
    if (r->shutting_down || !r->set)
        return;
    converged n = converge(r);
    if (n.added || n.removed)
        rp_log_info("cluster: %zu sources running here, %zu taken, %zu given up",
                    r->live - n.removed, n.added, n.removed);
}

/* The sources to run changed: check the descriptors, offer them to the cluster, converge. */
static converged reconverge(rp_reaper *r)
{
    size_t nselected = sources_selected(r);
    check_fd_budget(r, nselected);
    set_connect_spread(r, nselected);
    offer_sources(r);
    return converge(r);
}

/* A discovered source whose name the set defines too: said when discovery changes. */
static void check_discovered_names(const rp_reaper *r)
{
    size_t n;
    const rp_source_def *found = rp_discovery_sources(r->disc, &n);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < r->set->nsources; k++) {
            if (strcmp(found[i].name, r->set->sources[k].name) == 0)
                rp_log_warn("discovered source \"%s\" is left out: a source of that name is "
                            "defined in the sources",
                            found[i].name);
        }
    }
}

/* The databases of a discovery entry changed. */
static void on_discovery_changed(void *arg)
{
    rp_reaper *r = arg;
    if (r->shutting_down || !r->set)
        return;
    check_discovered_names(r);
    converged n = reconverge(r);
    rp_log_info("database discovery applied: %zu sources running, %zu added, %zu removed",
                r->live - n.removed, n.added, n.removed);
}

/* Hand the set's discovery entries (the runnable ones) to the discovery. */
static void configure_discovery(rp_reaper *r)
{
    const rp_source_def **entries = rp_calloc(r->set->nsources + 1, sizeof(*entries));
    size_t n = 0;
    for (size_t i = 0; i < r->set->nsources; i++) {
        const rp_source_def *d = &r->set->sources[i];
        if (rp_source_def_discovers(d) && d->is_enabled && group_selected(r->opts, d))
            entries[n++] = d;
    }
    rp_discovery_configure(r->disc, entries, n);
    rp_discovery_refresh(r->disc);
    rp_free(entries);
}

/* Swap in a new validated configuration and converge. */
static void apply_config(rp_reaper *r, rp_catalog *cat, rp_source_set *set)
{
    rp_catalog *old_cat = r->cat;
    rp_source_set *old_set = r->set;
    r->reloads += old_cat != NULL;
    r->cat = cat;
    r->set = set;
    configure_discovery(r);
    converged n = reconverge(r);
    if (old_cat)
        rp_log_info("configuration applied: %zu sources running, %zu added, %zu removed, "
                    "%zu restarted",
                    r->live - n.removed - n.restarted, n.added, n.removed, n.restarted);
    rp_catalog_unref(old_cat);
    rp_source_set_free(old_set);
    r->fingerprint = current_fingerprint(r);
#ifdef __GLIBC__
    /* Parsing a fleet's files leaves freed pages inside the heap; give them back. */
    (void)malloc_trim(0);
#endif
}

static void log_diag(rp_log_level level, const rp_diag *d)
{
    const char *p = d->text.data ? d->text.data : "";
    while (*p) {
        size_t n = strcspn(p, "\n");
        rp_log_at(level, NULL, NULL, NULL, "%.*s", (int)n, p);
        p += n + (p[n] == '\n');
    }
}

#define RELOAD_NOTIFIED "configuration database changed"

static void reload_async(rp_reaper *r, const char *why, bool quiet_if_same);

/* A load from a configuration database, run on a worker thread: the loop never waits
 * for a connection or a query. */
typedef struct load_job {
    uv_work_t work;
    rp_reaper *r;
    const char *why;
    bool quiet_if_same; /* a --refresh poll: apply only if the text changed */
    rp_diag diag;
    rp_catalog *cat;
    rp_source_set *set;
    uint64_t hash;
    int rc;
} load_job;

static void load_work(uv_work_t *w)
{
    load_job *j = rp_container_of(w, load_job, work);
    j->hash = RP_HASH_INIT;
    j->rc = load_config(j->r->opts, &j->cat, &j->set, &j->hash, &j->diag);
}

static void load_failed(rp_reaper *r, const char *why, const rp_diag *diag)
{
    uint64_t h = rp_hash_bytes(RP_HASH_INIT, diag->text.data, diag->text.len);
    r->reload_failures++;
    if (h == r->db_error)
        return; /* said once until it changes */
    r->db_error = h;
    rp_log_error("could not reload configuration (%s): keeping the running configuration", why);
    log_diag(RP_LOG_ERROR, diag);
}

static void loaded_again(rp_reaper *r, const char *why)
{
    if (r->db_error)
        rp_log_info("configuration database read again (%s)", why);
    r->db_error = 0;
}

/* The service manager hears READY=1 again, with what runs now. */
static void ready_again(rp_reaper *r)
{
    char status[96];
    snprintf(status, sizeof(status), "collecting %zu sources", r->live);
    rp_service_ready(status);
}

static void load_done(uv_work_t *w, int status)
{
    load_job *j = rp_container_of(w, load_job, work);
    rp_reaper *r = j->r;
    r->loading = false;
    if (status < 0 || r->shutting_down || j->rc < 0) {
        if (status == 0 && !r->shutting_down)
            load_failed(r, j->why, &j->diag);
        rp_catalog_unref(j->cat);
        rp_source_set_free(j->set);
    } else if (j->quiet_if_same && j->hash == r->db_hash) {
        loaded_again(r, j->why);
        rp_catalog_unref(j->cat);
        rp_source_set_free(j->set);
    } else {
        loaded_again(r, j->why);
        r->db_hash = j->hash;
        if (j->diag.text.len)
            log_diag(RP_LOG_WARN, &j->diag);
        rp_log_info("reloading configuration (%s)", j->why);
        apply_config(r, j->cat, j->set);
    }
    if (!j->quiet_if_same && !r->shutting_down)
        ready_again(r); /* after the RELOADING=1 of an explicit reload */
    rp_diag_fini(&j->diag);
    rp_free(j);
    if (r->load_again && !r->shutting_down) {
        r->load_again = false;
        reload_async(r, RELOAD_NOTIFIED, true);
    }
}

static void reload_async(rp_reaper *r, const char *why, bool quiet_if_same)
{
    if (r->loading) { /* it may have read before the change: read again after it */
        r->load_again = r->load_again || strcmp(why, RELOAD_NOTIFIED) == 0;
        return;
    }
    load_job *j = rp_calloc(1, sizeof(*j));
    j->r = r;
    j->why = why;
    j->quiet_if_same = quiet_if_same;
    rp_diag_init(&j->diag);
    if (uv_queue_work(&r->loop, &j->work, load_work, load_done) < 0) {
        rp_diag_fini(&j->diag);
        rp_free(j);
        return;
    }
    r->loading = true;
}

static void on_config_notified(void *arg)
{
    rp_reaper *r = arg;
    if (!r->shutting_down)
        reload_async(r, RELOAD_NOTIFIED, true);
}

/* A watcher per configuration database: the tables of each are pgwatch's. */
static void open_config_watch(rp_reaper *r)
{
    const rp_options *o = r->opts;
    bool src = rp_configdb_is_uri(o->sources), met = rp_configdb_is_uri(o->metrics);
    bool same = src && met && strcmp(o->sources, o->metrics) == 0;
    const char *uris[2] = {src ? o->sources : NULL, met && !same ? o->metrics : NULL};
    const char *tables[2] = {same ? "pgwatch.source,pgwatch.metric,pgwatch.preset"
                                  : "pgwatch.source",
                             "pgwatch.metric,pgwatch.preset"};
    if (!src && met)
        uris[0] = o->metrics, tables[0] = tables[1], uris[1] = NULL;
    for (int i = 0; i < 2; i++) {
        rp_confwatch_opts wo = {.uri = uris[i],
                                .tables = o->config_triggers ? tables[i] : NULL,
                                .connect_timeout_ms = o->connect_timeout_s * 1000,
                                .admit = &r->admit};
        if (uris[i] && rp_confwatch_open(&r->loop, &wo, on_config_notified, r, &r->watch[i]) < 0)
            r->watch[i] = NULL;
    }
}

static void reload(rp_reaper *r, const char *why)
{
    rp_service_reloading();
    if (uses_configdb(r->opts)) {
        reload_async(r, why, false);
        return;
    }
    rp_diag diag;
    rp_diag_init(&diag);
    rp_catalog *cat;
    rp_source_set *set;
    if (rp_reaper_load(r->opts, &cat, &set, &diag) < 0) {
        r->reload_failures++;
        rp_log_error("could not reload configuration (%s): keeping the running configuration", why);
        log_diag(RP_LOG_ERROR, &diag);
        rp_diag_fini(&diag);
        r->fingerprint = current_fingerprint(r); /* do not repeat until the files change again */
        ready_again(r);
        return;
    }
    if (diag.text.len)
        log_diag(RP_LOG_WARN, &diag);
    rp_diag_fini(&diag);
    rp_log_info("reloading configuration (%s)", why);
    apply_config(r, cat, set);
    ready_again(r);
}

/*-------------------------------------------------------------------------
 * Loop callbacks
 *-------------------------------------------------------------------------
 */

/* Once per loop iteration: log a sink starting or stopping to fail (transitions only). */
static void on_refresh(uv_timer_t *t)
{
    rp_reaper *r = t->data;
    rp_discovery_refresh(r->disc);
    if (uses_configdb(r->opts))
        reload_async(r, "configuration database polled", true);
    else if (current_fingerprint(r) != r->fingerprint)
        reload(r, "configuration files changed");
}

static void begin_shutdown(rp_reaper *r, const char *signame)
{
    if (r->shutting_down) {
        rp_log_info("received %s: shutdown already in progress", signame);
        return;
    }
    r->shutting_down = true;
    rp_service_stopping();
    rp_task_set_state(&r->task, "draining sources");
    rp_log_info("received %s: shutting down", signame);
    uv_timer_stop(&r->refresh);
    uv_signal_stop(&r->sig_hup);
    for (int i = 0; i < 2; i++) {
        rp_confwatch_close(r->watch[i]);
        r->watch[i] = NULL;
    }
    rp_discovery_stats(r->disc, &r->disc_entries, &r->disc_listings, &r->disc_failures);
    rp_discovery_close(r->disc);
    r->disc = NULL;
    int drain = r->opts->shutdown_timeout_s * 1000;
    for (size_t i = 0; i < r->nsrcs; i++) {
        if (r->srcs[i]->in_use)
            stop_source(r, r->srcs[i], drain);
    }
    if (r->live == 0)
        shutdown_finish(r);
}

static void on_signal(uv_signal_t *h, int signum)
{
    rp_reaper *r = h->data;
    if (signum == SIGHUP)
        reload(r, "SIGHUP");
    else
        begin_shutdown(r, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void log_summary(const rp_reaper *r)
{
    const rp_source_stats *t = &r->totals;
    const rp_sink_stats *k = &r->sinks.totals;
    uint64_t sink_rows = k->rows, sink_written = k->rows_written, sink_dropped = k->rows_dropped;
    rp_log_info("summary: ticks=%llu skipped_ticks=%llu pipelines=%llu queries=%llu "
                "fetches_ok=%llu fetch_errors=%llu rows=%llu values=%llu connects=%llu "
                "connect_failures=%llu disconnects=%llu session_resets=%llu "
                "results_over_cap=%llu fetches_discarded=%llu sink_rows=%llu "
                "sink_rows_written=%llu sink_rows_dropped=%llu",
                (unsigned long long)t->ticks, (unsigned long long)t->skipped_ticks,
                (unsigned long long)t->pipelines, (unsigned long long)t->queries,
                (unsigned long long)t->fetches_ok, (unsigned long long)t->fetch_errors,
                (unsigned long long)t->rows, (unsigned long long)t->values,
                (unsigned long long)t->connects, (unsigned long long)t->connect_failures,
                (unsigned long long)t->disconnects, (unsigned long long)t->session_resets,
                (unsigned long long)t->results_over_cap, (unsigned long long)t->fetches_discarded,
                (unsigned long long)sink_rows, (unsigned long long)sink_written,
                (unsigned long long)sink_dropped);
    rp_log_info("summary: sink_rows_unknown=%llu sink_copies_resolved=%llu "
                "sink_rows_replayed=%llu sink_rows_spooled=%llu socket_writes=%llu "
                "writes_coalesced=%llu socket_reads=%llu",
                (unsigned long long)k->rows_unknown, (unsigned long long)k->copies_resolved,
                (unsigned long long)k->rows_replayed, (unsigned long long)k->rows_spooled_at_exit,
                (unsigned long long)t->socket_writes, (unsigned long long)t->writes_coalesced,
                (unsigned long long)t->socket_reads);
    rp_log_info("summary: sink_batches=%llu sink_bytes=%llu sink_writes=%llu "
                "sink_write_ms_avg=%.1f sink_write_ms_max=%.1f sink_reconnects=%llu "
                "sink_write_errors=%llu",
                (unsigned long long)k->batches, (unsigned long long)k->bytes,
                (unsigned long long)k->flushes,
                k->flushes ? (double)k->flush_us_total / (double)k->flushes / 1000.0 : 0.0,
                (double)k->flush_us_max / 1000.0, (unsigned long long)k->reconnects,
                (unsigned long long)k->write_errors);
    rp_buf b = RP_BUF_INIT;
    for (int i = 0; i < 16; i++)
        rp_buf_printf(&b, "%s%llu", i ? "," : "", (unsigned long long)t->lateness_ms_hist[i]);
    rp_log_info("summary: tick lateness histogram (ms buckets 0,1,2,4,...,16384+): %s", b.data);
    rp_buf_fini(&b);
    if (r->cluster_rounds)
        rp_log_info("summary: cluster_rounds=%llu cluster_failed_rounds=%llu",
                    (unsigned long long)r->cluster_rounds,
                    (unsigned long long)r->cluster_failed_rounds);
    if (r->disc_entries)
        rp_log_info("summary: discovery_entries=%zu discovery_listings=%llu "
                    "discovery_failures=%llu",
                    r->disc_entries, (unsigned long long)r->disc_listings,
                    (unsigned long long)r->disc_failures);
    rp_log_info("summary: cancels=%llu connect_attempts_queued=%llu connect_queue_max=%zu",
                (unsigned long long)t->cancels, (unsigned long long)r->admit.queued_total,
                r->admit.max_queued);
    rp_instcache_stats ic;
    rp_instcache_get_stats(r->instcache, &ic);
    rp_log_info("summary: instance_results_shared=%llu instance_results_stored=%llu",
                (unsigned long long)t->shared, (unsigned long long)ic.stored);
}

static void on_sinks_closed(void *arg)
{
    rp_reaper *r = arg;
    log_summary(r); /* after the sinks wrote what they could: their final counters */
    rp_admit_close(&r->admit);
    uv_close((uv_handle_t *)&r->sig_hup, NULL);
    uv_close((uv_handle_t *)&r->sig_term, NULL);
    uv_close((uv_handle_t *)&r->sig_int, NULL);
    uv_close((uv_handle_t *)&r->refresh, NULL);
    rp_service_stop(&r->service); /* the watchdog is pinged until the end */
}

static void close_sinks(rp_reaper *r);
static void close_listeners(rp_reaper *r);

static void on_cluster_closed(void *arg)
{
    close_sinks(arg);
}

/* Every source stopped: give the leases back, then close the sinks. */
static void shutdown_finish(rp_reaper *r)
{
    if (r->cluster) {
        rp_task_set_state(&r->task, "releasing leases");
        rp_cluster *c = r->cluster;
        size_t members, held;
        rp_cluster_stats(c, &members, &held, &r->cluster_rounds, &r->cluster_failed_rounds);
        r->cluster = NULL;
        rp_cluster_close(c, on_cluster_closed, r);
        return;
    }
    close_sinks(r);
}

static void close_sinks(rp_reaper *r)
{
    (void)rp_sinks_flush(&r->sinks);
    rp_httpget_close(r->scraper); /* every source stopped: nothing in flight */
    r->scraper = NULL;
    close_listeners(r);
    rp_task_set_state(&r->task, "closing sinks");
    rp_sinks_close(&r->sinks, on_sinks_closed, r);
}

/*-------------------------------------------------------------------------
 * /debug/vars and the pprof listener
 *-------------------------------------------------------------------------
 */

static void vars_sources(rp_reaper *r, rp_buf *b)
{
    rp_source_stats t = r->totals;
    rp_buf_puts(b, "\"sources\": {");
    const char *sep = "";
    for (size_t i = 0; i < r->nsrcs; i++) {
        const running *cell = r->srcs[i];
        if (!cell->in_use || !cell->src)
            continue;
        const rp_source_stats *s = cell->ops->stats(cell->src);
        rp_source_stats_add(&t, s);
        rp_buf_puts(b, sep);
        rp_buf_json_str(b, cell->ops->name(cell->src), strlen(cell->ops->name(cell->src)));
        rp_buf_printf(b,
                      ": {\"state\": \"%s\", \"ticks\": %llu, \"fetches_ok\": %llu, "
                      "\"fetch_errors\": %llu, \"rows\": %llu}",
                      cell->ops->state(cell->src), (unsigned long long)s->ticks,
                      (unsigned long long)s->fetches_ok, (unsigned long long)s->fetch_errors,
                      (unsigned long long)s->rows);
        sep = ", ";
    }
    rp_buf_printf(b,
                  "},\n\"reaper\": {\"mode\": \"%s\", \"sources_live\": %zu, \"ticks\": %llu, "
                  "\"skipped_ticks\": %llu, \"pipelines\": %llu, \"queries\": %llu, "
                  "\"fetches_ok\": %llu, \"fetch_errors\": %llu, \"rows\": %llu, "
                  "\"values\": %llu, \"connects\": %llu, \"connect_failures\": %llu, "
                  "\"disconnects\": %llu, \"session_resets\": %llu, "
                  "\"results_over_cap\": %llu, \"fetches_discarded\": %llu, "
                  "\"cancels\": %llu, \"instance_results_shared\": %llu, "
                  "\"socket_writes\": %llu, \"writes_coalesced\": %llu, \"socket_reads\": %llu, "
                  "\"connecting\": %d, \"connect_queue\": %zu, "
                  "\"lateness_ms_hist\": [",
                  r->ops->mode, r->live, (unsigned long long)t.ticks,
                  (unsigned long long)t.skipped_ticks, (unsigned long long)t.pipelines,
                  (unsigned long long)t.queries, (unsigned long long)t.fetches_ok,
                  (unsigned long long)t.fetch_errors, (unsigned long long)t.rows,
                  (unsigned long long)t.values, (unsigned long long)t.connects,
                  (unsigned long long)t.connect_failures, (unsigned long long)t.disconnects,
                  (unsigned long long)t.session_resets, (unsigned long long)t.results_over_cap,
                  (unsigned long long)t.fetches_discarded, (unsigned long long)t.cancels,
                  (unsigned long long)t.shared, (unsigned long long)t.socket_writes,
                  (unsigned long long)t.writes_coalesced, (unsigned long long)t.socket_reads,
                  r->admit.active, r->admit.nqueued);
    for (int i = 0; i < 16; i++)
        rp_buf_printf(b, "%s%llu", i ? ", " : "", (unsigned long long)t.lateness_ms_hist[i]);
    rp_buf_puts(b, "]},\n");
}

static void vars_sinks(rp_reaper *r, rp_buf *b)
{
    rp_sink_stats k = r->sinks.totals;
    for (size_t i = 0; !r->shutting_down && i < r->sinks.n; i++) {
        rp_sink_stats_add(&k, &r->sinks.v[i]->stats);
    }
    rp_buf_printf(b,
                  "\"sinks\": {\"count\": %zu, \"batches\": %llu, \"rows\": %llu, \"bytes\": %llu, "
                  "\"rows_written\": %llu, \"rows_dropped\": %llu, \"rows_unacked\": %llu, "
                  "\"rows_unknown\": %llu, \"copies_resolved\": %llu, \"write_errors\": %llu, "
                  "\"writes\": %llu, \"buffered_bytes\": %llu, \"reconnects\": %llu},\n",
                  r->sinks.n, (unsigned long long)k.batches, (unsigned long long)k.rows,
                  (unsigned long long)k.bytes, (unsigned long long)k.rows_written,
                  (unsigned long long)k.rows_dropped, (unsigned long long)k.rows_unacked,
                  (unsigned long long)k.rows_unknown, (unsigned long long)k.copies_resolved,
                  (unsigned long long)k.write_errors, (unsigned long long)k.flushes,
                  (unsigned long long)k.buffered_bytes, (unsigned long long)k.reconnects);
}

static void vars_cb(void *arg, rp_buf *b)
{
    rp_reaper *r = arg;
    vars_sources(r, b);
    vars_sinks(r, b);
}

static void close_listeners(rp_reaper *r)
{
    if (r->http)
        rp_http_close(r->http, NULL, NULL);
    r->http = NULL;
    if (r->metrics_http)
        rp_http_close(r->metrics_http, NULL, NULL);
    r->metrics_http = NULL;
    for (size_t i = 0; i < r->nsink_http; i++)
        if (r->sink_http[i])
            rp_http_close(r->sink_http[i], NULL, NULL);
    rp_free(r->sink_http);
    r->sink_http = NULL;
    r->nsink_http = 0;
}

/* A listener that serves /metrics alone from fn(arg), at addr as given (any interface
 * included: a Prometheus server scrapes from elsewhere). what names it in messages. */
static int start_metrics_only(rp_reaper *r, const char *addr, rp_http_vars_fn fn, void *arg,
                              const char *what, rp_http **out)
{
    rp_http_opts ho = {.addr = addr,
                       .allow_remote = true,
                       .argc = r->argc,
                       .argv = r->argv,
                       .mask_arg = rp_connstr_mask,
                       .metrics = fn,
                       .metrics_arg = arg,
                       .metrics_only = true};
    char err[512];
    if (rp_http_start(&r->loop, &ho, out, err, sizeof(err)) < 0) {
        rp_log_error("%s: %s", what, err);
        return -EINVAL;
    }
    rp_log_info("%s: serving /metrics on %s (port %d)", what, addr, rp_http_port(*out));
    return 0;
}

static void sink_expose(void *arg, rp_buf *b)
{
    rp_sink *k = arg;
    k->ops->expose(k, b);
}

/* Pull sinks (prometheus://): a listener each at the sink's address. */
static int start_sink_listeners(rp_reaper *r)
{
    r->sink_http = rp_calloc(r->sinks.n + 1, sizeof(rp_http *));
    r->nsink_http = r->sinks.n;
    for (size_t i = 0; i < r->sinks.n; i++) {
        rp_sink *k = r->sinks.v[i];
        char what[300];
        snprintf(what, sizeof(what), "sink %s", k->uri);
        if (k->ops->expose && k->serve_addr &&
            start_metrics_only(r, k->serve_addr, sink_expose, k, what, &r->sink_http[i]) < 0)
            return -EINVAL;
    }
    return 0;
}

/* The per-metric counts of the collectors behind src[0..n), into one array (owned by the
 * caller); each src[i] points into it. */
static rp_metric_count *gather_metric_counts(const running **cells, rp_selfmetrics_source *src,
                                             size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (cells[i]->ops->metric_counts)
            total += cells[i]->ops->metric_counts(cells[i]->src, NULL, 0);
    rp_metric_count *all = rp_calloc(total + 1, sizeof(*all));
    for (size_t i = 0, at = 0; i < n; i++) {
        if (!cells[i]->ops->metric_counts)
            continue;
        src[i].metrics = &all[at];
        src[i].nmetrics = cells[i]->ops->metric_counts(cells[i]->src, &all[at], total - at);
        at += src[i].nmetrics;
    }
    return all;
}

/* /metrics: pgreaper's own figures (app/selfmetrics.h). */
static void metrics_cb(void *arg, rp_buf *b)
{
    rp_reaper *r = arg;
    rp_selfmetrics_source *src = rp_calloc(r->nsrcs + 1, sizeof(*src));
    const running **cells = rp_calloc(r->nsrcs + 1, sizeof(*cells));
    size_t n = 0;
    for (size_t i = 0; i < r->nsrcs; i++) {
        const running *cell = r->srcs[i];
        if (!cell->in_use || !cell->src)
            continue;
        cells[n] = cell;
        src[n++] = (rp_selfmetrics_source){.name = cell->ops->name(cell->src),
                                           .state = cell->ops->state(cell->src),
                                           .stats = cell->ops->stats(cell->src)};
    }
    rp_metric_count *counts = gather_metric_counts(cells, src, n);
    rp_selfmetrics m = {.mode = r->ops->mode,
                        .gone = &r->totals,
                        .sources = src,
                        .nsources = n,
                        .sinks = r->shutting_down ? NULL : r->sinks.v,
                        .nsinks = r->shutting_down ? 0 : r->sinks.n,
                        .reloads = r->reloads,
                        .reload_failures = r->reload_failures,
                        .connecting = r->admit.active,
                        .connect_queue = r->admit.nqueued,
                        .cluster = r->cluster != NULL};
    if (r->cluster)
        rp_cluster_stats(r->cluster, &m.cluster_members, &m.cluster_leases, &m.cluster_rounds,
                         &m.cluster_failed_rounds);
    rp_selfmetrics_write(&m, b);
    rp_free(counts);
    rp_free(cells);
    rp_free(src);
}

/* --metrics-addr: a listener of its own for /metrics alone. */
static int start_metrics(rp_reaper *r)
{
    if (!r->opts->metrics_addr)
        return 0;
    return start_metrics_only(r, r->opts->metrics_addr, metrics_cb, r, "metrics", &r->metrics_http);
}

static int start_pprof(rp_reaper *r)
{
    const char *addr = r->opts->pprof_addr ? r->opts->pprof_addr
                       : r->opts->pprof    ? "127.0.0.1:6060"
                                           : NULL;
    if (!addr)
        return 0;
    rp_http_opts ho = {.addr = addr,
                       .allow_remote = r->opts->pprof_allow_remote,
                       .token = r->opts->pprof_token,
                       .argc = r->argc,
                       .argv = r->argv,
                       .mask_arg = rp_connstr_mask,
                       .vars = vars_cb,
                       .vars_arg = r,
                       .metrics = metrics_cb,
                       .metrics_arg = r};
    char err[512];
    if (rp_http_start(&r->loop, &ho, &r->http, err, sizeof(err)) < 0) {
        rp_log_error("%s", err);
        return -EINVAL;
    }
    rp_log_info("pprof: serving /debug/pprof and /debug/vars on %s (port %d)%s", addr,
                rp_http_port(r->http), r->opts->pprof_token ? ", token required" : "");
    return 0;
}

/*-------------------------------------------------------------------------
 * Run
 *-------------------------------------------------------------------------
 */

/* The one place where collectors meet the sinks. */
static void emit_to_sinks(void *arg, const rp_batch *b)
{
    rp_sinks_write(arg, b);
}

/* The tables a PostgreSQL sink makes up front: every metric's, and when change_events is
 * in the catalogue the tables it writes to (so that dashboards find them before the first
 * change). Newline-separated. */
static void list_metric_tables(const rp_catalog *cat, rp_buf *out)
{
    for (size_t i = 0; i < cat->nmetrics; i++) {
        const rp_metric_def *m = &cat->metrics[i];
        rp_buf_printf(out, "%s%s", i ? "\n" : "", m->storage_name ? m->storage_name : m->name);
        for (int k = 0; m->code == RP_CODE_CHANGE_EVENTS && k < RP_CHANGES_NINPUTS; k++)
            rp_buf_printf(out, "\n%s", rp_changes_output(k));
    }
}

static int open_cluster(rp_reaper *r)
{
    char name[300];
    if (r->opts->instance_name) {
        snprintf(name, sizeof(name), "%s", r->opts->instance_name);
    } else {
        char host[256] = "localhost";
        (void)gethostname(host, sizeof(host) - 1);
        snprintf(name, sizeof(name), "%s-%d", host, (int)getpid());
    }
    rp_cluster_opts co = {.uri = r->opts->cluster_db,
                          .instance = name,
                          .ttl_ms = r->opts->lease_ttl_ms,
                          .connect_timeout_ms = r->opts->connect_timeout_s * 1000,
                          .admit = &r->admit,
                          .next_fetch = cluster_next_fetch};
    if (rp_cluster_open(&r->loop, &co, on_cluster_changed, r, &r->cluster) < 0)
        return -EIO;
    r->sopts.fence = rp_cluster_fence(r->cluster);
    rp_log_info("cluster: instance \"%s\", lease TTL %lld ms", name,
                (long long)r->opts->lease_ttl_ms);
    return 0;
}

static int init_loop(rp_reaper *r)
{
    char err[512];
    if (start_pprof(r) < 0)
        return -EINVAL;
    if (start_metrics(r) < 0) {
        close_listeners(r);
        return -EINVAL;
    }
    rp_sink_opts so = {
        .batching_delay_ms = r->opts->batching_delay_ms,
        .buffer_bytes = r->opts->sink_buffer_bytes,
        .spool_dir = r->opts->sink_spool,
        .partition_ms = r->opts->partition_interval_ms,
        .retention_ms = r->opts->retention_ms,
        .maintenance_ms = r->opts->maintenance_interval_ms,
        .shutdown_timeout_ms = (int64_t)r->opts->shutdown_timeout_s * 1000,
        .connect_timeout_ms = (int64_t)r->opts->connect_timeout_s * 1000,
        .metric_tables = r->metric_tables.data,
        .admit = &r->admit,
    };
    rp_admit_init(&r->admit, &r->loop, r->opts->max_connecting);
    if (rp_sinks_open(&r->sinks, (const char *const *)r->opts->sinks.v, r->opts->sinks.n, &r->loop,
                      &so, err, sizeof(err)) < 0) {
        rp_log_error("could not open sink: %s", err);
        rp_admit_close(&r->admit);
        close_listeners(r);
        return -EINVAL;
    }
    if (start_sink_listeners(r) < 0) {
        close_listeners(r);
        rp_sinks_close(&r->sinks, NULL, NULL);
        rp_admit_close(&r->admit);
        return -EINVAL;
    }
    if (r->opts->cluster_db && open_cluster(r) < 0)
        return -EINVAL;
    open_config_watch(r);
    r->scraper = rp_httpget_create(&r->loop);
    r->sopts.http = r->scraper;
    r->instcache = r->opts->no_instance_sharing ? NULL : rp_instcache_create();
    r->sopts.instcache = r->instcache;
    r->disc = rp_discovery_create(&r->loop, r->opts->connect_timeout_s, on_discovery_changed, r);
    r->sopts.loop = &r->loop;
    r->sopts.emit = emit_to_sinks;
    r->sopts.emit_arg = &r->sinks;
    r->sopts.statement_timeout_ms = r->opts->statement_timeout_s * 1000;
    r->sopts.connect_timeout_ms = r->opts->connect_timeout_s * 1000;
    r->sopts.admit = &r->admit;
    r->sopts.max_connecting = r->opts->max_connecting;
    r->sopts.runtime_refresh_ms = 60000;
    r->sopts.interval_scale = r->opts->interval_scale;
    r->sopts.no_prepared = r->opts->no_prepared;
    r->sopts.coalesce_writes = !r->opts->no_write_coalescing;
    r->sopts.coalesce_reads = !r->opts->no_read_coalescing;
    r->sopts.libpq_trace_dir = r->opts->libpq_trace;
    r->sopts.retired = &r->totals;
    r->sopts.max_conns = r->opts->max_conns_per_db;
    r->sopts.result_max_rows = r->opts->result_max_rows;
    r->sopts.result_max_bytes = r->opts->result_max_bytes;
    uv_signal_init(&r->loop, &r->sig_hup);
    uv_signal_init(&r->loop, &r->sig_term);
    uv_signal_init(&r->loop, &r->sig_int);
    r->sig_hup.data = r->sig_term.data = r->sig_int.data = r;
    uv_signal_start(&r->sig_hup, on_signal, SIGHUP);
    uv_signal_start(&r->sig_term, on_signal, SIGTERM);
    uv_signal_start(&r->sig_int, on_signal, SIGINT);
    uv_timer_init(&r->loop, &r->refresh);
    r->refresh.data = r;
    if (r->opts->refresh_s > 0)
        uv_timer_start(&r->refresh, on_refresh, (uint64_t)r->opts->refresh_s * 1000,
                       (uint64_t)r->opts->refresh_s * 1000);
    return 0;
}

int rp_reaper_run(const rp_options *o, int argc, char **argv)
{
    rp_reaper r;
    memset(&r, 0, sizeof(r));
    r.opts = o;
    r.argc = argc;
    r.argv = argv;
    r.ops = o->per_metric ? &rp_permetric_ops : &rp_source_ops;
    rp_diag diag;
    rp_diag_init(&diag);
    rp_catalog *cat;
    rp_source_set *set;
    r.db_hash = RP_HASH_INIT;
    if (load_config(o, &cat, &set, &r.db_hash, &diag) < 0) {
        fputs(diag.text.data, stderr);
        rp_diag_fini(&diag);
        return 1;
    }
    if (diag.text.len)
        fputs(diag.text.data, stderr);
    rp_diag_fini(&diag);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    list_metric_tables(cat, &r.metric_tables);
    uv_loop_init(&r.loop);
    int init_rc = init_loop(&r);
    rp_buf_fini(&r.metric_tables); /* the sinks keep their own copy */
    if (init_rc < 0) {
        rp_catalog_unref(cat);
        rp_source_set_free(set);
        uv_run(&r.loop, UV_RUN_DEFAULT); /* completes the closes of sinks opened so far */
        (void)uv_loop_close(&r.loop);
        return 1;
    }
    rp_log_info("pgreaper %s starting: %zu sources configured, %zu metrics, %zu presets",
                RP_VERSION, set->nsources, cat->nmetrics, cat->npresets);
    rp_task_register(&r.task, "supervisor", "pgreaper", NULL);
    rp_task_set_state(&r.task, "running");
    apply_config(&r, cat, set);
    rp_service_start(&r.service, &r.loop);
    ready_again(&r);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    rp_task_unregister(&r.task);
    for (size_t i = 0; i < r.nsrcs; i++)
        rp_free(r.srcs[i]);
    rp_free(r.srcs);
    rp_catalog_unref(r.cat);
    rp_source_set_free(r.set);
    rp_instcache_free(r.instcache);
    int rc = uv_loop_close(&r.loop);
    if (rc != 0)
        rp_log_error("event loop closed with open handles: %s", uv_strerror(rc));
    rp_log_info("pgreaper stopped");
    return rc == 0 ? 0 : 1;
}
