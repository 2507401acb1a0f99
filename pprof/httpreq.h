/* SPDX-License-Identifier: PostgreSQL
 *
 * A small, strict HTTP/1.x request-head parser for the pprof listener: the request line
 * and the headers it needs (Authorization, Content-Length), with hard size limits. It
 * works on the bytes received so far and never allocates. Fuzzed by
 * tests/fuzz/fuzz_httpreq.c.
 */
#ifndef RP_PPROF_HTTPREQ_H
#define RP_PPROF_HTTPREQ_H

#include <stddef.h>

#define RP_HTTPREQ_MAX_HEAD 8192

typedef struct rp_httpreq {
    char method[8];
    char path[256];   /* without the query, not decoded */
    char query[1024]; /* after '?', not decoded */
    char authorization[512];
    size_t content_length;
    size_t head_len; /* bytes of request line + headers + blank line */
} rp_httpreq;

/*
 * Parse the head at buf[0, len). Returns 1 when complete (req filled), 0 when more bytes
 * are needed, -EINVAL for a malformed request, -E2BIG when the head or a field is too
 * long, -ENOTSUP for a version other than HTTP/1.0 or 1.1.
 */
int rp_httpreq_parse(const char *buf, size_t len, rp_httpreq *req);

/*
 * Value of query parameter name, percent-decoded into out. Returns its length, -ENOENT
 * when absent, -E2BIG when it does not fit, -EINVAL for a bad escape.
 */
int rp_httpreq_param(const rp_httpreq *req, const char *name, char *out, size_t outlen);

#endif /* RP_PPROF_HTTPREQ_H */
