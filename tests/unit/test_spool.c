/* SPDX-License-Identifier: PostgreSQL
 *
 * The sink's spool: replay of live chunks in order, DONE records, the COPY whose outcome
 * is unknown, a torn tail, compaction, and the writer id kept across opens.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "common/mem.h"
#include "sinks/spool.h"
#include "tests/lib/tap.h"

typedef struct seen {
    uint64_t ids[64];
    char data[64][16];
    size_t n;
} seen;

static void on_chunk(void *arg, const rp_spool_chunk *c)
{
    seen *s = arg;
    s->ids[s->n] = c->id;
    snprintf(s->data[s->n], sizeof(s->data[0]), "%.*s", (int)c->len, c->data);
    s->n++;
}

static rp_spool *reopen(uv_loop_t *loop, const char *dir, seen *s, rp_spool_state *st)
{
    rp_spool *sp = NULL;
    char err[256];
    memset(s, 0, sizeof(*s));
    if (rp_spool_open(dir, loop, on_chunk, s, st, &sp, err, sizeof(err)) < 0)
        printf("# %s\n", err);
    return sp;
}

static void add(rp_spool *sp, uint64_t id, const char *data)
{
    rp_spool_chunk c = {id, "tbl", "db1", 2, 10, 11, data, strlen(data)};
    ok(rp_spool_add(sp, &c) == 0, "add chunk");
}

/* Feeds compaction one live chunk: id 20. */
static bool next_one(void *arg, rp_spool_chunk *c)
{
    static char data[1 << 20];
    int *left = arg;
    if (!*left)
        return false;
    (*left)--;
    memset(data, 'b', sizeof(data));
    *c = (rp_spool_chunk){20, "tbl", "db1", 1, 0, 0, data, sizeof(data)};
    return true;
}

static void close_spool(uv_loop_t *loop, rp_spool *sp)
{
    rp_spool_close(sp);
    uv_run(loop, UV_RUN_DEFAULT);
}

int main(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char dir[] = "/tmp/rp-spool-test-XXXXXX";
    ok(mkdtemp(dir) != NULL, "temp folder");
    seen s;
    rp_spool_state st;

    rp_spool *sp = reopen(&loop, dir, &s, &st);
    ok(sp && s.n == 0 && st.next_id == 1 && st.writer > 0, "an empty spool");
    rp_spool *other = NULL;
    rp_spool_state st2;
    char err[256];
    ok(rp_spool_open(dir, &loop, on_chunk, &s, &st2, &other, err, sizeof(err)) == -EBUSY &&
           strstr(err, "in use by another pgreaper process"),
       "a second opener is refused");
    int64_t writer = st.writer;
    rp_free(st.unknown_ids);
    add(sp, 1, "one");
    add(sp, 2, "two");
    add(sp, 3, "three");
    ok(rp_spool_done(sp, 2) == 0, "two written");
    uint64_t ids[2] = {1, 3};
    ok(rp_spool_copy(sp, 7, ids, 2) == 0, "COPY 7 sent with one and three");
    close_spool(&loop, sp);

    sp = reopen(&loop, dir, &s, &st);
    is_int((int)s.n, 2, "two live chunks replayed");
    ok(s.ids[0] == 1 && s.ids[1] == 3 && !strcmp(s.data[1], "three"), "in order, intact");
    ok(st.writer == writer, "the writer id is kept");
    ok(st.seq == 7 && st.unknown_seq == 7 && st.nunknown == 2, "COPY 7's outcome is unknown");
    ok(st.next_id == 4, "ids go on after the highest");
    rp_free(st.unknown_ids);
    ok(rp_spool_done(sp, 1) == 0 && rp_spool_done(sp, 3) == 0, "resolved: written");
    add(sp, 4, "four");
    close_spool(&loop, sp);

    /* A torn tail: the last record is cut short, as after a crash mid-write. */
    sp = reopen(&loop, dir, &s, &st);
    ok(s.n == 1 && s.ids[0] == 4 && st.nunknown == 0, "only four is live, nothing unknown");
    rp_free(st.unknown_ids);
    add(sp, 5, "five");
    close_spool(&loop, sp);
    char path[512];
    snprintf(path, sizeof(path), "ls %s/spool.* | sort -t. -k2 -n | tail -1", dir);
    FILE *p = popen(path, "r");
    char last[512] = "";
    ok(p && fgets(last, sizeof(last), p), "the newest segment");
    if (p)
        pclose(p);
    last[strcspn(last, "\n")] = '\0';
    FILE *f = fopen(last, "r+");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    ok(truncate(last, size - 3) == 0, "cut the last record short");
    sp = reopen(&loop, dir, &s, &st);
    ok(s.n == 1 && s.ids[0] == 4, "the torn record is ignored, the rest replays");
    rp_free(st.unknown_ids);

    /* Compaction keeps what is live and the sequence number. */
    ok(!rp_spool_wants_compaction(sp, 1 << 20), "a small segment is not compacted");
    uint64_t before = rp_spool_bytes(sp);
    ok(before > 0, "bytes on disk are counted");
    close_spool(&loop, sp);
    sp = reopen(&loop, dir, &s, &st);
    rp_free(st.unknown_ids);
    close_spool(&loop, sp);
    snprintf(path, sizeof(path), "ls %s/spool.* | wc -l", dir);
    p = popen(path, "r");
    char count[32] = "";
    ok(p && fgets(count, sizeof(count), p) && atoi(count) == 1,
       "old segments are deleted once the new one is synced");
    if (p)
        pclose(p);
    /* Compaction: 17 MiB written, 1 MiB live. */
    sp = reopen(&loop, dir, &s, &st);
    rp_free(st.unknown_ids);
    char *big = rp_malloc(1 << 20);
    memset(big, 'b', 1 << 20);
    for (uint64_t id = 10; id < 27; id++) {
        rp_spool_chunk c = {id, "tbl", "db1", 1, 0, 0, big, 1 << 20};
        (void)rp_spool_add(sp, &c);
        if (id != 20)
            (void)rp_spool_done(sp, id);
    }
    (void)rp_spool_done(sp, 4);
    ok(rp_spool_wants_compaction(sp, 1 << 20), "17 MiB with 1 MiB live wants compaction");
    int left = 1;
    ok(rp_spool_compact(sp, 9, next_one, &left) == 0, "compacted");
    uv_run(&loop, UV_RUN_DEFAULT); /* the sync that deletes the old segment */
    ok(rp_spool_bytes(sp) < (2u << 20), "the spool holds about the live chunk only");
    close_spool(&loop, sp);
    rp_free(big);
    sp = reopen(&loop, dir, &s, &st);
    ok(s.n == 1 && s.ids[0] == 20 && st.seq == 9 && st.nunknown == 0,
       "after compaction: the live chunk and the sequence number");
    rp_free(st.unknown_ids);
    close_spool(&loop, sp);

    snprintf(path, sizeof(path), "rm -rf %s", dir);
    ok(system(path) == 0, "clean up");
    uv_loop_close(&loop);
    return done_testing();
}
