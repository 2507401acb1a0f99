/* SPDX-License-Identifier: PostgreSQL
 *
 * Measurement model: column roles, typed JSON values, JSON string escaping, epoch_ns.
 */
#include <string.h>

#include <libpq-fe.h>

#include "common/buf.h"
#include "model/batch.h"
#include "tests/lib/tap.h"

static const char *json_of(rp_buf *b, const rp_batch *batch, size_t row, size_t col)
{
    rp_buf_reset(b);
    rp_batch_json_value(b, batch, row, col);
    return b->data;
}

static void test_values(void)
{
    static const rp_column cols[] = {
        {"epoch_ns", 0, RP_VAL_INT}, {"i", 0, RP_VAL_INT},  {"f", 0, RP_VAL_FLOAT},
        {"n", 0, RP_VAL_NUMERIC},    {"b", 0, RP_VAL_BOOL}, {"j", 0, RP_VAL_JSON},
        {"tag_db", 0, RP_VAL_TEXT},  {"t", 0, RP_VAL_TEXT},
    };
    const char *vals[] = {
        "1700000000123456789",
        "-42",
        "NaN",
        "1.50",
        "t",
        "{\"a\": [1, 2]}",
        "db\"1",
        "x\ny",
        "garbage",
        NULL,
        "-Infinity",
        "NaN",
        "f",
        "null",
        "",
        "\x01\x7f",
        NULL,
        "0",
        "1.5e+20",
        "Infinity",
        NULL,
        NULL,
        NULL,
        "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
    };
    rp_batch b;
    rp_batch_init_values(&b, cols, 8, 3, vals);
    b.fetch_time_ns = 42;
    is_int(b.time_col, 0, "epoch_ns is the time column");
    is_int(b.cols[0].role, RP_COL_TIME, "epoch_ns role");
    is_int(b.cols[6].role, RP_COL_TAG, "tag_ prefix makes a tag");
    is_int(b.cols[1].role, RP_COL_FIELD, "other columns are fields");
    is_int(rp_batch_row_time(&b, 0), 1700000000123456789LL, "row time from epoch_ns");
    is_int(rp_batch_row_time(&b, 1), 42, "unparsable epoch_ns falls back to the fetch time");
    is_int(rp_batch_row_time(&b, 2), 42, "null epoch_ns falls back to the fetch time");
    rp_buf o = RP_BUF_INIT;
    is_str(json_of(&o, &b, 0, 1), "-42", "integer stays a number");
    is_str(json_of(&o, &b, 0, 2), "null", "float NaN becomes null");
    is_str(json_of(&o, &b, 1, 2), "null", "float -Infinity becomes null");
    is_str(json_of(&o, &b, 2, 2), "1.5e+20", "float with exponent stays a number");
    is_str(json_of(&o, &b, 0, 3), "1.50", "numeric stays a number, digits kept");
    is_str(json_of(&o, &b, 1, 3), "null", "numeric NaN becomes null");
    is_str(json_of(&o, &b, 2, 3), "null", "numeric Infinity becomes null");
    is_str(json_of(&o, &b, 0, 4), "true", "bool t");
    is_str(json_of(&o, &b, 1, 4), "false", "bool f");
    is_str(json_of(&o, &b, 2, 4), "null", "SQL null");
    is_str(json_of(&o, &b, 0, 5), "{\"a\": [1, 2]}", "json embedded as is");
    is_str(json_of(&o, &b, 0, 6), "\"db\\\"1\"", "quote escaped");
    is_str(json_of(&o, &b, 0, 7), "\"x\\ny\"", "newline escaped");
    is_str(json_of(&o, &b, 1, 6), "\"\"", "empty string");
    is_str(json_of(&o, &b, 1, 7), "\"\\u0001\\u007f\"", "control characters escaped");
    is_str(json_of(&o, &b, 2, 7), "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
           "valid UTF-8 copied byte-exact");
    rp_buf_fini(&o);
    rp_batch_fini(&b);
}

