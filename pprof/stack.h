/* SPDX-License-Identifier: PostgreSQL
 *
 * Stack capture with libunwind (DWARF unwinding: Debian's libc, libuv and libpq have no
 * frame pointers, so a frame-pointer walk stops after a frame or two inside them).
 * Both functions are async-signal-safe once rp_stack_init() has run: they use only
 * libunwind's local unwinder, which allocates nothing after its warm-up.
 */
#ifndef RP_PPROF_STACK_H
#define RP_PPROF_STACK_H

#include <stddef.h>
#include <stdint.h>

#define RP_STACK_MAX 64

/* Warm libunwind up outside any hook or handler (its first use may allocate). */
void rp_stack_init(void);

/*
 * Return addresses of the calling thread, innermost first, skipping the first `skip`
 * frames (rp_stack_here's own frame is always skipped). Returns the depth.
 */
int rp_stack_here(uintptr_t *pcs, int max, int skip);

/*
 * Unwind the thread interrupted by a signal, from the handler's ucontext. pcs[0] is
 * the exact interrupted PC; the others are return addresses. Returns the depth.
 */
int rp_stack_from_signal(void *ucontext, uintptr_t *pcs, int max);

#endif /* RP_PPROF_STACK_H */
