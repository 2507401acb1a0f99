/* SPDX-License-Identifier: PostgreSQL
 *
 * In-process symbolizer for profiles. The module list comes from dl_iterate_phdr (load
 * bias, executable segment, GNU build-id); function names from each module's ELF
 * .symtab (the executable keeps it, so static functions are named) or .dynsym (Debian's
 * shared libraries), read from the file on first use and cached for the process. A PC
 * outside every symbol's [start, start + size) gets no name; callers print
 * "<module>+0x<offset>" then, never the nearest exported symbol. Source files, lines and
 * inlined functions come from the executable's DWARF (pprof/lines.h); shared libraries
 * keep their symbol names (libc6-dbg's DWARF for libc alone takes 8 MB of heap once
 * libelf has decompressed it).
 *
 * Never call this from a signal handler or an allocation hook: it opens files and
 * allocates. The table is process-wide and guarded by a mutex: rp_sym_acquire() returns
 * it locked and refreshed (when a library was loaded or unloaded since), and
 * rp_sym_release() unlocks it. Pointers into it are valid until the release.
 */
#ifndef RP_PPROF_SYM_H
#define RP_PPROF_SYM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pprof/lines.h"

typedef struct rp_sym_module {
    char *path;                          /* file name; "[vdso]" for the vDSO */
    char *build_id;                      /* lowercase hex, "" when the module has none */
    uintptr_t bias;                      /* load bias: runtime address = file address + bias */
    uintptr_t start, limit, file_offset; /* the executable segment, runtime addresses */
    bool is_main;
    /* symbols, loaded on first lookup */
    bool loaded;
    size_t nsyms;
    struct rp_sym_entry *syms;
    char *strtab;
    /* source lines, opened on first use (NULL: the module has no DWARF) */
    bool lines_tried;
    struct rp_lines *lines;
} rp_sym_module;

typedef struct rp_sym rp_sym;

typedef struct rp_sym_result {
    int module;         /* index, or -1 when no module contains the PC */
    const char *name;   /* function name, NULL when unknown */
    uintptr_t file_off; /* PC - bias (the file address) */
    uintptr_t sym_off;  /* PC - symbol start, when name is set */
} rp_sym_result;

rp_sym *rp_sym_acquire(void);
void rp_sym_release(rp_sym *s);

size_t rp_sym_nmodules(const rp_sym *s);
const rp_sym_module *rp_sym_module_at(const rp_sym *s, size_t i); /* 0 is the executable */

/* Look pc up. Returns 0 when a name was found, -ENOENT otherwise (res is filled either way). */
int rp_sym_lookup(rp_sym *s, uintptr_t pc, rp_sym_result *res);

/* The source frames at pc from the executable's DWARF (pprof/lines.h), innermost first:
 * how many were written to out (0: no line information, or pc is in a shared library).
 * Strings valid until the release. */
int rp_sym_lines(rp_sym *s, uintptr_t pc, rp_line_frame *out, int max);

#endif /* RP_PPROF_SYM_H */
