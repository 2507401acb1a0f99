/* SPDX-License-Identifier: PostgreSQL
 *
 * change_events: see changes.h. Each input keeps a map from an object's identity (its
 * identifying columns joined) to its compared value (its hash columns joined) and the
 * fetch round that last saw it; an object not seen in the current round was dropped.
 */
#include "collect/changes.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/buf.h"
#include "common/compiler.h"
#include "common/hash.h"
#include "common/mem.h"

#define SEP '\x1f' /* between joined column values */

typedef struct spec {
    const char *input;                 /* hash metric */
    const char *output;                /* where its changes are stored */
    const char *target;                /* in change_events' details */
    const char *ident[4];              /* identifying columns (NULL-terminated) */
    const char *value[3];              /* compared columns (NULL-terminated; none: presence only) */
    const char *create, *alter, *drop; /* event names; NULL: not detected */
} spec;

static const spec specs[RP_CHANGES_NINPUTS] = {
    {"sproc_hashes",
     "sproc_changes",
     "functions",
     {"tag_sproc", "tag_oid"},
     {"md5"},
     "create",
     "alter",
     "drop"},
    {"table_hashes", "table_changes", "tables", {"tag_table"}, {"md5"}, "create", "alter", "drop"},
    {"index_hashes",
     "index_changes",
     "indexes",
     {"tag_index"},
     {"md5", "is_valid"},
     "create",
     "alter",
     "drop"},
    {"configuration_hashes",
     "configuration_changes",
     "settings",
     {"tag_setting"},
     {"value"},
     "create",
     "alter",
     NULL},
    {"privilege_changes",
     "privilege_changes",
     "privileges",
     {"object_type", "tag_role", "tag_object", "privilege_type"},
     {NULL},
     "GRANT",
     NULL,
     "REVOKE"},
};

typedef struct entry {
    struct entry *next;
    uint64_t h;
    unsigned round;
    char *val;
    char key[];
} entry;

typedef struct map {
    entry **b;
    size_t nb, n;
    bool learned; /* fed once: from now on, new objects are changes */
} map;

struct rp_changes {
    map maps[RP_CHANGES_NINPUTS];
    int counts[RP_CHANGES_NINPUTS][3]; /* created, altered, dropped in this fetch */
    unsigned round;
};

/*-------------------------------------------------------------------------
 * The map
 *-------------------------------------------------------------------------
 */

