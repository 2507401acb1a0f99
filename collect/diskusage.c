/* SPDX-License-Identifier: PostgreSQL
 *
 * psutil_disk from statvfs(2): see diskusage.h.
 */
#include "collect/diskusage.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <libpq-fe.h>

const char *const rp_diskusage_sql =
    "select 'data_directory' as what, current_setting('data_directory') as path\n"
    "union all\n"
    "select 'log_directory', case when current_setting('log_directory') ~ '^/'\n"
    "                             then current_setting('log_directory')\n"
    "                             else current_setting('data_directory') || '/'\n"
    "                                  || current_setting('log_directory') end\n"
    "union all\n"
    "select 'pg_wal', current_setting('data_directory') || '/pg_wal'\n"
    "union all\n"
    "select spcname::text, pg_tablespace_location(oid) from pg_tablespace\n"
    " where spcname !~ '^pg_'";

static void add_text(rp_native_row *row, const char *name, const char *val)
{
    size_t i = row->ncols++;
    row->cols[i] = (rp_column){name, RP_COL_TAG, RP_VAL_TEXT};
    row->vals[i] = val;
}

static void add_num(rp_native_row *row, const char *name, const char *fmt, double v)
{
    size_t i = row->ncols++;
    row->cols[i] = (rp_column){name, RP_COL_FIELD, RP_VAL_FLOAT};
    snprintf(row->text[i], sizeof(row->text[i]), fmt, v);
    row->vals[i] = row->text[i];
}

/* One row for path, named what; -errno when statvfs fails. */
static int measure(rp_diskusage *d, const char *what, const char *path, int64_t now_ns)
{
    struct statvfs v;
    if (d->nrows >= RP_DISKUSAGE_MAX_ROWS)
        return -ENOSPC;
    if (statvfs(path, &v) < 0)
        return -errno;
    size_t i = d->nrows++;
    snprintf(d->names[i], sizeof(d->names[i]), "%s", what);
    snprintf(d->paths[i], sizeof(d->paths[i]), "%s", path);
    double total = (double)v.f_blocks * v.f_frsize;
    double used = (double)(v.f_blocks - v.f_bfree) * v.f_frsize;
    double avail = (double)v.f_bavail * v.f_frsize;
    rp_native_row *row = &d->rows[i];
    row->ncols = 1;
    row->cols[0] = (rp_column){"epoch_ns", RP_COL_TIME, RP_VAL_INT};
    snprintf(row->text[0], sizeof(row->text[0]), "%lld", (long long)now_ns);
    row->vals[0] = row->text[0];
    add_text(row, "tag_dir_or_tablespace", d->names[i]);
    add_text(row, "tag_path", d->paths[i]);
    add_num(row, "total", "%.0f", total);
    add_num(row, "used", "%.0f", used);
    add_num(row, "free", "%.0f", avail);
    add_num(row, "percent", "%.1f", used + avail > 0 ? 100.0 * used / (used + avail) : 0.0);
    return 0;
}

int rp_diskusage_read(const struct pg_result *cres, int64_t now_ns, rp_diskusage *d, char *err,
                      size_t errlen)
{
    PGresult *res = (PGresult *)cres;
    d->nrows = 0;
    struct stat data;
    const char *dd = PQntuples(res) > 0 ? PQgetvalue(res, 0, 1) : "";
    int rc = stat(dd, &data) < 0 ? -errno : measure(d, "data_directory", dd, now_ns);
    if (rc < 0) {
        snprintf(err, errlen, "cannot measure the data directory \"%s\" here: %s", dd,
                 strerror(-rc));
        return rc;
    }
    for (int r = 1; r < PQntuples(res); r++) {
        const char *what = PQgetvalue(res, r, 0), *path = PQgetvalue(res, r, 1);
        bool dir = strcmp(what, "log_directory") == 0 || strcmp(what, "pg_wal") == 0;
        struct stat st;
        if (!*path || stat(path, &st) < 0)
            continue; /* not there, or not ours to look into */
        if (dir && st.st_dev == data.st_dev)
            continue; /* the data directory's file system: nothing new */
        measure(d, what, path, now_ns);
    }
    return 0;
}

void rp_diskusage_batch(const rp_diskusage *d, size_t i, rp_batch *b)
{
    rp_batch_init_values(b, d->rows[i].cols, d->rows[i].ncols, 1, d->rows[i].vals);
}
