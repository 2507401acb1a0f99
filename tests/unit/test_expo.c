/* SPDX-License-Identifier: PostgreSQL
 *
 * common/expo: the Prometheus text format as its parsers read it: HELP and TYPE lines,
 * label values and help text escaped, numbers in their shortest exact form, special
 * values, histograms cumulative with +Inf, _sum and _count.
 */
#include <math.h>

#include "common/expo.h"
#include "tests/lib/tap.h"

static void family_and_samples(void)
{
    rp_buf b = RP_BUF_INIT;
    rp_expo_family(&b, "x_total", RP_EXPO_COUNTER, "Back\\slash and\nnewline \"kept\".");
    rp_expo_u64(&b, "x_total", NULL, 0, 18446744073709551615u);
    rp_expo_label l[2] = {{"source", "a\"b\\c\nd"}, {"sink", NULL}};
    rp_expo_f64(&b, "x_total", l, 2, 0.003);
    is_str(b.data,
           "# HELP x_total Back\\\\slash and\\nnewline \"kept\".\n"
           "# TYPE x_total counter\n"
           "x_total 18446744073709551615\n"
           "x_total{source=\"a\\\"b\\\\c\\nd\",sink=\"\"} 0.003\n",
           "help escaped (no quotes), label values escaped, counters exact, 0.003 as 0.003");
    rp_buf_reset(&b);
    rp_expo_f64(&b, "g", NULL, 0, NAN);
    rp_expo_f64(&b, "g", NULL, 0, INFINITY);
    rp_expo_f64(&b, "g", NULL, 0, -INFINITY);
    rp_expo_f64(&b, "g", NULL, 0, 0.1 + 0.2);
    is_str(b.data, "g NaN\ng +Inf\ng -Inf\ng 0.30000000000000004\n",
           "special values, and 17 digits only where 15 do not read back");
    rp_buf_fini(&b);
}

static void histogram(void)
{
    rp_buf b = RP_BUF_INIT;
    double bounds[2] = {0.001, 0.5};
    uint64_t counts[3] = {2, 0, 3};
    rp_expo_label l = {"sink", "s"};
    rp_expo_histogram(&b, "h_seconds", &l, 1, bounds, counts, 2, 7.25);
    is_str(b.data,
           "h_seconds_bucket{sink=\"s\",le=\"0.001\"} 2\n"
           "h_seconds_bucket{sink=\"s\",le=\"0.5\"} 2\n"
           "h_seconds_bucket{sink=\"s\",le=\"+Inf\"} 5\n"
           "h_seconds_sum{sink=\"s\"} 7.25\n"
           "h_seconds_count{sink=\"s\"} 5\n",
           "buckets cumulative, le last, +Inf, sum and count");
    rp_buf_reset(&b);
    rp_expo_histogram(&b, "h", NULL, 0, bounds, counts, 2, 0);
    ok(strstr(b.data, "h_bucket{le=\"0.001\"} 2\n") && strstr(b.data, "h_count 5\n"),
       "without labels: le alone");
    rp_buf_fini(&b);
}

int main(void)
{
    family_and_samples();
    histogram();
    return done_testing();
}
