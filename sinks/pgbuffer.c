/* SPDX-License-Identifier: PostgreSQL
 *
 * The PostgreSQL sink's bounded buffer: see pgbuffer.h.
 */
#include "sinks/pgbuffer.h"

#include <string.h>

#include "common/mem.h"

void rp_pgbuf_fini(rp_pgbuf *b)
{
    for (rp_pgbuf_chunk *c = b->head; c;) {
        rp_pgbuf_chunk *n = c->next;
        rp_free(c);
        c = n;
    }
    for (rp_pgbuf_table *t = b->tables; t;) {
        rp_pgbuf_table *n = t->next;
        rp_pgbuf_forget_listing(t);
        rp_free(t->listed);
        rp_free(t->name);
        rp_free(t);
        t = n;
    }
    rp_free(b->copy);
    rp_free(b->copy_iov);
    memset(b, 0, sizeof(*b));
}

rp_pgbuf_table *rp_pgbuf_table_for(rp_pgbuf *b, const char *name)
{
    for (rp_pgbuf_table *t = b->tables; t; t = t->next) {
        if (strcmp(t->name, name) == 0)
            return t;
    }
    rp_pgbuf_table *t = rp_calloc(1, sizeof(*t));
    t->name = rp_strdup(name);
    t->next = b->tables;
    b->tables = t;
    return t;
}

void rp_pgbuf_forget_listing(rp_pgbuf_table *t)
{
    for (size_t i = 0; i < t->nlisted; i++)
        rp_free(t->listed[i]);
    t->nlisted = 0;
}

bool rp_pgbuf_listed(rp_pgbuf_table *t, const char *dbname)
{
    for (size_t i = 0; i < t->nlisted; i++) {
        if (strcmp(t->listed[i], dbname) == 0)
            return true;
    }
    rp_grow((void **)&t->listed, &t->cap_listed, t->nlisted + 1, sizeof(char *));
    t->listed[t->nlisted++] = rp_strdup(dbname);
    return false;
}

rp_pgbuf_chunk *rp_pgbuf_add(rp_pgbuf *b, rp_pgbuf_table *t, const rp_spool_chunk *sc)
{
    size_t dblen = strlen(sc->dbname);
    rp_pgbuf_chunk *c = rp_malloc(sizeof(rp_pgbuf_chunk) + sc->len + dblen + 1);
    memset(c, 0, sizeof(*c));
    c->id = sc->id;
    c->t = t;
    c->nrows = sc->nrows;
    c->part_lo = sc->part_lo;
    c->part_hi = sc->part_hi;
    c->len = sc->len;
    memcpy(c->data, sc->data, c->len);
    memcpy(c->data + c->len, sc->dbname, dblen + 1);
    c->dbname = c->data + c->len;
    c->prev = b->tail;
    if (b->tail)
        b->tail->next = c;
    else
        b->head = c;
    b->tail = c;
    b->bytes += c->len + RP_PGBUF_CHUNK_OVERHEAD;
    b->rows += c->nrows;
    return c;
}

void rp_pgbuf_remove(rp_pgbuf *b, rp_pgbuf_chunk *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        b->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        b->tail = c->prev;
    b->bytes -= c->len + RP_PGBUF_CHUNK_OVERHEAD;
    b->rows -= c->nrows;
    rp_free(c);
}

uint64_t rp_pgbuf_evict(rp_pgbuf *b, uint64_t bound,
                        void (*gone)(void *arg, const rp_pgbuf_chunk *c), void *arg)
{
    uint64_t rows = 0;
    for (rp_pgbuf_chunk *c = b->head; c && b->bytes > bound;) {
        rp_pgbuf_chunk *next = c->next;
        if (!c->pinned) {
            gone(arg, c);
            c->t->dropped += c->nrows;
            c->t->dropped_report += c->nrows;
            rows += c->nrows;
            rp_pgbuf_remove(b, c);
        }
        c = next;
    }
    return rows;
}

void rp_pgbuf_pin(rp_pgbuf *b, rp_pgbuf_chunk *c)
{
    c->pinned = true;
    rp_grow((void **)&b->copy, &b->cap_copy, b->ncopy + 1, sizeof(rp_pgbuf_chunk *));
    b->copy[b->ncopy++] = c;
    b->copy_table = c->t;
}

void rp_pgbuf_pin_oldest(rp_pgbuf *b, size_t max_bytes)
{
    rp_pgbuf_table *t = b->head->t;
    size_t bytes = 0;
    for (rp_pgbuf_chunk *c = b->head; c && bytes < max_bytes; c = c->next) {
        if (c->t != t)
            continue;
        rp_pgbuf_pin(b, c);
        bytes += c->len;
    }
}

void rp_pgbuf_unpin(rp_pgbuf *b)
{
    for (size_t i = 0; i < b->ncopy; i++)
        b->copy[i]->pinned = false;
    b->ncopy = 0;
    b->copy_table = NULL;
}

uint64_t rp_pgbuf_pinned_rows(const rp_pgbuf *b)
{
    uint64_t n = 0;
    for (size_t i = 0; i < b->ncopy; i++)
        n += b->copy[i]->nrows;
    return n;
}

void rp_pgbuf_pinned_parts(const rp_pgbuf *b, int64_t *lo, int64_t *hi)
{
    *lo = INT64_MAX, *hi = INT64_MIN;
    for (size_t i = 0; i < b->ncopy; i++) {
        *lo = b->copy[i]->part_lo < *lo ? b->copy[i]->part_lo : *lo;
        *hi = b->copy[i]->part_hi > *hi ? b->copy[i]->part_hi : *hi;
    }
}

const struct iovec *rp_pgbuf_pinned_iov(rp_pgbuf *b)
{
    rp_grow((void **)&b->copy_iov, &b->cap_iov, b->ncopy + 1, sizeof(struct iovec));
    for (size_t i = 0; i < b->ncopy; i++)
        b->copy_iov[i] = (struct iovec){b->copy[i]->data, b->copy[i]->len};
    return b->copy_iov;
}
