/* SPDX-License-Identifier: PostgreSQL
 *
 * Catalogue commands: `pgreaper metric list|print-sql|print-init|doc` and
 * `pgreaper preset list`, over the built-in catalogue or --metrics FILE. Blocking
 * command-line code; writes to stdout, errors to stderr.
 */
#ifndef RP_APP_CATCMD_H
#define RP_APP_CATCMD_H

#include <stddef.h>

#include "common/buf.h"

/* argv[0] is "metric" or "preset". Returns the exit code (0, 1 not found/invalid, 2 usage). */
int rp_catcmd_main(int argc, char **argv);

/*
 * The result column names of a metric's SQL, derived from the select list of its final
 * top-level SELECT (the alias after AS, else the last name of a qualified column),
 * appended to out separated by ", ". Returns the number of columns; an item it cannot
 * name is written as "?".
 */
size_t rp_catcmd_columns(const char *sql, rp_buf *out);

#endif /* RP_APP_CATCMD_H */
