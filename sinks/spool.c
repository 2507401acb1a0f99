/* SPDX-License-Identifier: PostgreSQL
 *
 * The PostgreSQL sink's crash-safe spool. See spool.h.
 */
#include "sinks/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <zlib.h>

#include "common/buf.h"
#include "common/mem.h"

#define SEG_MIN_BYTES (16u << 20)

enum { REC_CHUNK = 1, REC_DONE = 2, REC_COPY = 3 };

struct rp_spool {
    uv_loop_t *loop;
    char *dir;
    int fd;              /* current segment, append only */
    int lock_fd;         /* DIR/lock, held with flock: one process per spool */
    uint64_t seg;        /* its number */
    uint64_t seg_bytes;  /* its size */
    uint64_t bytes;      /* every segment */
    uint64_t drop_below; /* after the next sync: delete segments numbered below this */
    bool dirty, working, closing;
    uv_work_t work;
    int work_fd;
    uint64_t work_drop_below;
    int work_err;
    rp_buf rec;
    char err[256];
};

/*-------------------------------------------------------------------------
 * Records
 *-------------------------------------------------------------------------
 */

static void put(rp_buf *b, const void *p, size_t n)
{
    rp_buf_append(b, p, n);
}

static int write_all(rp_spool *sp, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(sp->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            snprintf(sp->err, sizeof(sp->err), "could not write to the spool in \"%.150s\": %s",
                     sp->dir, strerror(errno));
            return -errno;
        }
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* Frame what is in sp->rec (type + payload) and append it to the current segment. */
static int emit(rp_spool *sp)
{
    uint32_t head[2] = {(uint32_t)sp->rec.len,
                        (uint32_t)crc32(0, (const Bytef *)sp->rec.data, (uInt)sp->rec.len)};
    rp_buf framed = RP_BUF_INIT;
    put(&framed, head, sizeof(head));
    put(&framed, sp->rec.data, sp->rec.len);
    int rc = write_all(sp, framed.data, framed.len);
    sp->seg_bytes += framed.len;
    sp->bytes += framed.len;
    sp->dirty = true;
    rp_buf_fini(&framed);
    return rc;
}

static void begin(rp_spool *sp, uint8_t type)
{
    rp_buf_reset(&sp->rec);
    put(&sp->rec, &type, 1);
}

int rp_spool_add(rp_spool *sp, const rp_spool_chunk *c)
{
    begin(sp, REC_CHUNK);
    /* names with their NUL, so that replay can hand them out in place */
    uint16_t tl = (uint16_t)(strlen(c->table) + 1), dl = (uint16_t)(strlen(c->dbname) + 1);
    uint32_t len = (uint32_t)c->len;
    put(&sp->rec, &c->id, 8);
    put(&sp->rec, &c->nrows, 4);
    put(&sp->rec, &c->part_lo, 8);
    put(&sp->rec, &c->part_hi, 8);
    put(&sp->rec, &tl, 2);
    put(&sp->rec, c->table, tl);
    put(&sp->rec, &dl, 2);
    put(&sp->rec, c->dbname, dl);
    put(&sp->rec, &len, 4);
    put(&sp->rec, c->data, c->len);
    return emit(sp);
}

int rp_spool_done(rp_spool *sp, uint64_t id)
{
    begin(sp, REC_DONE);
    put(&sp->rec, &id, 8);
    return emit(sp);
}

int rp_spool_copy(rp_spool *sp, uint64_t seq, const uint64_t *ids, size_t n)
{
    uint32_t n32 = (uint32_t)n;
    begin(sp, REC_COPY);
    put(&sp->rec, &seq, 8);
    put(&sp->rec, &n32, 4);
    put(&sp->rec, ids, n * 8);
    return emit(sp);
}

/*-------------------------------------------------------------------------
 * Replay
 *-------------------------------------------------------------------------
 */

typedef struct live {
    uint64_t id;
    bool dead;
    const char *rec; /* the CHUNK record's payload, inside a segment's text */
} live;

typedef struct replay {
    live *v;
    size_t n, cap;
    char **texts; /* segment contents, kept until the chunks are handed over */
    size_t ntexts, cap_texts;
    uint64_t seq, next_id;
    uint64_t *copy_ids;
    size_t ncopy;
    uint64_t copy_seq;
} replay;

static live *find(replay *r, uint64_t id)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->v[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->n && r->v[lo].id == id ? &r->v[lo] : NULL;
}

static void parse_chunk(const char *p, rp_spool_chunk *c)
{
    uint16_t tl, dl;
    uint32_t len;
    memcpy(&c->id, p, 8);
    memcpy(&c->nrows, p + 8, 4);
    memcpy(&c->part_lo, p + 12, 8);
    memcpy(&c->part_hi, p + 20, 8);
    memcpy(&tl, p + 28, 2);
    c->table = p + 30;
    memcpy(&dl, p + 30 + tl, 2);
    c->dbname = p + 32 + tl;
    memcpy(&len, p + 32 + tl + dl, 4);
    c->data = p + 36 + tl + dl;
    c->len = len;
}

static void replay_record(replay *r, const char *p, size_t n)
{
    uint64_t id;
    switch (p[0]) {
    case REC_CHUNK:
        if (n < 1 + 36)
            return;
        memcpy(&id, p + 1, 8);
        if (id >= r->next_id)
            r->next_id = id + 1;
        if (find(r, id))
            return; /* re-declared by a compaction */
        rp_grow((void **)&r->v, &r->cap, r->n + 1, sizeof(live));
        if (r->n > 0 && r->v[r->n - 1].id > id) /* keep sorted (ids grow; be safe) */
            return;
        r->v[r->n++] = (live){id, false, p + 1};
        return;
    case REC_DONE:
        if (n < 9)
            return;
        memcpy(&id, p + 1, 8);
        live *l = find(r, id);
        if (l)
            l->dead = true;
        return;
    case REC_COPY: {
        uint32_t k;
        if (n < 13)
            return;
        memcpy(&r->copy_seq, p + 1, 8);
        memcpy(&k, p + 9, 4);
        if (n < 13 + (size_t)k * 8)
            return;
        r->seq = r->copy_seq > r->seq ? r->copy_seq : r->seq;
        rp_free(r->copy_ids);
        r->copy_ids = rp_calloc(k ? k : 1, 8);
        memcpy(r->copy_ids, p + 13, (size_t)k * 8);
        r->ncopy = k;
        return;
    }
    default:
        return;
    }
}

/* Every whole, intact record of one segment; a torn or corrupt tail ends it. */
static void replay_text(replay *r, const char *text, size_t len)
{
    size_t off = 0;
    while (off + 8 <= len) {
        uint32_t head[2];
        memcpy(head, text + off, 8);
        if (head[0] == 0 || off + 8 + head[0] > len ||
            crc32(0, (const Bytef *)text + off + 8, head[0]) != head[1])
            break;
        replay_record(r, text + off + 8, head[0]);
        off += 8 + head[0];
    }
}

static int read_whole(const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    rp_buf b = RP_BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rp_buf_append(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        rp_buf_fini(&b);
        return -EIO;
    }
    *len = b.len;
    *text = b.data ? b.data : rp_strdup("");
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Segment numbers in dir, ascending. */
static int list_segments(const char *dir, uint64_t **out, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    size_t cap = 0;
    *n = 0;
    *out = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "spool.", 6) != 0)
            continue;
        uint64_t k = strtoull(e->d_name + 6, &end, 10);
        if (*end || end == e->d_name + 6)
            continue;
        rp_grow((void **)out, &cap, *n + 1, sizeof(uint64_t));
        (*out)[(*n)++] = k;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof(uint64_t), cmp_u64);
    return 0;
}

