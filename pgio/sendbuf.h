/* SPDX-License-Identifier: PostgreSQL
 *
 * One send(2) for a burst of libpq writes.
 *
 * libpq 15 writes to the socket at every PQpipelineSync(), that is once per metric of a
 * pipeline: twenty metrics cost twenty sendto calls, and TCP_CORK only merges the
 * segments, not the calls. While a burst is open on a socket (rp_sendbuf_begin ..
 * rp_sendbuf_end, on the calling thread), every send() on that socket appends to the
 * burst's buffer and reports all bytes sent; rp_sendbuf_flush() then writes the burst
 * with one send() and keeps what the socket did not take, in order, until the socket is
 * writable again. The bytes on the wire are exactly libpq's, in libpq's order.
 *
 * This works by defining send() in the executable (libpq calls it through its PLT; the
 * definition forwards to glibc's __send), so it applies to libpq's plain and TLS
 * connections alike. Calls on other sockets, or from threads with no burst open, go
 * straight to glibc. A build where the definition is not linked in still works: the
 * burst stays empty and libpq writes as it always does.
 *
 * Ownership: the caller owns the rp_sendbuf (init/fini). A burst is gathered in a
 * buffer of the thread's, shared by its rp_sendbufs (freed with the last of them); only
 * what the socket does not take is copied into the rp_sendbuf's own buffer, which exists
 * while that is pending (freed once written, discarded or by fini).
 */
#ifndef RP_PGIO_SENDBUF_H
#define RP_PGIO_SENDBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef struct rp_sendbuf {
    rp_buf buf;         /* bytes of the burst not yet written */
    size_t off;         /* of which the first off have been written */
    int fd;             /* the socket, -1 when nothing is pending */
    uint64_t sends;     /* send() calls made by rp_sendbuf_flush (counter) */
    uint64_t coalesced; /* send() calls of libpq's taken into a burst (counter) */
} rp_sendbuf;

void rp_sendbuf_init(rp_sendbuf *sb);
void rp_sendbuf_fini(rp_sendbuf *sb);

/* Open a burst on fd on this thread. Bytes still pending from an earlier burst on the
 * same socket stay first. Bursts do not nest. */
void rp_sendbuf_begin(rp_sendbuf *sb, int fd);

/* Close this thread's burst: later send() calls go straight to the socket. */
void rp_sendbuf_end(rp_sendbuf *sb);

/* Write what is pending: 0 when all of it is written (or nothing was pending), 1 when
 * some is left (wait until the socket is writable, then call again), or -errno. */
int rp_sendbuf_flush(rp_sendbuf *sb);

/* Whether bytes of the burst are not written yet. */
bool rp_sendbuf_pending(const rp_sendbuf *sb);

/* Drop what is pending (the connection is being closed). */
void rp_sendbuf_discard(rp_sendbuf *sb);

/* Whether the calling thread's last recv() (any socket) filled the buffer it was given:
 * more may be waiting in the socket. recv() is defined in the executable like send(), so
 * this sees libpq's reads, which take at most what its input buffer has room for. false
 * forever in a build without the definition. */
bool rp_sendbuf_recv_filled(void);

#endif /* RP_PGIO_SENDBUF_H */
