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

/* A burst's buffer is freed once written: an idle source holds none (10,000 sources
 * would otherwise each keep their largest burst). */

/* This thread's open burst, if any. */
static __thread rp_sendbuf *open_burst;

__attribute__((visibility("default"))) ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    rp_sendbuf *sb = open_burst;
    if (rp_likely(!sb || sb->fd != fd))
        return __send(fd, buf, len, flags);
    rp_buf_append(&sb->buf, buf, len);
    sb->coalesced++;
    return (ssize_t)len;
}

void rp_sendbuf_init(rp_sendbuf *sb)
{
    *sb = (rp_sendbuf){.buf = RP_BUF_INIT, .fd = -1};
}

void rp_sendbuf_fini(rp_sendbuf *sb)
{
    if (open_burst == sb)
        open_burst = NULL;
    rp_buf_fini(&sb->buf);
    sb->off = 0;
    sb->fd = -1;
}

void rp_sendbuf_begin(rp_sendbuf *sb, int fd)
{
    if (sb->fd != fd)
        rp_sendbuf_discard(sb);
    sb->fd = fd;
    open_burst = sb;
}

void rp_sendbuf_end(rp_sendbuf *sb)
{
    if (open_burst == sb)
        open_burst = NULL;
}

int rp_sendbuf_flush(rp_sendbuf *sb)
{
    while (rp_sendbuf_pending(sb)) {
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

void rp_sendbuf_discard(rp_sendbuf *sb)
{
    rp_buf_fini(&sb->buf);
    sb->off = 0;
    sb->fd = -1;
}
