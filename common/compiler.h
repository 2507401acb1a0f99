/* SPDX-License-Identifier: PostgreSQL
 *
 * Compiler attributes and tiny helpers shared by every module.
 */
#ifndef RP_COMMON_COMPILER_H
#define RP_COMMON_COMPILER_H

#include <stddef.h>
#include <stdlib.h>

#define RP_NODISCARD        __attribute__((warn_unused_result))
#define RP_PRINTF(fmt, arg) __attribute__((format(printf, fmt, arg)))
#define RP_NORETURN         __attribute__((noreturn))
#define RP_UNUSED           __attribute__((unused))
#define rp_likely(x)        __builtin_expect(!!(x), 1)
#define rp_unlikely(x)      __builtin_expect(!!(x), 0)
#define RP_ARRAY_LEN(a)     (sizeof(a) / sizeof((a)[0]))

#define rp_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

RP_NORETURN void rp_panic_at(const char *file, int line, const char *msg);
#define rp_panic(msg) rp_panic_at(__FILE__, __LINE__, (msg))

#ifdef RP_USE_ASSERT_CHECKING
#define rp_assert(cond)                                                                            \
    do {                                                                                           \
        if (rp_unlikely(!(cond)))                                                                  \
            rp_panic_at(__FILE__, __LINE__, "assertion failed: " #cond);                           \
    } while (0)
#else
#define rp_assert(cond) ((void)0)
#endif

#endif /* RP_COMMON_COMPILER_H */
