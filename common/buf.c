/* SPDX-License-Identifier: PostgreSQL
 *
 * Growable byte buffer and JSON string escaping.
 */
#include "common/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/mem.h"

void rp_buf_fini(rp_buf *b)
{
    rp_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void rp_buf_reset(rp_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void rp_buf_reserve(rp_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < need)
        ncap *= 2;
    b->data = rp_realloc(b->data, ncap);
    b->cap = ncap;
}

void rp_buf_puts(rp_buf *b, const char *s)
{
    rp_buf_append(b, s, strlen(s));
}

void rp_buf_vprintf(rp_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    rp_buf_reserve(b, 64);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if ((size_t)n >= b->cap - b->len) {
        rp_buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap2);
    }
    b->len += (size_t)n;
    va_end(ap2);
}

void rp_buf_printf(rp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rp_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void rp_buf_consume(rp_buf *b, size_t n)
{
    if (n >= b->len) {
        rp_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

/* 0: copied as is; 1: needs an escape; 2: start of a multi-byte UTF-8 sequence. */
static const unsigned char json_class[256] = {
    [0x00 ... 0x1F] = 1, ['"'] = 1, ['\\'] = 1, [0x7F] = 1, [0x80 ... 0xFF] = 2,
};

/* Append the escape for the byte or sequence at p (n bytes left); returns bytes used. */
static size_t json_escape_one(rp_buf *b, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned c = p[0];
    if (c >= 0x80) {
        size_t sl = utf8_seq_len(p, n);
        if (sl == 0) {
            rp_buf_append(b, "\xEF\xBF\xBD", 3); /* U+FFFD for an invalid byte */
            return 1;
        }
        rp_buf_append(b, p, sl);
        return sl;
    }
    char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    switch (c) {
    case '"':
        rp_buf_append(b, "\\\"", 2);
        break;
    case '\\':
        rp_buf_append(b, "\\\\", 2);
        break;
    case '\n':
        rp_buf_append(b, "\\n", 2);
        break;
    case '\r':
        rp_buf_append(b, "\\r", 2);
        break;
    case '\t':
        rp_buf_append(b, "\\t", 2);
        break;
    default:
        rp_buf_append(b, e, 6);
        break;
    }
    return 1;
}

void rp_buf_json_str(rp_buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    rp_buf_reserve(b, n + 2);
    rp_buf_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (i < n && json_class[p[i]] == 0)
            i++;
        rp_buf_append(b, p + run, i - run);
        if (i < n)
            i += json_escape_one(b, p + i, n - i);
    }
    rp_buf_putc(b, '"');
}
