/* SPDX-License-Identifier: PostgreSQL
 *
 * The PostgreSQL sink's pure parts: binary COPY tuples byte by byte, the COPY stream cut
 * into pieces, partition indexes, and the bounded buffer (pins, eviction, listing).
 */
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "sinks/pgbuffer.h"
#include "sinks/pgcopy.h"
#include "tests/lib/tap.h"

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_tuple(void)
{
    static const rp_column cols[] = {
        {"epoch_ns", 0, RP_VAL_INT}, {"n", 0, RP_VAL_INT}, {"tag_db", 0, RP_VAL_TEXT}};
    const char *vals[] = {"946684800000001000", "7", "x\"y"};
    rp_tag custom[] = {{(char *)"env", (char *)"prod"}};
    rp_batch b;
    rp_batch_init_values(&b, cols, 3, 1, vals);
    b.source = "db1";
    b.custom_tags = custom;
    b.ncustom_tags = 1;
    rp_pgcopy_enc e = {0};
    rp_buf out = RP_BUF_INIT;
    rp_pgcopy_begin(&e, &b);
    rp_pgcopy_row(&e, &out, &b, 0, rp_batch_row_time(&b, 0) / 1000);
    const unsigned char *p = (const unsigned char *)out.data;
    is_int(p[0] << 8 | p[1], 4, "four fields");
    is_int(get_u32(p + 2), 8, "timestamptz is 8 bytes");
    is_int(get_u32(p + 10), 1, "1 us after 2000-01-01 (PostgreSQL's epoch)");
    is_int(get_u32(p + 14), 3, "dbname length");
    ok(memcmp(p + 18, "db1", 3) == 0, "dbname bytes");
    uint32_t dlen = get_u32(p + 21);
    is_int(p[25], 1, "jsonb version byte");
    ok(dlen == 8 && memcmp(p + 26, "{\"n\":7}", 7) == 0, "data holds the field");
    const unsigned char *tag = p + 25 + dlen;
    uint32_t tlen = get_u32(tag);
    const char *want = "{\"env\":\"prod\",\"db\":\"x\\\"y\"}";
    ok(tlen == 1 + strlen(want) && memcmp(tag + 5, want, strlen(want)) == 0,
       "tag_data: custom tags, then tag_ columns with the prefix stripped, escaped");
    is_int(out.len, (long long)(25 + dlen + 4 + tlen), "nothing after the tuple");
    rp_buf_fini(&out);
    rp_pgcopy_enc_fini(&e);
    rp_batch_fini(&b);
}

static void test_stream(void)
{
    size_t big = RP_PGCOPY_PIECE_MAX + 10;
    char *a = calloc(1, big);
    struct iovec iov[2] = {{a, big}, {(char *)"xyz", 3}};
    rp_pgcopy_stream st;
    rp_pgcopy_stream_init(&st, iov, 2);
    const char *p;
    size_t n, total = 0, pieces = 0;
    ok(rp_pgcopy_stream_peek(&st, &p, &n) && n == 19 && memcmp(p, "PGCOPY\n\377\r\n\0", 11) == 0,
       "the header first");
    rp_pgcopy_stream_advance(&st, n);
    while (rp_pgcopy_stream_peek(&st, &p, &n)) {
        ok(n <= RP_PGCOPY_PIECE_MAX, "a piece fits PQputCopyData's chunk");
        total += n;
        pieces++;
        rp_pgcopy_stream_advance(&st, n);
    }
    is_int(total, (long long)(big + 3 + 2), "every tuple byte and the trailer");
    is_int(pieces, 4, "big chunk in two pieces, the small one, the trailer");
    is_int(st.phase, RP_PGCOPY_END, "END after the trailer");
    rp_pgcopy_stream_init(&st, NULL, 0);
    rp_pgcopy_stream_advance(&st, 19);
    ok(rp_pgcopy_stream_peek(&st, &p, &n) && n == 2 && (unsigned char)p[0] == 0xFF,
       "no tuples: the trailer follows the header");
    rp_pgcopy_stream_advance(&st, n);
    ok(!rp_pgcopy_stream_peek(&st, &p, &n), "then nothing");
    free(a);
}

static void test_parts(void)
{
    is_int(rp_pgcopy_part_index(0, 1000), 0, "0 in partition 0");
    is_int(rp_pgcopy_part_index(999999, 1000), 0, "just before 1 s: still 0");
    is_int(rp_pgcopy_part_index(1000000, 1000), 1, "1 s: partition 1");
    is_int(rp_pgcopy_part_index(-1, 1000), -1, "before the epoch rounds down");
}

static rp_spool_chunk chunk_of(uint64_t id, const char *table, uint32_t rows)
{
    static char data[100];
    return (rp_spool_chunk){id, table, "db1", rows, 1, 2, data, sizeof(data)};
}

static int gone_count;
static void on_gone(void *arg, const rp_pgbuf_chunk *c)
{
    (void)arg, (void)c;
    gone_count++;
}

static void test_buffer(void)
{
    rp_pgbuf b = {0};
    rp_pgbuf_table *m1 = rp_pgbuf_table_for(&b, "m1"), *m2 = rp_pgbuf_table_for(&b, "m2");
    ok(rp_pgbuf_table_for(&b, "m1") == m1, "one record per table");
    rp_spool_chunk c1 = chunk_of(1, "m1", 3), c2 = chunk_of(2, "m2", 4), c3 = chunk_of(3, "m1", 5);
    rp_pgbuf_add(&b, m1, &c1);
    rp_pgbuf_add(&b, m2, &c2);
    rp_pgbuf_add(&b, m1, &c3);
    is_int(b.rows, 12, "rows counted");
    rp_pgbuf_pin_oldest(&b, 1 << 20);
    is_int(b.ncopy, 2, "the oldest table's chunks, across the other table's");
    ok(b.copy_table == m1 && rp_pgbuf_pinned_rows(&b) == 8, "m1: 3 + 5 rows pinned");
    const struct iovec *iov = rp_pgbuf_pinned_iov(&b);
    ok(iov[0].iov_len == 100 && iov[1].iov_base == b.copy[1]->data, "one iovec per chunk");
    uint64_t dropped = rp_pgbuf_evict(&b, 0, on_gone, NULL);
    ok(dropped == 4 && gone_count == 1 && m2->dropped == 4, "eviction spares pinned chunks");
    rp_pgbuf_unpin(&b);
    dropped = rp_pgbuf_evict(&b, 0, on_gone, NULL);
    ok(dropped == 8 && !b.head && b.bytes == 0 && b.rows == 0, "unpinned: all evicted");
    ok(!rp_pgbuf_listed(m1, "db1") && rp_pgbuf_listed(m1, "db1"), "listed once");
    rp_pgbuf_forget_listing(m1);
    ok(!rp_pgbuf_listed(m1, "db1"), "forgotten: listed again");
    rp_pgbuf_fini(&b);
}

int main(void)
{
    test_tuple();
    test_stream();
    test_parts();
    test_buffer();
    return done_testing();
}
