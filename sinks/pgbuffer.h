/* SPDX-License-Identifier: PostgreSQL
 *
 * The PostgreSQL sink's bounded buffer: encoded chunks (one per batch, already COPY
 * tuples) in one FIFO shared by every metric table, oldest first, and a record per
 * table (partitions known to exist, dbnames registered, rows dropped). A COPY takes
 * the oldest table's chunks: they are pinned while it is in flight, so they are never
 * evicted, and leave the buffer only when the COPY's outcome is known. Beyond the bound
 * the oldest unpinned chunks are evicted, counted per table. Pure bookkeeping: no I/O.
 */
#ifndef RP_SINKS_PGBUFFER_H
#define RP_SINKS_PGBUFFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "sinks/spool.h"

typedef struct rp_pgbuf_table {
    struct rp_pgbuf_table *next;
    char *name; /* storage name = table name (quoted when used) */
    bool ensured;
    int64_t ens_lo, ens_hi;  /* partition indexes known to exist */
    uint64_t dropped;        /* rows dropped because the buffer was full */
    uint64_t dropped_report; /* ... since the last report */
    uint64_t out_of_range;   /* rows whose time lies outside what is kept */
    char **listed;           /* dbnames registered in admin.all_distinct_dbname_metrics */
    size_t nlisted, cap_listed;
    int failures;         /* consecutive failed COPYs of this table */
    bool oversize_logged; /* a batch larger than the whole buffer was refused (logged once) */
} rp_pgbuf_table;

typedef struct rp_pgbuf_chunk {
    struct rp_pgbuf_chunk *next, *prev; /* the FIFO, oldest first */
    uint64_t id;                        /* in the spool */
    rp_pgbuf_table *t;
    uint32_t nrows;
    bool pinned;     /* part of the COPY in flight: never evicted */
    int64_t part_lo; /* partition indexes of its rows */
    int64_t part_hi;
    const char *dbname; /* inside data, after the tuples */
    size_t len;         /* tuple bytes */
    char data[];
} rp_pgbuf_chunk;

#define RP_PGBUF_CHUNK_OVERHEAD ((uint64_t)sizeof(rp_pgbuf_chunk) + 16)

typedef struct rp_pgbuf {
    rp_pgbuf_chunk *head, *tail;
    uint64_t bytes; /* chunk bytes with their overhead */
    uint64_t rows;
    rp_pgbuf_table *tables;
    /* the COPY in flight (or cut off): its table and pinned chunks in order */
    rp_pgbuf_table *copy_table;
    rp_pgbuf_chunk **copy;
    struct iovec *copy_iov; /* the chunks' tuples, for the COPY stream */
    size_t ncopy, cap_copy, cap_iov;
} rp_pgbuf;

/* Every chunk and table is freed (a zeroed rp_pgbuf is an empty buffer). */
void rp_pgbuf_fini(rp_pgbuf *b);

/* The record of table name, created on first use. */
rp_pgbuf_table *rp_pgbuf_table_for(rp_pgbuf *b, const char *name);
/* Forget which dbnames the table registered (re-registered on the next COPY). */
void rp_pgbuf_forget_listing(rp_pgbuf_table *t);
/* Whether dbname was registered for t; if not, remember that it is now. */
bool rp_pgbuf_listed(rp_pgbuf_table *t, const char *dbname);

/* Append a copy of sc's tuples as a chunk of t. */
rp_pgbuf_chunk *rp_pgbuf_add(rp_pgbuf *b, rp_pgbuf_table *t, const rp_spool_chunk *sc);
/* Unlink and free c. */
void rp_pgbuf_remove(rp_pgbuf *b, rp_pgbuf_chunk *c);
/* Evict the oldest unpinned chunks while more than bound bytes are buffered. gone(arg, c)
 * runs before each is freed. Returns the rows evicted (counted in their tables). */
uint64_t rp_pgbuf_evict(rp_pgbuf *b, uint64_t bound,
                        void (*gone)(void *arg, const rp_pgbuf_chunk *c), void *arg);

/* Pin the oldest table's chunks (up to about max_bytes) for one COPY. */
void rp_pgbuf_pin_oldest(rp_pgbuf *b, size_t max_bytes);
/* Pin chunk c (of a COPY cut off by a crash, found in the spool). */
void rp_pgbuf_pin(rp_pgbuf *b, rp_pgbuf_chunk *c);
/* Unpin the COPY's chunks (they stay buffered). */
void rp_pgbuf_unpin(rp_pgbuf *b);
/* Rows of the pinned chunks. */
uint64_t rp_pgbuf_pinned_rows(const rp_pgbuf *b);
/* The lowest and highest partition of the pinned chunks. */
void rp_pgbuf_pinned_parts(const rp_pgbuf *b, int64_t *lo, int64_t *hi);
/* The pinned chunks' tuples, one iovec each (valid until the pins change). */
const struct iovec *rp_pgbuf_pinned_iov(rp_pgbuf *b);

#endif /* RP_SINKS_PGBUFFER_H */
