/* SPDX-License-Identifier: PostgreSQL
 *
 * Logging for the orchestration code. Messages follow PostgreSQL's style guide: lower
 * case, no final period, "could not ..." for failed attempts, detail in its own field.
 * Two formats: text (PostgreSQL-like) and logfmt. Debug messages are filtered before
 * their arguments are formatted. Safe to call from any thread (one write(2) per line).
 */
#ifndef RP_COMMON_LOG_H
#define RP_COMMON_LOG_H

#include <stdbool.h>

#include "common/compiler.h"

typedef enum rp_log_level {
    RP_LOG_ERROR = 0,
    RP_LOG_WARN = 1,
    RP_LOG_INFO = 2,
    RP_LOG_DEBUG = 3,
} rp_log_level;

typedef enum rp_log_format {
    RP_LOG_TEXT = 0,
    RP_LOG_LOGFMT = 1,
} rp_log_format;

extern rp_log_level rp_log_min_level;

void rp_log_setup(rp_log_level level, rp_log_format format);
/* Parse "error|warn|info|debug" / "text|logfmt"; 0 or -EINVAL. */
RP_NODISCARD int rp_log_parse_level(const char *s, rp_log_level *out);
RP_NODISCARD int rp_log_parse_format(const char *s, rp_log_format *out);

/* source and metric may be NULL; detail may be NULL. */
void rp_log_write(rp_log_level level, const char *source, const char *metric, const char *detail,
                  const char *fmt, ...) RP_PRINTF(5, 6);

#define rp_log_at(lvl, src, met, det, ...)                                                         \
    do {                                                                                           \
        if ((lvl) <= rp_log_min_level)                                                             \
            rp_log_write((lvl), (src), (met), (det), __VA_ARGS__);                                 \
    } while (0)

#define rp_log_error(...) rp_log_at(RP_LOG_ERROR, NULL, NULL, NULL, __VA_ARGS__)
#define rp_log_warn(...)  rp_log_at(RP_LOG_WARN, NULL, NULL, NULL, __VA_ARGS__)
#define rp_log_info(...)  rp_log_at(RP_LOG_INFO, NULL, NULL, NULL, __VA_ARGS__)
#define rp_log_debug(...) rp_log_at(RP_LOG_DEBUG, NULL, NULL, NULL, __VA_ARGS__)

#endif /* RP_COMMON_LOG_H */
