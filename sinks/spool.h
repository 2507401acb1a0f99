/* SPDX-License-Identifier: PostgreSQL
 *
 * The crash-safe spool of the PostgreSQL sink (--sink-spool DIR): a durable mirror of the
 * sink's in-memory buffer, so that rows accepted by the sink survive SIGKILL (everything
 * written) and power loss (everything up to the last fsync, done every batching delay).
 *
 * On disk: DIR/writer holds the sink's writer id (admin.pgreaper_writer); DIR/spool.<n>
 * are append-only segments of records, each [u32 length][u32 crc32][u8 type][payload]:
 * CHUNK (a chunk of encoded COPY rows), DONE (a chunk was written or dropped) and COPY
 * (a COPY with sequence number seq was sent with these chunks; its outcome is only known
 * to the server until a DONE follows). Replay reads the segments in order, a torn or
 * corrupt tail ends a segment; a chunk is live when no DONE followed its CHUNK.
 * Compaction: when the current segment has grown past twice the live bytes (and 16 MiB),
 * a new segment starts with every live chunk (from memory, given by the sink), and the
 * older segments are deleted once the new one is fsync'd.
 *
 * Loop thread only; fsync and deletion run on libuv's pool.
 */
#ifndef RP_SINKS_SPOOL_H
#define RP_SINKS_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/compiler.h"

typedef struct rp_spool rp_spool;

/* One chunk as the spool stores it; pointers are valid during the callback only. */
typedef struct rp_spool_chunk {
    uint64_t id;
    const char *table;
    const char *dbname;
    uint32_t nrows;
    int64_t part_lo, part_hi;
    const char *data;
    size_t len;
} rp_spool_chunk;

/* What replay found besides the live chunks. */
typedef struct rp_spool_state {
    int64_t writer;        /* from DIR/writer, or a new random one saved there */
    uint64_t seq;          /* highest COPY sequence number recorded */
    uint64_t next_id;      /* first chunk id not used yet */
    uint64_t unknown_seq;  /* 0, or the COPY whose outcome is unknown ... */
    uint64_t *unknown_ids; /* ... and its live chunks (owned by the spool) */
    size_t nunknown;
    uint64_t chunks, rows; /* live chunks and rows replayed */
} rp_spool_state;

typedef void (*rp_spool_replay_cb)(void *arg, const rp_spool_chunk *c);

/*
 * Open (creating DIR if needed) and replay: cb(arg, chunk) for every live chunk in order;
 * st describes the rest. 0, or a negative errno with the reason in err.
 */
RP_NODISCARD int rp_spool_open(const char *dir, uv_loop_t *loop, rp_spool_replay_cb cb, void *arg,
                               rp_spool_state *st, rp_spool **out, char *err, size_t errlen);
/* Record a new chunk (durable at the next sync). 0 or a negative errno. */
int rp_spool_add(rp_spool *sp, const rp_spool_chunk *c);
/* Record that a chunk was written or dropped. */
int rp_spool_done(rp_spool *sp, uint64_t id);
/* Record that COPY seq is being sent with these chunks. */
int rp_spool_copy(rp_spool *sp, uint64_t seq, const uint64_t *ids, size_t n);
/* Start fsync of the current segment (no-op while one runs). */
void rp_spool_sync(rp_spool *sp);

/* Whether the current segment is due for compaction given the live bytes now. */
bool rp_spool_wants_compaction(const rp_spool *sp, uint64_t live_bytes);
/* Start a new segment that holds seq and every live chunk, fed by next(arg) until it
 * returns false; older segments go once it is fsync'd. */
typedef bool (*rp_spool_next_cb)(void *arg, rp_spool_chunk *c);
int rp_spool_compact(rp_spool *sp, uint64_t seq, rp_spool_next_cb next, void *arg);

/* The last error (after a failed call), for messages. */
const char *rp_spool_error(const rp_spool *sp);
/* Bytes on disk now. */
uint64_t rp_spool_bytes(const rp_spool *sp);
/* Sync and close; freed when pending work is done. */
void rp_spool_close(rp_spool *sp);

#endif /* RP_SINKS_SPOOL_H */
