/* SPDX-License-Identifier: PostgreSQL
 *
 * Allocation policy. rp_malloc() and friends never return NULL: running out of memory
 * for pgreaper's own bookkeeping logs one line and aborts (as PostgreSQL's palloc and
 * Valkey's zmalloc do). Sizes that come from outside (result sets, files) go through
 * rp_try_malloc(), which returns NULL and lets the caller report the error.
 * rp_free() accepts NULL and preserves errno.
 */
#ifndef RP_COMMON_MEM_H
#define RP_COMMON_MEM_H

#include <stddef.h>

#include "common/compiler.h"

void *rp_malloc(size_t size);
void *rp_calloc(size_t n, size_t size);
void *rp_realloc(void *p, size_t size);
void *rp_reallocarray(void *p, size_t n, size_t size);
char *rp_strdup(const char *s);
char *rp_strndup(const char *s, size_t n);
void *rp_try_malloc(size_t size);
void rp_free(void *p);

/* Grow *arr (of *cap elements of elsize bytes) so that it holds at least need elements. */
void rp_grow(void **arr, size_t *cap, size_t need, size_t elsize);

#endif /* RP_COMMON_MEM_H */
