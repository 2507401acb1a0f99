/* SPDX-License-Identifier: PostgreSQL
 *
 * Threads and tasks as a goroutine profile: see goroutine.h.
 */
#include "pprof/goroutine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/tasks.h"
#include "pprof/pbuild.h"
#include "pprof/sym.h"
#include "pprof/threads.h"

#define MAX_LABELS 10

typedef struct glabel {
    const char *key;
    char str[80]; /* "" for a numeric label */
    int64_t num;
    const char *unit;
} glabel;

typedef struct gsample {
    const rp_thread_info *thread; /* or NULL for a task */
    const rp_task_info *task;
    char state_frame[48], role_frame[48];
    glabel labels[MAX_LABELS];
    int nlabels;
    char key[512]; /* stack + labels, to aggregate the debug=1 text */
} gsample;

/* Synthetic frame i of a task, innermost first (computed: samples move when sorted). */
static const char *synth(const gsample *g, int i)
{
    return i == 0 ? g->state_frame : i == 1 ? g->role_frame : "event loop";
}

static void add_str(gsample *g, const char *key, const char *val)
{
    if (!val || !*val || g->nlabels == MAX_LABELS)
        return;
    glabel *l = &g->labels[g->nlabels++];
    l->key = key;
    snprintf(l->str, sizeof(l->str), "%s", val);
}

static void add_num(gsample *g, const char *key, int64_t num, const char *unit)
{
    if (g->nlabels == MAX_LABELS)
        return;
    g->labels[g->nlabels++] = (glabel){.key = key, .num = num, .unit = unit};
}

static void from_thread(gsample *g, const rp_thread_info *t)
{
    char state[2] = {t->state, '\0'};
    g->thread = t;
    add_str(g, "kind", "thread");
    add_str(g, "role", t->role);
    add_str(g, "thread", t->name);
    add_str(g, "source", t->source);
    add_str(g, "metric", t->metric);
    add_num(g, "tid", t->tid, NULL);
    add_str(g, "state", state);
    add_str(g, "wchan", t->wchan);
    if (!t->available)
        add_str(g, "stack", "unavailable");
}

static void from_task(gsample *g, const rp_task_info *t)
{
    g->task = t;
    snprintf(g->state_frame, sizeof(g->state_frame), "state:%s", t->state);
    snprintf(g->role_frame, sizeof(g->role_frame), "task:%s", t->role);
    add_str(g, "kind", "task");
    add_str(g, "role", t->role);
    add_str(g, strcmp(t->role, "source") == 0 ? "source" : "name", t->name);
    add_str(g, "metric", t->metric);
    add_str(g, "state", t->state);
    add_num(g, "age_ms", (int64_t)t->age_ms, "milliseconds");
}

typedef struct gset {
    rp_thread_info *threads;
    size_t nthreads;
    rp_task_info *tasks;
    size_t ntasks;
    gsample *s;
    size_t n;
} gset;

static void gset_collect(gset *set)
{
    set->nthreads = rp_threads_dump(&set->threads);
    set->ntasks = rp_task_snapshot(&set->tasks);
    set->s = rp_calloc(set->nthreads + set->ntasks + 1, sizeof(gsample));
    for (size_t i = 0; i < set->nthreads; i++)
        from_thread(&set->s[set->n++], &set->threads[i]);
    for (size_t i = 0; i < set->ntasks; i++)
        from_task(&set->s[set->n++], &set->tasks[i]);
}

static void gset_free(gset *set)
{
    free(set->threads);
    rp_task_snapshot_free(set->tasks, set->ntasks);
    free(set->s);
}

static void proto_sample(rp_pbuild *pb, const gsample *g)
{
    uint64_t locs[RP_STACK_MAX];
    size_t nl = 0;
    int64_t one = 1;
    if (g->thread)
        nl = rp_pbuild_stack(pb, g->thread->pcs, (size_t)g->thread->depth, g->thread->leaf_exact,
                             locs);
    else
        for (; nl < 3; nl++)
            locs[nl] = rp_pbuild_loc_named(pb, synth(g, (int)nl));
    size_t idx = rp_pbuild_sample(pb, locs, nl, &one);
    for (int i = 0; i < g->nlabels; i++) {
        const glabel *l = &g->labels[i];
        if (l->str[0])
            rp_pbuild_label_str(pb, idx, l->key, l->str);
        else
            rp_pbuild_label_num(pb, idx, l->key, l->num, l->unit);
    }
}

static int proto_profile(const gset *set, rp_buf *out)
{
    char comment[128];
    rp_pbuild *pb = rp_pbuild_new();
    rp_pbuild_sample_type(pb, "goroutine", "count");
    rp_pbuild_period(pb, "goroutine", "count", 1);
    snprintf(comment, sizeof(comment), "pgreaper: %zu threads, %zu event-loop tasks", set->nthreads,
             set->ntasks);
    rp_pbuild_comment(pb, comment);
    for (size_t i = 0; i < set->n; i++)
        proto_sample(pb, &set->s[i]);
    int rc = rp_pbuild_finish(pb, out);
    rp_pbuild_free(pb);
    return rc;
}

static int cmp_label(const void *a, const void *b)
{
    return strcmp(((const glabel *)a)->key, ((const glabel *)b)->key);
}

