/* SPDX-License-Identifier: PostgreSQL
 *
 * The Prometheus text exposition format (0.0.4) into measurements, stored as pgwatch's
 * prometheus source kind stores them: one metric per family, one row per sample, a
 * column tag_<label> per label, the value in a float column named after the family, and
 * epoch_ns from the sample's timestamp (ms) or the scrape's time. A histogram gives its
 * _count and a summary its _sum (pgwatch's choice); buckets and quantiles are left out.
 * A line that does not parse drops the family it belongs to from this scrape (reported
 * with its line number and why); the other families are kept. Pure: no I/O, no logging.
 */
#ifndef RP_COLLECT_PROMTEXT_H
#define RP_COLLECT_PROMTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "model/batch.h"

/* A family's rows (b and what it points to are valid during the call only). */
typedef void (*rp_promtext_family_fn)(void *arg, const char *family, const rp_batch *b);
/* A line that does not parse: family is NULL when the line names none. */
typedef void (*rp_promtext_error_fn)(void *arg, const char *family, const char *msg);

typedef struct rp_promtext_counts {
    size_t families; /* handed to the family callback */
    size_t samples;  /* rows in them */
    size_t errors;   /* lines that did not parse */
} rp_promtext_counts;

/* Parse len bytes of text scraped at now_ns; families come in order of first appearance. */
void rp_promtext_parse(const char *text, size_t len, int64_t now_ns,
                       rp_promtext_family_fn on_family, rp_promtext_error_fn on_error, void *arg,
                       rp_promtext_counts *counts);

#endif /* RP_COLLECT_PROMTEXT_H */
