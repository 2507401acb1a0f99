/* SPDX-License-Identifier: PostgreSQL
 *
 * `pgreaper compare`: runs the batch and the per-metric design side by side as child
 * processes against the same sources, samples each child's /debug/vars, goroutine
 * profile, /proc figures and its connections in pg_stat_activity at fixed intervals, and
 * prints the side-by-side table (markdown or JSON). Both modes' heap and goroutine
 * profiles are saved for `go tool pprof -diff_base`. A blocking command-line tool: it
 * runs no event loop of its own.
 */
#ifndef RP_APP_COMPARE_H
#define RP_APP_COMPARE_H

/* argv[0] is "compare". Returns the process exit code (0, 1 run failed, 2 usage). */
int rp_compare_main(int argc, char **argv);

#endif /* RP_APP_COMPARE_H */
