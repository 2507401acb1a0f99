/* SPDX-License-Identifier: PostgreSQL
 *
 * Source lines from DWARF with elfutils' libdw: see lines.h.
 */
#include "pprof/lines.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/mem.h"

typedef struct path_alias {
    const char *raw; /* libdw's string */
    char *norm;      /* owned */
} path_alias;

/* What rp_lines_frames found at an address: frames[first .. first + n) of the cache. */
typedef struct addr_entry {
    uintptr_t addr;
    uint32_t first;
    uint32_t n; /* UINT32_MAX: slot unused */
} addr_entry;

struct rp_lines {
    int fd;
    Dwarf *dbg;
    path_alias *paths; /* normalised file names, by libdw's pointer */
    size_t npaths, cap_paths;
    /* Every address looked up, with its frames: a profile's locations repeat from one
     * capture to the next, and libdw's scope walk costs ~20 us an address. */
    addr_entry *addrs; /* open addressing, power-of-two size, at most half full */
    size_t naddrs, cap_addrs;
    rp_line_frame *frames;
    size_t nframes, cap_frames;
};

static rp_lines *open_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    Dwarf *dbg = dwarf_begin(fd, DWARF_C_READ);
    if (!dbg) { /* no .debug_info: stripped */
        close(fd);
        return NULL;
    }
    rp_lines *d = rp_calloc(1, sizeof(*d));
    d->fd = fd;
    d->dbg = dbg;
    return d;
}

rp_lines *rp_lines_open(const char *path, const char *build_id)
{
    rp_lines *d = path && path[0] == '/' ? open_file(path) : NULL;
    if (d || !build_id || strlen(build_id) < 3)
        return d;
    char debug[512]; /* where Debian's -dbgsym packages put the DWARF of a stripped file */
    snprintf(debug, sizeof(debug), "/usr/lib/debug/.build-id/%.2s/%s.debug", build_id,
             build_id + 2);
    return open_file(debug);
}

void rp_lines_close(rp_lines *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->npaths; i++)
        rp_free(d->paths[i].norm);
    rp_free(d->paths);
    rp_free(d->addrs);
    rp_free(d->frames);
    dwarf_end(d->dbg);
    close(d->fd);
    rp_free(d);
}

static bool ends_in_dotdot(const char *out, size_t n)
{
    return n >= 2 && out[n - 1] == '.' && out[n - 2] == '.' && (n == 2 || out[n - 3] == '/');
}

/* "/src/build/../collect/source.c" -> "/src/collect/source.c": "." and "x/.." dropped. */
static char *normalise(const char *raw)
{
    char *out = rp_malloc(strlen(raw) + 1);
    size_t n = 0;
    bool absolute = raw[0] == '/';
    for (const char *p = raw; *p;) {
        p += strspn(p, "/");
        size_t k = strcspn(p, "/");
        bool dotdot = k == 2 && p[0] == '.' && p[1] == '.';
        if (dotdot && n > 0 && !ends_in_dotdot(out, n)) {
            while (n > 0 && out[n - 1] != '/')
                n--;
            n -= n > 0; /* and its slash */
        } else if (k > 0 && !(k == 1 && p[0] == '.')) {
            if (n > 0 || absolute)
                out[n++] = '/';
            memcpy(out + n, p, k);
            n += k;
        }
        p += k;
    }
    if (n == 0 && absolute)
        out[n++] = '/';
    out[n] = '\0';
    return out;
}

/* A file of cu's line table as an absolute, normalised path (relative names are under the
 * compilation directory: meson's are "../collect/source.c" from the build directory). */
static const char *file_name(rp_lines *d, Dwarf_Die *cu, const char *raw)
{
    if (!raw)
        return NULL;
    for (size_t i = 0; i < d->npaths; i++)
        if (d->paths[i].raw == raw)
            return d->paths[i].norm;
    Dwarf_Attribute a;
    const char *dir = raw[0] == '/' ? NULL : dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &a));
    char *joined = NULL;
    if (dir) {
        joined = rp_malloc(strlen(dir) + strlen(raw) + 2);
        sprintf(joined, "%s/%s", dir, raw);
    }
    rp_grow((void **)&d->paths, &d->cap_paths, d->npaths + 1, sizeof(*d->paths));
    d->paths[d->npaths] = (path_alias){raw, normalise(joined ? joined : raw)};
    rp_free(joined);
    return d->paths[d->npaths++].norm;
}

static bool is_function(Dwarf_Die *die)
{
    int tag = dwarf_tag(die);
    return tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine;
}

/* A subprogram's or inlined subroutine's name, through its abstract origin. */
static const char *die_name(Dwarf_Die *die)
{
    Dwarf_Attribute a;
    return dwarf_formstring(dwarf_attr_integrate(die, DW_AT_name, &a));
}

