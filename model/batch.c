/* SPDX-License-Identifier: PostgreSQL
 *
 * Result → measurement view and typed JSON values. See batch.h.
 */
#include "model/batch.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/mem.h"

/* Type OIDs from pg_type.dat; stable across PostgreSQL versions. */
enum {
    OID_BOOL = 16,
    OID_CHAR = 18,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_OID = 26,
    OID_XID = 28,
    OID_JSON = 114,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_NUMERIC = 1700,
    OID_JSONB = 3802,
};

rp_value_kind rp_value_kind_for_oid(unsigned oid)
{
    switch (oid) {
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID:
    case OID_XID:
        return RP_VAL_INT;
    case OID_FLOAT4:
    case OID_FLOAT8:
        return RP_VAL_FLOAT;
    case OID_NUMERIC:
        return RP_VAL_NUMERIC;
    case OID_BOOL:
        return RP_VAL_BOOL;
    case OID_JSON:
    case OID_JSONB:
        return RP_VAL_JSON;
    default:
        return RP_VAL_TEXT;
    }
}

static void classify(rp_column *c)
{
    if (strcmp(c->name, "epoch_ns") == 0)
        c->role = RP_COL_TIME;
    else if (strncmp(c->name, "tag_", 4) == 0)
        c->role = RP_COL_TAG;
    else
        c->role = RP_COL_FIELD;
}

static int find_time_col(const rp_batch *b)
{
    for (size_t i = 0; i < b->ncols; i++) {
        if (b->cols[i].role == RP_COL_TIME)
            return (int)i;
    }
    return -1;
}

void rp_batch_init_result(rp_batch *b, const PGresult *res)
{
    memset(b, 0, sizeof(*b));
    b->res = res;
    b->nrows = (size_t)PQntuples(res);
    b->ncols = (size_t)PQnfields(res);
    b->cols = rp_calloc(b->ncols ? b->ncols : 1, sizeof(rp_column));
    for (size_t i = 0; i < b->ncols; i++) {
        b->cols[i].name = PQfname(res, (int)i);
        b->cols[i].kind = rp_value_kind_for_oid(PQftype(res, (int)i));
        classify(&b->cols[i]);
    }
    b->time_col = find_time_col(b);
}

void rp_batch_init_cells(rp_batch *b, const PGresult *desc, const char *arena, const rp_cell *cells,
                         size_t nrows)
{
    rp_batch_init_result(b, desc);
    b->res = NULL;
    b->arena = arena;
    b->cells = cells;
    b->nrows = nrows;
}

void rp_batch_init_values(rp_batch *b, const rp_column *cols, size_t ncols, size_t nrows,
                          const char *const *vals)
{
    memset(b, 0, sizeof(*b));
    b->ncols = ncols;
    b->nrows = nrows;
    b->vals = vals;
    b->cols = rp_calloc(ncols ? ncols : 1, sizeof(rp_column));
    if (ncols)
        memcpy(b->cols, cols, ncols * sizeof(rp_column));
    for (size_t i = 0; i < ncols; i++)
        classify(&b->cols[i]);
    b->time_col = find_time_col(b);
}

void rp_batch_fini(rp_batch *b)
{
    rp_free(b->cols);
    b->cols = NULL;
}

size_t rp_batch_copy_size(const rp_batch *src)
{
    size_t n = sizeof(rp_batch_copy) + src->ncols * sizeof(rp_column) +
               src->nrows * src->ncols * sizeof(rp_cell);
    for (size_t c = 0; c < src->ncols; c++)
        n += strlen(src->cols[c].name) + 1;
    for (size_t r = 0; r < src->nrows; r++) {
        for (size_t c = 0; c < src->ncols; c++) {
            size_t len;
            n += rp_batch_value(src, r, c, &len) ? len + 1 : 0;
        }
    }
    return n;
}

