/* SPDX-License-Identifier: PostgreSQL
 *
 * server_log_event_counts: see logcounts.h. csvlog records are CSV rows whose quoted
 * fields may hold newlines; database_name is the 3rd field, error_severity the 12th.
 */
#include "collect/logcounts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "common/compiler.h"
#include "common/mem.h"

#define FIELD_DB       2
#define FIELD_SEVERITY 11

static const char *const severities[8] = {"debug", "info", "notice", "warning",
                                          "error", "log",  "fatal",  "panic"};

const char *const rp_logcounts_sql =
    "select x.f as file, current_setting('data_directory') as data_directory, "
    "current_database() as db, s.size, "
    "case when $3::bool and s.size > (case when x.f = $1 then $2::int8 else 0 end) "
    "then pg_read_binary_file(x.f, case when x.f = $1 then $2::int8 else 0 end, "
    "least(s.size - (case when x.f = $1 then $2::int8 else 0 end), 1048576)) end as chunk "
    "from (select pg_current_logfile('csvlog') as f) x "
    "left join lateral pg_stat_file(x.f, true) s on true";

void rp_logcounts_params(const rp_logcounts *st, char offset_buf[24], const char *vals[3])
{
    snprintf(offset_buf, 24, "%lld", (long long)st->offset);
    vals[0] = st->file;
    vals[1] = offset_buf;
    vals[2] = st->remote && st->started ? "true" : "false";
}

/*-------------------------------------------------------------------------
 * Counting
 *-------------------------------------------------------------------------
 */

static int severity_index(const char *s, size_t n)
{
    if (n >= 5 && strncmp(s, "DEBUG", 5) == 0)
        return 0;
    for (int i = 1; i < 8; i++) {
        size_t l = strlen(severities[i]);
        if (n == l && strncasecmp(s, severities[i], l) == 0)
            return i;
    }
    return -1;
}

/* A field's text without its quotes ("" inside stays doubled: names rarely hold one). */
static void field_text(const char *b, size_t start, size_t end, const char **p, size_t *n)
{
    if (end > start + 1 && b[start] == '"' && b[end - 1] == '"')
        start++, end--;
    *p = b + start;
    *n = end - start;
}

static void count_record(const char *buf, const size_t f[13], const char *db, int64_t counts[8],
                         int64_t totals[8])
{
    const char *sev, *name;
    size_t nsev, nname;
    field_text(buf, f[FIELD_SEVERITY], f[FIELD_SEVERITY + 1] - 1, &sev, &nsev);
    int i = severity_index(sev, nsev);
    if (i < 0)
        return;
    totals[i]++;
    field_text(buf, f[FIELD_DB], f[FIELD_DB + 1] - 1, &name, &nname);
    if (db && strlen(db) == nname && strncmp(name, db, nname) == 0)
        counts[i]++;
}

size_t rp_logcounts_count(const char *buf, size_t len, const char *db, int64_t counts[8],
                          int64_t totals[8])
{
    size_t consumed = 0, f[13] = {0}; /* where fields 0..12 start */
    int field = 0;
    bool quoted = false;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (c == '"') {
            quoted = !quoted;
        } else if (c == ',' && !quoted) {
            if (++field <= 12)
                f[field] = i + 1;
        } else if (c == '\n' && !quoted) {
            if (field >= 12)
                count_record(buf, f, db, counts, totals);
            consumed = i + 1;
            field = 0;
            f[0] = i + 1;
        }
    }
    return consumed;
}

/*-------------------------------------------------------------------------
 * One fetch
 *-------------------------------------------------------------------------
 */

static void fill_row(rp_native_row *row, int64_t now_ns, const int64_t counts[8],
                     const int64_t totals[8])
{
    static const char *const totals_names[8] = {"debug_total",   "info_total",  "notice_total",
                                                "warning_total", "error_total", "log_total",
                                                "fatal_total",   "panic_total"};
    row->ncols = 0;
    row->cols[row->ncols] = (rp_column){"epoch_ns", RP_COL_TIME, RP_VAL_INT};
    snprintf(row->text[row->ncols], sizeof(row->text[0]), "%lld", (long long)now_ns);
    row->vals[row->ncols] = row->text[row->ncols];
    row->ncols++;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 8; i++) {
            size_t c = row->ncols++;
            row->cols[c] =
                (rp_column){pass ? totals_names[i] : severities[i], RP_COL_FIELD, RP_VAL_INT};
            snprintf(row->text[c], sizeof(row->text[0]), "%lld",
                     (long long)(pass ? totals[i] : counts[i]));
            row->vals[c] = row->text[c];
        }
    }
}

