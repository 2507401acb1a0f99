/* SPDX-License-Identifier: PostgreSQL
 *
 * Changes in pgwatch's configuration database, as they happen: one connection on the
 * loop LISTENs on channel "pgreaper_config"; every notification, and every reconnect
 * (which may have missed some), calls back, and the reaper reads the configuration
 * again (it applies it only when the text changed). Anyone may NOTIFY the channel; with
 * tables given, the watcher first creates statement triggers on them that do it on every
 * change (schema pgreaper, function config_changed(), trigger pgreaper_config_changed;
 * PostgreSQL 14+, under a 2 s lock_timeout). A failure to create them is said once, and
 * the --refresh poll still applies changes. The connection never blocks the loop; its
 * loss is said once. Loop thread only.
 */
#ifndef RP_APP_CONFWATCH_H
#define RP_APP_CONFWATCH_H

#include <uv.h>

#include "common/compiler.h"
#include "pgio/admit.h"

#define RP_CONFWATCH_CHANNEL "pgreaper_config"

typedef struct rp_confwatch rp_confwatch;

typedef void (*rp_confwatch_cb)(void *arg);

typedef struct rp_confwatch_opts {
    const char *uri;        /* the configuration database (copied) */
    const char *tables;     /* NULL, or the tables to put triggers on: "pgwatch.source,..." */
    int connect_timeout_ms; /* per connection attempt */
    rp_admit *admit;        /* the loop's admission gate, or NULL */
} rp_confwatch_opts;

/* Start connecting; cb(arg) runs on the loop as described above. 0 or -errno. */
RP_NODISCARD int rp_confwatch_open(uv_loop_t *loop, const rp_confwatch_opts *o, rp_confwatch_cb cb,
                                   void *arg, rp_confwatch **out);
/* Stop: no callback after this; the watcher frees itself once its handles are closed. */
void rp_confwatch_close(rp_confwatch *w);

#endif /* RP_APP_CONFWATCH_H */
