/* SPDX-License-Identifier: PostgreSQL
 *
 * pgio/sendbuf: a burst of send() calls leaves as one, in order; what the socket does
 * not take is kept and written later; other sockets and other threads are not touched.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pgio/sendbuf.h"
#include "tests/lib/tap.h"

static ssize_t drain(int fd, char *out, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, out + got, cap - got, MSG_DONTWAIT);
        if (n <= 0)
            return (ssize_t)got;
        got += (size_t)n;
    }
}

static void *other_thread(void *arg)
{
    int fd = *(int *)arg;
    return (void *)(intptr_t)send(fd, "t", 1, 0);
}

static void burst_in_order(int sv[2])
{
    rp_sendbuf sb;
    rp_sendbuf_init(&sb);
    rp_sendbuf_begin(&sb, sv[0]);
    is_int(send(sv[0], "abc", 3, 0), 3, "a send in a burst reports every byte sent");
    is_int(send(sv[0], "defg", 4, MSG_NOSIGNAL), 4, "and so does the next");
    char out[64];
    is_int(drain(sv[1], out, sizeof(out)), 0, "nothing reaches the socket during the burst");
    pthread_t t;
    void *r;
    pthread_create(&t, NULL, other_thread, &sv[0]);
    pthread_join(t, &r);
    is_int((int)(intptr_t)r, 1, "another thread's send on the same socket goes straight out");
    is_int(drain(sv[1], out, sizeof(out)), 1, "(one byte arrived)");
    rp_sendbuf_end(&sb);
    is_int(send(sv[0], "!", 1, 0), 1, "after the burst, send goes straight out");
    is_int(drain(sv[1], out, sizeof(out)), 1, "(one byte arrived)");
    ok(rp_sendbuf_pending(&sb), "the burst is pending");
    is_int(rp_sendbuf_flush(&sb), 0, "flush writes it all");
    ssize_t n = drain(sv[1], out, sizeof(out));
    out[n < 0 ? 0 : n] = '\0';
    is_str(out, "abcdefg", "in the order of the sends");
    is_int((int)sb.sends, 1, "with one send");
    is_int((int)sb.coalesced, 2, "two sends coalesced");
    is_int(rp_sendbuf_flush(&sb), 0, "flushing nothing is fine");
    rp_sendbuf_fini(&sb);
}

static void partial_then_rest(int sv[2])
{
    enum { N = 1 << 20 };
    char *big = malloc(N), *got = malloc(N);
    for (int i = 0; i < N; i++)
        big[i] = (char)(i * 7 + i / 251);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    rp_sendbuf sb;
    rp_sendbuf_init(&sb);
    rp_sendbuf_begin(&sb, sv[0]);
    for (int off = 0; off < N; off += 4096)
        send(sv[0], big + off, 4096, 0);
    rp_sendbuf_end(&sb);
    is_int(rp_sendbuf_flush(&sb), 1, "a burst larger than the socket buffer is left pending");
    ok(rp_sendbuf_pending(&sb), "and says so");
    size_t have = 0;
    int rounds = 0, f = 1;
    while (have < N && rounds++ < 100000) {
        have += (size_t)drain(sv[1], got + have, N - have);
        if (f == 1)
            f = rp_sendbuf_flush(&sb);
    }
    is_int(f, 0, "the rest is written once the socket takes it");
    ok(have == N && memcmp(big, got, N) == 0, "every byte arrived, in order");
    rp_sendbuf_begin(&sb, sv[0]);
    send(sv[0], "x", 1, 0);
    rp_sendbuf_end(&sb);
    rp_sendbuf_discard(&sb);
    ok(!rp_sendbuf_pending(&sb), "discard drops a pending burst");
    rp_sendbuf_fini(&sb);
    free(big);
    free(got);
}

/* Two sockets on one thread: a burst the socket took whole leaves no buffer behind; one
 * left pending keeps its bytes while the other socket's bursts come and go. */
static void two_sockets(void)
{
    int a[2], b[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, a);
    socketpair(AF_UNIX, SOCK_STREAM, 0, b);
    fcntl(a[0], F_SETFL, fcntl(a[0], F_GETFL) | O_NONBLOCK);
    rp_sendbuf sa, sb;
    rp_sendbuf_init(&sa);
    rp_sendbuf_init(&sb);
    rp_sendbuf_begin(&sb, b[0]);
    send(b[0], "hello", 5, 0);
    rp_sendbuf_end(&sb);
    is_int(rp_sendbuf_flush(&sb), 0, "a small burst is written whole");
    ok(sb.buf.data == NULL && !rp_sendbuf_pending(&sb), "and leaves no buffer of its own");
    enum { N = 1 << 20 };
    char *big = malloc(N), *got = malloc(N + 1);
    for (int i = 0; i < N; i++)
        big[i] = (char)(i * 13 + i / 509);
    rp_sendbuf_begin(&sa, a[0]);
    for (int off = 0; off < N; off += 8192)
        send(a[0], big + off, 8192, 0);
    rp_sendbuf_end(&sa);
    is_int(rp_sendbuf_flush(&sa), 1, "a large burst on the other socket is left pending");
    rp_sendbuf_begin(&sb, b[0]);
    send(b[0], " world", 6, 0);
    rp_sendbuf_end(&sb);
    is_int(rp_sendbuf_flush(&sb), 0, "meanwhile a burst on the other socket goes out");
    char out[64];
    ssize_t n = drain(b[1], out, sizeof(out) - 1);
    out[n < 0 ? 0 : n] = '\0';
    is_str(out, "hello world", "its bytes, in order");
    rp_sendbuf_begin(&sa, a[0]);
    send(a[0], "!", 1, 0); /* after what is pending */
    rp_sendbuf_end(&sa);
    size_t have = 0;
    int f = 1;
    for (int rounds = 0; have < N + 1 && rounds < 100000; rounds++) {
        have += (size_t)drain(a[1], got + have, N + 1 - have);
        if (f == 1)
            f = rp_sendbuf_flush(&sa);
    }
    ok(f == 0 && have == N + 1 && memcmp(big, got, N) == 0 && got[N] == '!',
       "the pending burst arrived whole, then the burst opened after it");
    rp_sendbuf_fini(&sa);
    rp_sendbuf_fini(&sb);
    free(big);
    free(got);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

static void closed_peer(void)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    close(sv[1]);
    rp_sendbuf sb;
    rp_sendbuf_init(&sb);
    rp_sendbuf_begin(&sb, sv[0]);
    is_int(send(sv[0], "abc", 3, 0), 3, "a send to a closed peer is taken into the burst");
    rp_sendbuf_end(&sb);
    is_int(rp_sendbuf_flush(&sb), -EPIPE, "the flush reports the broken pipe (no SIGPIPE)");
    rp_sendbuf_fini(&sb);
    close(sv[0]);
}

int main(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 1;
    burst_in_order(sv);
    partial_then_rest(sv);
    two_sockets();
    close(sv[0]);
    close(sv[1]);
    closed_peer();
    return done_testing();
}
