/* SPDX-License-Identifier: PostgreSQL
 *
 * Profile builder and gzip encoder: see pbuild.h.
 */
#include "pprof/pbuild.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include "common/clock.h"
#include "common/hash.h"
#include "common/mem.h"
#include "pprof/profile.pb-c.h"
#include "pprof/sym.h"

typedef struct pmap_ent {
    uint64_t key; /* hash or address; slots with val 0 are empty */
    uint64_t val;
} pmap_ent;

typedef struct pmap {
    pmap_ent *e;
    size_t cap, n; /* cap is a power of two */
} pmap;

typedef struct ploc {
    uintptr_t addr;
    int64_t synthetic; /* string index of a synthetic frame's name, 0 for real code */
    uint64_t mapping_id;
    size_t line_off, nlines; /* in b->lines: innermost (inlined) first, the caller last */
} ploc;

typedef struct pline {
    uint64_t function_id;
    int64_t line;
} pline;

#define MAX_INLINED RP_LINES_MAX /* frames of one location: inlined functions and caller */

typedef struct psample {
    size_t loc_off, nlocs, val_off, label_off, nlabels;
} psample;

typedef struct plabel {
    int64_t key, str, num, unit;
} plabel;

struct rp_pbuild {
    char **strs;
    size_t nstrs, cap_strs;
    pmap str_map;
    int64_t *types; /* pairs (type, unit) */
    size_t ntypes, cap_types;
    int64_t period_type[2], period, default_type, duration_ns, drop_frames, time_ns;
    int64_t *comments;
    size_t ncomments, cap_comments;
    ploc *locs;
    size_t nlocs, cap_locs;
    pmap loc_map;
    psample *samples;
    size_t nsamples, cap_samples;
    uint64_t *sloc;
    size_t nsloc, cap_sloc;
    int64_t *vals;
    size_t nvals, cap_vals;
    plabel *labels;
    size_t nlabels, cap_labels;
    int64_t *fn_names; /* function id - 1 → name index, then file index */
    size_t nfns, cap_fns;
    pmap fn_map;
    pline *lines;
    size_t nlines, cap_lines;
};

static uint64_t hash_bytes(const char *s)
{
    return rp_hash_str(RP_HASH_INIT, s);
}

static uint64_t mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    return k ^ (k >> 33);
}

static void pmap_grow(pmap *m)
{
    pmap old = *m;
    m->cap = old.cap ? old.cap * 2 : 256;
    m->e = rp_calloc(m->cap, sizeof(pmap_ent));
    m->n = 0;
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.e[i].val)
            continue;
        size_t j = mix(old.e[i].key) & (m->cap - 1);
        while (m->e[j].val)
            j = (j + 1) & (m->cap - 1);
        m->e[j] = old.e[i];
        m->n++;
    }
    free(old.e);
}

/* First slot for key at or after *pos; returns the slot (val 0 = end of the chain). */
static pmap_ent *pmap_probe(pmap *m, uint64_t key, size_t *pos)
{
    for (;; *pos = (*pos + 1) & (m->cap - 1)) {
        pmap_ent *e = &m->e[*pos];
        if (!e->val || e->key == key)
            return e;
    }
}

static pmap_ent *pmap_start(pmap *m, uint64_t key, size_t *pos)
{
    if ((m->n + 1) * 4 > m->cap * 3)
        pmap_grow(m);
    *pos = mix(key) & (m->cap - 1);
    return pmap_probe(m, key, pos);
}

rp_pbuild *rp_pbuild_new(void)
{
    rp_pbuild *b = rp_calloc(1, sizeof(*b));
    b->time_ns = rp_clock_wall_ns();
    rp_grow((void **)&b->strs, &b->cap_strs, 1, sizeof(char *));
    b->strs[b->nstrs++] = rp_strdup("");
    return b;
}

void rp_pbuild_free(rp_pbuild *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nstrs; i++)
        free(b->strs[i]);
    free(b->strs);
    free(b->str_map.e);
    free(b->types);
    free(b->comments);
    free(b->locs);
    free(b->loc_map.e);
    free(b->samples);
    free(b->sloc);
    free(b->vals);
    free(b->labels);
    free(b->fn_names);
    free(b->fn_map.e);
    free(b->lines);
    free(b);
}

