/* SPDX-License-Identifier: PostgreSQL
 *
 * Telling a service manager how the daemon is doing, with systemd's notify protocol
 * (sd_notify, libsystemd): READY=1 once the first configuration is applied and the sinks
 * are open, RELOADING=1 and READY=1 around every reload, STOPPING=1 when shutting down,
 * STATUS= lines, and WATCHDOG=1 from the event loop at half the watchdog interval when
 * the unit sets WatchdogSec= (so a stuck loop gets the daemon restarted). Without
 * NOTIFY_SOCKET in the environment every call does nothing.
 *
 * Loop thread only. rp_service_start() arms the watchdog timer, rp_service_stop()
 * closes it.
 */
#ifndef RP_APP_SERVICE_H
#define RP_APP_SERVICE_H

#include <stdint.h>

#include <uv.h>

#include "common/compiler.h"

typedef struct rp_service {
    uv_timer_t watchdog;  /* pings WATCHDOG=1; initialised only when the watchdog is on */
    uint64_t interval_us; /* the manager's WatchdogSec, 0 when off */
    uint64_t pings;
} rp_service;

/* Read the manager's watchdog setting and, when set, start pinging it from loop. */
void rp_service_start(rp_service *s, uv_loop_t *loop);
void rp_service_ready(const char *status);
void rp_service_reloading(void);
void rp_service_stopping(void);
/* Close the watchdog timer (uv_close; the loop runs the close). */
void rp_service_stop(rp_service *s);

#endif /* RP_APP_SERVICE_H */