static entry *map_find(const map *m, const char *key, uint64_t h)
{
    for (entry *e = m->nb ? m->b[h & (m->nb - 1)] : NULL; e; e = e->next)
        if (e->h == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static void map_grow(map *m)
{
    size_t nb = m->nb ? m->nb * 2 : 64;
    entry **b = rp_calloc(nb, sizeof(entry *));
    for (size_t i = 0; i < m->nb; i++) {
        for (entry *e = m->b[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->h & (nb - 1)];
            b[e->h & (nb - 1)] = e;
        }
    }
    rp_free(m->b);
    m->b = b;
    m->nb = nb;
}

static void map_put(map *m, const char *key, uint64_t h, const char *val, unsigned round)
{
    if (m->n >= m->nb)
        map_grow(m);
    size_t klen = strlen(key);
    entry *e = rp_malloc(sizeof(entry) + klen + 1);
    memcpy(e->key, key, klen + 1);
    e->h = h;
    e->round = round;
    e->val = rp_strdup(val);
    e->next = m->b[h & (m->nb - 1)];
    m->b[h & (m->nb - 1)] = e;
    m->n++;
}

static void map_fini(map *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        for (entry *e = m->b[i], *next; e; e = next) {
            next = e->next;
            rp_free(e->val);
            rp_free(e);
        }
    }
    rp_free(m->b);
}

/*-------------------------------------------------------------------------
 * Rows out
 *-------------------------------------------------------------------------
 */

/* The changed rows of res (row indexes and their events) as one batch: every column of
 * the hash row and "event". */
static void emit_rows(const char *metric, const PGresult *res, const int *rows, const char **events,
                      size_t n, rp_changes_emit_fn emit, void *arg)
{
    if (n == 0)
        return;
    int nf = PQnfields(res);
    rp_column *cols = rp_calloc((size_t)nf + 1, sizeof(rp_column));
    const char **vals = rp_calloc(n * ((size_t)nf + 1), sizeof(char *));
    for (int c = 0; c < nf; c++)
        cols[c] = (rp_column){PQfname(res, c), 0, rp_value_kind_for_oid(PQftype(res, c))};
    cols[nf] = (rp_column){"event", 0, RP_VAL_TEXT};
    for (size_t i = 0; i < n; i++) {
        const char **row = vals + i * ((size_t)nf + 1);
        for (int c = 0; c < nf; c++)
            row[c] = PQgetisnull(res, rows[i], c) ? NULL : PQgetvalue(res, rows[i], c);
        row[nf] = events[i];
    }
    rp_batch b;
    rp_batch_init_values(&b, cols, (size_t)nf + 1, n, vals);
    emit(arg, metric, &b);
    rp_batch_fini(&b);
    rp_free(vals);
    rp_free(cols);
}

/* Dropped objects: epoch_ns, event and the identifying columns (split from the keys). */
static void emit_drops(const spec *sp, char **keys, size_t n, int64_t now_ns,
                       rp_changes_emit_fn emit, void *arg)
{
    if (n == 0)
        return;
    size_t nid = 0;
    while (nid < RP_ARRAY_LEN(sp->ident) && sp->ident[nid])
        nid++;
    rp_column cols[6] = {{"epoch_ns", 0, RP_VAL_INT}, {"event", 0, RP_VAL_TEXT}};
    for (size_t i = 0; i < nid; i++)
        cols[2 + i] = (rp_column){sp->ident[i], 0, RP_VAL_TEXT};
    const char **vals = rp_calloc(n * (nid + 2), sizeof(char *));
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)now_ns);
    for (size_t i = 0; i < n; i++) {
        const char **row = vals + i * (nid + 2);
        row[0] = ts;
        row[1] = sp->drop;
        char *p = keys[i];
        for (size_t k = 0; k < nid; k++) { /* the key is "a\x1fb\x1f...": split it in place */
            row[2 + k] = p;
            char *sep = strchr(p, SEP);
            if (sep)
                *sep = '\0', p = sep + 1;
        }
    }
    rp_batch b;
    rp_batch_init_values(&b, cols, nid + 2, n, vals);
    emit(arg, sp->output, &b);
    rp_batch_fini(&b);
    rp_free(vals);
}

/*-------------------------------------------------------------------------
 * Comparing
 *-------------------------------------------------------------------------
 */

static int find_cols(const PGresult *res, const char *const *names, size_t max, int *out)
{
    size_t n = 0;
    for (; n < max && names[n]; n++) {
        out[n] = PQfnumber(res, names[n]);
        if (out[n] < 0)
            return -EINVAL;
    }
    return (int)n;
}

static void join(rp_buf *b, const PGresult *res, int row, const int *cols, int n)
{
    rp_buf_reset(b);
    for (int i = 0; i < n; i++) {
        if (i)
            rp_buf_putc(b, SEP);
        rp_buf_puts(b, PQgetvalue(res, row, cols[i]));
    }
    rp_buf_putc(b, '\0');
}

/* Objects of map k not seen in this round: dropped. Their keys go to *keys (owned). */
static size_t collect_drops(rp_changes *c, int k, char ***keys)
{
    map *m = &c->maps[k];
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < m->nb; i++) {
        for (entry **pe = &m->b[i]; *pe;) {
            entry *e = *pe;
            if (e->round == c->round) {
                pe = &e->next;
                continue;
            }
            *pe = e->next;
            m->n--;
            rp_grow((void **)keys, &cap, n + 1, sizeof(char *));
            (*keys)[n++] = rp_strdup(e->key);
            rp_free(e->val);
            rp_free(e);
        }
    }
    return n;
}

