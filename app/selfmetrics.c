/* SPDX-License-Identifier: PostgreSQL
 *
 * pgreaper's own metrics: see selfmetrics.h.
 */
#include "app/selfmetrics.h"

#include "rp_config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/expo.h"

#define NBOUNDS 15 /* the stats' 16 power-of-two buckets: 15 bounds and +Inf */

typedef struct counter {
    const char *name, *help;
    size_t off; /* of the uint64_t in rp_source_stats */
} counter;

#define SOURCE_COUNTER(n, field, help)                                                             \
    {                                                                                              \
        "pgreaper_" n "_total", help, offsetof(rp_source_stats, field)                             \
    }

static const counter totals[] = {
    SOURCE_COUNTER("ticks", ticks, "Ticks that sent a pipeline of the metrics due."),
    SOURCE_COUNTER("skipped_ticks", skipped_ticks,
                   "Ticks skipped: the previous batch was still running or the source was not "
                   "connected."),
    SOURCE_COUNTER("pipelines", pipelines, "Pipelines sent (one round trip each)."),
    SOURCE_COUNTER("queries", queries, "Metric queries sent."),
    SOURCE_COUNTER("fetches", fetches_ok, "Metric queries that completed."),
    SOURCE_COUNTER("fetch_errors", fetch_errors, "Metric queries that failed."),
    SOURCE_COUNTER("rows", rows, "Result rows handed to the sinks."),
    SOURCE_COUNTER("connects", connects, "Connections made to sources."),
    SOURCE_COUNTER("connect_failures", connect_failures, "Failed connection attempts."),
    SOURCE_COUNTER("disconnects", disconnects, "Established source connections that were lost."),
    SOURCE_COUNTER("cancels", cancels,
                   "Batches that went quiet past their deadline: the query was cancelled."),
    SOURCE_COUNTER("results_over_cap", results_over_cap,
                   "Results refused for exceeding a row or byte cap."),
    SOURCE_COUNTER("instance_results_shared", shared,
                   "Instance-level results stored from another source's fetch."),
};

static const counter per_source[] = {
    {"pgreaper_source_fetches_total", "Metric queries of the source that completed.",
     offsetof(rp_source_stats, fetches_ok)},
    {"pgreaper_source_fetch_errors_total", "Metric queries of the source that failed.",
     offsetof(rp_source_stats, fetch_errors)},
    {"pgreaper_source_skipped_ticks_total", "Ticks of the source that were skipped.",
     offsetof(rp_source_stats, skipped_ticks)},
    {"pgreaper_source_connect_failures_total", "Failed connection attempts to the source.",
     offsetof(rp_source_stats, connect_failures)},
};

static uint64_t field(const rp_source_stats *s, size_t off)
{
    return *(const uint64_t *)((const char *)s + off);
}

/* Connected: batch sources ready, busy or draining; per-metric ones running. */
static bool is_up(const char *state)
{
    static const char *const up[] = {"ready", "busy", "draining", "running"};
    for (size_t i = 0; i < sizeof(up) / sizeof(up[0]); i++)
        if (strcmp(state, up[i]) == 0)
            return true;
    return false;
}

/* The sources by state: the states the collectors report (a handful), counted. */
static void write_states(const rp_selfmetrics *m, rp_buf *b)
{
    enum { MAX_STATES = 16 };
    const char *names[MAX_STATES];
    uint64_t counts[MAX_STATES];
    size_t n = 0;
    for (size_t i = 0; i < m->nsources; i++) {
        size_t k = 0;
        while (k < n && strcmp(names[k], m->sources[i].state) != 0)
            k++;
        if (k == n && n == MAX_STATES)
            continue;
        if (k == n) {
            names[n] = m->sources[i].state;
            counts[n++] = 0;
        }
        counts[k]++;
    }
    rp_expo_family(b, "pgreaper_sources", RP_EXPO_GAUGE, "Sources running here, by state.");
    for (size_t k = 0; k < n; k++)
        rp_expo_u64(b, "pgreaper_sources", &(rp_expo_label){"state", names[k]}, 1, counts[k]);
}

/* Lateness buckets count whole milliseconds below 2^i: at most 2^i - 1 ms. */
static void write_lateness(const rp_source_stats *t, rp_buf *b)
{
    double bounds[NBOUNDS];
    for (int i = 0; i < NBOUNDS; i++)
        bounds[i] = (double)((1 << i) - 1) / 1000.0;
    rp_expo_family(b, "pgreaper_schedule_lateness_seconds", RP_EXPO_HISTOGRAM,
                   "How late ticks ran after their deadline.");
    rp_expo_histogram(b, "pgreaper_schedule_lateness_seconds", NULL, 0, bounds, t->lateness_ms_hist,
                      NBOUNDS, (double)t->lateness_ms_sum / 1000.0);
}

