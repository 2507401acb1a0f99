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

#include "collect/logcounts.h"
#include "collect/native.h"
#include "tests/lib/tap.h"

static struct sockaddr_in v4(const char *ip)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
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
    return done_testing();
}
