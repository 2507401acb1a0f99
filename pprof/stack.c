/* SPDX-License-Identifier: PostgreSQL
 *
 * libunwind stack capture: see stack.h.
 */
#define UNW_LOCAL_ONLY
#include "pprof/stack.h"

#include <dlfcn.h>
#include <libunwind.h>
#include <ucontext.h>

#include "common/compiler.h"

/* glibc's backtrace(), looked up in libc itself: libunwind, linked before libc, exports
 * a backtrace() (and an _Unwind_Backtrace()) of its own that the plain name binds to. */
static int (*glibc_backtrace)(void **, int);

void rp_stack_init(void)
{
    uintptr_t pcs[8];
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (libc)
        glibc_backtrace = (int (*)(void **, int))dlsym(libc, "backtrace");
    (void)rp_stack_here(pcs, 8, 0); /* warms this thread's trace cache up */
    if (glibc_backtrace)
        (void)glibc_backtrace((void **)pcs, 8); /* loads libgcc_s's unwinder: may allocate */
}

__attribute__((noinline)) int rp_stack_here(uintptr_t *pcs, int max, int skip)
{
    void *raw[RP_STACK_MAX + 8];
    int want = max + skip + 1;
    if (want > (int)RP_ARRAY_LEN(raw))
        want = (int)RP_ARRAY_LEN(raw);
    int n = unw_backtrace(raw, want);
    if (n <= 1 && glibc_backtrace)
        n = glibc_backtrace(raw, want);
    int out = 0;
    for (int i = skip + 1; i < n && out < max; i++)
        pcs[out++] = (uintptr_t)raw[i];
    return out;
}

/* The PC the signal interrupted, from the handler's ucontext; 0 where unknown. */
static uintptr_t signal_pc(const ucontext_t *uc)
{
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#else
    (void)uc;
    return 0;
#endif
}

/* libgcc's unwinder walks from the handler through the kernel's signal frame into the
 * interrupted code: keep the frames from the interrupted PC on. 0 when it is not in
 * the walk or is its last frame (no unwind table there, e.g. a PLT stub). */
static int from_signal_libgcc(uintptr_t pc, uintptr_t *pcs, int max)
{
    void *raw[RP_STACK_MAX + 16];
    if (!glibc_backtrace || pc == 0)
        return 0;
    int n = glibc_backtrace(raw, (int)RP_ARRAY_LEN(raw));
    for (int i = 0; i < n; i++) {
        if ((uintptr_t)raw[i] != pc)
            continue;
        if (i + 1 == n)
            return 0;
        int out = 0;
        for (; i < n && out < max; i++)
            pcs[out++] = (uintptr_t)raw[i];
        return out;
    }
    return 0;
}

int rp_stack_from_signal(void *ucontext, uintptr_t *pcs, int max)
{
    unw_cursor_t cur;
    unw_word_t ip;
    int n = from_signal_libgcc(signal_pc(ucontext), pcs, max);
    if (n > 0)
        return n;
    if (unw_init_local2(&cur, (unw_context_t *)ucontext, UNW_INIT_SIGNAL_FRAME) < 0)
        return 0;
    do {
        if (unw_get_reg(&cur, UNW_REG_IP, &ip) < 0 || ip == 0)
            break;
        pcs[n++] = (uintptr_t)ip;
    } while (n < max && unw_step(&cur) > 0);
    return n;
}
