/* SPDX-License-Identifier: PostgreSQL
 *
 * Source lines for the profiles, from a module's DWARF (elfutils' libdw): the file and
 * line of a code address, and the functions the compiler inlined there, so that
 * `go tool pprof -lines` and `-traces` show collect/source.c:NNN with no binary at hand.
 * The DWARF is read from the module's own file or, when that was stripped (a Debian
 * package), from /usr/lib/debug/.build-id/xx/yyyy.debug. pprof/sym.c opens it for the
 * executable only: shared libraries keep their ELF symbol names.
 *
 * Not thread-safe: pprof/sym.c calls it under its lock. Never from a signal handler or
 * an allocation hook (it opens files and allocates).
 */
#ifndef RP_PPROF_LINES_H
#define RP_PPROF_LINES_H

#include <stdint.h>

typedef struct rp_lines rp_lines;

typedef struct rp_line_frame {
    const char *function; /* NULL when DWARF does not say; borrowed from the rp_lines */
    const char *file;     /* NULL when unknown; normalised ("a/../b" -> "b"); borrowed */
    int line;             /* 0 when unknown */
} rp_line_frame;

/* Open the DWARF of the module at path (build_id: lowercase hex, may be ""). NULL when
 * the module has none. Free with rp_lines_close(). */
rp_lines *rp_lines_open(const char *path, const char *build_id);
void rp_lines_close(rp_lines *d);

/* The most frames rp_lines_frames() returns for one address. */
#define RP_LINES_MAX 16

/*
 * The frames at file address addr (runtime address minus the module's load bias),
 * innermost first: the inlined functions, then the function they were inlined into,
 * each with the line it was at (an inlined function's caller is at its call site).
 * Returns how many were written to out (at most max and RP_LINES_MAX); 0 when DWARF has
 * no line there. Each address is looked up once and remembered while d is open.
 */
int rp_lines_frames(rp_lines *d, uintptr_t addr, rp_line_frame *out, int max);

#endif /* RP_PPROF_LINES_H */
