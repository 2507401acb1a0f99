/* SPDX-License-Identifier: PostgreSQL
 *
 * Binary COPY encoding for the PostgreSQL sink: see pgcopy.h. The format: a 19-byte
 * header, then per tuple a 16-bit field count and per field a 32-bit length and the
 * value in the type's binary send format (timestamptz: microseconds since 2000-01-01 as
 * int64; text: the bytes; jsonb: version byte 1 and the JSON text), then a -1 trailer.
 */
#include "sinks/pgcopy.h"

#include <string.h>

#include "common/mem.h"

#define PG_EPOCH_US 946684800000000LL /* 2000-01-01 in Unix microseconds */

static const char header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
static const char trailer[2] = {(char)0xFF, (char)0xFF};

static void put_u16(rp_buf *b, uint16_t v)
{
    unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    rp_buf_append(b, x, 2);
}

static void put_u32(rp_buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    rp_buf_append(b, x, 4);
}

static void put_u64(rp_buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)(v >> 32));
    put_u32(b, (uint32_t)v);
}

static void patch_u32(rp_buf *b, size_t off, uint32_t v)
{
    unsigned char *p = (unsigned char *)b->data + off;
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

void rp_pgcopy_enc_fini(rp_pgcopy_enc *e)
{
    rp_buf_fini(&e->keys);
    rp_free(e->key_off);
    e->key_off = NULL;
    e->key_cap = 0;
}

/* Escaped keys, once per batch: fields as in data, tags with "tag_" stripped. */
void rp_pgcopy_begin(rp_pgcopy_enc *e, const rp_batch *b)
{
    rp_buf_reset(&e->keys);
    rp_grow((void **)&e->key_off, &e->key_cap, b->ncols + 1, sizeof(size_t));
    for (size_t c = 0; c < b->ncols; c++) {
        e->key_off[c] = e->keys.len;
        const char *name = b->cols[c].name;
        if (b->cols[c].role == RP_COL_TAG)
            name += 4;
        rp_buf_json_str(&e->keys, name, strlen(name));
        rp_buf_putc(&e->keys, ':');
    }
    e->key_off[b->ncols] = e->keys.len;
}

static void put_custom_tags(rp_buf *o, const rp_batch *b, bool *first)
{
    for (size_t i = 0; i < b->ncustom_tags; i++) {
        if (!*first)
            rp_buf_putc(o, ',');
        *first = false;
        rp_buf_json_str(o, b->custom_tags[i].key, strlen(b->custom_tags[i].key));
        rp_buf_putc(o, ':');
        rp_buf_json_str(o, b->custom_tags[i].value, strlen(b->custom_tags[i].value));
    }
}

/* One jsonb field: the columns of one role as an object. */
static void put_json_object(const rp_pgcopy_enc *e, rp_buf *o, const rp_batch *b, size_t row,
                            rp_col_role role)
{
    size_t len_at = o->len;
    put_u32(o, 0);
    rp_buf_putc(o, 1); /* jsonb binary format version */
    rp_buf_putc(o, '{');
    bool first = true;
    if (role == RP_COL_TAG)
        put_custom_tags(o, b, &first);
    for (size_t c = 0; c < b->ncols; c++) {
        if (b->cols[c].role != role)
            continue;
        if (!first)
            rp_buf_putc(o, ',');
        first = false;
        rp_buf_append(o, e->keys.data + e->key_off[c], e->key_off[c + 1] - e->key_off[c]);
        rp_batch_json_value(o, b, row, c);
    }
    rp_buf_putc(o, '}');
    patch_u32(o, len_at, (uint32_t)(o->len - len_at - 4));
}

void rp_pgcopy_row(rp_pgcopy_enc *e, rp_buf *out, const rp_batch *b, size_t row, int64_t t_us)
{
    size_t dblen = strlen(b->source);
    put_u16(out, 4);
    put_u32(out, 8);
    put_u64(out, (uint64_t)(t_us - PG_EPOCH_US));
    put_u32(out, (uint32_t)dblen);
    rp_buf_append(out, b->source, dblen);
    put_json_object(e, out, b, row, RP_COL_FIELD);
    put_json_object(e, out, b, row, RP_COL_TAG);
}

int64_t rp_pgcopy_part_index(int64_t t_us, int64_t partition_ms)
{
    int64_t step = partition_ms * 1000;
    return t_us >= 0 ? t_us / step : -((-t_us + step - 1) / step);
}

void rp_pgcopy_stream_init(rp_pgcopy_stream *st, const struct iovec *iov, size_t niov)
{
    *st = (rp_pgcopy_stream){.phase = RP_PGCOPY_HEADER, .iov = iov, .niov = niov};
}

bool rp_pgcopy_stream_peek(const rp_pgcopy_stream *st, const char **p, size_t *n)
{
    switch (st->phase) {
    case RP_PGCOPY_HEADER:
        *p = header, *n = sizeof(header);
        return true;
    case RP_PGCOPY_TUPLES:
        if (st->idx < st->niov) {
            *p = (const char *)st->iov[st->idx].iov_base + st->off;
            *n = st->iov[st->idx].iov_len - st->off;
            *n = *n > RP_PGCOPY_PIECE_MAX ? RP_PGCOPY_PIECE_MAX : *n;
            return true;
        }
        __attribute__((fallthrough)); /* no tuples left: the trailer */
    case RP_PGCOPY_TRAILER:
        *p = trailer, *n = sizeof(trailer);
        return true;
    case RP_PGCOPY_END:
        break;
    }
    return false;
}

void rp_pgcopy_stream_advance(rp_pgcopy_stream *st, size_t n)
{
    if (st->phase == RP_PGCOPY_TUPLES && st->idx < st->niov) {
        st->off += n;
        while (st->idx < st->niov && st->off >= st->iov[st->idx].iov_len) {
            st->idx++;
            st->off = 0;
        }
        return;
    }
    if (st->phase == RP_PGCOPY_TUPLES) /* the trailer was handed out in its place */
        st->phase = RP_PGCOPY_END;
    else if (st->phase != RP_PGCOPY_END)
        st->phase++;
}
