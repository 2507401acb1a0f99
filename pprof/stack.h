/* SPDX-License-Identifier: PostgreSQL
 *
 * Stack capture by DWARF unwinding: Debian's libc, libuv and libpq have no frame
 * pointers, so a frame-pointer walk stops after a frame or two inside them.
 *
 * rp_stack_here() (heap samples, the threadcreate profile) uses libunwind's
 * unw_backtrace(): each thread keeps a cache of how to step from each return address,
 * so a warm walk is about 2,500 instructions where libgcc's unwinder, which parses the
 * unwind tables again for every frame, takes about 38,000 (callgrind, 15-frame heap
 * stacks). A cache miss blocks all signals around dl_iterate_phdr() (two
 * rt_sigprocmask calls): 0.3 a pipeline on the exhaustive preset once warm. glibc's
 * backtrace() (libgcc) is the fallback where libunwind gets no frame.
 * rp_stack_from_signal() (CPU samples, thread dumps) uses glibc's backtrace(): libgcc's
 * unwinder, lock-free (_dl_find_object), walks from the handler through the kernel's
 * signal frame into the interrupted code,
 * and the frames from the interrupted PC on are kept. Where that PC is not in the walk
 * (no unwind table there), libunwind unwinds from the signal's ucontext: it is about
 * three times slower in the handler (its page checks with mincore() and the blocked
 * signals around dl_iterate_phdr() are system calls), and a handler's CPU is not
 * sampled. Both are async-signal-safe once rp_stack_init() has run: neither allocates
 * after its warm-up.
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
