/* SPDX-License-Identifier: PostgreSQL
 *
 * Prometheus text exposition into batches. See promtext.h.
 *
 * The text is copied once and cut in place: names, label values (unescaped, never
 * longer than escaped) and values become NUL-terminated strings of the copy. Samples
 * are chained per family, so building the rows is linear in the text.
 */
#include "collect/promtext.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

enum { T_UNTYPED, T_COUNTER, T_GAUGE, T_HISTOGRAM, T_SUMMARY };

typedef struct family {
    const char *name;
    int type;
    bool bad;          /* a line of it did not parse: not emitted */
    size_t head, tail; /* its samples (index + 1; 0: none) */
    size_t n;
} family;

typedef struct sample {
    size_t fam, next; /* next: index + 1 of the family's next sample, 0: last */
    size_t lab0, nlab;
    const char *value;
    int64_t ts_ns;
} sample;

typedef struct label {
    const char *key, *value;
} label;

typedef struct parser {
    family *fams;
    size_t nfams, cap_fams;
    sample *samples;
    size_t nsamples, cap_samples;
    label *labels;
    size_t nlabels, cap_labels;
    int64_t now_ns;
    size_t line;
    rp_promtext_error_fn on_error;
    void *arg;
    rp_promtext_counts *counts;
} parser;

static bool name_start(int c)
{
    return isalpha(c) || c == '_' || c == ':';
}

static bool name_char(int c)
{
    return isalnum(c) || c == '_' || c == ':';
}

static char *skip_blank(char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static size_t find_family(const parser *ps, const char *name)
{
    for (size_t i = ps->nfams; i-- > 0;) /* samples come grouped: the last ones first */
        if (strcmp(ps->fams[i].name, name) == 0)
            return i;
    return SIZE_MAX;
}

static size_t add_family(parser *ps, const char *name, int type)
{
    rp_grow((void **)&ps->fams, &ps->cap_fams, ps->nfams + 1, sizeof(family));
    family *f = &ps->fams[ps->nfams];
    memset(f, 0, sizeof(*f));
    f->name = name;
    f->type = type;
    return ps->nfams++;
}

static void fail(parser *ps, size_t fam, const char *why)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "line %zu: %s", ps->line, why);
    ps->counts->errors++;
    if (fam != SIZE_MAX)
        ps->fams[fam].bad = true;
    ps->on_error(ps->arg, fam != SIZE_MAX ? ps->fams[fam].name : NULL, msg);
}

/* "# TYPE name type": the family's type (declared before its samples). */
static void type_line(parser *ps, char *p)
{
    p = skip_blank(p + 1);
    if (strncmp(p, "TYPE", 4) != 0 || (p[4] != ' ' && p[4] != '\t'))
        return; /* HELP and other comments */
    char *name = skip_blank(p + 4), *end = name;
    while (name_char((unsigned char)*end))
        end++;
    char *kind = skip_blank(end);
    *end = '\0';
    static const char *const types[] = {"untyped", "counter", "gauge", "histogram", "summary"};
    int type = T_UNTYPED;
    for (int i = 0; i < 5; i++)
        if (strncmp(kind, types[i], strlen(types[i])) == 0)
            type = i;
    size_t f = find_family(ps, name);
    if (!*name)
        fail(ps, SIZE_MAX, "TYPE without a metric name");
    else if (f == SIZE_MAX)
        (void)add_family(ps, name, type);
    else
        ps->fams[f].type = type;
}

/* The family a sample belongs to, or SIZE_MAX-1 for a sample that is left out (buckets,
 * quantiles, a summary's count). */
#define LEFT_OUT (SIZE_MAX - 1)
static size_t family_of(parser *ps, char *name)
{
    size_t f = find_family(ps, name);
    if (f != SIZE_MAX)
        return ps->fams[f].type >= T_HISTOGRAM ? LEFT_OUT : f; /* quantiles: name alone */
    static const char *const suffixes[] = {"_count", "_sum", "_bucket"};
    size_t len = strlen(name);
    for (int i = 0; i < 3; i++) {
        size_t sl = strlen(suffixes[i]);
        if (len <= sl || strcmp(name + len - sl, suffixes[i]) != 0)
            continue;
        name[len - sl] = '\0';
        size_t base = find_family(ps, name);
        name[len - sl] = suffixes[i][0];
        if (base == SIZE_MAX || ps->fams[base].type < T_HISTOGRAM)
            continue;
        bool keep = (ps->fams[base].type == T_HISTOGRAM && i == 0) ||
                    (ps->fams[base].type == T_SUMMARY && i == 1);
        return keep ? base : LEFT_OUT;
    }
    return add_family(ps, name, T_UNTYPED);
}