int64_t rp_pbuild_str(rp_pbuild *b, const char *s)
{
    if (!s || !*s)
        return 0;
    uint64_t h = hash_bytes(s);
    size_t pos;
    pmap_ent *e = pmap_start(&b->str_map, h, &pos);
    while (e->val && strcmp(b->strs[e->val], s) != 0) {
        pos = (pos + 1) & (b->str_map.cap - 1);
        e = pmap_probe(&b->str_map, h, &pos);
    }
    if (e->val)
        return (int64_t)e->val;
    rp_grow((void **)&b->strs, &b->cap_strs, b->nstrs + 1, sizeof(char *));
    b->strs[b->nstrs] = rp_strdup(s);
    *e = (pmap_ent){h, b->nstrs};
    b->str_map.n++;
    return (int64_t)b->nstrs++;
}

void rp_pbuild_sample_type(rp_pbuild *b, const char *type, const char *unit)
{
    rp_grow((void **)&b->types, &b->cap_types, 2 * (b->ntypes + 1), sizeof(int64_t));
    b->types[2 * b->ntypes] = rp_pbuild_str(b, type);
    b->types[2 * b->ntypes + 1] = rp_pbuild_str(b, unit);
    b->ntypes++;
}

void rp_pbuild_period(rp_pbuild *b, const char *type, const char *unit, int64_t period)
{
    b->period_type[0] = rp_pbuild_str(b, type);
    b->period_type[1] = rp_pbuild_str(b, unit);
    b->period = period;
}

void rp_pbuild_default_type(rp_pbuild *b, const char *type)
{
    b->default_type = rp_pbuild_str(b, type);
}

void rp_pbuild_duration(rp_pbuild *b, int64_t ns)
{
    b->duration_ns = ns;
}

void rp_pbuild_comment(rp_pbuild *b, const char *text)
{
    rp_grow((void **)&b->comments, &b->cap_comments, b->ncomments + 1, sizeof(int64_t));
    b->comments[b->ncomments++] = rp_pbuild_str(b, text);
}

void rp_pbuild_drop_frames(rp_pbuild *b, const char *regex)
{
    b->drop_frames = rp_pbuild_str(b, regex);
}

static uint64_t add_loc(rp_pbuild *b, uintptr_t addr, int64_t synthetic)
{
    rp_grow((void **)&b->locs, &b->cap_locs, b->nlocs + 1, sizeof(ploc));
    b->locs[b->nlocs] = (ploc){.addr = addr, .synthetic = synthetic};
    return ++b->nlocs;
}

uint64_t rp_pbuild_loc_addr(rp_pbuild *b, uintptr_t addr)
{
    size_t pos;
    pmap_ent *e = pmap_start(&b->loc_map, addr, &pos);
    if (e->val)
        return e->val;
    *e = (pmap_ent){addr, add_loc(b, addr, 0)};
    b->loc_map.n++;
    return e->val;
}

uint64_t rp_pbuild_loc_named(rp_pbuild *b, const char *name)
{
    int64_t idx = rp_pbuild_str(b, name);
    uint64_t key = ~(uint64_t)idx; /* never a code address */
    size_t pos;
    pmap_ent *e = pmap_start(&b->loc_map, key, &pos);
    if (e->val)
        return e->val;
    *e = (pmap_ent){key, add_loc(b, 0, idx)};
    b->loc_map.n++;
    return e->val;
}

size_t rp_pbuild_stack(rp_pbuild *b, const uintptr_t *pcs, size_t n, bool leaf_exact,
                       uint64_t *locs)
{
    for (size_t i = 0; i < n; i++)
        locs[i] = rp_pbuild_loc_addr(b, (i == 0 && leaf_exact) ? pcs[i] : pcs[i] - 1);
    return n;
}

