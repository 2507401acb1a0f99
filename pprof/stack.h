/* SPDX-License-Identifier: PostgreSQL
 *
 * Stack capture by DWARF unwinding: Debian's libc, libuv and libpq have no frame
 * pointers, so a frame-pointer walk stops after a frame or two inside them.
 *
 * rp_stack_here() (heap samples, thread stacks) uses glibc's backtrace(), that is
 * libgcc's unwinder, which finds each frame's unwind table with glibc's lock-free
 * _dl_find_object(): no system call per frame. libunwind's unw_backtrace() blocks all
 * signals around dl_iterate_phdr() on each cache miss, two rt_sigprocmask calls a
 * frame, which were most of the heap profiler's cost in system calls.
 * rp_stack_from_signal() (CPU samples, thread dumps) uses it too: libgcc's unwinder
 * walks from the handler through the kernel's signal frame into the interrupted code,
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
