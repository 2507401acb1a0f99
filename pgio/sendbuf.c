/* SPDX-License-Identifier: PostgreSQL
 *
 * One send(2) for a burst of libpq writes: see sendbuf.h.
 */
#include "pgio/sendbuf.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "common/compiler.h"

/* glibc's own entry point (exported as GLIBC_2.2.5, like __libc_malloc). */
extern ssize_t __send(int fd, const void *buf, size_t len, int flags);

/* A burst with nothing pending before it is gathered in the thread's scratch buffer,
 * shared by every rp_sendbuf of the thread: when the socket takes it all (the usual
 * case) nothing is allocated per burst. Only what the socket leaves is copied into the
 * rp_sendbuf's own buffer, which is freed once written: an idle source holds nothing.
 * (An allocation per pipeline also cost a fleet of 10,000 sources 27 MB of RSS: freed,
 * touched chunks were reused under other sources' long-lived, mostly idle buffers.) */
static __thread rp_buf scratch;
static __thread rp_sendbuf *scratch_owner; /* whose burst the scratch holds, or NULL */
static __thread size_t nsendbufs;          /* initialised here: the last fini frees scratch */

/* This thread's open burst, if any. */
static __thread rp_sendbuf *open_burst;

__attribute__((visibility("default"))) ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    rp_sendbuf *sb = open_burst;
    if (rp_likely(!sb || sb->fd != fd))
        return __send(fd, buf, len, flags);
    rp_buf_append(scratch_owner == sb ? &scratch : &sb->buf, buf, len);
    sb->coalesced++;
    return (ssize_t)len;
}

/* Whether this thread's last recv() filled the buffer it was given. */
static __thread bool last_full;

/* recv(2) is recvfrom(2) without an address (glibc's recv is that system call too); it is
 * defined here, next to send(), only to see whether libpq's reads fill its buffer. */
__attribute__((visibility("default"))) ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    ssize_t n = recvfrom(fd, buf, len, flags, NULL, NULL);
    last_full = n > 0 && (size_t)n == len;
    return n;
}

bool rp_sendbuf_recv_filled(void)
{
    return last_full;
}

static void release_scratch(rp_sendbuf *sb)
{
    if (scratch_owner != sb)
        return;
    scratch_owner = NULL;
    scratch.len = 0;
}

void rp_sendbuf_init(rp_sendbuf *sb)
{
    *sb = (rp_sendbuf){.buf = RP_BUF_INIT, .fd = -1};
    nsendbufs++;
}

void rp_sendbuf_fini(rp_sendbuf *sb)
{
    if (open_burst == sb)
        open_burst = NULL;
    release_scratch(sb);
    rp_buf_fini(&sb->buf);
    sb->off = 0;
    sb->fd = -1;
    if (--nsendbufs == 0)
        rp_buf_fini(&scratch);
}

void rp_sendbuf_begin(rp_sendbuf *sb, int fd)
{
    if (sb->fd != fd)
        rp_sendbuf_discard(sb);
    sb->fd = fd;
    open_burst = sb;
    if (!rp_sendbuf_pending(sb) && !scratch_owner) { /* else: after what is pending */
        scratch_owner = sb;
        scratch.len = 0;
    }
}

void rp_sendbuf_end(rp_sendbuf *sb)
{
    if (open_burst == sb)
        open_burst = NULL;
}

/* Write the burst gathered in scratch; what the socket leaves moves to sb->buf. 0, 1
 * (some is left) or -errno. */
static int flush_scratch(rp_sendbuf *sb)
{
    size_t off = 0;
    int rc = 0;
    while (off < scratch.len) {
        ssize_t n = __send(sb->fd, scratch.data + off, scratch.len - off, MSG_NOSIGNAL);
        sb->sends++;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -errno;
            break;
        }
        off += (size_t)n;
    }
    if (rc == 1)
        rp_buf_append(&sb->buf, scratch.data + off, scratch.len - off);
    release_scratch(sb);
    return rc;
}

int rp_sendbuf_flush(rp_sendbuf *sb)
{
    if (scratch_owner == sb) {
        int rc = flush_scratch(sb);
        if (rc != 0)
            return rc;
    }
    while (sb->buf.len > sb->off) {
        ssize_t n = __send(sb->fd, sb->buf.data + sb->off, sb->buf.len - sb->off, MSG_NOSIGNAL);
        sb->sends++;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -errno;
        sb->off += (size_t)n;
    }
    rp_buf_fini(&sb->buf);
    sb->off = 0;
    return 0;
}

bool rp_sendbuf_pending(const rp_sendbuf *sb)
{
    return (scratch_owner == sb && scratch.len > 0) || sb->buf.len > sb->off;
}

void rp_sendbuf_discard(rp_sendbuf *sb)
{
    release_scratch(sb);
    rp_buf_fini(&sb->buf);
    sb->off = 0;
    sb->fd = -1;
}