size_t rp_pbuild_sample(rp_pbuild *b, const uint64_t *locs, size_t nlocs, const int64_t *values)
{
    rp_grow((void **)&b->samples, &b->cap_samples, b->nsamples + 1, sizeof(psample));
    rp_grow((void **)&b->sloc, &b->cap_sloc, b->nsloc + nlocs + 1, sizeof(uint64_t));
    rp_grow((void **)&b->vals, &b->cap_vals, b->nvals + b->ntypes + 1, sizeof(int64_t));
    psample *s = &b->samples[b->nsamples];
    *s = (psample){
        .loc_off = b->nsloc, .nlocs = nlocs, .val_off = b->nvals, .label_off = b->nlabels};
    if (nlocs)
        memcpy(b->sloc + b->nsloc, locs, nlocs * sizeof(uint64_t));
    memcpy(b->vals + b->nvals, values, b->ntypes * sizeof(int64_t));
    b->nsloc += nlocs;
    b->nvals += b->ntypes;
    return b->nsamples++;
}

static void add_label(rp_pbuild *b, size_t sample, plabel l)
{
    psample *s = &b->samples[sample];
    if (sample + 1 != b->nsamples) /* labels belong to the newest sample */
        rp_panic("pprof: label for a sample that is not the newest");
    rp_grow((void **)&b->labels, &b->cap_labels, b->nlabels + 1, sizeof(plabel));
    b->labels[b->nlabels++] = l;
    s->nlabels++;
}

void rp_pbuild_label_str(rp_pbuild *b, size_t sample, const char *key, const char *val)
{
    add_label(b, sample, (plabel){.key = rp_pbuild_str(b, key), .str = rp_pbuild_str(b, val)});
}

void rp_pbuild_label_num(rp_pbuild *b, size_t sample, const char *key, int64_t num,
                         const char *unit)
{
    add_label(b, sample,
              (plabel){.key = rp_pbuild_str(b, key), .num = num, .unit = rp_pbuild_str(b, unit)});
}

/* A function is a name in a file: static functions of one name in two files are two. */
static uint64_t function_id(rp_pbuild *b, const char *name, const char *file)
{
    int64_t idx = rp_pbuild_str(b, name), fidx = rp_pbuild_str(b, file);
    uint64_t key = ((uint64_t)idx << 32) | (uint64_t)fidx;
    size_t pos;
    pmap_ent *e = pmap_start(&b->fn_map, key, &pos);
    if (e->val)
        return e->val;
    rp_grow((void **)&b->fn_names, &b->cap_fns, 2 * (b->nfns + 1), sizeof(int64_t));
    b->fn_names[2 * b->nfns] = idx;
    b->fn_names[2 * b->nfns + 1] = fidx;
    b->nfns++;
    *e = (pmap_ent){key, b->nfns};
    b->fn_map.n++;
    return b->nfns;
}

static void add_line(rp_pbuild *b, ploc *l, uint64_t function_id, int64_t line)
{
    rp_grow((void **)&b->lines, &b->cap_lines, b->nlines + 1, sizeof(pline));
    b->lines[b->nlines++] = (pline){function_id, line};
    l->nlines++;
}

/* A real location's lines: DWARF's frames where the module has them (the outermost named
 * by its ELF symbol, as without DWARF), else the ELF symbol alone. */
