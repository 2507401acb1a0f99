/* SPDX-License-Identifier: PostgreSQL
 *
 * Connection-string helpers that need no server: masking passwords for logs and
 * profiles, and expanding $VAR / ${VAR} references from the environment.
 */
#ifndef RP_PGIO_CONNSTR_H
#define RP_PGIO_CONNSTR_H

#include <stddef.h>

#include "common/buf.h"
#include "common/compiler.h"

/*
 * Append to out a copy of conn_str (libpq URI or key=value form) in which every password
 * is replaced by "****": the user:password@ part of a URI, a "password" URI parameter and
 * a password= keyword. Text that cannot be parsed is copied with the same rules applied
 * as far as they can be, so no password survives in any form libpq would accept.
 */
void rp_connstr_mask(const char *conn_str, rp_buf *out);

/*
 * Append msg to out with every password of conn_str that occurs in it replaced by "****"
 * (libpq's parse errors can quote the raw password, e.g. a bad percent-encoding).
 */
void rp_connstr_scrub(const char *conn_str, const char *msg, rp_buf *out);

/*
 * Expand $NAME and ${NAME} in s from the environment into a new string (*out, caller
 * frees). "$$" is a literal '$'. Returns 0, or -ENOENT with the variable's name in err
 * when it is not set, or -EINVAL for a malformed reference.
 */
RP_NODISCARD int rp_connstr_expand_env(const char *s, char **out, char *err, size_t errlen);

/*
 * A copy of conn_str (URI or key=value form) that connects to database dbname, in
 * key=value form (*out, caller frees): every other parameter kept as libpq parsed it.
 * Returns 0, or -EINVAL with libpq's reason (passwords scrubbed) in err.
 */
RP_NODISCARD int rp_connstr_with_dbname(const char *conn_str, const char *dbname, char **out,
                                        char *err, size_t errlen);

#endif /* RP_PGIO_CONNSTR_H */