static int load_writer(rp_spool *sp, int64_t *writer)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/writer", sp->dir);
    FILE *f = fopen(path, "r");
    long long w = 0;
    if (f) {
        int ok = fscanf(f, "%lld", &w) == 1 && w > 0;
        fclose(f);
        if (ok) {
            *writer = w;
            return 0;
        }
    }
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    *writer = (int64_t)(r >> 1) | 1;
    char tmp[4100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -errno;
    char text[32];
    int len = snprintf(text, sizeof(text), "%lld\n", (long long)*writer);
    int rc = write(fd, text, (size_t)len) == len && fsync(fd) == 0 ? 0 : -EIO;
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    return rc;
}

static int open_segment(rp_spool *sp, uint64_t k)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/spool.%llu", sp->dir, (unsigned long long)k);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(sp->err, sizeof(sp->err), "could not open spool file \"%.150s\": %s", path,
                 strerror(errno));
        return -errno;
    }
    if (sp->fd >= 0)
        close(sp->fd); /* written, and synced by the caller's next sync */
    sp->fd = fd;
    sp->seg = k;
    sp->seg_bytes = 0;
    return 0;
}

static int take_lock(rp_spool *sp)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/lock", sp->dir);
    sp->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sp->lock_fd < 0)
        return -errno;
    if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(sp->err, sizeof(sp->err), "the folder is in use by another pgreaper process");
        return -EBUSY;
    }
    return 0;
}

