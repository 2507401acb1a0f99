/* SPDX-License-Identifier: PostgreSQL
 *
 * The Prometheus sink without a network: its URI forms (and that a refused one never
 * shows a password), then batches written and a scrape read back exactly: pgwatch's
 * names, gauge or counter, labels sorted and made safe, text and NULL left out, the
 * fetch time as timestamp, the latest batch replacing the previous one, duplicate label
 * sets served once, the series cap.
 */
#include <stdio.h>
#include <string.h>

#include "sinks/sink.h"
#include "tests/lib/tap.h"

static void uris(void)
{
    char err[256];
    ok(rp_sinks_check_uri("prometheus://127.0.0.1:9187", err, sizeof(err)) == 0, "HOST:PORT");
    ok(rp_sinks_check_uri("prometheus://:9187/myns?max_series=10&stale=60", err, sizeof(err)) == 0,
       "all interfaces, a namespace, both options");
    static const char *const bad[] = {"prometheus://u:secret@h:9187", "prometheus://h",
                                      "prometheus://h:port",          "prometheus://h:1/bad-ns",
                                      "prometheus://h:1?secret=1",    "prometheus://h:1?stale=0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = rp_sinks_check_uri(bad[i], err, sizeof(err));
        char name[128];
        snprintf(name, sizeof(name), "refused without the URI's secrets: %s", bad[i]);
        ok(rc < 0 && !strstr(err, "secret"), name);
    }
}

static rp_sink *open_sink(const char *uri)
{
    rp_sink *k = NULL;
    char err[256];
    if (rp_sink_prometheus_ops.open(uri, NULL, &(rp_sink_opts){0}, &k, err, sizeof(err)) < 0)
        printf("# %s\n", err);
    return k;
}

static void put(rp_sink *k, const char *source, const char *metric, char **gauges, size_t ng,
                const char *const *vals, size_t nrows)
{
    static const rp_column cols[] = {{"epoch_ns", RP_COL_TIME, RP_VAL_INT},
                                     {"tag_my-db", RP_COL_TAG, RP_VAL_TEXT},
                                     {"commits", RP_COL_FIELD, RP_VAL_INT},
                                     {"size", RP_COL_FIELD, RP_VAL_FLOAT},
                                     {"note", RP_COL_FIELD, RP_VAL_TEXT}};
    rp_batch b;
    rp_batch_init_values(&b, cols, 5, nrows, vals);
    rp_tag tags[1] = {{"team-a", "dba"}};
    b.source = source;
    b.metric = b.storage = metric;
    b.fetch_time_ns = 1796000000000000000;
    b.custom_tags = tags;
    b.ncustom_tags = 1;
    b.gauges = gauges;
    b.ngauges = ng;
    k->ops->write_batch(k, &b);
    rp_batch_fini(&b);
}

static void scrape(void)
{
    rp_sink *k = open_sink("prometheus://127.0.0.1:0/ns?stale=1000000000");
    char *g[] = {"size"};
    const char *const v1[] = {"1796000000000000000", "a", "10", "1.5", "x",
                              "1796000000000000000", "b", "20", NULL,  "y"};
    put(k, "src", "db", g, 1, v1, 2);
    const char *const v2[] = {"1796000000000000000", "a", "11", "2.5", "x"};
    put(k, "src", "db", g, 1, v2, 1); /* replaces: row b is gone */
    const char *const twins[] = {"1796000000000000000", "a", "1", "1", "x",
                                 "1796000000000000000", "a", "2", "2", "x"};
    put(k, "other", "dup", NULL, 0, twins, 2);
    rp_buf out = RP_BUF_INIT;
    k->ops->expose(k, &out);
    is_str(out.data,
           "# HELP ns_db_commits db\n# TYPE ns_db_commits counter\n"
           "ns_db_commits{dbname=\"src\",my_db=\"a\",team_a=\"dba\"} 11 1796000000000\n"
           "# HELP ns_db_size db\n# TYPE ns_db_size gauge\n"
           "ns_db_size{dbname=\"src\",my_db=\"a\",team_a=\"dba\"} 2.5 1796000000000\n"
           "# HELP ns_dup_commits dup\n# TYPE ns_dup_commits counter\n"
           "ns_dup_commits{dbname=\"other\",my_db=\"a\",team_a=\"dba\"} 1 1796000000000\n"
           "# HELP ns_dup_size dup\n# TYPE ns_dup_size counter\n"
           "ns_dup_size{dbname=\"other\",my_db=\"a\",team_a=\"dba\"} 1 1796000000000\n"
           "# HELP ns_exporter_total_scrapes Total scrape attempts.\n"
           "# TYPE ns_exporter_total_scrapes counter\nns_exporter_total_scrapes 1\n"
           "# HELP ns_exporter_last_scrape_errors Samples left out of the last scrape: their "
           "series was there already (prefix text columns that tell rows apart with tag_).\n"
           "# TYPE ns_exporter_last_scrape_errors gauge\nns_exporter_last_scrape_errors 2\n",
           "names, types, labels, the latest batch, text left out, duplicates counted");
    is_int((int64_t)k->stats.rows_written, 5, "rows kept for serving");
    rp_buf_fini(&out);
    k->ops->close(k, NULL, NULL);
}

static void cap(void)
{
    rp_sink *k = open_sink("prometheus://127.0.0.1:0?max_series=3");
    const char *const v[] = {"1796000000000000000", "a", "1", "1", "x",
                             "1796000000000000000", "b", "2", "2", "x"};
    put(k, "s1", "m", NULL, 0, v, 1); /* 2 series */
    put(k, "s2", "m", NULL, 0, v, 2); /* 4 more: over the cap of 3 */
    is_int((int64_t)k->stats.rows_dropped, 2, "a batch that would pass the cap is dropped");
    put(k, "s1", "m", NULL, 0, v, 1); /* replacing keeps the count */
    is_int((int64_t)k->stats.rows_dropped, 2, "replacing a batch does not count twice");
    k->ops->close(k, NULL, NULL);
}

int main(void)
{
    uris();
    scrape();
    cap();
    return done_testing();
}