/* Fetches and errors by (source, metric): sources x metrics series, each a counter. */
static void write_metric_counts(const rp_selfmetrics *m, rp_buf *b)
{
    static const struct {
        const char *name, *help;
        bool errors;
    } fam[] = {
        {"pgreaper_metric_fetches_total", "Queries of the metric on the source that completed.",
         false},
        {"pgreaper_metric_fetch_errors_total", "Queries of the metric on the source that failed.",
         true},
    };
    for (size_t k = 0; k < sizeof(fam) / sizeof(fam[0]); k++) {
        rp_expo_family(b, fam[k].name, RP_EXPO_COUNTER, fam[k].help);
        for (size_t i = 0; i < m->nsources; i++) {
            const rp_selfmetrics_source *s = &m->sources[i];
            for (size_t j = 0; j < s->nmetrics; j++) {
                rp_expo_label l[2] = {{"source", s->name}, {"metric", s->metrics[j].metric}};
                rp_expo_u64(b, fam[k].name, l, 2,
                            fam[k].errors ? s->metrics[j].errors : s->metrics[j].fetches);
            }
        }
    }
}

static void write_sources(const rp_selfmetrics *m, rp_buf *b)
{
    rp_source_stats t = *m->gone;
    for (size_t i = 0; i < m->nsources; i++)
        rp_source_stats_add(&t, m->sources[i].stats);
    for (size_t k = 0; k < sizeof(totals) / sizeof(totals[0]); k++) {
        rp_expo_family(b, totals[k].name, RP_EXPO_COUNTER, totals[k].help);
        rp_expo_u64(b, totals[k].name, NULL, 0, field(&t, totals[k].off));
    }
    write_lateness(&t, b);
    write_states(m, b);
    rp_expo_family(b, "pgreaper_source_up", RP_EXPO_GAUGE,
                   "1 when the source is connected, 0 when not.");
    for (size_t i = 0; i < m->nsources; i++)
        rp_expo_u64(b, "pgreaper_source_up", &(rp_expo_label){"source", m->sources[i].name}, 1,
                    is_up(m->sources[i].state));
    for (size_t k = 0; k < sizeof(per_source) / sizeof(per_source[0]); k++) {
        rp_expo_family(b, per_source[k].name, RP_EXPO_COUNTER, per_source[k].help);
        for (size_t i = 0; i < m->nsources; i++)
            rp_expo_u64(b, per_source[k].name, &(rp_expo_label){"source", m->sources[i].name}, 1,
                        field(m->sources[i].stats, per_source[k].off));
    }
    write_metric_counts(m, b);
}

typedef struct sink_counter {
    const char *name, *help;
    size_t off; /* of the uint64_t in rp_sink_stats */
    rp_expo_type type;
} sink_counter;

#define SINK_FIELD(n, f, t, help)                                                                  \
    {                                                                                              \
        "pgreaper_sink_" n, help, offsetof(rp_sink_stats, f), t                                    \
    }

static const sink_counter sink_fields[] = {
    SINK_FIELD("rows_total", rows, RP_EXPO_COUNTER, "Rows the sink accepted."),
    SINK_FIELD("rows_written_total", rows_written, RP_EXPO_COUNTER, "Rows the sink wrote out."),
    SINK_FIELD("rows_dropped_total", rows_dropped, RP_EXPO_COUNTER,
               "Rows the sink could not write (counted, never silent)."),
    SINK_FIELD("write_errors_total", write_errors, RP_EXPO_COUNTER, "Failed write attempts."),
    SINK_FIELD("written_bytes_total", bytes, RP_EXPO_COUNTER, "Bytes the sink wrote out."),
    SINK_FIELD("reconnects_total", reconnects, RP_EXPO_COUNTER,
               "Connections the sink made after its first."),
    SINK_FIELD("buffered_bytes", buffered_bytes, RP_EXPO_GAUGE,
               "Bytes waiting in memory to be written."),
    SINK_FIELD("rows_unacked", rows_unacked, RP_EXPO_GAUGE,
               "Rows sent whose commit is not confirmed yet."),
};

