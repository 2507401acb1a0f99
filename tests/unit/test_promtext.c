/* SPDX-License-Identifier: PostgreSQL
 *
 * The Prometheus text format as pgwatch's prometheus kind stores it: families, labels as
 * tag_ columns, histogram counts and summary sums, timestamps, and broken lines that
 * drop their family only.
 */
#include <stdio.h>
#include <string.h>

#include "collect/promtext.h"
#include "common/buf.h"
#include "tests/lib/tap.h"

static rp_buf out, errs;

/* "family: col=val,col=val; ..." per family, one line each. */
static void on_family(void *arg, const char *family, const rp_batch *b)
{
    rp_buf_printf(&out, "%s:", family);
    for (size_t r = 0; r < b->nrows; r++) {
        rp_buf_puts(&out, r ? "; " : " ");
        for (size_t c = 0; c < b->ncols; c++) {
            size_t len;
            const char *v = rp_batch_value(b, r, c, &len);
            rp_buf_printf(&out, "%s%s=%s", c ? "," : "", b->cols[c].name, v ? v : "NULL");
        }
    }
    rp_buf_putc(&out, '\n');
}

static void on_error(void *arg, const char *family, const char *msg)
{
    rp_buf_printf(&errs, "%s: %s\n", family ? family : "-", msg);
}

static rp_promtext_counts parse(const char *text)
{
    rp_buf_reset(&out);
    rp_buf_reset(&errs);
    rp_promtext_counts n;
    rp_promtext_parse(text, strlen(text), 7000000, on_family, on_error, NULL, &n);
    return n;
}

int main(void)
{
    rp_promtext_counts n = parse("# HELP pg_up Whether the last scrape worked.\n"
                                 "# TYPE pg_up gauge\n"
                                 "pg_up 1\n"
                                 "# TYPE xact counter\n"
                                 "xact{datname=\"a\",server=\"s\"} 10 1700000000000\n"
                                 "xact{datname=\"b\"} 1.5e+06\r\n"
                                 "\n"
                                 "untyped_one{x=\"q\\\"uote\\\\ n\\n\"} -Inf\n");
    is_str(out.data,
           "pg_up: epoch_ns=7000000,pg_up=1\n"
           "xact: epoch_ns=1700000000000000000,tag_datname=a,tag_server=s,xact=10; "
           "epoch_ns=7000000,tag_datname=b,tag_server=NULL,xact=1.5e+06\n"
           "untyped_one: epoch_ns=7000000,tag_x=q\"uote\\ n\n,untyped_one=-Inf\n",
           "families, labels as tag_ columns (NULL when a sample lacks one), timestamps, "
           "escapes, CRLF");
    ok(n.families == 3 && n.samples == 4 && n.errors == 0, "counts");

    parse("# TYPE lat histogram\n"
          "lat_bucket{le=\"0.1\"} 3\nlat_bucket{le=\"+Inf\"} 5\nlat_sum 1.2\nlat_count 5\n"
          "# TYPE rt summary\n"
          "rt{quantile=\"0.5\"} 0.2\nrt_sum 9.5\nrt_count 40\n");
    is_str(out.data, "lat: epoch_ns=7000000,lat=5\nrt: epoch_ns=7000000,rt=9.5\n",
           "a histogram gives its count, a summary its sum (as pgwatch)");

    n = parse("good 1\n"
              "bad{a=\"x\" 2\n"
              "bad{a=\"y\"} 3\n"
              "noval\n"
              "ts 1 notanumber\n"
              "{a=\"b\"} 1\n"
              "# TYPE\n"
              "# TYPE good gauge\n"
              "good 2\n");
    is_str(out.data, "good: epoch_ns=7000000,good=1; epoch_ns=7000000,good=2\n",
           "broken lines drop their family only");
    is_str(errs.data,
           "bad: line 2: expected ',' or '}' after a label\n"
           "noval: line 4: a sample needs a value\n"
           "ts: line 5: a value must be a number and a timestamp an integer (milliseconds)\n"
           "-: line 6: a sample must start with a metric name\n",
           "each with its family and line");
    ok(n.errors == 4, "errors counted (a bare # TYPE is a comment)");

    const char nul[] = "a 1\nb\0x 2\nc 3\n";
    rp_buf_reset(&out);
    rp_buf_reset(&errs);
    rp_promtext_parse(nul, sizeof(nul) - 1, 0, on_family, on_error, NULL, &n);
    ok(strstr(out.data, "a:") && strstr(out.data, "c:") && !strstr(out.data, "b:") &&
           strstr(errs.data, "line 2: a line must not contain a NUL byte"),
       "a NUL byte: that line only");
    parse("");
    ok(out.len == 0 && errs.len == 0, "empty text: nothing");
    rp_buf_fini(&out);
    rp_buf_fini(&errs);
    return done_testing();
}
