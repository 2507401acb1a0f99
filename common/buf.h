/* SPDX-License-Identifier: PostgreSQL
 *
 * rp_buf: a growable, length-carrying byte buffer that is always NUL-terminated.
 * Used for log lines, JSON encoding and sink output. Appends never fail (see mem.h).
 * JSON helpers write RFC 8259 text with every control character escaped.
 */
#ifndef RP_COMMON_BUF_H
#define RP_COMMON_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include "common/compiler.h"

typedef struct rp_buf {
    char *data; /* owned; NUL-terminated when cap > 0 */
    size_t len;
    size_t cap;
} rp_buf;

#define RP_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void rp_buf_fini(rp_buf *b);
void rp_buf_reset(rp_buf *b);
void rp_buf_reserve(rp_buf *b, size_t extra);
void rp_buf_puts(rp_buf *b, const char *s);
void rp_buf_printf(rp_buf *b, const char *fmt, ...) RP_PRINTF(2, 3);
void rp_buf_vprintf(rp_buf *b, const char *fmt, va_list ap) RP_PRINTF(2, 0);
/* Append n bytes (inline: this is the encoders' hot path). */
static inline void rp_buf_append(rp_buf *b, const void *p, size_t n)
{
    if (rp_unlikely(b->len + n + 1 > b->cap))
        rp_buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static inline void rp_buf_putc(rp_buf *b, char c)
{
    if (rp_unlikely(b->len + 2 > b->cap))
        rp_buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

/* Remove the first n bytes. */
void rp_buf_consume(rp_buf *b, size_t n);

/* Append s (n bytes) as a quoted JSON string. Invalid UTF-8 bytes become U+FFFD. */
void rp_buf_json_str(rp_buf *b, const char *s, size_t n);

#endif /* RP_COMMON_BUF_H */
