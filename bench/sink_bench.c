/* SPDX-License-Identifier: PostgreSQL
 *
 * Sink throughput driver (used by bench/sink.py): writes N synthetic measurement rows
 * (20 fields of mixed types, 3 tags, 2 custom tags) through the PostgreSQL sink on a
 * libuv loop, as the reaper would, and prints rows, bytes, seconds and its own CPU.
 *
 *   sink_bench URI ROWS [ROWS_PER_BATCH]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <uv.h>

#include "common/mem.h"
#include "model/batch.h"
#include "sinks/sink.h"

#define NFIELDS 20
#define NTAGS   3
#define NCOLS   (1 + NFIELDS + NTAGS)

static bool closed;

static void on_closed(void *arg)
{
    closed = true;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Columns: epoch_ns, 8 int8, 6 float8, 2 numeric, 2 text, 2 bool, 3 tags. */
static void make_columns(rp_column *cols, char names[][24])
{
    snprintf(names[0], 24, "epoch_ns");
    cols[0] = (rp_column){names[0], RP_COL_TIME, RP_VAL_INT};
    for (int i = 1; i <= NFIELDS; i++) {
        rp_value_kind k = i <= 8    ? RP_VAL_INT
                          : i <= 14 ? RP_VAL_FLOAT
                          : i <= 16 ? RP_VAL_NUMERIC
                          : i <= 18 ? RP_VAL_TEXT
                                    : RP_VAL_BOOL;
        snprintf(names[i], 24, "field_%02d", i);
        cols[i] = (rp_column){names[i], RP_COL_FIELD, k};
    }
    for (int i = 0; i < NTAGS; i++) {
        snprintf(names[1 + NFIELDS + i], 24, "tag_dim%d", i);
        cols[1 + NFIELDS + i] = (rp_column){names[1 + NFIELDS + i], RP_COL_TAG, RP_VAL_TEXT};
    }
}

static const char **make_values(size_t nrows, char *epoch)
{
    const char **v = rp_calloc(nrows * NCOLS, sizeof(char *));
    static const char *ints[] = {"0", "1", "42", "123456", "987654321", "-7", "31337", "8"};
    static const char *floats[] = {"0.5", "12.25", "3.14159", "1e-05", "2.5e+20", "100"};
    static const char *texts[] = {"idle", "active", "public.accounts", "select 1"};
    static const char *tags[] = {"db1", "public", "orders_2026", "primary", "x"};
    for (size_t r = 0; r < nrows; r++) {
        const char **row = v + r * NCOLS;
        row[0] = epoch;
        for (int i = 1; i <= NFIELDS; i++) {
            if (i <= 8)
                row[i] = ints[(r + i) % 8];
            else if (i <= 14)
                row[i] = floats[(r + i) % 6];
            else if (i <= 16)
                row[i] = "12345.6789";
            else if (i <= 18)
                row[i] = texts[(r + i) % 4];
            else
                row[i] = (r + i) % 2 ? "t" : "f";
        }
        for (int i = 0; i < NTAGS; i++)
            row[1 + NFIELDS + i] = tags[(r * 7 + i) % 5];
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sink_bench URI ROWS [ROWS_PER_BATCH]\n");
        return 2;
    }
    long total = atol(argv[2]);
    size_t per = argc > 3 ? (size_t)atol(argv[3]) : 500;
    uv_loop_t loop;
    uv_loop_init(&loop);
    rp_sink_opts opts = {.batching_delay_ms = 200,
                         .buffer_bytes = 256LL << 20,
                         .partition_ms = 86400000,
                         .retention_ms = 0,
                         .maintenance_ms = 0,
                         .shutdown_timeout_ms = 600000,
                         .connect_timeout_ms = 10000};
    rp_sinks sinks;
    char err[256];
    const char *uris[1] = {argv[1]};
    if (rp_sinks_open(&sinks, uris, 1, &loop, &opts, err, sizeof(err)) < 0) {
        fprintf(stderr, "sink_bench: %s\n", err);
        return 1;
    }
    rp_column cols[NCOLS];
    char names[NCOLS][24];
    make_columns(cols, names);
    char epoch[24];
    snprintf(epoch, sizeof(epoch), "%" PRId64, (int64_t)time(NULL) * 1000000000);
    const char **vals = make_values(per, epoch);
    static const rp_tag custom[2] = {{"env", "bench"}, {"team", "dba"}};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double cpu0 = cpu_seconds();
    long written = 0;
    while (written < total) {
        if (sinks.v[0]->stats.buffered_bytes > (32u << 20)) {
            uv_run(&loop, UV_RUN_ONCE); /* let the sink catch up */
            continue;
        }
        rp_batch b;
        rp_batch_init_values(&b, cols, NCOLS, per, vals);
        b.source = "bench_source";
        b.metric = b.storage = "sink_bench";
        b.fetch_time_ns = (int64_t)time(NULL) * 1000000000;
        b.custom_tags = custom;
        b.ncustom_tags = 2;
        rp_sinks_write(&sinks, &b);
        rp_batch_fini(&b);
        written += (long)per;
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    (void)rp_sinks_flush(&sinks);
    rp_sinks_close(&sinks, on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("rows=%" PRIu64 " written=%" PRIu64 " dropped=%" PRIu64 " bytes=%" PRIu64
           " seconds=%.3f cpu=%.3f copies=%" PRIu64 "\n",
           sinks.totals.rows, sinks.totals.rows_written, sinks.totals.rows_dropped,
           sinks.totals.bytes, secs, cpu_seconds() - cpu0, sinks.totals.flushes);
    rp_free(vals);
    return uv_loop_close(&loop) == 0 && closed ? 0 : 1;
}