/* Live chunks to cb and into the new segment (with the COPY state), so that the older
 * segments can go after the first sync. */
static int hand_over(rp_spool *sp, replay *r, rp_spool_replay_cb cb, void *arg, rp_spool_state *st)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        if (r->v[i].dead)
            continue;
        rp_spool_chunk c;
        parse_chunk(r->v[i].rec, &c);
        rc = rp_spool_add(sp, &c);
        cb(arg, &c);
        st->chunks++;
        st->rows += c.nrows;
    }
    st->unknown_ids = rp_calloc(r->ncopy ? r->ncopy : 1, sizeof(uint64_t));
    for (size_t i = 0; i < r->ncopy; i++) {
        live *l = find(r, r->copy_ids[i]);
        if (l && !l->dead)
            st->unknown_ids[st->nunknown++] = r->copy_ids[i];
    }
    st->unknown_seq = st->nunknown ? r->copy_seq : 0;
    return rc == 0 ? rp_spool_copy(sp, r->seq, st->unknown_ids, st->nunknown) : rc;
}

int rp_spool_open(const char *dir, uv_loop_t *loop, rp_spool_replay_cb cb, void *arg,
                  rp_spool_state *st, rp_spool **out, char *err, size_t errlen)
{
    memset(st, 0, sizeof(*st));
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "could not create spool folder \"%s\": %s", dir, strerror(errno));
        return -errno;
    }
    rp_spool *sp = rp_calloc(1, sizeof(*sp));
    sp->loop = loop;
    sp->dir = rp_strdup(dir);
    sp->fd = -1;
    uint64_t *segs = NULL;
    size_t nsegs = 0;
    int rc = take_lock(sp);
    if (rc == 0)
        rc = load_writer(sp, &st->writer);
    if (rc == 0)
        rc = list_segments(dir, &segs, &nsegs);
    replay r = {0};
    for (size_t i = 0; rc == 0 && i < nsegs; i++) {
        char path[4096];
        size_t len;
        snprintf(path, sizeof(path), "%s/spool.%llu", dir, (unsigned long long)segs[i]);
        rp_grow((void **)&r.texts, &r.cap_texts, r.ntexts + 1, sizeof(char *));
        rc = read_whole(path, &r.texts[r.ntexts], &len);
        if (rc == 0) {
            replay_text(&r, r.texts[r.ntexts++], len);
        }
    }
    if (rc == 0)
        rc = open_segment(sp, nsegs ? segs[nsegs - 1] + 1 : 1);
    if (rc == 0) {
        rc = hand_over(sp, &r, cb, arg, st);
        st->seq = r.seq;
        st->next_id = r.next_id ? r.next_id : 1;
        sp->drop_below = nsegs ? sp->seg : 0; /* the replayed ones, after the first sync */
        sp->bytes = sp->seg_bytes;
    }
    for (size_t i = 0; i < r.ntexts; i++)
        rp_free(r.texts[i]);
    rp_free(r.texts);
    rp_free(r.v);
    rp_free(r.copy_ids);
    rp_free(segs);
    if (rc < 0) {
        snprintf(err, errlen, "spool \"%s\": %s", dir, sp->err[0] ? sp->err : strerror(-rc));
        rp_free(st->unknown_ids);
        st->unknown_ids = NULL;
        if (sp->fd >= 0)
            close(sp->fd);
        if (sp->lock_fd > 0)
            close(sp->lock_fd);
        rp_free(sp->dir);
        rp_free(sp);
        return rc;
    }
    *out = sp;
    return 0;
}