/* Compare one row with the state; the event it makes, or NULL. */
static const char *compare_row(rp_changes *c, int k, const char *key, const char *val)
{
    const spec *sp = &specs[k];
    map *m = &c->maps[k];
    uint64_t h = rp_hash_str(RP_HASH_INIT, key);
    entry *e = map_find(m, key, h);
    if (!e) {
        map_put(m, key, h, val, c->round);
        if (!m->learned)
            return NULL;
        c->counts[k][0]++;
        return sp->create;
    }
    e->round = c->round;
    if (!sp->alter || strcmp(e->val, val) == 0)
        return NULL;
    rp_free(e->val);
    e->val = rp_strdup(val);
    c->counts[k][1]++;
    return sp->alter;
}

int rp_changes_feed(rp_changes *c, int k, const PGresult *res, int64_t now_ns,
                    rp_changes_emit_fn emit, void *arg)
{
    const spec *sp = &specs[k];
    int idc[4], vc[3];
    int nid = find_cols(res, sp->ident, RP_ARRAY_LEN(sp->ident), idc);
    int nv = find_cols(res, sp->value, RP_ARRAY_LEN(sp->value), vc);
    if (nid <= 0 || nv < 0)
        return -EINVAL;
    c->round++;
    int nrows = PQntuples(res);
    int *rows = rp_calloc((size_t)nrows + 1, sizeof(int));
    const char **events = rp_calloc((size_t)nrows + 1, sizeof(char *));
    size_t n = 0;
    rp_buf key = RP_BUF_INIT, val = RP_BUF_INIT;
    for (int r = 0; r < nrows; r++) {
        join(&key, res, r, idc, nid);
        join(&val, res, r, vc, nv);
        const char *ev = compare_row(c, k, key.data, val.data);
        if (ev)
            rows[n] = r, events[n++] = ev;
    }
    emit_rows(sp->output, res, rows, events, n, emit, arg);
    char **keys = NULL;
    size_t ndrop = c->maps[k].learned && sp->drop ? collect_drops(c, k, &keys) : 0;
    c->counts[k][2] += (int)ndrop;
    emit_drops(sp, keys, ndrop, now_ns, emit, arg);
    for (size_t i = 0; i < ndrop; i++)
        rp_free(keys[i]);
    rp_free(keys);
    c->maps[k].learned = true;
    rp_buf_fini(&key);
    rp_buf_fini(&val);
    rp_free(rows);
    rp_free(events);
    return 0;
}

/*-------------------------------------------------------------------------
 * Interface
 *-------------------------------------------------------------------------
 */

rp_changes *rp_changes_new(void)
{
    return rp_calloc(1, sizeof(rp_changes));
}

void rp_changes_free(rp_changes *c)
{
    if (!c)
        return;
    for (int k = 0; k < RP_CHANGES_NINPUTS; k++)
        map_fini(&c->maps[k]);
    rp_free(c);
}

const char *rp_changes_input(int k)
{
    return specs[k].input;
}

const char *rp_changes_output(int k)
{
    return specs[k].output;
}

void rp_changes_begin(rp_changes *c)
{
    memset(c->counts, 0, sizeof(c->counts));
}

void rp_changes_finish(rp_changes *c, int64_t now_ns, rp_changes_emit_fn emit, void *arg)
{
    rp_buf details = RP_BUF_INIT;
    int total = 0;
    for (int k = 0; k < RP_CHANGES_NINPUTS; k++) {
        rp_buf_printf(&details, "%s%s: %d/%d/%d", k ? " " : "", specs[k].target, c->counts[k][0],
                      c->counts[k][1], c->counts[k][2]);
        total += c->counts[k][0] + c->counts[k][1] + c->counts[k][2];
    }
    if (total > 0) {
        static const rp_column cols[] = {{"epoch_ns", 0, RP_VAL_INT}, {"details", 0, RP_VAL_TEXT}};
        char ts[24];
        snprintf(ts, sizeof(ts), "%lld", (long long)now_ns);
        const char *vals[2] = {ts, details.data};
        rp_batch b;
        rp_batch_init_values(&b, cols, 2, 1, vals);
        emit(arg, "change_events", &b);
        rp_batch_fini(&b);
    }
    rp_buf_fini(&details);
    rp_changes_begin(c);
}