void rp_batch_copy_make(rp_batch_copy *dst, const rp_batch *src)
{
    memset(dst, 0, sizeof(*dst));
    rp_buf arena = RP_BUF_INIT;
    rp_buf_reserve(&arena, rp_batch_copy_size(src));
    size_t *name_off = rp_calloc(src->ncols + 1, sizeof(size_t));
    for (size_t c = 0; c < src->ncols; c++) {
        name_off[c] = arena.len;
        rp_buf_append(&arena, src->cols[c].name, strlen(src->cols[c].name) + 1);
    }
    size_t ncells = src->nrows * src->ncols;
    dst->cells = rp_calloc(ncells ? ncells : 1, sizeof(rp_cell));
    for (size_t i = 0; i < ncells; i++) {
        size_t len;
        const char *v = rp_batch_value(src, i / src->ncols, i % src->ncols, &len);
        dst->cells[i].off = v ? (uint32_t)arena.len : RP_CELL_NULL;
        dst->cells[i].len = (uint32_t)len;
        if (v)
            rp_buf_append(&arena, v, len + 1);
    }
    dst->arena = arena.data ? arena.data : rp_calloc(1, 1);
    dst->b.cols = rp_calloc(src->ncols ? src->ncols : 1, sizeof(rp_column));
    for (size_t c = 0; c < src->ncols; c++) {
        dst->b.cols[c] = src->cols[c];
        dst->b.cols[c].name = dst->arena + name_off[c];
    }
    rp_free(name_off);
    dst->b.ncols = src->ncols;
    dst->b.nrows = src->nrows;
    dst->b.time_col = src->time_col;
    dst->b.fetch_time_ns = src->fetch_time_ns;
    dst->b.arena = dst->arena;
    dst->b.cells = dst->cells;
    dst->bytes =
        sizeof(*dst) + src->ncols * sizeof(rp_column) + ncells * sizeof(rp_cell) + arena.len + 1;
}

void rp_batch_copy_fini(rp_batch_copy *c)
{
    rp_batch_fini(&c->b);
    rp_free(c->arena);
    rp_free(c->cells);
    memset(c, 0, sizeof(*c));
}

const char *rp_batch_value(const rp_batch *b, size_t row, size_t col, size_t *len)
{
    if (b->res) {
        if (PQgetisnull(b->res, (int)row, (int)col)) {
            *len = 0;
            return NULL;
        }
        *len = (size_t)PQgetlength(b->res, (int)row, (int)col);
        return PQgetvalue(b->res, (int)row, (int)col);
    }
    if (b->cells) {
        const rp_cell *c = &b->cells[row * b->ncols + col];
        *len = c->len;
        return c->off == RP_CELL_NULL ? NULL : b->arena + c->off;
    }
    const char *v = b->vals[row * b->ncols + col];
    *len = v ? strlen(v) : 0;
    return v;
}

int rp_batch_parse_epoch_ns(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    if (strpbrk(s, "eE") || strchr(s, 'n') || strchr(s, 'N')) {
        double d = strtod(s, &end);
        if (errno || end == s || *end || !isfinite(d) || d < -9.2e18 || d > 9.2e18)
            return -EINVAL;
        *out = (int64_t)d;
        return 0;
    }
    long long v = strtoll(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    if (*end == '.') { /* numeric with a fraction: drop it */
        const char *p = end + 1;
        while (*p >= '0' && *p <= '9')
            p++;
        end = (char *)p;
    }
    if (*end)
        return -EINVAL;
    *out = v;
    return 0;
}

int64_t rp_batch_row_time(const rp_batch *b, size_t row)
{
    if (b->time_col < 0)
        return b->fetch_time_ns;
    size_t len;
    const char *v = rp_batch_value(b, row, (size_t)b->time_col, &len);
    int64_t t;
    if (!v || rp_batch_parse_epoch_ns(v, &t) < 0 || t <= 0)
        return b->fetch_time_ns;
    return t;
}

static bool is_nan_or_inf(const char *v)
{
    const char *p = v;
    if (*p == '-' || *p == '+')
        p++;
    return strcmp(p, "NaN") == 0 || strcmp(p, "Infinity") == 0 || strcmp(p, "inf") == 0 ||
           strcmp(p, "nan") == 0;
}

void rp_batch_json_value(rp_buf *out, const rp_batch *b, size_t row, size_t col)
{
    size_t len;
    const char *v = rp_batch_value(b, row, col, &len);
    if (!v) {
        rp_buf_append(out, "null", 4);
        return;
    }
    switch (b->cols[col].kind) {
    case RP_VAL_INT:
        rp_buf_append(out, v, len);
        return;
    case RP_VAL_FLOAT:
    case RP_VAL_NUMERIC:
        if (is_nan_or_inf(v))
            rp_buf_append(out, "null", 4);
        else
            rp_buf_append(out, v, len);
        return;
    case RP_VAL_BOOL:
        if (v[0] == 't')
            rp_buf_append(out, "true", 4);
        else
            rp_buf_append(out, "false", 5);
        return;
    case RP_VAL_JSON:
        rp_buf_append(out, v, len);
        return;
    case RP_VAL_TEXT:
        rp_buf_json_str(out, v, len);
        return;
    }
}