/* A label value after its opening quote: unescaped in place; the closing quote's
 * position, or NULL when unterminated. */
static char *label_value(char *p, char **out)
{
    char *w = p;
    *out = p;
    for (; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            *w++ = *p == 'n' ? '\n' : *p;
        } else {
            *w++ = *p;
        }
    }
    if (*p != '"')
        return NULL;
    *w = '\0';
    return p;
}

/* "{k="v",...}" at p; the position after '}', or NULL with *why. */
static char *labels(parser *ps, char *p, const char **why)
{
    p = skip_blank(p + 1);
    while (*p != '}') {
        char *key = p;
        while (name_char((unsigned char)*p))
            p++;
        char *eq = skip_blank(p);
        if (p == key || *eq != '=' || *(eq = skip_blank(eq + 1)) != '"') {
            *why = "a label must be name=\"value\"";
            return NULL;
        }
        *p = '\0';
        char *val, *close = label_value(eq + 1, &val);
        if (!close) {
            *why = "unterminated label value";
            return NULL;
        }
        rp_grow((void **)&ps->labels, &ps->cap_labels, ps->nlabels + 1, sizeof(label));
        ps->labels[ps->nlabels++] = (label){key, val};
        p = skip_blank(close + 1);
        if (*p == ',')
            p = skip_blank(p + 1);
        else if (*p != '}') {
            *why = "expected ',' or '}' after a label";
            return NULL;
        }
    }
    return p + 1;
}

/* "name{labels} value [timestamp]". */
static void sample_line(parser *ps, char *p)
{
    char *name = p;
    while (name_char((unsigned char)*p))
        p++;
    if (p == name || !name_start((unsigned char)*name)) {
        fail(ps, SIZE_MAX, "a sample must start with a metric name");
        return;
    }
    char *nend = p, c = *p;
    *p = '\0';
    size_t fam = family_of(ps, name);
    *p = c;
    size_t lab0 = ps->nlabels;
    const char *why = NULL;
    if (*p == '{' && !(p = labels(ps, p, &why))) {
        ps->nlabels = lab0;
        *nend = '\0'; /* the family's name */
        fail(ps, fam == LEFT_OUT ? SIZE_MAX : fam, why);
        return;
    }
    char *value = skip_blank(p), *end = value;
    *nend = '\0'; /* after value was found: without labels nend is the blank before it */
    while (*end && *end != ' ' && *end != '\t')
        end++;
    char *rest = skip_blank(end), *tsend = rest;
    *end = '\0';
    char *num_end;
    (void)strtod(value, &num_end);
    long long ts = *rest ? strtoll(rest, &tsend, 10) : 0;
    if (!*value || *num_end || *skip_blank(tsend)) {
        ps->nlabels = lab0;
        fail(ps, fam == LEFT_OUT ? SIZE_MAX : fam,
             !*value ? "a sample needs a value"
                     : "a value must be a number and a timestamp "
                       "an integer (milliseconds)");
        return;
    }
    if (fam == LEFT_OUT) {
        ps->nlabels = lab0;
        return;
    }
    rp_grow((void **)&ps->samples, &ps->cap_samples, ps->nsamples + 1, sizeof(sample));
    ps->samples[ps->nsamples] = (sample){
        fam, 0, lab0, ps->nlabels - lab0, value, *rest ? (int64_t)ts * 1000000 : ps->now_ns};
    family *f = &ps->fams[fam];
    if (f->tail)
        ps->samples[f->tail - 1].next = ps->nsamples + 1;
    else
        f->head = ps->nsamples + 1;
    f->tail = ++ps->nsamples;
    f->n++;
}

/* The family's rows as a batch: epoch_ns, tag_<label> for every label any sample has
 * (NULL where a sample lacks it), and the value named after the family. */