static void test_json_str(void)
{
    rp_buf o = RP_BUF_INIT;
    rp_buf_json_str(&o, "a\\b\"c\td\re", 9);
    is_str(o.data, "\"a\\\\b\\\"c\\td\\re\"", "backslash, quote, tab, CR");
    rp_buf_reset(&o);
    rp_buf_json_str(&o, "\xff\xc3(ok\xe2\x82", 7);
    is_str(o.data, "\"\xEF\xBF\xBD\xEF\xBF\xBD(ok\xEF\xBF\xBD\xEF\xBF\xBD\"",
           "invalid UTF-8 bytes become U+FFFD each");
    rp_buf_reset(&o);
    rp_buf_json_str(&o, "\xed\xa0\x80", 3);
    is_str(o.data, "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"", "UTF-16 surrogate rejected");
    rp_buf_fini(&o);
}

static void test_epoch_and_oids(void)
{
    int64_t t = 0;
    ok(rp_batch_parse_epoch_ns("1700000000123456789", &t) == 0 && t == 1700000000123456789LL,
       "int8 epoch");
    ok(rp_batch_parse_epoch_ns("1700000000123456789.25", &t) == 0 && t == 1700000000123456789LL,
       "numeric epoch with a fraction");
    ok(rp_batch_parse_epoch_ns("1.7e+18", &t) == 0 && t == 1700000000000000000LL, "float epoch");
    ok(rp_batch_parse_epoch_ns("NaN", &t) < 0, "NaN rejected");
    ok(rp_batch_parse_epoch_ns("12abc", &t) < 0, "trailing garbage rejected");
    is_int(rp_value_kind_for_oid(20), RP_VAL_INT, "int8");
    is_int(rp_value_kind_for_oid(21), RP_VAL_INT, "int2");
    is_int(rp_value_kind_for_oid(700), RP_VAL_FLOAT, "float4");
    is_int(rp_value_kind_for_oid(1700), RP_VAL_NUMERIC, "numeric");
    is_int(rp_value_kind_for_oid(16), RP_VAL_BOOL, "bool");
    is_int(rp_value_kind_for_oid(3802), RP_VAL_JSON, "jsonb");
    is_int(rp_value_kind_for_oid(1184), RP_VAL_TEXT, "timestamptz is a string");
    is_int(rp_value_kind_for_oid(19), RP_VAL_TEXT, "name is a string");
}

/* Rows copied out of single-row results: cells into an arena, columns from a result. */
static void test_cells(void)
{
    PGresult *desc = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[3] = {{.name = "epoch_ns", .typid = 20, .typlen = 8, .atttypmod = -1},
                             {.name = "tag_db", .typid = 25, .typlen = -1, .atttypmod = -1},
                             {.name = "v", .typid = 23, .typlen = 4, .atttypmod = -1}};
    ok(PQsetResultAttrs(desc, 3, attrs), "a result describes the columns");
    static const char arena[] = "1700000000000000000\0db1\0"
                                "42\0"
                                "1700000000000000001\0db2";
    const rp_cell cells[6] = {{0, 19}, {20, 3}, {24, 2}, {27, 19}, {47, 3}, {RP_CELL_NULL, 0}};
    rp_batch b;
    rp_batch_init_cells(&b, desc, arena, cells, 2);
    rp_buf out = RP_BUF_INIT;
    is_int((int)b.nrows, 2, "two rows");
    is_int((int)b.ncols, 3, "three columns");
    is_int(b.cols[1].role, RP_COL_TAG, "tag_ column is a tag");
    ok(rp_batch_row_time(&b, 1) == 1700000000000000001LL, "row time from the arena");
    is_str(json_of(&out, &b, 0, 2), "42", "int value");
    is_str(json_of(&out, &b, 1, 1), "\"db2\"", "text value");
    is_str(json_of(&out, &b, 1, 2), "null", "null value");
    rp_buf_fini(&out);
    rp_batch_fini(&b);
    PQclear(desc);
}

int main(void)
{
    test_values();
    test_cells();
    test_json_str();
    test_epoch_and_oids();
    return done_testing();
}
