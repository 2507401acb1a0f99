/* SPDX-License-Identifier: PostgreSQL
 *
 * The floor for collecting: a bare libpq loop that sends the same queries as one
 * pipeline of prepared statements every interval and reads every value, with nothing
 * else (no scheduler, no conversion, no sink). bench/peers.py runs it beside pgreaper.
 *
 *   bare_pipeline CONNINFO SQLFILE SECONDS [INTERVAL_MS] [--sync-each]
 *
 * SQLFILE holds the statements separated by lines that read "--;". With --sync-each a
 * sync point follows every query (pgreaper's per-query error isolation); without, one
 * sync ends the pipeline. Prints one JSON line: cycles, queries, values and the CPU
 * the process used (getrusage) while it ran.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <libpq-fe.h>

static char **read_sqls(const char *path, int *n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char **v = NULL, line[65536];
    size_t len = 0, cap = 0;
    char *cur = NULL;
    *n = 0;
    for (;;) {
        char *got = fgets(line, sizeof(line), f);
        if (!got || strcmp(line, "--;\n") == 0) {
            if (len > 0) {
                v = realloc(v, sizeof(char *) * (size_t)(*n + 1));
                v[(*n)++] = cur;
                cur = NULL;
                len = cap = 0;
            }
            if (!got)
                break;
            continue;
        }
        size_t l = strlen(line);
        if (len + l + 1 > cap) {
            cap = (len + l + 1) * 2;
            cur = realloc(cur, cap);
        }
        memcpy(cur + len, line, l + 1);
        len += l;
    }
    fclose(f);
    return v;
}

static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* One pipeline: every statement, then read every value. Returns the values read. */
static long cycle(PGconn *c, int n, int sync_each, long *errors)
{
    char name[16];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "b%d", i);
        PQsendQueryPrepared(c, name, 0, NULL, NULL, NULL, 0);
        if (sync_each || i == n - 1)
            PQpipelineSync(c);
    }
    long values = 0;
    int syncs = sync_each ? n : 1;
    while (syncs > 0) {
        PGresult *r = PQgetResult(c);
        if (!r)
            continue;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC)
            syncs--;
        else if (st == PGRES_TUPLES_OK)
            for (int row = 0; row < PQntuples(r); row++)
                for (int col = 0; col < PQnfields(r); col++)
                    values += PQgetvalue(r, row, col)[0] != '\1';
        else if (st != PGRES_PIPELINE_ABORTED)
            (*errors)++;
        PQclear(r);
    }
    return values;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr,
                "usage: bare_pipeline CONNINFO SQLFILE SECONDS [INTERVAL_MS] [--sync-each]\n");
        return 2;
    }
    int n = 0;
    char **sqls = read_sqls(argv[2], &n);
    double seconds = atof(argv[3]), interval = argc > 4 ? atof(argv[4]) : 1000;
    int sync_each = argc > 5 && strcmp(argv[5], "--sync-each") == 0;
    PGconn *c = PQconnectdb(argv[1]);
    if (!sqls || PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "bare_pipeline: %s\n", sqls ? PQerrorMessage(c) : "cannot read SQLFILE");
        return 1;
    }
    char name[16];
    int ok = 0;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "b%d", i);
        PGresult *r = PQprepare(c, name, sqls[i], 0, NULL);
        ok += PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    PQenterPipelineMode(c);
    long values = 0, errors = 0, cycles = 0;
    double c0 = cpu_ms(), t0 = now_ms(), next = t0;
    while (now_ms() - t0 < seconds * 1e3) {
        values += cycle(c, n, sync_each, &errors);
        cycles++;
        next += interval;
        double wait = next - now_ms();
        if (wait > 0) {
            struct timespec ts = {(time_t)(wait / 1e3),
                                  (long)((wait - (long)(wait / 1e3) * 1e3) * 1e6)};
            nanosleep(&ts, NULL);
        }
    }
    printf("{\"statements\": %d, \"prepared\": %d, \"cycles\": %ld, \"values\": %ld, "
           "\"errors\": %ld, \"cpu_ms\": %.3f}\n",
           n, ok, cycles, values, errors, cpu_ms() - c0);
    PQfinish(c);
    return 0;
}
