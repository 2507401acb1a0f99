/* SPDX-License-Identifier: PostgreSQL
 *
 * Password masking and environment expansion for connection strings.
 */
#include "pgio/connstr.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/mem.h"

static const char MASK[] = "****";

static bool is_uri(const char *s)
{
    return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

#define MAX_SPANS 8

typedef struct span {
    size_t off, len;
} span;

typedef struct spans {
    span v[MAX_SPANS];
    size_t n;
} spans;

static void add_span(spans *sp, size_t off, size_t len)
{
    if (sp->n < MAX_SPANS && len > 0) {
        sp->v[sp->n].off = off;
        sp->v[sp->n].len = len;
        sp->n++;
    }
}

/* Password values in a URI: user:PASSWORD@ and every password=VALUE query parameter. */
static void uri_spans(const char *s, spans *sp)
{
    const char *auth = strstr(s, "://") + 3;
    size_t alen = strcspn(auth, "/?");
    const char *at = NULL;
    for (const char *p = auth; p < auth + alen; p++) {
        if (*p == '@')
            at = p;
    }
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon)
            add_span(sp, (size_t)(colon + 1 - s), (size_t)(at - colon - 1));
    }
    const char *q = strchr(auth + alen, '?');
    while (q && *q) {
        q++;
        size_t seg = strcspn(q, "&");
        if (seg >= 9 && strncmp(q, "password=", 9) == 0)
            add_span(sp, (size_t)(q + 9 - s), seg - 9);
        q += seg;
    }
}

/* Length of a key=value value at p: quoted with '...' and backslash escapes, or bare. */
static size_t kv_value_len(const char *p)
{
    const char *q = p;
    if (*q == '\'') {
        q++;
        while (*q && *q != '\'') {
            if (*q == '\\' && q[1])
                q++;
            q++;
        }
        if (*q == '\'')
            q++;
        return (size_t)(q - p);
    }
    while (*q && !isspace((unsigned char)*q)) {
        if (*q == '\\' && q[1])
            q++;
        q++;
    }
    return (size_t)(q - p);
}

static void kv_spans(const char *s, spans *sp)
{
    const char *p = s;
    while (*p) {
        p += strspn(p, " \t\r\n");
        if (!*p)
            break;
        size_t klen = strcspn(p, "= \t\r\n");
        bool is_pw = klen == 8 && strncmp(p, "password", 8) == 0;
        p += klen;
        p += strspn(p, " \t");
        if (*p != '=')
            continue;
        p++;
        p += strspn(p, " \t");
        size_t vlen = kv_value_len(p);
        if (is_pw)
            add_span(sp, (size_t)(p - s), vlen);
        p += vlen;
    }
}

static void password_spans(const char *conn_str, spans *sp)
{
    sp->n = 0;
    if (is_uri(conn_str))
        uri_spans(conn_str, sp);
    else
        kv_spans(conn_str, sp);
}

void rp_connstr_mask(const char *conn_str, rp_buf *out)
{
    spans sp;
    password_spans(conn_str, &sp);
    size_t pos = 0;
    for (size_t i = 0; i < sp.n; i++) {
        rp_buf_append(out, conn_str + pos, sp.v[i].off - pos);
        rp_buf_puts(out, MASK);
        pos = sp.v[i].off + sp.v[i].len;
    }
    rp_buf_puts(out, conn_str + pos);
}

void rp_connstr_scrub(const char *conn_str, const char *msg, rp_buf *out)
{
    spans sp;
    password_spans(conn_str, &sp);
    const char *p = msg;
    while (*p) {
        size_t hit = 0;
        for (size_t i = 0; i < sp.n && !hit; i++) {
            if (strncmp(p, conn_str + sp.v[i].off, sp.v[i].len) == 0)
                hit = sp.v[i].len;
        }
        if (hit) {
            rp_buf_puts(out, MASK);
            p += hit;
        } else {
            rp_buf_putc(out, *p++);
        }
    }
}

static int lookup_var(const char *name, size_t n, rp_buf *out, char *err, size_t errlen)
{
    char key[256];
    if (n == 0 || n >= sizeof(key)) {
        snprintf(err, errlen, "invalid environment variable reference");
        return -EINVAL;
    }
    memcpy(key, name, n);
    key[n] = '\0';
    const char *v = getenv(key);
    if (!v) {
        snprintf(err, errlen, "environment variable \"%s\" is not set", key);
        return -ENOENT;
    }
    rp_buf_puts(out, v);
    return 0;
}

int rp_connstr_expand_env(const char *s, char **out, char *err, size_t errlen)
{
    rp_buf b = RP_BUF_INIT;
    rp_buf_reserve(&b, strlen(s));
    for (const char *p = s; *p;) {
        if (*p != '$') {
            rp_buf_putc(&b, *p++);
            continue;
        }
        p++;
        const char *name = p;
        size_t n;
        if (*p == '$') {
            rp_buf_putc(&b, '$');
            p++;
            continue;
        } else if (*p == '{') {
            const char *close = strchr(p, '}');
            if (!close) {
                snprintf(err, errlen, "unterminated \"${\" in environment variable reference");
                rp_buf_fini(&b);
                return -EINVAL;
            }
            name = p + 1;
            n = (size_t)(close - name);
            p = close + 1;
        } else {
            n = 0;
            while (isalnum((unsigned char)p[n]) || p[n] == '_')
                n++;
            p += n;
        }
        int rc = lookup_var(name, n, &b, err, errlen);
        if (rc < 0) {
            rp_buf_fini(&b);
            return rc;
        }
    }
    *out = b.data ? b.data : rp_strdup("");
    return 0;
}

/* A key=value value: quoted, with \\ and \' escaped (libpq's conninfo rules). */
static void put_quoted(rp_buf *b, const char *v)
{
    rp_buf_putc(b, '\'');
    for (; *v; v++) {
        if (*v == '\'' || *v == '\\')
            rp_buf_putc(b, '\\');
        rp_buf_putc(b, *v);
    }
    rp_buf_putc(b, '\'');
}

int rp_connstr_with_dbname(const char *conn_str, const char *dbname, char **out, char *err,
                           size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conn_str, &perr);
    if (!opts) {
        rp_buf why = RP_BUF_INIT;
        rp_connstr_scrub(conn_str, perr ? perr : "out of memory", &why);
        snprintf(err, errlen, "%.*s", (int)strcspn(why.data, "\n"), why.data);
        rp_buf_fini(&why);
        PQfreemem(perr);
        return -EINVAL;
    }
    rp_buf b = RP_BUF_INIT;
    for (const PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val || strcmp(o->keyword, "dbname") == 0)
            continue;
        rp_buf_printf(&b, "%s=", o->keyword);
        put_quoted(&b, o->val);
        rp_buf_putc(&b, ' ');
    }
    rp_buf_puts(&b, "dbname=");
    put_quoted(&b, dbname);
    PQconninfoFree(opts);
    *out = b.data;
    return 0;
}
