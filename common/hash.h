/* SPDX-License-Identifier: PostgreSQL
 *
 * FNV-1a, 64 bits: a small, stable hash (same value on every run and platform) for
 * schedule phases, backoff jitter, change detection and profile interning. Not for
 * anything an adversary chooses to collide.
 */
#ifndef RP_COMMON_HASH_H
#define RP_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

#define RP_HASH_INIT 14695981039346656037ULL

/* Fold n bytes of p into h (start from RP_HASH_INIT). */
static inline uint64_t rp_hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* Fold a NUL-terminated string into h. */
static inline uint64_t rp_hash_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* Fold one 64-bit word into h (as one step, not byte by byte). */
static inline uint64_t rp_hash_u64(uint64_t h, uint64_t v)
{
    return (h ^ v) * 1099511628211ULL;
}

#endif /* RP_COMMON_HASH_H */