static void emit_family(parser *ps, const family *f, rp_promtext_family_fn on_family)
{
    const char **keys = rp_calloc(ps->nlabels + 1, sizeof(char *));
    size_t nkeys = 0;
    for (size_t i = f->head; i; i = ps->samples[i - 1].next) {
        const sample *sm = &ps->samples[i - 1];
        for (size_t k = 0; k < sm->nlab; k++) {
            size_t j = 0;
            while (j < nkeys && strcmp(keys[j], ps->labels[sm->lab0 + k].key) != 0)
                j++;
            if (j == nkeys)
                keys[nkeys++] = ps->labels[sm->lab0 + k].key;
        }
    }
    size_t ncols = nkeys + 2;
    rp_column *cols = rp_calloc(ncols, sizeof(rp_column));
    char **names = rp_calloc(nkeys + 1, sizeof(char *));
    cols[0] = (rp_column){"epoch_ns", RP_COL_TIME, RP_VAL_INT};
    for (size_t j = 0; j < nkeys; j++) {
        size_t len = strlen(keys[j]) + 5;
        names[j] = rp_malloc(len);
        snprintf(names[j], len, "tag_%s", keys[j]);
        cols[j + 1] = (rp_column){names[j], RP_COL_TAG, RP_VAL_TEXT};
    }
    cols[ncols - 1] = (rp_column){f->name, RP_COL_FIELD, RP_VAL_FLOAT};
    const char **vals = rp_calloc(f->n * ncols + 1, sizeof(char *));
    char(*ts)[24] = rp_calloc(f->n + 1, sizeof(*ts));
    size_t row = 0;
    for (size_t i = f->head; i; i = ps->samples[i - 1].next, row++) {
        const sample *sm = &ps->samples[i - 1];
        const char **r = &vals[row * ncols];
        snprintf(ts[row], sizeof(ts[row]), "%lld", (long long)sm->ts_ns);
        r[0] = ts[row];
        for (size_t k = 0; k < sm->nlab; k++)
            for (size_t j = 0; j < nkeys; j++)
                if (strcmp(keys[j], ps->labels[sm->lab0 + k].key) == 0)
                    r[j + 1] = ps->labels[sm->lab0 + k].value;
        r[ncols - 1] = sm->value;
    }
    rp_batch b;
    rp_batch_init_values(&b, cols, ncols, f->n, vals);
    on_family(ps->arg, f->name, &b);
    rp_batch_fini(&b);
    ps->counts->families++;
    ps->counts->samples += f->n;
    for (size_t j = 0; j < nkeys; j++)
        rp_free(names[j]);
    rp_free(names);
    rp_free(cols);
    rp_free(vals);
    rp_free(ts);
    rp_free(keys);
}

void rp_promtext_parse(const char *text, size_t len, int64_t now_ns,
                       rp_promtext_family_fn on_family, rp_promtext_error_fn on_error, void *arg,
                       rp_promtext_counts *counts)
{
    memset(counts, 0, sizeof(*counts));
    parser ps = {.now_ns = now_ns, .on_error = on_error, .arg = arg, .counts = counts};
    char *buf = rp_malloc(len + 1);
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *end = buf + len;
    for (char *line = buf; line < end;) {
        char *eol = memchr(line, '\n', (size_t)(end - line));
        eol = eol ? eol : end;
        bool nul = memchr(line, '\0', (size_t)(eol - line)) != NULL;
        *eol = '\0';
        if (eol > line && eol[-1] == '\r')
            eol[-1] = '\0';
        ps.line++;
        char *p = skip_blank(line);
        if (nul)
            fail(&ps, SIZE_MAX, "a line must not contain a NUL byte");
        else if (*p == '#')
            type_line(&ps, p);
        else if (*p)
            sample_line(&ps, p);
        line = eol + 1;
    }
    for (size_t i = 0; i < ps.nfams; i++)
        if (!ps.fams[i].bad && ps.fams[i].n > 0)
            emit_family(&ps, &ps.fams[i], on_family);
    rp_free(ps.fams);
    rp_free(ps.samples);
    rp_free(ps.labels);
    rp_free(buf);
}
