/* SPDX-License-Identifier: PostgreSQL
 *
 * The jsonfile sink: one JSON object per (source, metric) batch per line, appended to a
 * file or written to stdout. Lines are built straight into one output buffer (no
 * per-value objects) and written one second after the first buffered line, or at once
 * when the buffer passes 1 MiB: one write(2) per second instead of one per result.
 *
 *   {"dbname":"db1","metric":"db_stats","time":"2026-11-22T10:00:00.000000000Z",
 *    "custom_tags":{"env":"prod"},"data":[{"epoch_ns":...,"numbackends":3,...}]}
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/mem.h"
#include "sinks/sink.h"

#define FLUSH_AT       (1u << 20)
#define WRITE_DELAY_MS 1000

typedef struct jsonfile_sink {
    rp_sink base;
    int fd;
    bool own_fd;
    rp_buf out;
    uint64_t buffered_rows;
    uv_timer_t timer; /* writes the buffer WRITE_DELAY_MS after it became non-empty */
    rp_sink_closed_cb closed_cb;
    void *closed_arg;
    rp_buf keys;     /* the current batch's column names, escaped, each followed by ':' */
    size_t *key_off; /* ncols + 1 offsets into keys */
    size_t key_cap;
    time_t time_sec; /* the second time_text holds */
    char time_text[32];
    size_t time_len;
} jsonfile_sink;

static int jf_open(const char *uri, uv_loop_t *loop, const rp_sink_opts *opts, rp_sink **out,
                   char *err, size_t errlen)
{
    const char *path;
    if (strcmp(uri, "jsonfile:-") == 0 || strcmp(uri, "jsonfile://-") == 0)
        path = NULL;
    else if (strncmp(uri, "jsonfile://", 11) == 0 && uri[11] == '/')
        path = uri + 11;
    else {
        snprintf(err, errlen,
                 "invalid jsonfile sink URI \"%s\" (expected jsonfile:///abs/path "
                 "or jsonfile:-)",
                 uri);
        return -EINVAL;
    }
    int fd = STDOUT_FILENO;
    if (path) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0) {
            int e = errno;
            snprintf(err, errlen, "could not open file \"%s\": %s", path, strerror(e));
            return -e;
        }
    }
    jsonfile_sink *s = rp_calloc(1, sizeof(*s));
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->base.ops = &rp_sink_jsonfile_ops;
    s->base.uri = rp_strdup(uri);
    s->fd = fd;
    s->own_fd = path != NULL;
    *out = &s->base;
    return 0;
}

/* RFC 3339 with nanoseconds; the date-time part is formatted once per second. */
static void put_time(jsonfile_sink *s, int64_t ns)
{
    time_t sec = (time_t)(ns / 1000000000);
    if (sec != s->time_sec || s->time_len == 0) {
        struct tm tm;
        gmtime_r(&sec, &tm);
        s->time_len = strftime(s->time_text, sizeof(s->time_text), "%Y-%m-%dT%H:%M:%S", &tm);
        s->time_sec = sec;
    }
    char frac[16];
    int n = snprintf(frac, sizeof(frac), ".%09dZ\"", (int)(ns % 1000000000));
    rp_buf_putc(&s->out, '"');
    rp_buf_append(&s->out, s->time_text, s->time_len);
    rp_buf_append(&s->out, frac, (size_t)n);
}

/* Escape the column names once per batch rather than once per row. */
static void encode_keys(jsonfile_sink *s, const rp_batch *batch)
{
    rp_buf_reset(&s->keys);
    rp_grow((void **)&s->key_off, &s->key_cap, batch->ncols + 1, sizeof(size_t));
    for (size_t c = 0; c < batch->ncols; c++) {
        s->key_off[c] = s->keys.len;
        rp_buf_putc(&s->keys, c ? ',' : '{');
        rp_buf_json_str(&s->keys, batch->cols[c].name, strlen(batch->cols[c].name));
        rp_buf_putc(&s->keys, ':');
    }
    s->key_off[batch->ncols] = s->keys.len;
}

