/* SPDX-License-Identifier: PostgreSQL
 *
 * Writing the Prometheus text exposition format (version 0.0.4) into an rp_buf: a
 * family's HELP and TYPE lines, then its samples, label values escaped (backslash,
 * double quote, newline), numbers as Prometheus parses them (NaN, +Inf, -Inf). The
 * caller keeps a family's samples together and names families and labels validly
 * ([a-zA-Z_:][a-zA-Z0-9_:]*); no state is kept between calls.
 */
#ifndef RP_COMMON_EXPO_H
#define RP_COMMON_EXPO_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef enum rp_expo_type {
    RP_EXPO_COUNTER,
    RP_EXPO_GAUGE,
    RP_EXPO_HISTOGRAM,
    RP_EXPO_UNTYPED,
} rp_expo_type;

typedef struct rp_expo_label {
    const char *name;  /* a valid label name */
    const char *value; /* any text: escaped */
} rp_expo_label;

/* # HELP and # TYPE lines of family name. */
void rp_expo_family(rp_buf *b, const char *name, rp_expo_type type, const char *help);

/* One sample: name{labels} value. */
void rp_expo_f64(rp_buf *b, const char *name, const rp_expo_label *labels, size_t nlabels,
                 double value);
/* The same with a timestamp (milliseconds since the epoch). */
void rp_expo_f64_at(rp_buf *b, const char *name, const rp_expo_label *labels, size_t nlabels,
                    double value, int64_t ts_ms);
/* The same for a counter or count, written exactly. */
void rp_expo_u64(rp_buf *b, const char *name, const rp_expo_label *labels, size_t nlabels,
                 uint64_t value);

/*
 * A histogram's samples: name_bucket{labels,le} for each of the nbounds upper bounds
 * (ascending) and +Inf, cumulative, then name_sum and name_count. counts[i] (nbounds + 1
 * of them) holds the observations in bucket i alone: above bound i-1, at most bound i;
 * the last one those above every bound.
 */
void rp_expo_histogram(rp_buf *b, const char *name, const rp_expo_label *labels, size_t nlabels,
                       const double *bounds, const uint64_t *counts, size_t nbounds, double sum);

#endif /* RP_COMMON_EXPO_H */