static void write_sinks(const rp_selfmetrics *m, rp_buf *b)
{
    for (size_t k = 0; k < sizeof(sink_fields) / sizeof(sink_fields[0]); k++) {
        rp_expo_family(b, sink_fields[k].name, sink_fields[k].type, sink_fields[k].help);
        for (size_t i = 0; i < m->nsinks; i++) {
            const rp_sink_stats *st = &m->sinks[i]->stats;
            rp_expo_u64(b, sink_fields[k].name, &(rp_expo_label){"sink", m->sinks[i]->uri}, 1,
                        *(const uint64_t *)((const char *)st + sink_fields[k].off));
        }
    }
    double bounds[NBOUNDS];
    for (int i = 0; i < NBOUNDS; i++)
        bounds[i] = (double)(1 << i) / 1000.0;
    rp_expo_family(b, "pgreaper_sink_write_duration_seconds", RP_EXPO_HISTOGRAM,
                   "Time of the sink's completed writes (a COPY, a write of its buffer).");
    for (size_t i = 0; i < m->nsinks; i++) {
        const rp_sink_stats *st = &m->sinks[i]->stats;
        rp_expo_histogram(b, "pgreaper_sink_write_duration_seconds",
                          &(rp_expo_label){"sink", m->sinks[i]->uri}, 1, bounds, st->flush_ms_hist,
                          NBOUNDS, (double)st->flush_us_total / 1e6);
    }
}

static void one(rp_buf *b, const char *name, rp_expo_type type, const char *help, double v)
{
    rp_expo_family(b, name, type, help);
    rp_expo_f64(b, name, NULL, 0, v);
}

static void write_daemon(const rp_selfmetrics *m, rp_buf *b)
{
    rp_expo_family(b, "pgreaper_build_info", RP_EXPO_GAUGE,
                   "Always 1: the version and the collection mode as labels.");
    rp_expo_label info[2] = {{"version", RP_VERSION}, {"mode", m->mode}};
    rp_expo_u64(b, "pgreaper_build_info", info, 2, 1);
    one(b, "pgreaper_config_reloads_total", RP_EXPO_COUNTER,
        "Configurations applied after the first.", (double)m->reloads);
    one(b, "pgreaper_config_reload_failures_total", RP_EXPO_COUNTER,
        "Reloads refused (the running configuration was kept).", (double)m->reload_failures);
    one(b, "pgreaper_connecting", RP_EXPO_GAUGE, "Connection attempts in flight.",
        (double)m->connecting);
    one(b, "pgreaper_connect_queue", RP_EXPO_GAUGE, "Connection attempts waiting for their turn.",
        (double)m->connect_queue);
    if (!m->cluster)
        return;
    one(b, "pgreaper_cluster_members", RP_EXPO_GAUGE, "Live members of the cluster, this one too.",
        (double)m->cluster_members);
    one(b, "pgreaper_cluster_leases", RP_EXPO_GAUGE, "Source leases this instance holds.",
        (double)m->cluster_leases);
    one(b, "pgreaper_cluster_rounds_total", RP_EXPO_COUNTER, "Membership and lease rounds.",
        (double)m->cluster_rounds);
    one(b, "pgreaper_cluster_failed_rounds_total", RP_EXPO_COUNTER, "Rounds whose query failed.",
        (double)m->cluster_failed_rounds);
}

static size_t count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n > 0 ? n - 1 : 0; /* not the directory's own descriptor */
}

/* The boot time from /proc/stat's btime, seconds since the epoch (0 if unknown). */
static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    char line[256];
    double bt = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %lf", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

/* The standard process_* figures (as Prometheus' client libraries name them). */
static void write_process(rp_buf *b)
{
    FILE *f = fopen("/proc/self/stat", "r");
    char buf[1024];
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* after the command name, which may hold anything */
    unsigned long long ut, st, start, vsize;
    long long rss;
    if (!p || sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
                     "%*d %*d %*d %llu %llu %lld",
                     &ut, &st, &start, &vsize, &rss) != 5)
        return;
    double tck = (double)sysconf(_SC_CLK_TCK);
    one(b, "process_cpu_seconds_total", RP_EXPO_COUNTER, "User and system CPU time spent.",
        (double)(ut + st) / tck);
    one(b, "process_resident_memory_bytes", RP_EXPO_GAUGE, "Resident memory size.",
        (double)rss * (double)sysconf(_SC_PAGESIZE));
    one(b, "process_virtual_memory_bytes", RP_EXPO_GAUGE, "Virtual memory size.", (double)vsize);
    one(b, "process_start_time_seconds", RP_EXPO_GAUGE,
        "Start time of the process since the epoch.", boot_time() + (double)start / tck);
    one(b, "process_open_fds", RP_EXPO_GAUGE, "Open file descriptors.", (double)count_fds());
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        one(b, "process_max_fds", RP_EXPO_GAUGE, "The open file descriptor limit.",
            (double)rl.rlim_cur);
}

void rp_selfmetrics_write(const rp_selfmetrics *m, rp_buf *out)
{
    write_daemon(m, out);
    write_sources(m, out);
    write_sinks(m, out);
    write_process(out);
}