/* Where an inlined subroutine was called from: its DW_AT_call_file and DW_AT_call_line. */
static void call_site(rp_lines *d, Dwarf_Die *cu, Dwarf_Die *die, rp_line_frame *caller)
{
    Dwarf_Attribute a;
    Dwarf_Word file = 0, line = 0;
    Dwarf_Files *files;
    size_t nfiles;
    caller->file = NULL;
    caller->line = 0;
    if (dwarf_formudata(dwarf_attr(die, DW_AT_call_line, &a), &line) == 0)
        caller->line = (int)line;
    if (dwarf_formudata(dwarf_attr(die, DW_AT_call_file, &a), &file) == 0 &&
        dwarf_getsrcfiles(cu, &files, &nfiles) == 0 && file < nfiles)
        caller->file = file_name(d, cu, dwarf_filesrc(files, file, NULL, NULL));
}

static int lookup(rp_lines *d, uintptr_t addr, rp_line_frame *out, int max)
{
    Dwarf_Die cu;
    if (!dwarf_addrdie(d->dbg, (Dwarf_Addr)addr, &cu))
        return 0;
    Dwarf_Line *ln = dwarf_getsrc_die(&cu, (Dwarf_Addr)addr);
    if (!ln)
        return 0;
    rp_line_frame at = {.file = file_name(d, &cu, dwarf_linesrc(ln, NULL, NULL))};
    dwarf_lineno(ln, &at.line);
    /* dwarf_getscopes stops at the innermost function (inlined or not); the chain of
     * functions around it is in the scopes of that DIE. */
    Dwarf_Die *scopes = NULL, *chain = NULL;
    int nscopes = dwarf_getscopes(&cu, (Dwarf_Addr)addr, &scopes), nchain = 0;
    for (int i = 0; i < nscopes && nchain <= 0; i++)
        if (is_function(&scopes[i]))
            nchain = dwarf_getscopes_die(&scopes[i], &chain);
    free(scopes);
    int n = 0;
    for (int i = 0; i < nchain && n < max; i++) {
        if (!is_function(&chain[i]))
            continue;
        at.function = die_name(&chain[i]);
        out[n++] = at;
        if (dwarf_tag(&chain[i]) == DW_TAG_subprogram)
            break;
        call_site(d, &cu, &chain[i], &at); /* the next frame out is at the call */
    }
    free(chain);
    if (n == 0) /* code outside any function DIE: the line alone */
        out[n++] = at;
    return n;
}

static addr_entry *addr_slot(addr_entry *t, size_t cap, uintptr_t addr)
{
    size_t i = (size_t)((addr * 0x9E3779B97F4A7C15ULL) >> 20) & (cap - 1);
    while (t[i].n != UINT32_MAX && t[i].addr != addr)
        i = (i + 1) & (cap - 1);
    return &t[i];
}

static void grow_addrs(rp_lines *d)
{
    size_t cap = d->cap_addrs ? 2 * d->cap_addrs : 256;
    addr_entry *t = rp_malloc(cap * sizeof(*t));
    for (size_t i = 0; i < cap; i++)
        t[i].n = UINT32_MAX;
    for (size_t i = 0; i < d->cap_addrs; i++)
        if (d->addrs[i].n != UINT32_MAX)
            *addr_slot(t, cap, d->addrs[i].addr) = d->addrs[i];
    rp_free(d->addrs);
    d->addrs = t;
    d->cap_addrs = cap;
}

int rp_lines_frames(rp_lines *d, uintptr_t addr, rp_line_frame *out, int max)
{
    if (!d || max <= 0)
        return 0;
    if (2 * (d->naddrs + 1) > d->cap_addrs)
        grow_addrs(d);
    addr_entry *e = addr_slot(d->addrs, d->cap_addrs, addr);
    if (e->n == UINT32_MAX) { /* first time: ask libdw, keep up to RP_LINES_MAX frames */
        rp_line_frame fr[RP_LINES_MAX];
        int n = lookup(d, addr, fr, RP_LINES_MAX);
        rp_grow((void **)&d->frames, &d->cap_frames, d->nframes + (size_t)n, sizeof(*fr));
        memcpy(d->frames + d->nframes, fr, (size_t)n * sizeof(*fr));
        *e = (addr_entry){addr, (uint32_t)d->nframes, (uint32_t)n};
        d->nframes += (size_t)n;
        d->naddrs++;
    }
    int n = (int)e->n < max ? (int)e->n : max;
    memcpy(out, d->frames + e->first, (size_t)n * sizeof(*out));
    return n;
}
