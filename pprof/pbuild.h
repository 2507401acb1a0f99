/* SPDX-License-Identifier: PostgreSQL
 *
 * Profile builder: collects sample types, samples, labels and frames, then writes one
 * gzip-compressed perftools.profiles.Profile (profile.proto) that `go tool pprof` reads
 * with no binary at hand. Strings are interned (index 0 is ""), ids start at 1,
 * locations are deduplicated by address, and every real frame is symbolized in-process
 * by pprof/sym at rp_pbuild_finish(); mappings are emitted for the modules the frames
 * fall in, the executable first, all with has_functions set.
 *
 * A builder is used by one thread. It allocates with malloc; profile endpoints run it
 * inside rp_heap_guard_enter()/leave() so that its own allocations are not sampled.
 */
#ifndef RP_PPROF_PBUILD_H
#define RP_PPROF_PBUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/compiler.h"

typedef struct rp_pbuild rp_pbuild;

rp_pbuild *rp_pbuild_new(void);
void rp_pbuild_free(rp_pbuild *b);

/* Intern s (copied); returns its string-table index. "" and NULL are 0. */
int64_t rp_pbuild_str(rp_pbuild *b, const char *s);

void rp_pbuild_sample_type(rp_pbuild *b, const char *type, const char *unit);
void rp_pbuild_period(rp_pbuild *b, const char *type, const char *unit, int64_t period);
void rp_pbuild_default_type(rp_pbuild *b, const char *type);
void rp_pbuild_duration(rp_pbuild *b, int64_t ns);
void rp_pbuild_comment(rp_pbuild *b, const char *text);
void rp_pbuild_drop_frames(rp_pbuild *b, const char *regex);

/* Location of a code address as stored (callers pass return address - 1). */
uint64_t rp_pbuild_loc_addr(rp_pbuild *b, uintptr_t addr);
/* Location of a synthetic frame (no mapping, address 0) called name. */
uint64_t rp_pbuild_loc_named(rp_pbuild *b, const char *name);

/*
 * Locations for a raw stack, innermost first: every PC is a return address (looked up
 * as PC - 1) unless leaf_exact, where pcs[0] is an interrupted PC. Returns n.
 */
size_t rp_pbuild_stack(rp_pbuild *b, const uintptr_t *pcs, size_t n, bool leaf_exact,
                       uint64_t *locs);

/* Add a sample (values: one per sample type). Returns its index for the label calls. */
size_t rp_pbuild_sample(rp_pbuild *b, const uint64_t *locs, size_t nlocs, const int64_t *values);
void rp_pbuild_label_str(rp_pbuild *b, size_t sample, const char *key, const char *val);
void rp_pbuild_label_num(rp_pbuild *b, size_t sample, const char *key, int64_t num,
                         const char *unit);

/* Symbolize, encode and gzip into out (appended). 0, or -EIO when zlib failed. */
RP_NODISCARD int rp_pbuild_finish(rp_pbuild *b, rp_buf *out);

/*
 * Gunzip and decode a profile (for readers of profiles: pgreaper compare, tests).
 * NULL when it is not a gzip'd profile.proto. Free with
 * perftools__profiles__profile__free_unpacked(p, NULL).
 */
struct Perftools__Profiles__Profile *rp_pbuild_decode(const void *gz, size_t len);

/* Symbol text for one address as the debug=1 texts print it: "func+0xoff" or "mod+0xoff". */
void rp_pbuild_symbolize(uintptr_t addr, rp_buf *out);

/* A stack of return addresses as Go's debug=1 texts end a record: " 0x.. 0x..", then a
 * "#\t0xPC-1\tsymbol" line per frame, then an empty line. */
void rp_pbuild_text_stack(rp_buf *out, const uintptr_t *pcs, size_t n);

#endif /* RP_PPROF_PBUILD_H */
