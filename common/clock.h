/* SPDX-License-Identifier: PostgreSQL
 *
 * Clocks. Wall time (CLOCK_REALTIME) stamps measurements; monotonic time measures
 * intervals and deadlines. On the loop, prefer uv_now() for deadlines: it is cached.
 */
#ifndef RP_COMMON_CLOCK_H
#define RP_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds since the Unix epoch. */
static inline int64_t rp_clock_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Milliseconds of CLOCK_MONOTONIC. */
static inline int64_t rp_clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Nanoseconds of CLOCK_MONOTONIC. */
static inline uint64_t rp_clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif /* RP_COMMON_CLOCK_H */
