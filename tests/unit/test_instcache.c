/* SPDX-License-Identifier: PostgreSQL
 *
 * The instance cache's rules: kept only for instances two sources reach, handed out once
 * per generation to each source, only while young enough, and a copy that outlives the
 * batch it was made from.
 */
#include <string.h>

#include "collect/instcache.h"
#include "common/mem.h"
#include "model/batch.h"
#include "tests/lib/tap.h"

#define S 1000000000LL

static void make_batch(rp_batch *b, const char *const *vals, int64_t t)
{
    static const rp_column cols[] = {{"tag_x", RP_COL_TAG, RP_VAL_TEXT},
                                     {"n", RP_COL_FIELD, RP_VAL_INT}};
    rp_batch_init_values(b, cols, 2, 2, vals);
    b->fetch_time_ns = t;
}

int main(void)
{
    rp_instcache *c = rp_instcache_create();
    uint64_t k = rp_instcache_key("7300000000000000001", "/tmp", "5432");
    uint64_t k2 = rp_instcache_key("7300000000000000001", "/tmp", "5433");
    uint64_t m = rp_instcache_metric_key("wal", "select 1");
    ok(k != k2 && k && m != rp_instcache_metric_key("wal", "select 2"),
       "keys differ by port and by SQL text");
    char v0[8] = "a", v1[8] = "1", v3[8] = "2";
    const char *vals[4] = {v0, v1, NULL, v3};
    rp_batch b;
    make_batch(&b, vals, 100 * S);
    uint32_t seen1 = 0, seen2 = 0;

    rp_instcache_join(c, k);
    ok(!rp_instcache_store(c, k, m, &b, 10 * S, &seen1), "one source: nothing kept");
    rp_instcache_join(c, k);
    ok(rp_instcache_store(c, k, m, &b, 10 * S, &seen1) && seen1 != 0, "two sources: kept");
    strcpy(v0, "zz"); /* the source's result goes away: the copy must not care */
    rp_batch_fini(&b);
    ok(!rp_instcache_lookup(c, k, m, 101 * S, 10 * S, &seen1), "not to the source that fetched");
    const rp_batch *got = rp_instcache_lookup(c, k, m, 101 * S, 10 * S, &seen2);
    size_t len;
    ok(got && got->nrows == 2 && got->ncols == 2, "to another source of the instance");
    is_str(got ? rp_batch_value(got, 0, 0, &len) : "", "a", "a copy of the values");
    ok(got && rp_batch_value(got, 1, 0, &len) == NULL, "SQL null kept");
    is_str(got ? got->cols[0].name : "", "tag_x", "column names copied");
    ok(got && got->fetch_time_ns == 100 * S && got->cols[0].role == RP_COL_TAG,
       "the fetch's time and the column roles");
    ok(!rp_instcache_lookup(c, k, m, 102 * S, 10 * S, &seen2), "once per fetch to each source");
    uint32_t seen3 = 0;
    ok(!rp_instcache_lookup(c, k, m, 111 * S, 10 * S, &seen3), "not once older than the interval");
    ok(!rp_instcache_lookup(c, k2, m, 101 * S, 10 * S, &seen3), "not to another instance");

    rp_instcache_stats st;
    rp_instcache_get_stats(c, &st);
    ok(st.instances == 1 && st.results == 1 && st.bytes > 0 && st.shared == 1 && st.stored == 1,
       "stats");
    rp_instcache_leave(c, k);
    ok(!rp_instcache_lookup(c, k, m, 101 * S, 10 * S, &seen3), "one source left: not handed out");
    rp_instcache_leave(c, k);
    rp_instcache_get_stats(c, &st);
    ok(st.instances == 0 && st.results == 0 && st.bytes == 0, "the last source gone: all freed");
    rp_instcache_free(c);
    return done_testing();
}
