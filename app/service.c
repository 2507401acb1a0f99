/* SPDX-License-Identifier: PostgreSQL
 *
 * systemd's notify protocol: see service.h.
 */
#include "app/service.h"

#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "common/log.h"

static void on_watchdog(uv_timer_t *t)
{
    rp_service *s = t->data;
    s->pings++;
    (void)sd_notify(0, "WATCHDOG=1");
}

void rp_service_start(rp_service *s, uv_loop_t *loop)
{
    uint64_t us = 0;
    s->interval_us = sd_watchdog_enabled(0, &us) > 0 ? us : 0;
    if (!s->interval_us)
        return;
    uint64_t every_ms = s->interval_us / 2000 ? s->interval_us / 2000 : 1;
    uv_timer_init(loop, &s->watchdog);
    s->watchdog.data = s;
    uv_timer_start(&s->watchdog, on_watchdog, every_ms, every_ms);
    uv_unref((uv_handle_t *)&s->watchdog); /* the loop ends when the work does */
    rp_log_info("service: watchdog every %llu ms (WatchdogSec=%.3g s)",
                (unsigned long long)every_ms, (double)s->interval_us / 1e6);
}

void rp_service_ready(const char *status)
{
    (void)sd_notifyf(0, "READY=1\nSTATUS=%s", status ? status : "running");
}

/* RELOADING=1 with the monotonic time, as systemd 253's Type=notify-reload asks. */
void rp_service_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    (void)sd_notifyf(0, "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC=%llu",
                     (unsigned long long)ts.tv_sec * 1000000ULL +
                         (unsigned long long)ts.tv_nsec / 1000ULL);
}

void rp_service_stopping(void)
{
    (void)sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void rp_service_stop(rp_service *s)
{
    if (s->interval_us && !uv_is_closing((uv_handle_t *)&s->watchdog))
        uv_close((uv_handle_t *)&s->watchdog, NULL);
}