/* Read up to RP_LOGCOUNTS_MAX_READ bytes of path from offset into *out (owned). */
static int read_local(const char *path, int64_t offset, int64_t size, char **out, size_t *n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int64_t want = size - offset;
    want = want > RP_LOGCOUNTS_MAX_READ ? RP_LOGCOUNTS_MAX_READ : want;
    *out = rp_malloc((size_t)(want > 0 ? want : 1));
    ssize_t got = want > 0 ? pread(fd, *out, (size_t)want, offset) : 0;
    int e = errno;
    close(fd);
    if (got < 0) {
        rp_free(*out);
        *out = NULL;
        return -e;
    }
    *n = (size_t)got;
    return 0;
}

/* The bytes of a bytea in text form ("\x4142..."): decoded in place. */
static size_t unhex(char *s)
{
    size_t n = 0;
    if (s[0] != '\\' || s[1] != 'x')
        return 0;
    for (const char *p = s + 2; p[0] && p[1]; p += 2) {
        char hex[3] = {p[0], p[1], 0};
        s[n++] = (char)strtol(hex, NULL, 16);
    }
    return n;
}

static void local_path(const PGresult *res, char *path, size_t len)
{
    const char *f = PQgetvalue(res, 0, 0);
    if (f[0] == '/')
        snprintf(path, len, "%s", f);
    else
        snprintf(path, len, "%s/%s", PQgetvalue(res, 0, 1), f);
}

/* The new bytes: from this host's file, or from the chunk the server read. */
static int new_bytes(rp_logcounts *st, const PGresult *res, bool local, int64_t from, int64_t size,
                     char **buf, size_t *n)
{
    if (!st->remote && local) {
        char path[2048];
        local_path(res, path, sizeof(path));
        int rc = read_local(path, from, size, buf, n);
        if (rc == 0)
            return 0;
        st->remote = true; /* not readable here: through the server from now on */
        return 1;
    }
    if (!st->remote)
        st->remote = true;
    if (PQgetisnull(res, 0, 4))
        return size > from ? 1 : 0; /* asked for nothing this time (just switched) */
    *buf = rp_strdup(PQgetvalue(res, 0, 4));
    *n = unhex(*buf);
    return 0;
}

int rp_logcounts_result(rp_logcounts *st, const PGresult *res, bool local, int64_t now_ns,
                        rp_native_row *row, char *err, size_t errlen)
{
    if (PQntuples(res) != 1 || PQnfields(res) != 5 || PQgetisnull(res, 0, 0)) {
        snprintf(err, errlen,
                 "the server writes no csvlog (log_destination must include "
                 "csvlog and logging_collector be on)");
        return -ENOENT;
    }
    const char *file = PQgetvalue(res, 0, 0);
    int64_t size = PQgetisnull(res, 0, 3) ? 0 : atoll(PQgetvalue(res, 0, 3));
    int64_t counts[8] = {0}, totals[8] = {0};
    bool same = strcmp(file, st->file) == 0;
    int64_t from = same ? st->offset : 0;
    if (!st->started) { /* start at the end of the current log */
        snprintf(st->file, sizeof(st->file), "%s", file);
        st->offset = size;
        st->started = true;
        fill_row(row, now_ns, counts, totals);
        return 0;
    }
    char *buf = NULL;
    size_t n = 0;
    int rc = new_bytes(st, res, local, from, size, &buf, &n);
    if (rc != 0)
        return rc; /* read again next time, through the server */
    size_t used = rp_logcounts_count(buf, n, PQgetvalue(res, 0, 2), counts, totals);
    rp_free(buf);
    snprintf(st->file, sizeof(st->file), "%s", file);
    st->offset = from + (int64_t)used;
    fill_row(row, now_ns, counts, totals);
    return 0;
}
