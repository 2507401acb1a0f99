/* SPDX-License-Identifier: PostgreSQL
 *
 * server_log_event_counts, which pgwatch computes in its own code: the server log's
 * records by severity since the previous fetch, for the source's database (debug, info,
 * notice, warning, error, log, fatal, panic) and for all databases (the same with
 * "_total"). The log must include csvlog (log_destination), as pgwatch requires; each
 * fetch asks the server which file is current and its size, then reads what was added
 * since the last fetch: from the file itself when the server runs on this host and the
 * file is readable, otherwise through pg_read_binary_file (superuser, or
 * pg_read_server_files and EXECUTE on pg_current_logfile). A fetch reads at most
 * RP_LOGCOUNTS_MAX_READ bytes and only whole records, so nothing is counted twice or
 * skipped; the first fetch starts at the end of the current file. English severity names
 * only (lc_messages = C or en).
 */
#ifndef RP_COLLECT_LOGCOUNTS_H
#define RP_COLLECT_LOGCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "collect/native.h"

struct pg_result;

#define RP_LOGCOUNTS_MAX_READ (1 << 20)

typedef struct rp_logcounts {
    char file[1024]; /* the log file read last (as the server names it) */
    int64_t offset;  /* bytes of it already counted */
    bool started;    /* a first fetch found the end of the log */
    bool remote;     /* the file cannot be read here: read through the server */
} rp_logcounts;

/* The query of a fetch; its three parameters come from rp_logcounts_params. */
extern const char *const rp_logcounts_sql;
/* The parameters for the next fetch ($1 file, $2 offset, $3 read through the server). */
void rp_logcounts_params(const rp_logcounts *st, char offset_buf[24], const char *vals[3]);

/* Count what the fetch found (res: the query's TUPLES_OK result; local: the server runs on
 * this host) into row. 0; 1 when there is nothing to store this time; or -errno with a
 * reason in err. */
int rp_logcounts_result(rp_logcounts *st, const struct pg_result *res, bool local, int64_t now_ns,
                        rp_native_row *row, char *err, size_t errlen);

/* Count the whole csvlog records in buf[0..len) (pure; for the tests too): counts of db's
 * records and of all records per severity, in the order debug, info, notice, warning,
 * error, log, fatal, panic. Returns the bytes of whole records consumed. */
size_t rp_logcounts_count(const char *buf, size_t len, const char *db, int64_t counts[8],
                          int64_t totals[8]);

#endif /* RP_COLLECT_LOGCOUNTS_H */