static void put_row(jsonfile_sink *s, const rp_batch *batch, size_t row)
{
    rp_buf *b = &s->out;
    if (batch->ncols == 0)
        rp_buf_putc(b, '{');
    for (size_t c = 0; c < batch->ncols; c++) {
        rp_buf_append(b, s->keys.data + s->key_off[c], s->key_off[c + 1] - s->key_off[c]);
        rp_batch_json_value(b, batch, row, c);
    }
    rp_buf_putc(b, '}');
}

static int jf_flush(rp_sink *base)
{
    jsonfile_sink *s = (jsonfile_sink *)base;
    if (s->out.len == 0)
        return 0; /* nothing attempted: the failing state stays as it is */
    uint64_t started = uv_hrtime();
    size_t off = 0;
    while (off < s->out.len) {
        ssize_t w = write(s->fd, s->out.data + off, s->out.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            base->stats.write_errors++;
            rp_sink_failed(base, NULL, "could not write to \"%s\": %s", base->uri, strerror(e));
            base->stats.rows_dropped += s->buffered_rows;
            base->stats.bytes += off;
            s->buffered_rows = 0;
            rp_buf_reset(&s->out);
            uv_timer_stop(&s->timer);
            return -e;
        }
        off += (size_t)w;
    }
    rp_sink_note_write(base, (uv_hrtime() - started) / 1000);
    rp_sink_recovered(
        base, "sink \"%s\" works again; %llu rows could not be written while it failed", base->uri,
        (unsigned long long)(base->stats.rows_dropped - base->dropped_at_failure));
    base->stats.bytes += off;
    base->stats.rows_written += s->buffered_rows;
    s->buffered_rows = 0;
    rp_buf_reset(&s->out);
    uv_timer_stop(&s->timer);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    jsonfile_sink *s = t->data;
    (void)jf_flush(&s->base);
}

static void jf_write_batch(rp_sink *base, const rp_batch *batch)
{
    jsonfile_sink *s = (jsonfile_sink *)base;
    rp_buf *b = &s->out;
    if (b->len == 0)
        uv_timer_start(&s->timer, on_timer, WRITE_DELAY_MS, 0);
    rp_buf_puts(b, "{\"dbname\":");
    rp_buf_json_str(b, batch->source, strlen(batch->source));
    rp_buf_puts(b, ",\"metric\":");
    rp_buf_json_str(b, batch->storage, strlen(batch->storage));
    rp_buf_puts(b, ",\"time\":");
    put_time(s, batch->fetch_time_ns);
    rp_buf_puts(b, ",\"custom_tags\":{");
    for (size_t i = 0; i < batch->ncustom_tags; i++) {
        if (i)
            rp_buf_putc(b, ',');
        const rp_tag *t = &batch->custom_tags[i];
        rp_buf_json_str(b, t->key, strlen(t->key));
        rp_buf_putc(b, ':');
        rp_buf_json_str(b, t->value, strlen(t->value));
    }
    rp_buf_puts(b, "},\"data\":[");
    encode_keys(s, batch);
    for (size_t r = 0; r < batch->nrows; r++) {
        if (r)
            rp_buf_putc(b, ',');
        put_row(s, batch, r);
    }
    rp_buf_puts(b, "]}\n");
    base->stats.batches++;
    base->stats.rows += batch->nrows;
    s->buffered_rows += batch->nrows;
    if (b->len >= FLUSH_AT)
        (void)jf_flush(base);
}

static void on_closed(uv_handle_t *h)
{
    jsonfile_sink *s = h->data;
    if (s->closed_cb)
        s->closed_cb(s->closed_arg, &s->base.stats);
    rp_buf_fini(&s->out);
    rp_buf_fini(&s->keys);
    rp_free(s->key_off);
    rp_task_unregister(&s->base.task);
    rp_free(s->base.uri);
    rp_free(s);
}

static void jf_close(rp_sink *base, rp_sink_closed_cb cb, void *arg)
{
    jsonfile_sink *s = (jsonfile_sink *)base;
    (void)jf_flush(base);
    if (s->own_fd)
        close(s->fd);
    s->closed_cb = cb;
    s->closed_arg = arg;
    uv_close((uv_handle_t *)&s->timer, on_closed);
}

const rp_sink_ops rp_sink_jsonfile_ops = {
    .scheme = "jsonfile",
    .open = jf_open,
    .write_batch = jf_write_batch,
    .flush = jf_flush,
    .close = jf_close,
};