/* debug=1 labels: string labels only (tid and age make every record unique). */
static void text_labels(rp_buf *out, gsample *g)
{
    qsort(g->labels, (size_t)g->nlabels, sizeof(glabel), cmp_label);
    const char *sep = "";
    rp_buf_puts(out, "# labels: {");
    for (int i = 0; i < g->nlabels; i++) {
        if (!g->labels[i].str[0])
            continue;
        rp_buf_printf(out, "%s\"%s\":", sep, g->labels[i].key);
        rp_buf_json_str(out, g->labels[i].str, strlen(g->labels[i].str));
        sep = ", ";
    }
    rp_buf_puts(out, "}\n");
}

static void text_record(rp_buf *out, gsample *g)
{
    if (g->thread && g->thread->depth > 0) {
        for (int i = 0; i < g->thread->depth; i++)
            rp_buf_printf(out, " %#lx", (unsigned long)g->thread->pcs[i]);
    } else {
        rp_buf_puts(out, " 0x0");
    }
    rp_buf_putc(out, '\n');
    text_labels(out, g);
    if (!g->thread) {
        for (int i = 0; i < 3; i++)
            rp_buf_printf(out, "#\t0x0\t%s\n", synth(g, i));
        return;
    }
    for (int i = 0; i < g->thread->depth; i++) {
        uintptr_t pc = g->thread->pcs[i] - (i == 0 && g->thread->leaf_exact ? 0 : 1);
        rp_buf_printf(out, "#\t%#lx\t", (unsigned long)pc);
        rp_pbuild_symbolize(pc, out);
        rp_buf_putc(out, '\n');
    }
}

static void make_key(gsample *g)
{
    rp_buf k = RP_BUF_INIT;
    text_record(&k, g); /* stack and string labels: exactly what the record shows */
    snprintf(g->key, sizeof(g->key), "%s", k.data ? k.data : "");
    rp_buf_fini(&k);
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(((const gsample *)a)->key, ((const gsample *)b)->key);
}

typedef struct grecord {
    gsample *g;
    size_t count;
} grecord;

static int cmp_record(const void *a, const void *b)
{
    const grecord *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->g->key, y->g->key);
}

static void text_debug1(gset *set, rp_buf *out)
{
    grecord *r = rp_calloc(set->n + 1, sizeof(grecord));
    size_t nr = 0;
    for (size_t i = 0; i < set->n; i++)
        make_key(&set->s[i]);
    qsort(set->s, set->n, sizeof(gsample), cmp_key);
    for (size_t i = 0; i < set->n; i++) {
        if (nr && strcmp(r[nr - 1].g->key, set->s[i].key) == 0)
            r[nr - 1].count++;
        else
            r[nr++] = (grecord){&set->s[i], 1};
    }
    qsort(r, nr, sizeof(grecord), cmp_record);
    rp_buf_printf(out, "goroutine profile: total %zu\n", set->n);
    for (size_t i = 0; i < nr; i++) {
        rp_buf_printf(out, "%zu @", r[i].count);
        text_record(out, r[i].g);
        rp_buf_putc(out, '\n');
    }
    free(r);
}

static void stanza_frames(rp_buf *out, const rp_thread_info *t, rp_sym *sym)
{
    for (int i = 0; i < t->depth; i++) {
        uintptr_t pc = t->pcs[i] - (i == 0 && t->leaf_exact ? 0 : 1);
        rp_sym_result r;
        int found = rp_sym_lookup(sym, pc, &r);
        const rp_sym_module *m = r.module >= 0 ? rp_sym_module_at(sym, (size_t)r.module) : NULL;
        if (found == 0)
            rp_buf_printf(out, "%s(...)\n\t%s +%#lx\n", r.name, m->path, (unsigned long)r.sym_off);
        else if (m)
            rp_buf_printf(out, "?()\n\t%s +%#lx\n", m->path, (unsigned long)r.file_off);
        else
            rp_buf_printf(out, "?()\n\t%#lx\n", (unsigned long)pc);
    }
}

static void text_debug2(const gset *set, rp_buf *out)
{
    rp_sym *sym = rp_sym_acquire();
    for (size_t i = 0; i < set->nthreads; i++) {
        const rp_thread_info *t = &set->threads[i];
        rp_buf_printf(out, "thread %d [%c%s%s, %s, %s]:\n", (int)t->tid, t->state,
                      t->wchan[0] ? ", " : "", t->wchan, t->role, t->name);
        if (!t->available)
            rp_buf_puts(out, "\tstack unavailable: the thread did not answer in time\n");
        stanza_frames(out, t, sym);
        rp_buf_putc(out, '\n');
    }
    rp_sym_release(sym);
    for (size_t i = 0; i < set->ntasks; i++) {
        const rp_task_info *t = &set->tasks[i];
        rp_buf_printf(out, "task %llu [%s, %llu ms]: role=%s", (unsigned long long)t->id, t->state,
                      (unsigned long long)t->age_ms, t->role);
        if (t->name)
            rp_buf_printf(out, " %s=%s", strcmp(t->role, "source") ? "name" : "source", t->name);
        if (t->metric)
            rp_buf_printf(out, " metric=%s", t->metric);
        rp_buf_printf(out, "\nstate:%s()\n\ttask\ntask:%s()\n\ttask\nevent loop()\n\ttask\n\n",
                      t->state, t->role);
    }
}

int rp_goroutine_profile(rp_buf *out, int debug)
{
    gset set = {0};
    gset_collect(&set);
    int rc = 0;
    if (debug == 0)
        rc = proto_profile(&set, out);
    else if (debug == 1)
        text_debug1(&set, out);
    else
        text_debug2(&set, out);
    gset_free(&set);
    return rc;
}
