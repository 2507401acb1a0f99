/* SPDX-License-Identifier: PostgreSQL
 *
 * The Prometheus text exposition format: see expo.h.
 */
#include "common/expo.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The shortest of %.15g, %.16g and %.17g that reads back as v: 0.003, not
 * 0.0030000000000000001. */
static void fmt_double(char *out, size_t len, double v)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, len, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* Backslash, double quote and newline escaped; with quote false, only the first and
 * the last (HELP text). */
static void put_escaped(rp_buf *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            rp_buf_puts(b, "\\\\");
        else if (*s == '\n')
            rp_buf_puts(b, "\\n");
        else if (*s == '"' && quote)
            rp_buf_puts(b, "\\\"");
        else
            rp_buf_putc(b, *s);
    }
}

void rp_expo_family(rp_buf *b, const char *name, rp_expo_type type, const char *help)
{
    static const char *const types[] = {"counter", "gauge", "histogram", "untyped"};
    rp_buf_printf(b, "# HELP %s ", name);
    put_escaped(b, help, false);
    rp_buf_printf(b, "\n# TYPE %s %s\n", name, types[type]);
}

static void put_head(rp_buf *b, const char *name, const char *suffix, const rp_expo_label *labels,
                     size_t n, const char *le)
{
    rp_buf_puts(b, name);
    rp_buf_puts(b, suffix);
    if (n == 0 && !le) {
        rp_buf_putc(b, ' ');
        return;
    }
    rp_buf_putc(b, '{');
    for (size_t i = 0; i < n; i++) {
        rp_buf_printf(b, "%s%s=\"", i ? "," : "", labels[i].name);
        put_escaped(b, labels[i].value ? labels[i].value : "", true);
        rp_buf_putc(b, '"');
    }
    if (le)
        rp_buf_printf(b, "%sle=\"%s\"", n ? "," : "", le);
    rp_buf_puts(b, "} ");
}

static void put_f64(rp_buf *b, double v)
{
    if (isnan(v))
        rp_buf_puts(b, "NaN");
    else if (isinf(v))
        rp_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    else {
        char num[40];
        fmt_double(num, sizeof(num), v);
        rp_buf_puts(b, num);
    }
}

void rp_expo_f64(rp_buf *b, const char *name, const rp_expo_label *labels, size_t nlabels,
                 double value)
{
    put_head(b, name, "", labels, nlabels, NULL);
    put_f64(b, value);
    rp_buf_putc(b, '\n');
}

void rp_expo_f64_at(rp_buf *b, const char *name, const rp_expo_label *labels, size_t nlabels,
                    double value, int64_t ts_ms)
{
    put_head(b, name, "", labels, nlabels, NULL);
    put_f64(b, value);
    rp_buf_printf(b, " %lld\n", (long long)ts_ms);
}

void rp_expo_u64(rp_buf *b, const char *name, const rp_expo_label *labels, size_t nlabels,
                 uint64_t value)
{
    put_head(b, name, "", labels, nlabels, NULL);
    rp_buf_printf(b, "%llu\n", (unsigned long long)value);
}

void rp_expo_histogram(rp_buf *b, const char *name, const rp_expo_label *labels, size_t nlabels,
                       const double *bounds, const uint64_t *counts, size_t nbounds, double sum)
{
    uint64_t total = 0;
    char le[40];
    for (size_t i = 0; i <= nbounds; i++) {
        total += counts[i];
        if (i < nbounds)
            fmt_double(le, sizeof(le), bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        put_head(b, name, "_bucket", labels, nlabels, le);
        rp_buf_printf(b, "%llu\n", (unsigned long long)total);
    }
    put_head(b, name, "_sum", labels, nlabels, NULL);
    put_f64(b, sum);
    rp_buf_putc(b, '\n');
    put_head(b, name, "_count", labels, nlabels, NULL);
    rp_buf_printf(b, "%llu\n", (unsigned long long)total);
}