static void resolve_lines(rp_pbuild *b, rp_sym *sym, ploc *l, const rp_sym_result *r,
                          const char *name)
{
    rp_line_frame fr[MAX_INLINED];
    int n = rp_sym_lines(sym, l->addr, fr, MAX_INLINED);
    l->line_off = b->nlines;
    if (n == 0) {
        add_line(b, l, function_id(b, name, NULL), 0);
        return;
    }
    for (int k = 0; k < n; k++) {
        bool outer = k == n - 1;
        const char *fn = outer && r->name ? name : fr[k].function ? fr[k].function : name;
        add_line(b, l, function_id(b, fn, fr[k].file), fr[k].line);
    }
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Name for addr: the symbol, else "<module>+0x<file offset>", else "0x<addr>". */
static void name_of(rp_sym *sym, uintptr_t addr, rp_sym_result *r, char *out, size_t len)
{
    if (rp_sym_lookup(sym, addr, r) == 0)
        snprintf(out, len, "%s", r->name);
    else if (r->module >= 0)
        snprintf(out, len, "%s+0x%lx", base_name(rp_sym_module_at(sym, (size_t)r->module)->path),
                 (unsigned long)r->file_off);
    else
        snprintf(out, len, "0x%lx", (unsigned long)addr);
}

void rp_pbuild_symbolize(uintptr_t addr, rp_buf *out)
{
    rp_sym *sym = rp_sym_acquire();
    rp_sym_result r;
    char name[512];
    name_of(sym, addr, &r, name, sizeof(name));
    rp_buf_puts(out, name);
    if (r.name)
        rp_buf_printf(out, "+0x%lx", (unsigned long)r.sym_off);
    rp_sym_release(sym);
}

void rp_pbuild_text_stack(rp_buf *out, const uintptr_t *pcs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rp_buf_printf(out, " %#lx", (unsigned long)pcs[i]);
    rp_buf_putc(out, '\n');
    for (size_t i = 0; i < n; i++) {
        rp_buf_printf(out, "#\t%#lx\t", (unsigned long)(pcs[i] - 1));
        rp_pbuild_symbolize(pcs[i] - 1, out);
        rp_buf_putc(out, '\n');
    }
    rp_buf_putc(out, '\n');
}

/* Resolve every real location; mod_ids[i] receives the mapping id of module i (0 = unused). */
static void symbolize_all(rp_pbuild *b, rp_sym *sym, uint64_t *mod_ids, uint64_t *nmaps)
{
    char name[512];
    *nmaps = 1;
    if (rp_sym_nmodules(sym))
        mod_ids[0] = 1;
    for (size_t i = 0; i < b->nlocs; i++) {
        ploc *l = &b->locs[i];
        if (l->synthetic) {
            l->line_off = b->nlines;
            add_line(b, l, function_id(b, b->strs[l->synthetic], NULL), 0);
            continue;
        }
        rp_sym_result r;
        name_of(sym, l->addr, &r, name, sizeof(name));
        resolve_lines(b, sym, l, &r, name);
        if (r.module >= 0 && !mod_ids[r.module])
            mod_ids[r.module] = ++*nmaps;
        l->mapping_id = r.module >= 0 ? mod_ids[r.module] : 0;
    }
}

/* protobuf-c output buffer that deflates into an rp_buf (gzip wrapper). */
typedef struct gz_sink {
    ProtobufCBuffer base;
    z_stream z;
    rp_buf *out;
    int err;
} gz_sink;

static void gz_run(gz_sink *g, const uint8_t *data, size_t len, int flush)
{
    g->z.next_in = (Bytef *)data;
    g->z.avail_in = (uInt)len;
    do {
        rp_buf_reserve(g->out, 65536);
        g->z.next_out = (Bytef *)g->out->data + g->out->len;
        g->z.avail_out = (uInt)(g->out->cap - g->out->len - 1);
        size_t before = g->z.avail_out;
        int rc = deflate(&g->z, flush);
        g->out->len += before - g->z.avail_out;
        if (rc == Z_STREAM_ERROR) {
            g->err = -EIO;
            return;
        }
        if (rc == Z_STREAM_END)
            return;
    } while (g->z.avail_in > 0 || g->z.avail_out == 0 || flush == Z_FINISH);
}

static void gz_append(ProtobufCBuffer *buf, size_t len, const uint8_t *data)
{
    gz_sink *g = (gz_sink *)buf;
    if (!g->err && len)
        gz_run(g, data, len, Z_NO_FLUSH);
}

typedef Perftools__Profiles__Profile PbProfile;

typedef struct pb_parts {
    Perftools__Profiles__ValueType *types, **type_ptrs, period_type;
    Perftools__Profiles__Sample *samples, **sample_ptrs;
    Perftools__Profiles__Label *labels, **label_ptrs;
    Perftools__Profiles__Location *locs, **loc_ptrs;
    Perftools__Profiles__Line *lines, **line_ptrs;
    Perftools__Profiles__Function *fns, **fn_ptrs;
    Perftools__Profiles__Mapping *maps, **map_ptrs;
} pb_parts;

static void pb_values(rp_pbuild *b, PbProfile *p, pb_parts *x)
{
    x->types = rp_calloc(b->ntypes + 1, sizeof(*x->types));
    x->type_ptrs = rp_calloc(b->ntypes + 1, sizeof(void *));
    for (size_t i = 0; i < b->ntypes; i++) {
        perftools__profiles__value_type__init(&x->types[i]);
        x->types[i].type = b->types[2 * i];
        x->types[i].unit = b->types[2 * i + 1];
        x->type_ptrs[i] = &x->types[i];
    }
    p->n_sample_type = b->ntypes;
    p->sample_type = x->type_ptrs;
    perftools__profiles__value_type__init(&x->period_type);
    x->period_type.type = b->period_type[0];
    x->period_type.unit = b->period_type[1];
    p->period_type = &x->period_type;
}

static void pb_labels(rp_pbuild *b, pb_parts *x)
{
    x->labels = rp_calloc(b->nlabels + 1, sizeof(*x->labels));
    x->label_ptrs = rp_calloc(b->nlabels + 1, sizeof(void *));
    for (size_t i = 0; i < b->nlabels; i++) {
        perftools__profiles__label__init(&x->labels[i]);
        x->labels[i].key = b->labels[i].key;
        x->labels[i].str = b->labels[i].str;
        x->labels[i].num = b->labels[i].num;
        x->labels[i].num_unit = b->labels[i].unit;
        x->label_ptrs[i] = &x->labels[i];
    }
}

static void pb_samples(rp_pbuild *b, PbProfile *p, pb_parts *x)
{
    pb_labels(b, x);
    x->samples = rp_calloc(b->nsamples + 1, sizeof(*x->samples));
    x->sample_ptrs = rp_calloc(b->nsamples + 1, sizeof(void *));
    for (size_t i = 0; i < b->nsamples; i++) {
        Perftools__Profiles__Sample *s = &x->samples[i];
        const psample *ps = &b->samples[i];
        perftools__profiles__sample__init(s);
        s->n_location_id = ps->nlocs;
        s->location_id = b->sloc + ps->loc_off;
        s->n_value = b->ntypes;
        s->value = b->vals + ps->val_off;
        s->n_label = ps->nlabels;
        s->label = x->label_ptrs + ps->label_off;
        x->sample_ptrs[i] = s;
    }
    p->n_sample = b->nsamples;
    p->sample = x->sample_ptrs;
}

static void pb_locations(rp_pbuild *b, PbProfile *p, pb_parts *x)
{
    size_t n = b->nlocs;
    x->locs = rp_calloc(n + 1, sizeof(*x->locs));
    x->loc_ptrs = rp_calloc(n + 1, sizeof(void *));
    x->lines = rp_calloc(b->nlines + 1, sizeof(*x->lines));
    x->line_ptrs = rp_calloc(b->nlines + 1, sizeof(void *));
    for (size_t k = 0; k < b->nlines; k++) {
        perftools__profiles__line__init(&x->lines[k]);
        x->lines[k].function_id = b->lines[k].function_id;
        x->lines[k].line = b->lines[k].line;
        x->line_ptrs[k] = &x->lines[k];
    }
    for (size_t i = 0; i < n; i++) {
        perftools__profiles__location__init(&x->locs[i]);
        x->locs[i].id = i + 1;
        x->locs[i].mapping_id = b->locs[i].mapping_id;
        x->locs[i].address = b->locs[i].addr;
        x->locs[i].n_line = b->locs[i].nlines;
        x->locs[i].line = &x->line_ptrs[b->locs[i].line_off];
        x->loc_ptrs[i] = &x->locs[i];
    }
    p->n_location = n;
    p->location = x->loc_ptrs;
    x->fns = rp_calloc(b->nfns + 1, sizeof(*x->fns));
    x->fn_ptrs = rp_calloc(b->nfns + 1, sizeof(void *));
    for (size_t i = 0; i < b->nfns; i++) {
        perftools__profiles__function__init(&x->fns[i]);
        x->fns[i].id = i + 1;
        x->fns[i].name = x->fns[i].system_name = b->fn_names[2 * i];
        x->fns[i].filename = b->fn_names[2 * i + 1];
        x->fn_ptrs[i] = &x->fns[i];
    }
    p->n_function = b->nfns;
    p->function = x->fn_ptrs;
}

static void pb_mappings(rp_pbuild *b, rp_sym *sym, const uint64_t *mod_ids, uint64_t nmaps,
                        PbProfile *p, pb_parts *x)
{
    x->maps = rp_calloc(nmaps + 1, sizeof(*x->maps));
    x->map_ptrs = rp_calloc(nmaps + 1, sizeof(void *));
    size_t n = 0;
    for (size_t i = 0; i < rp_sym_nmodules(sym); i++) {
        if (!mod_ids[i])
            continue;
        const rp_sym_module *m = rp_sym_module_at(sym, i);
        Perftools__Profiles__Mapping *pm = &x->maps[mod_ids[i] - 1];
        perftools__profiles__mapping__init(pm);
        pm->id = mod_ids[i];
        pm->memory_start = m->start;
        pm->memory_limit = m->limit;
        pm->file_offset = m->file_offset;
        pm->filename = rp_pbuild_str(b, m->path);
        pm->build_id = rp_pbuild_str(b, m->build_id);
        pm->has_functions = 1;
        pm->has_filenames = pm->has_line_numbers = pm->has_inline_frames = m->lines != NULL;
        x->map_ptrs[mod_ids[i] - 1] = pm;
        n++;
    }
    p->n_mapping = n;
    p->mapping = x->map_ptrs;
}

static void pb_parts_free(pb_parts *x)
{
    void *all[] = {x->types,      x->type_ptrs, x->samples,  x->sample_ptrs, x->labels,
                   x->label_ptrs, x->locs,      x->loc_ptrs, x->lines,       x->line_ptrs,
                   x->fns,        x->fn_ptrs,   x->maps,     x->map_ptrs};
    for (size_t i = 0; i < RP_ARRAY_LEN(all); i++)
        free(all[i]);
}

static int pack_gzip(PbProfile *p, rp_buf *out)
{
    gz_sink g = {.base = {.append = gz_append}, .out = out};
    /* level 1 as Go does (gzip.BestSpeed); 15 + 16 = gzip wrapper */
    if (deflateInit2(&g.z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -EIO;
    perftools__profiles__profile__pack_to_buffer(p, &g.base);
    if (!g.err)
        gz_run(&g, NULL, 0, Z_FINISH);
    deflateEnd(&g.z);
    return g.err;
}

int rp_pbuild_finish(rp_pbuild *b, rp_buf *out)
{
    PbProfile p;
    pb_parts x = {0};
    perftools__profiles__profile__init(&p);
    rp_sym *sym = rp_sym_acquire();
    uint64_t *mod_ids = rp_calloc(rp_sym_nmodules(sym) + 1, sizeof(uint64_t)), nmaps;
    symbolize_all(b, sym, mod_ids, &nmaps);
    pb_mappings(b, sym, mod_ids, nmaps, &p, &x);
    rp_sym_release(sym);
    pb_values(b, &p, &x);
    pb_samples(b, &p, &x);
    pb_locations(b, &p, &x);
    p.period = b->period;
    p.time_nanos = b->time_ns;
    p.duration_nanos = b->duration_ns;
    p.drop_frames = b->drop_frames;
    p.default_sample_type = b->default_type;
    p.n_comment = b->ncomments;
    p.comment = b->comments;
    p.n_string_table = b->nstrs; /* last: pb_mappings may have added strings */
    p.string_table = b->strs;
    int rc = pack_gzip(&p, out);
    pb_parts_free(&x);
    free(mod_ids);
    return rc;
}

Perftools__Profiles__Profile *rp_pbuild_decode(const void *gz, size_t len)
{
    rp_buf raw = RP_BUF_INIT;
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return NULL;
    z.next_in = (Bytef *)gz;
    z.avail_in = (uInt)len;
    int rc;
    do {
        rp_buf_reserve(&raw, 1 << 16);
        z.next_out = (Bytef *)raw.data + raw.len;
        z.avail_out = (uInt)(raw.cap - raw.len - 1);
        size_t before = z.avail_out;
        rc = inflate(&z, Z_NO_FLUSH);
        raw.len += before - z.avail_out;
    } while (rc == Z_OK);
    inflateEnd(&z);
    Perftools__Profiles__Profile *p =
        rc == Z_STREAM_END
            ? perftools__profiles__profile__unpack(NULL, raw.len, (const uint8_t *)raw.data)
            : NULL;
    rp_buf_fini(&raw);
    return p;
}
