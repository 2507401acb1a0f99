/* SPDX-License-Identifier: PostgreSQL
 *
 * The daemon: loads and validates the configuration, runs one rp_source per enabled
 * source on one libuv loop, fans batches out to the sinks, reloads on SIGHUP or
 * --refresh, and shuts down cleanly on SIGTERM/SIGINT.
 */
#ifndef RP_APP_REAPER_H
#define RP_APP_REAPER_H

#include "common/compiler.h"
#include "config/config.h"
#include "config/options.h"

/*
 * Parse and validate the metrics and sources named by o (validation includes each
 * conn_str's syntax and the sink URIs). On success *cat and *set are new; on failure
 * diag holds one "file:line:col: message" line per error and -EINVAL is returned.
 */
RP_NODISCARD int rp_reaper_load(const rp_options *o, rp_catalog **cat, rp_source_set **set,
                                rp_diag *diag);

/*
 * Run until SIGTERM/SIGINT. argv is shown (passwords masked) by /debug/pprof/cmdline.
 * Returns the process exit code (0 clean, 1 config/startup error).
 */
int rp_reaper_run(const rp_options *o, int argc, char **argv);

#endif /* RP_APP_REAPER_H */
