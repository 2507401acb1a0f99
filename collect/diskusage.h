/* SPDX-License-Identifier: PostgreSQL
 *
 * psutil_disk when the source's server runs on this host: pgwatch computes it with a
 * PL/Python helper on the server (get_psutil_disk); pgreaper asks the server where its
 * directories are (rp_diskusage_sql) and measures them here with statvfs(2). The rows are
 * pgwatch's: the data directory; the log directory and pg_wal only when they are on
 * another file system than the data directory; every user tablespace. Columns
 * tag_dir_or_tablespace, tag_path, total, used, free (bytes) and percent (used share of
 * what non-root users can use, as psutil computes it). A directory pgreaper may not look
 * into (pg_wal inside a data directory only its owner can enter) is left out. When the
 * source is remote the metric's SQL runs as written (the helper).
 *
 * statvfs(2) answers from the kernel at once for local file systems; in batch mode it
 * runs on the loop, so a tablespace on a network file system that hangs would stall it
 * (per-metric mode runs it on the metric's thread).
 */
#ifndef RP_COLLECT_DISKUSAGE_H
#define RP_COLLECT_DISKUSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "collect/native.h"

struct pg_result;

#define RP_DISKUSAGE_MAX_ROWS 16

typedef struct rp_diskusage {
    rp_native_row rows[RP_DISKUSAGE_MAX_ROWS];
    char names[RP_DISKUSAGE_MAX_ROWS][64];
    char paths[RP_DISKUSAGE_MAX_ROWS][1024];
    size_t nrows;
} rp_diskusage;

/* The query of a fetch (no parameters): rows (what, path) with data_directory first. */
extern const char *const rp_diskusage_sql;

/* Measure the directories of res (the query's TUPLES_OK result) into d, at now_ns. 0, or
 * -errno when the data directory itself cannot be measured (err says why). */
int rp_diskusage_read(const struct pg_result *res, int64_t now_ns, rp_diskusage *d, char *err,
                      size_t errlen);

/* Describe row i of d as a batch (b borrows d; rp_batch_fini(b) after use). */
void rp_diskusage_batch(const rp_diskusage *d, size_t i, rp_batch *b);

#endif /* RP_COLLECT_DISKUSAGE_H */
