/* SPDX-License-Identifier: PostgreSQL
 *
 * A tiny TAP producer for unit tests: ok(), is_int(), is_str(), done_testing().
 * Failures print file and line. meson runs these with protocol 'tap'.
 */
#ifndef RP_TESTS_TAP_H
#define RP_TESTS_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

static inline int tap_ok(int cond, const char *file, int line, const char *name)
{
    tap_n++;
    printf("%sok %d - %s\n", cond ? "" : "not ", tap_n, name);
    if (!cond) {
        tap_failed++;
        printf("#   failed at %s:%d\n", file, line);
    }
    return cond;
}

#define ok(cond, name) tap_ok(!!(cond), __FILE__, __LINE__, (name))

#define is_int(got, want, name)                                                                    \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (!tap_ok(g_ == w_, __FILE__, __LINE__, (name)))                                         \
            printf("#   got: %lld\n#   expected: %lld\n", g_, w_);                                 \
    } while (0)

#define is_str(got, want, name)                                                                    \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        int eq_ = (g_ && w_) ? strcmp(g_, w_) == 0 : g_ == w_;                                     \
        if (!tap_ok(eq_, __FILE__, __LINE__, (name)))                                              \
            printf("#   got:      \"%s\"\n#   expected: \"%s\"\n", g_ ? g_ : "(null)",             \
                   w_ ? w_ : "(null)");                                                            \
    } while (0)

static inline int done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif /* RP_TESTS_TAP_H */
