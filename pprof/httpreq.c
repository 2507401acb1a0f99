/* SPDX-License-Identifier: PostgreSQL
 *
 * HTTP request-head parser: see httpreq.h.
 */
#include "pprof/httpreq.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* End of the head (offset just past the blank line), or 0 when not yet received. */
static size_t head_end(const char *buf, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n')
            return i + 2;
        if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static int copy_field(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap)
        return -E2BIG;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

static bool is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return false;
    return true;
}

static int parse_target(const char *t, size_t n, rp_httpreq *req)
{
    if (n == 0 || t[0] != '/')
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] <= ' ' || t[i] == 0x7f)
            return -EINVAL;
    const char *q = memchr(t, '?', n);
    size_t plen = q ? (size_t)(q - t) : n;
    int rc = copy_field(req->path, sizeof(req->path), t, plen);
    if (rc == 0)
        rc = q ? copy_field(req->query, sizeof(req->query), q + 1, n - plen - 1)
               : copy_field(req->query, sizeof(req->query), "", 0);
    return rc;
}

/* "METHOD SP target SP HTTP/1.x" */
static int parse_request_line(const char *s, size_t n, rp_httpreq *req)
{
    const char *sp1 = memchr(s, ' ', n);
    if (!sp1 || !is_token(s, (size_t)(sp1 - s)))
        return -EINVAL;
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', n - (size_t)(t - s));
    if (!sp2)
        return -EINVAL;
    size_t vlen = n - (size_t)(sp2 + 1 - s);
    const char *v = sp2 + 1;
    if (vlen != 8 || memcmp(v, "HTTP/1.", 7) != 0)
        return vlen >= 5 && memcmp(v, "HTTP/", 5) == 0 ? -ENOTSUP : -EINVAL;
    if (v[7] != '0' && v[7] != '1')
        return -ENOTSUP;
    int rc = copy_field(req->method, sizeof(req->method), s, (size_t)(sp1 - s));
    return rc ? rc : parse_target(t, (size_t)(sp2 - t), req);
}

static int parse_length(const char *v, size_t n, size_t *out)
{
    size_t x = 0;
    if (n == 0 || n > 9)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -EINVAL;
        x = x * 10 + (size_t)(v[i] - '0');
    }
    *out = x;
    return 0;
}

static int parse_header(const char *s, size_t n, rp_httpreq *req)
{
    const char *colon = memchr(s, ':', n);
    if (!colon || colon == s)
        return -EINVAL;
    size_t klen = (size_t)(colon - s);
    for (size_t i = 0; i < klen; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return -EINVAL;
    const char *v = colon + 1, *end = s + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (klen == 13 && strncasecmp(s, "authorization", 13) == 0)
        return copy_field(req->authorization, sizeof(req->authorization), v, (size_t)(end - v));
    if (klen == 14 && strncasecmp(s, "content-length", 14) == 0)
        return parse_length(v, (size_t)(end - v), &req->content_length);
    if (klen == 17 && strncasecmp(s, "transfer-encoding", 17) == 0)
        return -EINVAL; /* no chunked bodies here */
    return 0;
}

int rp_httpreq_parse(const char *buf, size_t len, rp_httpreq *req)
{
    size_t end = head_end(buf, len);
    if (end == 0)
        return len >= RP_HTTPREQ_MAX_HEAD ? -E2BIG : 0;
    if (end > RP_HTTPREQ_MAX_HEAD)
        return -E2BIG;
    memset(req, 0, sizeof(*req));
    req->head_len = end;
    size_t pos = 0;
    for (int line = 0; pos < end; line++) {
        const char *nl = memchr(buf + pos, '\n', end - pos);
        size_t n = (size_t)(nl - (buf + pos));
        if (n > 0 && buf[pos + n - 1] == '\r')
            n--;
        if (n == 0)
            return line == 0 ? -EINVAL : 1;
        for (size_t i = 0; i < n; i++)
            if (buf[pos + i] == '\0' || buf[pos + i] == '\r')
                return -EINVAL;
        int rc =
            line == 0 ? parse_request_line(buf + pos, n, req) : parse_header(buf + pos, n, req);
        if (rc < 0)
            return rc;
        pos += (size_t)(nl - (buf + pos)) + 1;
    }
    return -EINVAL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n)
                return -EINVAL;
            int hi = hexval(s[i + 1]);
            int lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= outlen)
            return -E2BIG;
        out[o++] = c;
    }
    out[o] = '\0';
    return (int)o;
}

int rp_httpreq_param(const rp_httpreq *req, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    const char *p = req->query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        size_t klen = eq ? (size_t)(eq - p) : n;
        if (klen == nlen && memcmp(p, name, nlen) == 0)
            return eq ? decode(eq + 1, n - klen - 1, out, outlen) : decode("", 0, out, outlen);
        p += n + (amp ? 1 : 0);
    }
    return -ENOENT;
}
