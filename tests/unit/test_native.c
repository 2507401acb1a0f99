/* SPDX-License-Identifier: PostgreSQL
 *
 * Metrics pgwatch computes in code: which names, when the server counts as local, and the
 * rows read from /proc (columns, and figures that hold on any Linux host).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libpq-fe.h>

#include "collect/diskusage.h"
#include "collect/logcounts.h"
#include "collect/native.h"
#include "tests/lib/tap.h"

static struct sockaddr_in v4(const char *ip)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

/* psutil_disk: the data directory always, a directory on its file system never, a
 * tablespace always, a path that is not there left out. */
static void test_diskusage(void)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[2] = {{.name = "what", .typid = 25, .typlen = -1, .atttypmod = -1},
                             {.name = "path", .typid = 25, .typlen = -1, .atttypmod = -1}};
    PQsetResultAttrs(res, 2, attrs);
    const char *rows[4][2] = {{"data_directory", "/"},
                              {"pg_wal", "/"},
                              {"log_directory", "/nonexistent/log"},
                              {"tbs1", "/proc"}};
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 2; c++)
            PQsetvalue(res, r, c, (char *)rows[r][c], (int)strlen(rows[r][c]));
    rp_diskusage *d = calloc(1, sizeof(*d));
    char err[200] = "";
    ok(rp_diskusage_read(res, 42, d, err, sizeof(err)) == 0 && d->nrows == 2, "two rows");
    ok(d->nrows == 2 && !strcmp(d->names[0], "data_directory") && !strcmp(d->paths[1], "/proc") &&
           !strcmp(d->names[1], "tbs1"),
       "the data directory and the tablespace; pg_wal on the same file system left out");
    ok(d->nrows > 0 && d->rows[0].ncols == 7 &&
           !strcmp(d->rows[0].cols[1].name, "tag_dir_or_tablespace") &&
           atof(d->rows[0].vals[3]) > 0 && atof(d->rows[0].vals[6]) >= 0 &&
           atof(d->rows[0].vals[6]) <= 100,
       "columns and figures of the root file system");
    PQsetvalue(res, 0, 1, "/nonexistent", 12);
    ok(rp_diskusage_read(res, 42, d, err, sizeof(err)) < 0 && strstr(err, "/nonexistent"),
       "a data directory that cannot be measured is an error naming it");
    free(d);
    PQclear(res);
}

static double val(const rp_native_row *row, const char *col)
{
    for (size_t i = 0; i < row->ncols; i++)
        if (strcmp(row->cols[i].name, col) == 0)
            return atof(row->vals[i]);
    return -1;
}

int main(void)
{
    is_int(rp_metric_code_for("psutil_mem"), RP_CODE_PSUTIL_MEM, "psutil_mem is computed in code");
    is_int(rp_metric_code_for("db_stats"), RP_CODE_NONE, "db_stats is plain SQL");
    ok(rp_metric_code_placeholder(rp_metric_code_for("change_events")) &&
           !rp_native_from_os(RP_CODE_CHANGE_EVENTS),
       "change_events: a placeholder, not read from the OS");
    ok(rp_native_from_os(RP_CODE_CPU_LOAD), "cpu_load is read from the OS");

    struct sockaddr_in lo = v4("127.0.0.1"), far = v4("192.0.2.1");
    struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    ok(rp_native_peer_is_local(NULL), "a unix socket is local");
    ok(rp_native_peer_is_local((struct sockaddr *)&lo), "127.0.0.1 is local");
    ok(rp_native_peer_is_local((struct sockaddr *)&lo6), "::1 is local");
    ok(!rp_native_peer_is_local((struct sockaddr *)&far), "a documentation address is not");

    rp_native_state st = {0};
    rp_native_row row;
    ok(rp_native_read(RP_CODE_CPU_LOAD, &st, 42, &row) == 0 && row.ncols == 4 &&
           !strcmp(row.cols[0].name, "epoch_ns") && !strcmp(row.vals[0], "42") &&
           val(&row, "load_15min") >= 0,
       "cpu_load: epoch_ns and three load averages");
    ok(rp_native_read(RP_CODE_PSUTIL_MEM, &st, 42, &row) == 0 && row.ncols == 11 &&
           val(&row, "total") > 0 && val(&row, "available") <= val(&row, "total") &&
           val(&row, "used") + val(&row, "free") <= val(&row, "total"),
       "psutil_mem: figures fit in the total");
    ok(rp_native_read(RP_CODE_PSUTIL_CPU, &st, 42, &row) == 0 && st.have_cpu &&
           rp_native_read(RP_CODE_PSUTIL_CPU, &st, 43, &row) == 0 && row.ncols == 12 &&
           val(&row, "cpu_utilization") >= 0 && val(&row, "cpu_utilization") <= 100,
       "psutil_cpu: a share of 0..100 between two readings");
    ok(rp_native_read(RP_CODE_PSUTIL_DISK_IO, &st, 42, &row) == 0 && row.ncols == 5 &&
           val(&row, "read_bytes") >= 0,
       "psutil_disk_io_total: four counters");
    ok(rp_native_read(RP_CODE_CHANGE_EVENTS, &st, 42, &row) < 0, "a placeholder cannot be read");

    /* csvlog: quoted fields may hold commas, quotes and newlines; a cut record waits. */
    const char *csv =
        "2026-01-01 00:00:00.000 UTC,\"postgres\",\"db1\",42,\"[local]\",6,1,\"SELECT\","
        "2026-01-01 00:00:00 UTC,3/4,0,ERROR,22012,\"division by zero\",,,,,,\"select 1/0\",,,"
        "\"psql\",client backend,,0\n"
        "2026-01-01 00:00:01.000 UTC,,,7,,6,2,,2026-01-01 00:00:00 UTC,,0,LOG,00000,"
        "\"checkpoint, with \"\"quotes\"\"\nand a newline\",,,,,,,,,\"\",checkpointer,,0\n"
        "2026-01-01 00:00:02.000 UTC,\"postgres\",\"db2\",43,\"[local]\",6,1,\"DO\","
        "2026-01-01 00:00:00 UTC,3/5,0,WARNING,01000,\"w\",,,,,,,,,\"psql\",client backend,,0\n"
        "2026-01-01 00:00:03.000 UTC,\"postgres\",\"db1\",44,\"[local]\",6,1,\"DO\","
        "2026-01-01 00:00:00 UTC,3/6,0,WARN";
    int64_t counts[8] = {0}, totals[8] = {0};
    size_t used = rp_logcounts_count(csv, strlen(csv), "db1", counts, totals);
    ok(used == (size_t)(strrchr(csv, '\n') - csv + 1), "only whole records are consumed");
    ok(counts[4] == 1 && totals[4] == 1, "db1's ERROR counted for db1 and in total");
    ok(totals[5] == 1 && counts[5] == 0, "a LOG record with a quoted newline is one record");
    ok(totals[3] == 1 && counts[3] == 0, "db2's WARNING only in the total");
    test_diskusage();
    return done_testing();
}
