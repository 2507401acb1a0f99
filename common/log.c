/* SPDX-License-Identifier: PostgreSQL
 *
 * Log line formatting. Each line is built in a stack buffer and written with a single
 * write(2) to stderr so that lines from different threads never interleave.
 */
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

rp_log_level rp_log_min_level = RP_LOG_INFO;
static rp_log_format log_format = RP_LOG_TEXT;

static const char *const level_text[] = {"ERROR", "WARNING", "LOG", "DEBUG"};
static const char *const level_logfmt[] = {"error", "warn", "info", "debug"};

void rp_log_setup(rp_log_level level, rp_log_format format)
{
    rp_log_min_level = level;
    log_format = format;
}

int rp_log_parse_level(const char *s, rp_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_logfmt[i]) == 0) {
            *out = (rp_log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = RP_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

int rp_log_parse_format(const char *s, rp_log_format *out)
{
    if (strcmp(s, "text") == 0)
        *out = RP_LOG_TEXT;
    else if (strcmp(s, "logfmt") == 0)
        *out = RP_LOG_LOGFMT;
    else
        return -EINVAL;
    return 0;
}

typedef struct line {
    char buf[4096];
    size_t len;
} line;

static void put(line *l, const char *s, size_t n)
{
    size_t room = sizeof(l->buf) - 2 - l->len; /* keep space for "\n" */
    if (n > room)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* logfmt value: quoted when it contains spaces, quotes, '=' or control characters. */
static void put_logfmt_value(line *l, const char *s)
{
    bool quote = *s == '\0' || strpbrk(s, " \"=\\\t\n\r") != NULL;
    if (!quote) {
        puts_(l, s);
        return;
    }
    put(l, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            put(l, "\\", 1);
            put(l, p, 1);
        } else if (*p == '\n') {
            put(l, "\\n", 2);
        } else if (*p == '\r' || *p == '\t') {
            put(l, " ", 1);
        } else {
            put(l, p, 1);
        }
    }
    put(l, "\"", 1);
}

static void put_time(line *l)
{
    struct timeval tv;
    struct tm tm;
    char ts[40];
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    puts_(l, ts);
}

static void format_text(line *l, rp_log_level level, const char *source, const char *metric,
                        const char *detail, const char *msg)
{
    put_time(l);
    char head[64];
    snprintf(head, sizeof(head), " [%d] %s:  ", (int)getpid(), level_text[level]);
    puts_(l, head);
    if (source) {
        puts_(l, "source=");
        puts_(l, source);
        puts_(l, metric ? " " : ": ");
    }
    if (metric) {
        puts_(l, "metric=");
        puts_(l, metric);
        puts_(l, ": ");
    }
    puts_(l, msg);
    if (detail) {
        puts_(l, "\n\tDETAIL:  ");
        puts_(l, detail);
    }
}

static void format_logfmt(line *l, rp_log_level level, const char *source, const char *metric,
                          const char *detail, const char *msg)
{
    puts_(l, "time=");
    put_time(l);
    puts_(l, " level=");
    puts_(l, level_logfmt[level]);
    if (source) {
        puts_(l, " source=");
        put_logfmt_value(l, source);
    }
    if (metric) {
        puts_(l, " metric=");
        put_logfmt_value(l, metric);
    }
    puts_(l, " msg=");
    put_logfmt_value(l, msg);
    if (detail) {
        puts_(l, " detail=");
        put_logfmt_value(l, detail);
    }
}

void rp_log_write(rp_log_level level, const char *source, const char *metric, const char *detail,
                  const char *fmt, ...)
{
    int saved = errno;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    /* PostgreSQL error texts end in a newline; strip it from message and detail. */
    size_t ml = strlen(msg);
    while (ml > 0 && (msg[ml - 1] == '\n' || msg[ml - 1] == ' '))
        msg[--ml] = '\0';
    char det[1024];
    if (detail) {
        snprintf(det, sizeof(det), "%s", detail);
        size_t dl = strlen(det);
        while (dl > 0 && (det[dl - 1] == '\n' || det[dl - 1] == ' '))
            det[--dl] = '\0';
        detail = det;
    }

    line l;
    l.len = 0;
    if (log_format == RP_LOG_LOGFMT)
        format_logfmt(&l, level, source, metric, detail, msg);
    else
        format_text(&l, level, source, metric, detail, msg);
    l.buf[l.len++] = '\n';
    ssize_t off = 0;
    while ((size_t)off < l.len) {
        ssize_t w = write(STDERR_FILENO, l.buf + off, l.len - (size_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += w;
    }
    errno = saved;
}
