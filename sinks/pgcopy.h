/* SPDX-License-Identifier: PostgreSQL
 *
 * PostgreSQL binary COPY for the sink's tables (time timestamptz, dbname text, data
 * jsonb, tag_data jsonb): batches in, tuples out, and the stream of one COPY (header,
 * tuples, trailer) cut into pieces for PQputCopyData. Pure: no I/O, no libpq, no loop;
 * the JSON is written straight into the output buffer.
 */
#ifndef RP_SINKS_PGCOPY_H
#define RP_SINKS_PGCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/buf.h"
#include "model/batch.h"

#define RP_PGCOPY_PIECE_MAX 65536 /* bytes handed to PQputCopyData at once */

/* Per-batch state: the escaped JSON keys of the batch's columns. */
typedef struct rp_pgcopy_enc {
    rp_buf keys;
    size_t *key_off; /* ncols + 1 offsets into keys */
    size_t key_cap;
} rp_pgcopy_enc;

void rp_pgcopy_enc_fini(rp_pgcopy_enc *e);
/* Prepare e for the rows of b (call once per batch, before rp_pgcopy_row). */
void rp_pgcopy_begin(rp_pgcopy_enc *e, const rp_batch *b);
/* Append row `row` of b as one COPY tuple with time t_us (Unix microseconds): fields in
 * data, the source's custom tags and the tag_ columns (prefix stripped) in tag_data. */
void rp_pgcopy_row(rp_pgcopy_enc *e, rp_buf *out, const rp_batch *b, size_t row, int64_t t_us);

/* The partition a time falls in: floor(t_us / partition_ms), for negative times too. */
int64_t rp_pgcopy_part_index(int64_t t_us, int64_t partition_ms);

typedef enum rp_pgcopy_phase {
    RP_PGCOPY_HEADER = 0,
    RP_PGCOPY_TUPLES,
    RP_PGCOPY_TRAILER,
    RP_PGCOPY_END, /* everything handed out: PQputCopyEnd is next */
} rp_pgcopy_phase;

/* One COPY's bytes: the header, the tuples in iov[] (borrowed, must outlive the stream),
 * the trailer. */
typedef struct rp_pgcopy_stream {
    rp_pgcopy_phase phase;
    const struct iovec *iov;
    size_t niov;
    size_t idx, off; /* position in the tuples */
} rp_pgcopy_stream;

void rp_pgcopy_stream_init(rp_pgcopy_stream *st, const struct iovec *iov, size_t niov);
/* The next piece to send (at most RP_PGCOPY_PIECE_MAX bytes): true, or false at END. */
bool rp_pgcopy_stream_peek(const rp_pgcopy_stream *st, const char **p, size_t *n);
/* The piece of n bytes last peeked was accepted. */
void rp_pgcopy_stream_advance(rp_pgcopy_stream *st, size_t n);

#endif /* RP_SINKS_PGCOPY_H */
