/* SPDX-License-Identifier: PostgreSQL
 *
 * pgwatch's configuration database as a configuration source: `--sources
 * postgresql://...` reads the sources from table pgwatch.source, `--metrics
 * postgresql://...` the metrics and presets from pgwatch.metric and pgwatch.preset. Each
 * row is read as JSON (which is YAML) and written out as the text of a sources or
 * metrics file, one row per line, so that one parser and one validation serve files and
 * databases alike and an error names the row's line and the source or metric.
 *
 * The reads block (a libpq connection with the connect timeout, one query, closed):
 * call them at start or from a worker thread, never on the loop. Thread-safe.
 */
#ifndef RP_CONFIG_CONFIGDB_H
#define RP_CONFIG_CONFIGDB_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/compiler.h"

/* Whether a --sources or --metrics value names a database (postgresql:// or postgres://). */
bool rp_configdb_is_uri(const char *s);

/* The sources of pgwatch.source as the text of a sources file, into out (appended).
 * 0, or -EIO with the reason (passwords masked) in err. */
RP_NODISCARD int rp_configdb_read_sources(const char *uri, int connect_timeout_s, rp_buf *out,
                                          char *err, size_t errlen);
/* The metrics and presets of pgwatch.metric and pgwatch.preset as a metrics file. */
RP_NODISCARD int rp_configdb_read_metrics(const char *uri, int connect_timeout_s, rp_buf *out,
                                          char *err, size_t errlen);

/* How a database is named in messages: the URI with its password masked, and the table. */
void rp_configdb_label(const char *uri, const char *table, rp_buf *out);

#endif /* RP_CONFIG_CONFIGDB_H */