/*-------------------------------------------------------------------------
 * Sync, compaction, close
 *-------------------------------------------------------------------------
 */

/* Delete the segments numbered below `below` (their live chunks are in a newer one). */
static void drop_old(const char *dir, uint64_t below)
{
    uint64_t *segs = NULL;
    size_t n = 0;
    if (list_segments(dir, &segs, &n) == 0) {
        for (size_t i = 0; i < n && segs[i] < below; i++) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/spool.%llu", dir, (unsigned long long)segs[i]);
            (void)unlink(path);
        }
    }
    rp_free(segs);
}

static void sync_work(uv_work_t *w)
{
    rp_spool *sp = w->data;
    sp->work_err = fsync(sp->work_fd) < 0 ? errno : 0;
    if (!sp->work_err && sp->work_drop_below)
        drop_old(sp->dir, sp->work_drop_below);
}

static void free_spool(rp_spool *sp)
{
    if (sp->fd >= 0) {
        if (fsync(sp->fd) == 0 && sp->drop_below)
            drop_old(sp->dir, sp->drop_below);
        close(sp->fd);
    }
    if (sp->lock_fd > 0)
        close(sp->lock_fd);
    rp_buf_fini(&sp->rec);
    rp_free(sp->dir);
    rp_free(sp);
}

static void sync_done(uv_work_t *w, int status)
{
    rp_spool *sp = w->data;
    sp->working = false;
    if (sp->work_err)
        snprintf(sp->err, sizeof(sp->err), "could not sync the spool in \"%.150s\": %s", sp->dir,
                 strerror(sp->work_err));
    else if (sp->work_drop_below && sp->work_drop_below == sp->drop_below)
        sp->drop_below = 0;
    if (sp->closing)
        free_spool(sp);
}

void rp_spool_sync(rp_spool *sp)
{
    if (sp->working || (!sp->dirty && !sp->drop_below))
        return;
    sp->dirty = false;
    sp->working = true;
    sp->work_fd = sp->fd;
    sp->work_drop_below = sp->drop_below;
    sp->work.data = sp;
    if (uv_queue_work(sp->loop, &sp->work, sync_work, sync_done) < 0)
        sp->working = false;
}

bool rp_spool_wants_compaction(const rp_spool *sp, uint64_t live_bytes)
{
    return !sp->working && sp->seg_bytes > SEG_MIN_BYTES && sp->seg_bytes > 2 * live_bytes;
}

int rp_spool_compact(rp_spool *sp, uint64_t seq, rp_spool_next_cb next, void *arg)
{
    if (sp->working)
        return -EBUSY;
    uint64_t k = sp->seg + 1;
    int rc = open_segment(sp, k);
    if (rc < 0)
        return rc;
    rc = rp_spool_copy(sp, seq, NULL, 0);
    rp_spool_chunk c;
    while (rc == 0 && next(arg, &c))
        rc = rp_spool_add(sp, &c);
    if (rc == 0) {
        sp->drop_below = k;
        sp->bytes = sp->seg_bytes; /* the older ones go after the next sync */
        rp_spool_sync(sp);
    }
    return rc;
}

const char *rp_spool_error(const rp_spool *sp)
{
    return sp->err;
}

uint64_t rp_spool_bytes(const rp_spool *sp)
{
    return sp->bytes;
}

void rp_spool_close(rp_spool *sp)
{
    sp->closing = true;
    if (!sp->working)
        free_spool(sp);
}
