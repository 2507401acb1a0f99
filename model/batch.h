/* SPDX-License-Identifier: PostgreSQL
 *
 * The measurement model. A batch is the rows of one (source, metric) fetch, handed to
 * every sink. It is a view, not a copy: values are read straight out of the PGresult
 * (or, for measurements pgreaper makes itself such as instance_up, out of a small
 * array), so turning a result into measurements allocates nothing per value.
 *
 * Columns are classified once per result: "epoch_ns" gives the row time (nanoseconds
 * since the Unix epoch; the fetch time when absent or unparsable), columns named
 * "tag_*" are tags, every other column is a field whose JSON type follows the column
 * type: integers, floats and numerics become JSON numbers (NaN and infinities become
 * null), bool becomes true/false, json/jsonb is embedded as is, everything else is a
 * string.
 */
#ifndef RP_MODEL_BATCH_H
#define RP_MODEL_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

struct pg_result;

/* A custom tag of a source (key and value owned by whoever owns the array). */
typedef struct rp_tag {
    char *key;
    char *value;
} rp_tag;

typedef enum rp_value_kind {
    RP_VAL_TEXT = 0,
    RP_VAL_INT,
    RP_VAL_FLOAT,
    RP_VAL_NUMERIC,
    RP_VAL_BOOL,
    RP_VAL_JSON,
} rp_value_kind;

typedef enum rp_col_role {
    RP_COL_FIELD = 0,
    RP_COL_TAG,  /* name starts with "tag_" */
    RP_COL_TIME, /* "epoch_ns" */
} rp_col_role;

typedef struct rp_column {
    const char *name; /* borrowed from the result (or static) */
    rp_col_role role;
    rp_value_kind kind;
} rp_column;

/* Where a value lies in an arena of NUL-terminated values. */
typedef struct rp_cell {
    uint32_t off; /* RP_CELL_NULL for SQL null */
    uint32_t len; /* without the NUL */
} rp_cell;
#define RP_CELL_NULL UINT32_MAX

typedef struct rp_batch {
    const char *source;        /* source name (the stored dbname); borrowed */
    const char *metric;        /* metric name; borrowed */
    const char *storage;       /* where it is stored: storage_name or metric; borrowed */
    int64_t fetch_time_ns;     /* wall clock at fetch */
    const rp_tag *custom_tags; /* the source's custom_tags; borrowed */
    size_t ncustom_tags;
    size_t nrows;
    size_t ncols;
    rp_column *cols;             /* owned */
    int time_col;                /* index of epoch_ns, or -1 */
    const struct pg_result *res; /* borrowed; either res ... */
    const char *arena;           /* ... or values in arena (borrowed) at ... */
    const struct rp_cell *cells; /* ... cells[row * ncols + col] (borrowed) ... */
    const char *const *vals;     /* ... or vals[row * ncols + col], NULL = SQL null */
    char *const *gauges;         /* the metric's gauge columns ("*": all); borrowed, not
                                  * kept by copies (rp_batch_copy_make copies data only) */
    size_t ngauges;
    bool scraped; /* from a source of kind prometheus: one family a batch */
} rp_batch;

/* Where collectors hand their batches (the application wires it to the sinks). The
 * batch and what it borrows are valid during the call only. */
typedef void (*rp_batch_emit_fn)(void *arg, const rp_batch *b);

/* Map a PostgreSQL type OID to a value kind. */
rp_value_kind rp_value_kind_for_oid(unsigned oid);

/* Describe res (borrowed, must outlive the batch). Allocates the column array only. */
void rp_batch_init_result(rp_batch *b, const struct pg_result *res);
/* Describe rows copied out of single-row results: nrows rows of cells into arena (both
 * borrowed); desc (borrowed) is a result of the query with its column descriptions. */
void rp_batch_init_cells(rp_batch *b, const struct pg_result *desc, const char *arena,
                         const rp_cell *cells, size_t nrows);
/* Describe a synthetic batch: cols (copied) and vals (borrowed). */
void rp_batch_init_values(rp_batch *b, const rp_column *cols, size_t ncols, size_t nrows,
                          const char *const *vals);
void rp_batch_fini(rp_batch *b);

/* An owned copy of a batch's columns and rows, for a result kept past its fetch (see
 * collect/instcache.h). b describes the copy (cells into arena); source, metric, storage
 * and tags are left empty for the user to fill in. */
typedef struct rp_batch_copy {
    rp_batch b;
    char *arena;    /* column names and values, NUL-terminated (owned) */
    rp_cell *cells; /* owned */
    size_t bytes;   /* memory held by the copy */
} rp_batch_copy;

/* The bytes a copy of src would hold. */
size_t rp_batch_copy_size(const rp_batch *src);
/* Copy src (which stays untouched) into dst; src's total must be under 4 GiB. */
void rp_batch_copy_make(rp_batch_copy *dst, const rp_batch *src);
void rp_batch_copy_fini(rp_batch_copy *c);

/* A value's text (NULL for SQL null) and its length. */
const char *rp_batch_value(const rp_batch *b, size_t row, size_t col, size_t *len);
/* The row's time in ns: epoch_ns when present and valid, else the fetch time. */
int64_t rp_batch_row_time(const rp_batch *b, size_t row);
/* Append the JSON form of one value (see above). */
void rp_batch_json_value(rp_buf *out, const rp_batch *b, size_t row, size_t col);
/* Parse an epoch_ns text (integer, numeric or float); 0 or -EINVAL. */
int rp_batch_parse_epoch_ns(const char *s, int64_t *out);

#endif /* RP_MODEL_BATCH_H */
